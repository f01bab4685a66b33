/* libFuzzer harness: the unpickler on arbitrary bytes, in both modes: the
 * restricted one (import) and the opaque one (inspect: unknown globals kept
 * as placeholders), with the rendering of every value the opaque mode makes. */
#include <stddef.h>
#include <stdint.h>

#include "ckpt/ckpt_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pk_result r;
    if (cl_pickle_load(data, size, &r) == 0) {
        (void)pk_dict_get(r.root, "model");
        cl_pickle_free(&r);
    }
    if (cl_pickle_load_opts(data, size, CL_PK_OPAQUE, &r) == 0) {
        char buf[200];
        for (const pk_value *v = r.all; v; v = v->next_alloc) pk_render(v, buf, sizeof buf);
        pk_render(r.root, buf, sizeof buf);
        cl_pickle_free(&r);
    }
    return 0;
}
