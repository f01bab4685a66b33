/* Classifier evaluation: batched forward, argmax at the readout position. */
#include "corpuslens/nn/classify.h"

#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"

#define CLASSIFY_BATCH 256

int cl_classify(const cl_model *m, const int32_t *ids, const unsigned char *labels, size_t n, int T,
                const cl_hook *hooks, int n_hooks, size_t *correct, float *probs) {
    const int K = m->cfg.n_classes;
    if (K < 1) return cl_error("the model is not a classifier (n_classes is 0)");
    *correct = 0;
    if (n == 0) return 0;
    int B = n < CLASSIFY_BATCH ? (int)n : CLASSIFY_BATCH;
    cl_forward *f = cl_forward_create(m, B, T);
    float *lg = f ? cl_trymalloc((size_t)B * K, sizeof *lg, "class logits") : NULL;
    if (!lg) {
        cl_forward_free(f);
        return -1;
    }
    int rc = 0;
    for (size_t r0 = 0; r0 < n && !rc; r0 += (size_t)B) {
        int b = n - r0 < (size_t)B ? (int)(n - r0) : B;
        if (cl_forward_run(f, ids + r0 * T, b, T, hooks, n_hooks, CL_LOGITS_LAST, lg)) {
            rc = -1;
            break;
        }
        for (int i = 0; i < b; i++) {
            const float *row = lg + (size_t)i * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (row[k] > row[best]) best = k;
            *correct += labels[r0 + i] == best;
        }
        if (probs) {
            memcpy(probs + r0 * K, lg, (size_t)b * K * sizeof *lg);
            cl_softmax_rows(probs + r0 * K, (size_t)b, K);
        }
    }
    free(lg);
    cl_forward_free(f);
    return rc;
}
