# Jobs, the demo and Slurm (issue 7): job file parser, corpuslens run (skips and
# resume), the embedded demo end to end, and the pipeline through a real
# single-node Slurm started by the test itself.
cl_criterion_test(jobs_test ${CMAKE_CURRENT_SOURCE_DIR}/jobs_test.c)
cl_script_test(jobs_parse "unit" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_parse.sh)
cl_script_test(jobs_resume "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_resume.sh)
cl_script_test(jobs_tinyshakespeare "unit" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_tinyshakespeare.sh)
cl_script_test(jobs_demo "mpi;slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_demo.sh)
cl_script_test(slurm_pipeline "slurm;slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/slurm_pipeline.sh)
# exit 77: Slurm/munge not installed or not root (CORPUSLENS_WITH_SLURM=1 .ci/install-deps)
set_tests_properties(slurm_pipeline PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 1800 RESOURCE_LOCK munged) # nodes_slurm may start and stop munged too
set_tests_properties(jobs_demo PROPERTIES TIMEOUT 900)
set_tests_properties(jobs_tinyshakespeare PROPERTIES SKIP_RETURN_CODE 77)  # 77: no ../shared
# issue 14: reference + alternative seeds, tune, ablate, the noise floor in the report
cl_script_test(jobs_noise_floor "mpi;slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_noise_floor.sh)
set_tests_properties(jobs_noise_floor PROPERTIES TIMEOUT 900)
# issue 21 (12): the sbatch stages started together, again and again, under load:
# no one-rank stage starts MPI, each MPI stage has its own session directory
cl_script_test(slurm_start_race "mpi;slow" ${CMAKE_CURRENT_SOURCE_DIR}/slurm_start_race.sh)
set_tests_properties(slurm_start_race PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
# issue 23: [corpus] vocab_from (a checkpoint explained on a slice of its text)
cl_script_test(jobs_vocab_from "torch" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_vocab_from.sh)
set_tests_properties(jobs_vocab_from PROPERTIES SKIP_RETURN_CODE 77)
# issue 25: jobs/shakespeare-bpe.ini and [train] tokenizer (dry runs)
cl_script_test(jobs_bpe "unit" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_bpe.sh)
# a Slurm stage stopped by SIGTERM exits with RequeueExit's 3, not 143 (no Slurm needed)
cl_script_test(slurm_sigterm_status "unit" ${CMAKE_CURRENT_SOURCE_DIR}/slurm_sigterm_status.sh)
set_tests_properties(slurm_sigterm_status PROPERTIES TIMEOUT 600)
