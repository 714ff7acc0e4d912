/* rt_image.h -- what `lathe emit` puts in an object beside the generated
 * code, and liblathe_rt's runner (rt_model.c) reads: one constant block,
 * the "image", describing the kernel plan's buffers, the model's inputs and
 * outputs, its weights (embedded, or the table a weights file must match)
 * and the plan's constants. Offsets are bytes from the image's start (the
 * image is 64-byte aligned, and so is every section). Written by
 * codegen/llvm/cg_aot.c with the same C structs, for the same target. */
#ifndef LATHE_RT_IMAGE_H
#define LATHE_RT_IMAGE_H

#include <stdint.h>

#define LATHE_RT_IMAGE_MAGIC UINT64_C(0x314d494548544c41)   /* "ALTHEIM1" */
#define LATHE_RT_WEIGHTS_MAGIC UINT64_C(0x3154574548544c41) /* "ALTHEWT1" */

enum { LATHE_RT_MAXDIM = 8, LATHE_RT_NAME = 96 };

/* A node's buffer: the kernel plan's kinds (plan/plan.h's pl_buf). */
enum {
  LATHE_RT_BUF_NONE,
  LATHE_RT_BUF_ARENA,  /* workspace + off */
  LATHE_RT_BUF_INPUT,  /* model input idx (caller's data, or its normalised copy) */
  LATHE_RT_BUF_PARAM,  /* weight tensor idx */
  LATHE_RT_BUF_CONST,  /* image consts + off */
  LATHE_RT_BUF_OUTPUT, /* the caller's output idx */
  LATHE_RT_BUF_ALIAS   /* the buffer of node idx */
};

typedef struct {
  int32_t kind, idx;
  int64_t off;   /* arena or constants offset */
  int64_t scr;   /* the kernel's scratch: arena offset, -1 none */
  int64_t bytes; /* the node's size (outputs copied back from elsewhere) */
} lathe_rt_buf;

/* A model input or output. Inputs: targets (not in MODEL_forward's
 * arguments) are zeros in the workspace; normalised inputs are copied to
 * the workspace first. */
typedef struct {
  int64_t dtype;      /* ir/ir.h's ir_dtype: f32 f16 bf16 i32 i64 i8 u8 bool */
  int64_t bytes;
  int64_t node;       /* outputs: the node whose buffer holds the values */
  int64_t copy_off;   /* inputs: workspace offset of the copy, -1 none */
  int64_t is_target;
  int64_t shift, scale; /* inputs: weight tensors of the normalisation, -1 none */
  int64_t width;      /* ... values per example */
} lathe_rt_io;

/* A weight tensor (f32): the parameters in the graph's order, then the
 * normalisation vectors. The same records head a weights file. */
typedef struct {
  char name[LATHE_RT_NAME];
  int64_t rank, dim[LATHE_RT_MAXDIM];
  int64_t off, bytes; /* in the weights section */
} lathe_rt_tensor;

typedef struct {
  uint64_t magic;
  int64_t abi; /* LATHE_RT_ABI */
  int64_t nnodes, ninputs, noutputs, nargs, ntensors;
  int64_t work_bytes;  /* the workspace: arena, input copies, the two pointer tables */
  int64_t tables_off;  /* workspace offset of bufs then scr (void *[nnodes] each) */
  int64_t bufs_off, inputs_off, outputs_off, tensors_off, consts_off, name_off;
  int64_t weights_off; /* the embedded weights section; -1: MODEL_load_weights reads it */
  int64_t weights_bytes;
  uint64_t weights_sum; /* FNV-1a (64-bit) of the weights section */
} lathe_rt_image;

/* A weights file (--weights-file): this header, ntensors records as in the
 * image, then the weights section at data_off (64-aligned). */
typedef struct {
  uint64_t magic;
  int64_t abi, ntensors, weights_bytes;
  uint64_t weights_sum;
  int64_t data_off;
} lathe_rt_wfile;

/* FNV-1a, 64-bit: the checksum of a weights section. */
uint64_t lathe_rt_fnv1a(const void *data, int64_t n);

#endif
