# corpus: unique substrings, next-token counts, prompts, corpus.h5 (prepare).
cl_criterion_test(test_corpus ${CMAKE_CURRENT_SOURCE_DIR}/test_corpus.c)
cl_script_test(corpus_cli "unit" ${CMAKE_CURRENT_SOURCE_DIR}/corpus_cli.sh)
cl_script_test(corpus_cli_mpi "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/corpus_cli.sh mpi)
cl_script_test(corpus_tinyshakespeare "unit" /usr/bin/python3
               ${CMAKE_CURRENT_SOURCE_DIR}/corpus_tinyshakespeare.py)
set_tests_properties(corpus_tinyshakespeare PROPERTIES SKIP_RETURN_CODE 77)  # 77: no ../shared prompt file
cl_criterion_test(test_parens ${CMAKE_CURRENT_SOURCE_DIR}/test_parens.c)  # the strict parens reader (issue 21)
cl_criterion_test(test_infgram ${CMAKE_CURRENT_SOURCE_DIR}/test_infgram.c)  # suffix array, ∞-gram, backoff n-gram (issue 23)
cl_script_test(load_errors "unit" ${CMAKE_CURRENT_SOURCE_DIR}/load_errors.sh)  # a load error names its path once
cl_script_test(prepare_no_prompts "unit" ${CMAKE_CURRENT_SOURCE_DIR}/prepare_no_prompts.sh)  # a corpus for index/explain/serve only
