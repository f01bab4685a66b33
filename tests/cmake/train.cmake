# Training (issue 6): PyTorch parity of gradients and AdamW steps, rank
# invariance + resume equivalence (mpiexec inside the script), refusals.
cl_script_test(train_parity "torch;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/train_parity.py)
cl_script_test(train_invariance "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/train_invariance.sh)
cl_script_test(train_refusals "unit;mpi" ${CMAKE_CURRENT_SOURCE_DIR}/train_refusals.sh)
cl_criterion_test(test_kernels_train test_kernels_train.c)
# issue 17: the balanced-parentheses data set and classifier against PyTorch
cl_script_test(parens_parity torch /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/parens_parity.py)
cl_script_test(train_default_checkpoint "unit" ${CMAKE_CURRENT_SOURCE_DIR}/train_default_checkpoint.sh)  # a checkpoint at every evaluation by default
