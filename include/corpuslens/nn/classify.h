/* Classifier evaluation (models with n_classes > 0): predictions at the
 * readout position ([start], position 0) for rows of T token ids, with any
 * hooks (ablations) applied. */
#ifndef CORPUSLENS_CLASSIFY_H
#define CORPUSLENS_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/nn/forward.h"

/* ids[n, T]; labels[n]; *correct receives the number of rows whose argmax
 * class equals the label; probs (may be NULL) [n, n_classes] softmax. */
int cl_classify(const cl_model *m, const int32_t *ids, const unsigned char *labels, size_t n, int T,
                const cl_hook *hooks, int n_hooks, size_t *correct, float *probs);

#endif
