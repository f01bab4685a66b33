# Model core: kernels, model file, vocabulary, hooks.
cl_criterion_test(test_kernels test_kernels.c)
cl_criterion_test(test_model test_model.c)
cl_criterion_test(test_kvcache test_kvcache.c)  # generate's key/value cache vs the full forward
cl_criterion_test(test_interrupt test_interrupt.c)  # SIGINT/SIGTERM handlers: a second SIGTERM is the same request
