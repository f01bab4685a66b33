# Hostile files (issue 21): each attribute and dataset of a real model.h5,
# corpus.h5 and scan.h5 tampered with in turn (tests/python/hostile_files.py);
# the commands that read them must refuse with one message, a nonzero exit
# below 128, no sanitizer report, no hang, bounded memory, no output left.
# Under the sanitizers (some 10x slower) every 5th case runs, so that CI stays
# well inside its time; the Release build runs every case.
if(CORPUSLENS_SANITIZE)
  set(_cl_hostile_stride 5)
else()
  set(_cl_hostile_stride 1)
endif()
foreach(kind model corpus scan)
  cl_script_test(hostile_${kind} "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/hostile_files.py
                 --kind ${kind} --stride ${_cl_hostile_stride})
  set_tests_properties(hostile_${kind} PROPERTIES TIMEOUT 3600)
endforeach()
# libFuzzer on the corpus.h5 opener (tests/fuzz/fuzz_corpus.c): builds its own
# clang -fsanitize=fuzzer,address,undefined binary, so not for the ASan build.
cl_script_test(corpus_fuzz "slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz_corpus.sh)
set_tests_properties(corpus_fuzz PROPERTIES TIMEOUT 900)
