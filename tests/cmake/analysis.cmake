# Analyses: logit lens, block ablation, similar strings, embed-sim.
set(CL_PY ${CMAKE_CURRENT_SOURCE_DIR}/python)
# similar against numpy on a synthetic scan.h5 (h5py), and its refusals.
cl_script_test(analysis_similar "unit" /usr/bin/python3 ${CL_PY}/analysis_similar.py)
# lens / ablate / embed-sim against PyTorch float64 (3x32 model) + refusals; no MPI.
cl_script_test(analysis_torch "torch;unit" /usr/bin/python3 ${CL_PY}/analysis_torch.py --no-mpi)
# the same plus rank invariance (lens --prompts on 1/2/3 ranks, ablate on 1/2).
cl_script_test(analysis_torch_mpi "torch;mpi;nosan" /usr/bin/python3 ${CL_PY}/analysis_torch.py)
