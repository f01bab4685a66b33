/* Element types: names, sizes, kinds. */
#include "corpuslens/ckpt/dtype.h"

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dt_info[CL_DT_COUNT] = {
    [CL_DT_F32] = {"float32", 4, 1}, [CL_DT_F16] = {"float16", 2, 1},
    [CL_DT_BF16] = {"bfloat16", 2, 1}, [CL_DT_F64] = {"float64", 8, 1},
    [CL_DT_I64] = {"int64", 8, 0},   [CL_DT_I32] = {"int32", 4, 0},
    [CL_DT_I16] = {"int16", 2, 0},   [CL_DT_I8] = {"int8", 1, 0},
    [CL_DT_U8] = {"uint8", 1, 0},    [CL_DT_BOOL] = {"bool", 1, 0},
};

const char *cl_dtype_name(cl_dtype t) { return (unsigned)t < CL_DT_COUNT ? dt_info[t].name : "?"; }
size_t cl_dtype_size(cl_dtype t) { return (unsigned)t < CL_DT_COUNT ? dt_info[t].size : 1; }
int cl_dtype_is_float(cl_dtype t) { return (unsigned)t < CL_DT_COUNT && dt_info[t].is_float; }

