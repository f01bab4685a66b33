# corpuslens serve (include/corpuslens/serve/serve.h, docs/serve.md): the real server on
# --port 0 over HTTP; the page in headless chromium (skips without chromium/npm).
cl_script_test(serve_api "unit" ${CMAKE_CURRENT_SOURCE_DIR}/serve_test.py api)
cl_script_test(serve_limits "unit" ${CMAKE_CURRENT_SOURCE_DIR}/serve_test.py limits)
cl_script_test(serve_load "unit" ${CMAKE_CURRENT_SOURCE_DIR}/serve_test.py load)
cl_script_test(serve_threads "unit" ${CMAKE_CURRENT_SOURCE_DIR}/serve_test.py threads)
cl_script_test(serve_browser "unit" ${CMAKE_CURRENT_SOURCE_DIR}/serve_test.py browser)
set_tests_properties(serve_browser PROPERTIES SKIP_RETURN_CODE 77)
