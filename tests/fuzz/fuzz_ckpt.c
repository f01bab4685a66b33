/* libFuzzer harness: a whole checkpoint (zip + pickle, or safetensors) from
 * arbitrary bytes: open, list, convert every float tensor, derive the config
 * and import. Nothing may crash, leak or allocate beyond the input's scale. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/model/import.h"

/* inspect's reader: every entry and every tensor's float64 values */
static void opaque(const uint8_t *data, size_t size) {
    cl_ckpt *ck = cl_ckpt_open_mem_any(data, size, "fuzz");
    if (!ck) return;
    size_t ne = cl_ckpt_num_entries(ck), sum = 0;
    for (size_t i = 0; i < ne; i++) {
        const cl_ckpt_entry *e = cl_ckpt_entry_at(ck, i);
        sum += strlen(e->path) + strlen(e->type) + strlen(e->text);
        if (e->kind == CL_ENTRY_TENSOR) (void)cl_ckpt_tensor_at(ck, e->tensor)->numel;
    }
    (void)sum;
    for (size_t i = 0; i < cl_ckpt_num_tensors(ck); i++) {
        const cl_ckpt_tensor *t = cl_ckpt_tensor_at(ck, i);
        if (t->numel > (1u << 20)) continue;
        double *buf = malloc((t->numel ? t->numel : 1) * sizeof(double));
        if (buf) {
            (void)cl_ckpt_tensor_to_f64(t, buf);
            free(buf);
        }
    }
    cl_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opaque(data, size);
    cl_ckpt *ck = cl_ckpt_open_mem(data, size, "fuzz");
    if (!ck) return 0;
    size_t n = cl_ckpt_num_tensors(ck);
    for (size_t i = 0; i < n; i++) {
        const cl_ckpt_tensor *t = cl_ckpt_tensor_at(ck, i);
        (void)cl_ckpt_find(ck, t->key ? t->key : t->name);
        if (t->numel > (1u << 20)) continue; /* stride-0 views may be large: skip */
        float *buf = malloc((t->numel ? t->numel : 1) * sizeof(float));
        if (buf) {
            (void)cl_ckpt_tensor_to_f32(t, buf);
            free(buf);
        }
    }
    (void)cl_ckpt_num_params(ck);
    long long v;
    (void)cl_ckpt_get_int(ck, "model_args.n_head", &v);
    cl_ckpt_layout lay;
    cl_config cfg;
    cl_import_opts opts = {0};
    if (cl_ckpt_config(ck, &opts, &lay, &cfg) != 0) {
        opts.n_head = 1;
        if (cl_ckpt_config(ck, &opts, &lay, &cfg) != 0) goto done;
    }
    if (cfg.vocab_size <= 4096) {
        uint32_t vocab[4096];
        for (int i = 0; i < cfg.vocab_size; i++) vocab[i] = (uint32_t)('a' + i);
        cl_model *m = cl_ckpt_import(ck, &opts, vocab, cfg.vocab_size);
        cl_model_free(m);
    }
done:
    cl_ckpt_close(ck);
    return 0;
}
