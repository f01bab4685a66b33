/* corpuslens checkpoints: read PyTorch (torch.save zip + pickle) and
 * safetensors files without Python, and import them into a cl_model.
 *
 * Reading is safe on hostile input: like torch.load(weights_only=True) only an
 * allowlist of pickle globals is accepted (any other is refused by name), and
 * every size, offset and stride is checked against the file before anything
 * is read or allocated. Tensor data is not copied when a checkpoint is opened:
 * the file is mapped and each tensor points at its bytes; cl_ckpt_tensor_to_f32
 * converts (float16 / bfloat16 / float64 -> float32, any strides) straight into
 * the caller's buffer.
 *
 * cl_ckpt_open_any reads any torch.save file for inspection: a global outside
 * the allowlist (a framework's vocabulary class, argparse.Namespace, even
 * os.system) is neither imported nor called but kept as an opaque placeholder
 * with its module.class name and the arguments and state the pickle gives it.
 * Only cl_ckpt_open (strict) may feed an import.
 *
 * Every function returns 0 / a valid pointer, or -1 / NULL with a cl_error
 * message naming the file and the entry, tensor or offset at fault.
 */
#ifndef CORPUSLENS_CHECKPOINT_H
#define CORPUSLENS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/ckpt/dtype.h"

#define CL_CKPT_MAX_DIMS 8

typedef enum { CL_CKPT_TORCH = 0, CL_CKPT_SAFETENSORS } cl_ckpt_format;

typedef enum {
    CL_ROLE_PARAM = 0, /* a parameter of the state dict (counted) */
    CL_ROLE_BUFFER,    /* a buffer of the state dict (tril, attention mask) */
    CL_ROLE_OTHER      /* outside the state dict (optimizer state, best_val_loss) */
} cl_ckpt_role;

/* One tensor of a checkpoint. Offsets and strides are in elements. */
typedef struct {
    const char *name;   /* flattened key, e.g. "model._orig_mod.transformer.wte.weight" */
    const char *key;    /* state-dict key with wrappers and "_orig_mod."/"module."
                           stripped ("transformer.wte.weight"); NULL when outside */
    cl_ckpt_role role;
    cl_dtype dtype;
    int ndim;           /* 0..CL_CKPT_MAX_DIMS */
    size_t shape[CL_CKPT_MAX_DIMS];
    size_t stride[CL_CKPT_MAX_DIMS];
    size_t numel;
    size_t offset;                /* storage offset */
    const unsigned char *storage; /* the storage's bytes (little-endian), in the map */
    size_t storage_numel;         /* elements in the storage */
    size_t storage_id;            /* equal ids: one shared storage */
    const char *storage_key;      /* "data/3" (torch) or the tensor name (safetensors) */
} cl_ckpt_tensor;

typedef struct cl_ckpt cl_ckpt;

/* Open a .pt (torch.save zip) or .safetensors file, recognised by content.
 * Refuses TorchScript archives, legacy (pre-1.6) torch files, compressed zip
 * entries, big-endian files and anything malformed. The file stays mapped
 * until cl_ckpt_close. */
cl_ckpt *cl_ckpt_open(const char *path);
/* Same from memory (borrowed; must outlive the checkpoint). `label` names the
 * source in messages. Used by the fuzzers. */
cl_ckpt *cl_ckpt_open_mem(const void *data, size_t len, const char *label);
void cl_ckpt_close(cl_ckpt *ck);
/* Like cl_ckpt_open / _open_mem, but unknown pickle globals become opaque
 * placeholders (listed by cl_ckpt_entry_at) instead of errors. */
cl_ckpt *cl_ckpt_open_any(const char *path);
cl_ckpt *cl_ckpt_open_mem_any(const void *data, size_t len, const char *label);

/* Everything the file holds, flattened to dotted paths in file order (the
 * tensors, and for torch files the other values too). A container is listed
 * with its children below it; a list, tuple or set of plain values, and a
 * dict of more than 256 plain values, is one VALUE entry (its rendering);
 * an object appearing a second time is a REF to its first path. */
typedef enum {
    CL_ENTRY_TENSOR = 0, /* `tensor` indexes cl_ckpt_tensor_at; type is the dtype name */
    CL_ENTRY_VALUE,      /* type: None bool int float str bytes global list tuple set dict */
    CL_ENTRY_CONTAINER,  /* a dict, list, tuple or set whose items are listed below it */
    CL_ENTRY_OBJECT,     /* type: "module.Class" (never imported); text: how it is made,
                            "<os.system('echo hi')>"; its state and items are listed below */
    CL_ENTRY_REF         /* text: the path where the same object was listed first */
} cl_ckpt_entry_kind;

typedef struct {
    const char *path; /* "" for the root; components joined by '.' */
    cl_ckpt_entry_kind kind;
    const char *type;
    const char *text; /* VALUE: Python-like rendering (cut at 160 bytes) */
    size_t tensor;
    int depth;        /* nesting depth of the pickled object (root 0) */
} cl_ckpt_entry;

size_t cl_ckpt_num_entries(const cl_ckpt *ck);
const cl_ckpt_entry *cl_ckpt_entry_at(const cl_ckpt *ck, size_t i);
/* Opaque placeholders (objects of classes outside the allowlist). */
size_t cl_ckpt_num_objects(const cl_ckpt *ck);

cl_ckpt_format cl_ckpt_get_format(const cl_ckpt *ck);
/* Torch: the archive's top-level folder ("archive" for file objects); "" otherwise. */
const char *cl_ckpt_prefix(const cl_ckpt *ck);
/* Torch: the pickle protocol of data.pkl; 0 for safetensors. */
int cl_ckpt_pickle_protocol(const cl_ckpt *ck);

size_t cl_ckpt_num_tensors(const cl_ckpt *ck);
/* Tensors in file order (pickle order / safetensors header order). */
const cl_ckpt_tensor *cl_ckpt_tensor_at(const cl_ckpt *ck, size_t i);
/* The tensor whose state-dict key is `key` (NULL if none). */
const cl_ckpt_tensor *cl_ckpt_find(const cl_ckpt *ck, const char *key);
/* An integer stored beside the tensors, addressed by a dotted path
 * ("model_args.n_head"; bools read as 0/1). Returns 1 found, 0 absent. */
int cl_ckpt_get_int(const cl_ckpt *ck, const char *path, long long *v);

/* 1 if a and b are the same data (same storage, offset, dtype, shape, strides). */
int cl_ckpt_same_data(const cl_ckpt_tensor *a, const cl_ckpt_tensor *b);
/* Convert a float tensor to float32, row-major, into out[numel]. Integer
 * tensors are refused (naming the tensor and its dtype). */
int cl_ckpt_tensor_to_f32(const cl_ckpt_tensor *t, float *out);
/* Convert a tensor of any dtype (integers and bools too) to float64,
 * row-major, into out[numel]. */
int cl_ckpt_tensor_to_f64(const cl_ckpt_tensor *t, double *out);

/* Index of the first tensor (file order) holding the same data as tensor i
 * (i itself when none does): tied tensors point at their original. */
size_t cl_ckpt_first_alias(const cl_ckpt *ck, size_t i);
/* Parameters of the state dict (role PARAM), tied tensors counted once. */
size_t cl_ckpt_num_params(const cl_ckpt *ck);
/* The label given at open (the path, or open_mem's label): for messages. */
const char *cl_ckpt_label(const cl_ckpt *ck);
/* Size in bytes of the file (or memory block). */
size_t cl_ckpt_file_size(const cl_ckpt *ck);
/* Drop the mapped pages of a converted tensor's storage (a later access reads
 * them again from the file): peak memory of an import is the model plus one
 * tensor. No-op for open_mem. */
void cl_ckpt_release(const cl_ckpt *ck, const cl_ckpt_tensor *t);

#endif
