# The command line: the option parser and MPI start-up (src/cli/options.c, mpi_start.c).
cl_script_test(cli_options "unit" ${CMAKE_CURRENT_SOURCE_DIR}/cli_options.sh)
# Start-up: HDF5 and OpenBLAS linked in, not mapped at every start (CMakeLists.txt).
if(CORPUSLENS_STATIC_DEPS)
  cl_script_test(startup_libs "unit" ${CMAKE_CURRENT_SOURCE_DIR}/startup_libs.sh)
endif()
cl_script_test(install_docs "unit" ${CMAKE_CURRENT_SOURCE_DIR}/install_docs.sh)  # cmake --install, corpuslens(1), completion
cl_script_test(generate_cli "unit" ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli.sh)  # generate: trained context, key/value cache, stdin
