# Benchmarks (not tests): tests/bench/forward_bench.sh runs bench_forward beside
# PyTorch. Only a tiny smoke run of each is a test.
add_executable(bench_forward ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_forward.c)
target_link_libraries(bench_forward PRIVATE corpuslens_core)
set_target_properties(bench_forward PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
add_test(NAME bench_forward_smoke
         COMMAND bench_forward --config n_layer=1,n_head=2,n_embd=32,block_size=16,vocab_size=11
                 --B 8 --T 5 --reps 1 --sgemm 64,32,16)
set_tests_properties(bench_forward_smoke PROPERTIES LABELS unit ENVIRONMENT "${CL_TEST_ENV}")
cl_script_test(forward_bench_smoke "torch" ${CMAKE_CURRENT_SOURCE_DIR}/bench/forward_bench.sh
               --build ${CMAKE_BINARY_DIR} --B 16 --T 6 --rounds 1
               --config n_layer=2,n_head=2,n_embd=32,block_size=16)
# tests/bench/train_bench.sh runs bench_train beside PyTorch (issue 14).
add_executable(bench_train ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_train.c)
target_link_libraries(bench_train PRIVATE corpuslens_core)
set_target_properties(bench_train PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
add_test(NAME bench_train_smoke
         COMMAND bench_train --config n_layer=1,n_head=2,n_embd=32,block_size=80,vocab_size=11
                 --B 3 --T 80 --steps 2 --warmup 1)
set_tests_properties(bench_train_smoke PROPERTIES LABELS unit ENVIRONMENT "${CL_TEST_ENV}")
# bench_gemm: the AVX-512 sgemm (nn/gemm.h) beside OpenBLAS on the scan's shapes.
add_executable(bench_gemm ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_gemm.c)
target_link_libraries(bench_gemm PRIVATE corpuslens_core)
set_target_properties(bench_gemm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
add_test(NAME bench_gemm_smoke COMMAND bench_gemm --rounds 1 --shape 40x33x70)
set_tests_properties(bench_gemm_smoke PROPERTIES LABELS unit ENVIRONMENT "${CL_TEST_ENV}")
# explain's prompt forward: the plain forward against the trie forward (docs/scan-prompts.md, "Exactness")
add_executable(bench_explain_fwd ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_explain_fwd.c)
target_link_libraries(bench_explain_fwd PRIVATE corpuslens_core)
set_target_properties(bench_explain_fwd PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
# bench_passage_held: the passage's search as serve runs it (held index), no HTTP; a figure generator
add_executable(bench_passage_held ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_passage_held.c)
target_link_libraries(bench_passage_held PRIVATE corpuslens_core)
set_target_properties(bench_passage_held PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
