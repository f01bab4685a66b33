# Two nodes on one machine (issue 26 item 3): network + UTS namespaces joined by
# veth pairs and a bridge (tests/nodes/netns.sh). Open MPI across them through
# an rsh agent, TCP only; a Slurm cluster of two slurmd (one per node) and a
# controller, a scan killed on node2 and resumed. Root, ip, unshare; 77 where
# namespaces cannot be made (or without Slurm/munge). Both add node1/node2 to
# /etc/hosts while they run (a lock: one at a time); nodes_slurm may start
# munged (shared with slurm_pipeline: the munged lock).
cl_script_test(nodes_mpi "mpi;nodes;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/nodes_mpi.sh)
set_tests_properties(nodes_mpi PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900 RESOURCE_LOCK etc_hosts_nodes)
cl_script_test(nodes_slurm "slurm;nodes;nosan" ${CMAKE_CURRENT_SOURCE_DIR}/nodes_slurm.sh)
set_tests_properties(nodes_slurm PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 1200 RESOURCE_LOCK "etc_hosts_nodes;munged")
