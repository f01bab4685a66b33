# corpuslens index / explain (include/corpuslens/scan/index.h, explain.h): equality with
# scan + reduce, PyTorch float64 reference, rank invariance, resume, refusals, held-out.
cl_script_test(explain_reduce "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py reduce)
cl_script_test(explain_reference "torch" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py reference)
cl_script_test(explain_ranks "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py ranks)
cl_script_test(explain_resume "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py resume)
cl_script_test(explain_refusals "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py refusals)
cl_script_test(explain_holdout "unit" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py holdout)
cl_script_test(explain_sketch "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py sketch)
# a text's explanation does not depend on the batch it is explained in (issue 21, defect 7)
cl_script_test(explain_batch "unit" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py batch)
# explain --passage (include/corpuslens/scan/passage.h, docs/passage.md) and the batched sketch search
cl_script_test(explain_passage_search "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/passage_test.py search)
cl_script_test(explain_passage_alone "unit" ${CMAKE_CURRENT_SOURCE_DIR}/passage_test.py alone)
cl_script_test(explain_passage_cli "unit" ${CMAKE_CURRENT_SOURCE_DIR}/passage_test.py cli)
# the ∞-gram and backoff n-gram rows of explain and reduce against a naive scan (issue 23)
cl_script_test(explain_infgram "unit" ${CMAKE_CURRENT_SOURCE_DIR}/explain_test.py infgram)
# explain/reduce/report wording (issue 23): strings above the threshold, n/a (no match), "(= the model)"
cl_script_test(explain_wording "unit" ${CMAKE_CURRENT_SOURCE_DIR}/explain_wording.sh)
# explain under mpirun reads only its index rows' counts (issue 26 item 1): 1, 2, 4 ranks identical, reads per rank, a fault on one rank
cl_script_test(explain_shard_reads "mpi" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/explain_shard_reads.py)
