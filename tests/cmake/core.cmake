# Model core: kernels, model file, vocabulary, hooks.
cl_criterion_test(test_kernels test_kernels.c)
cl_criterion_test(test_model test_model.c)
