# The reducer: Hellinger/statistics/parameter units; reduce and tune against a
# naive reference on a synthetic scan.h5 (h5py), refusals, noise floor.
cl_criterion_test(reduce_unit ${CMAKE_CURRENT_SOURCE_DIR}/test_reduce.c)
cl_script_test(reduce_synthetic unit /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reduce_check.py)
