# Checkpoint import (issue 3): readers, import/inspect against PyTorch, refusals, fuzzing.
cl_criterion_test(checkpoint_readers ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_readers.c)
cl_script_test(checkpoint_import torch /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_import.py --cases-only)
# the trained model of ../shared: inspect's count, import, predict vs PyTorch (77 without it)
cl_script_test(checkpoint_shared "torch;nosan" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_import.py --shared-only)
set_tests_properties(checkpoint_shared PROPERTIES SKIP_RETURN_CODE 77)
cl_script_test(checkpoint_refusals torch /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_import.py --refusals-only)
# builds its own clang -fsanitize=fuzzer,address,undefined binaries: not for the ASan build
cl_script_test(checkpoint_fuzz "torch;slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz.sh)
cl_script_test(checkpoint_dissect torch /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_dissect.py)
# inspect on 20,000 tensors and a pickle of 20,000 aliases: the tree against torch's own grouping (issue 21)
cl_script_test(inspect_scale torch /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/inspect_scale.py)
# inspect --tensor/--dump refuse a view that repeats its storage past the cap, unless --force (issue 21)
cl_script_test(inspect_expand torch /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/inspect_expand.py)
