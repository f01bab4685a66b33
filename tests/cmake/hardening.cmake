# Hardening (issue 11): ranks fail together and say why, every scan hook
# through reduce/tune/similar/report, a full disk, a killed rank resumes.
# Fault injection: CORPUSLENS_FAULT=RANK:STEP[@N][:kill|:int|:term|:wait] (include/corpuslens/par/par.h).
cl_script_test(faults_2ranks "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/faults.sh 2)
cl_script_test(faults_3ranks "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/faults.sh 3)
set_tests_properties(faults_2ranks faults_3ranks PROPERTIES TIMEOUT 900)
cl_script_test(hook_blocks "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/hook_blocks.py)
# every writer onto a full tmpfs (and one with a little room): the OS's reason
# and the path, nonzero, no crash, nothing complete-looking left. 77: no mount.
cl_script_test(full_disk "nosan" ${CMAKE_CURRENT_SOURCE_DIR}/full_disk.sh)
set_tests_properties(full_disk PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
# SIGKILL one rank half-way (scan, train, run): nonzero exit; the same command
# again resumes and writes a byte-identical file (scan: wall_seconds zeroed).
cl_script_test(kill_resume "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/kill_resume.sh)
set_tests_properties(kill_resume PROPERTIES TIMEOUT 900)
# index (1 and 2 ranks), explain -o and inspect --dump on a full tmpfs; an index
# that does not fit keeps its parts and assembles them once there is room.
cl_script_test(full_disk_outputs "mpi;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/full_disk_outputs.sh)
set_tests_properties(full_disk_outputs PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
# every writer fsyncs its .tmp before the rename and the directory after (strace; 77 without it)
cl_script_test(fsync_order "" ${CMAKE_CURRENT_SOURCE_DIR}/fsync_order.sh)
set_tests_properties(fsync_order PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
# index resumes only from the records its last checkpoint fsynced (1 and 2 ranks, a kill)
cl_script_test(index_kill_resume "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/index_kill_resume.sh)
set_tests_properties(index_kill_resume PROPERTIES TIMEOUT 600)
# SIGINT / SIGTERM in scan, index, train (1 process and 2 ranks, one rank or
# mpiexec signalled): exit 130/143 with a resume hint, the work kept, the rerun
# byte-identical to an uninterrupted run (CORPUSLENS_FAULT=R:STEP@N:int|:wait).
cl_script_test(interrupt_resume "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/interrupt_resume.sh)
set_tests_properties(interrupt_resume PROPERTIES TIMEOUT 900)
# run --force: a stage failing or interrupted half-way leaves the old output intact
cl_script_test(run_force_keeps "" ${CMAKE_CURRENT_SOURCE_DIR}/run_force_keeps.sh)
set_tests_properties(run_force_keeps PROPERTIES TIMEOUT 900)
# a scan (with --index-out) and an index killed on R ranks resume on R' != R
# (2 -> 3, 3 -> 1, 2 -> 3 -> 1): the same files as an uninterrupted run
cl_script_test(resume_ranks "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/resume_ranks.sh)
set_tests_properties(resume_ranks PROPERTIES TIMEOUT 900)
