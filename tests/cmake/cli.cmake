# The command line: the option parser and MPI start-up (src/cli/options.c, mpi_start.c).
cl_script_test(cli_options "unit" ${CMAKE_CURRENT_SOURCE_DIR}/cli_options.sh)
