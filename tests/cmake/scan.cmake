# corpuslens scan (include/corpuslens/scan/scan.h): trie forward vs plain forward, pruning bound vs brute force,
# numpy reference per hook, rank invariance, resume, refusals.
add_executable(scan_trie_check ${CMAKE_CURRENT_SOURCE_DIR}/scan_trie_check.c)
target_link_libraries(scan_trie_check PRIVATE corpuslens_core)
set_target_properties(scan_trie_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
cl_script_test(scan_trie "unit" ${CMAKE_CURRENT_SOURCE_DIR}/scan_trie_check.sh)
cl_script_test(scan_reference_mlp_out "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py reference mlp_out)
cl_script_test(scan_reference_attn_out "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py reference attn_out)
cl_script_test(scan_reference_resid_post "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py reference resid_post)
cl_script_test(scan_reference_resid_mid "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py reference resid_mid)
cl_script_test(scan_reference_embed "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py reference embed)
cl_script_test(scan_ranks "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py ranks)
cl_script_test(scan_resume "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py resume)
# prompts from their shard's forward (kept shards) or a prompt trie: the same file (issue 24)
cl_script_test(scan_shortcut "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py shortcut)
cl_script_test(scan_refusals "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py refusals)
cl_script_test(scan_prune "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py prune)
cl_script_test(scan_reference_pruned "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_test.py reference mlp_out 8)
# the writer's merge of match lists from any number of ranks (1,500: past the old 1024 limit) vs naive
cl_criterion_test(test_scan_merge ${CMAKE_CURRENT_SOURCE_DIR}/test_scan_merge.c)
# 1, 2, 4, 8 ranks (oversubscribed) write byte-identical scan.h5 (parallel HDF5), wall_seconds zeroed
cl_script_test(scan_ranks_bytes "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/scan_ranks_bytes.sh)
set_tests_properties(scan_ranks_bytes PROPERTIES TIMEOUT 900)
# the pruned scan's dot products: AVX-512, AVX2 and portable give the same bits for every length
cl_criterion_test(test_scan_dot ${CMAKE_CURRENT_SOURCE_DIR}/test_scan_dot.c)
cl_script_test(scan_sparse "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_sparse_test.py)
# A sharded corpus (issue 26): no rank of a scan reads the whole corpus; a
# file without /substrings/sorted is loaded whole (the negative control).
cl_script_test(scan_shard_reads "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/scan_shard_reads.sh)
