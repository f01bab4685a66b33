# GPT-2 models (issue 16): byte-level BPE against the npm gpt-3-encoder oracle
# (exit 77 = skip when node/npm or the package cannot be had), Hugging Face
# GPT-2 import and parity with a plain-PyTorch GPT-2.
add_executable(bpe_tool ${CMAKE_CURRENT_SOURCE_DIR}/bpe/bpe_tool.c)
target_link_libraries(bpe_tool PRIVATE corpuslens_core)
set_target_properties(bpe_tool PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
cl_script_test(bpe_oracle "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/bpe_oracle.py)
set_tests_properties(bpe_oracle PROPERTIES SKIP_RETURN_CODE 77)
