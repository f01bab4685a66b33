# Jobs, the demo and Slurm (issue 7): job file parser, corpuslens run (skips and
# resume), the embedded demo end to end, and the pipeline through a real
# single-node Slurm started by the test itself.
cl_criterion_test(jobs_test ${CMAKE_CURRENT_SOURCE_DIR}/jobs_test.c)
cl_script_test(jobs_parse "unit" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_parse.sh)
cl_script_test(jobs_resume "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_resume.sh)
cl_script_test(jobs_demo "mpi;slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/jobs_demo.sh)
cl_script_test(slurm_pipeline "slurm;slow;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/slurm_pipeline.sh)
