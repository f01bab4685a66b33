/* Element types of checkpoint tensors (torch storages, safetensors dtypes). */
#ifndef CORPUSLENS_CKPT_DTYPE_H
#define CORPUSLENS_CKPT_DTYPE_H

#include <stddef.h>

typedef enum {
    CL_DT_F32 = 0,
    CL_DT_F16,
    CL_DT_BF16,
    CL_DT_F64,
    CL_DT_I64,
    CL_DT_I32,
    CL_DT_I16,
    CL_DT_I8,
    CL_DT_U8,
    CL_DT_BOOL,
    CL_DT_COUNT
} cl_dtype;

/* "float32", "float16", ... */
const char *cl_dtype_name(cl_dtype t);
/* Bytes per element. */
size_t cl_dtype_size(cl_dtype t);
/* 1 for the kinds a model tensor may have (F32, F16, BF16, F64). */
int cl_dtype_is_float(cl_dtype t);

#endif
