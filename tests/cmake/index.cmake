# index.h5 as a hostile file (issue 21, "trust no file"): every attribute and
# dataset of a small real index tampered with in turn; explain must refuse each
# with one clear message, exit 1..127, no sanitizer report, no output file
# (tests/python/hostile_index.py; what the reader promises: docs/index-integrity.md).
cl_script_test(index_hostile "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/hostile_index.py)
set_tests_properties(index_hostile PROPERTIES TIMEOUT 900)
# explain's logit lens for V = 5000 (> the old fixed 4096) against its own -o
# output, and index --sketch-dim 32 taken as given (issue 21, defects 3 and 8)
cl_script_test(explain_vocab "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/explain_vocab.py)
# libFuzzer harness of the index opener (structured: hostile values in well-formed
# HDF5 files); builds its own clang -fsanitize=fuzzer,address,undefined binary, so
# not for the ASan build, as checkpoint_fuzz
cl_script_test(index_fuzz "slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz_index.sh)
set_tests_properties(index_fuzz PROPERTIES TIMEOUT 900)
