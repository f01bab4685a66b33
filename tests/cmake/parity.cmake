# Parity with PyTorch (the oracle) and refusals of bad models/texts/configs.
# Python scripts run under Debian's /usr/bin/python3 (python3-torch, python3-h5py).
set(CL_PY ${CMAKE_CURRENT_SOURCE_DIR}/python)
# Small models (2x64): lecture (relu, 1/sqrt(hs) and 1/sqrt(n_embd)), lecture+gelu,
# nanoGPT with and without biases, plus negative controls. Runs under ASan too.
cl_script_test(parity_small "torch;unit" /usr/bin/python3 ${CL_PY}/parity.py --negative
               --case lecture-small --case lecture-small-nembd --case lecture-small-gelu
               --case nanogpt-small-bias --case nanogpt-small-nobias)
# 6x384 models (random lecture and nanoGPT, and the trained lecture model when
# ../shared has it): too heavy for the sanitizer run.
cl_script_test(parity_6x384 "torch;nosan" /usr/bin/python3 ${CL_PY}/parity.py
               --case lecture-6x384 --case nanogpt-6x384)
# the trained lecture model of ../shared (exit 77, skipped, in a clone without it)
cl_script_test(parity_trained "torch;nosan" /usr/bin/python3 ${CL_PY}/parity.py --case lecture-trained)
set_tests_properties(parity_trained PROPERTIES SKIP_RETURN_CODE 77)
cl_script_test(bad_model "torch;unit" /usr/bin/python3 ${CL_PY}/bad_model.py)
# The oracle itself: hooked forward == the modules' forward; the writer round-trips.
cl_script_test(torch_oracle_selfcheck "torch;unit" /usr/bin/python3 ${CL_PY}/torch_models.py)
