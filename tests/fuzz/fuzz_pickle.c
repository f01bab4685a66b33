/* libFuzzer harness: the restricted unpickler on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "ckpt/ckpt_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pk_result r;
    if (cl_pickle_load(data, size, &r) == 0) {
        (void)pk_dict_get(r.root, "model");
        cl_pickle_free(&r);
    }
    return 0;
}
