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

#include "rt/lathe_rt.h"

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
  int64_t train_off;    /* a training step's lathe_rt_train; -1: a forward pass */
} lathe_rt_image;

/* ---- a training step (lathe emit --entry train_step; rt/rt_train.c) ----
 * The image's graph is the training program (forward, backward, optimizer
 * update). Its weights (parameters and optimizer state, then the
 * normalisation vectors) live in the caller's MODEL_state after the
 * lathe_rt_train_head, each tensor at 64 + its offset in the weights
 * section; the embedded (or loaded) section is what MODEL_state_init copies
 * there. Every output is computed into the workspace (copy_off); those that
 * commit replace their tensor after a step whose loss and updates are
 * finite. */
enum {
  LATHE_RT_IN_ARG,    /* MODEL_train_step's data argument number `arg` (an input) */
  LATHE_RT_IN_TARGET, /* ... a target (after the inputs) */
  LATHE_RT_IN_LR,     /* the per-step scalars the runner computes (passes/optimizer.h) */
  LATHE_RT_IN_BC1,
  LATHE_RT_IN_BC2,
  LATHE_RT_IN_NOISE,
  LATHE_RT_IN_RNG
};

typedef struct {
  char name[LATHE_RT_NAME];
  int64_t role;      /* LATHE_RT_IN_* */
  int64_t arg;       /* argument position (inputs, then targets); -1 for the scalars */
  int64_t norm_kind; /* the normalisation the weights carry: -1 none recorded, 0 none, 1 standard, 2 minmax */
} lathe_rt_train_in;

typedef struct {
  int64_t nparams;    /* tensors [0, nparams): parameters and optimizer state ("opt.*") */
  int64_t loss_node;
  int64_t ins_off;    /* lathe_rt_train_in[ninputs] */
  int64_t commit_off; /* int64_t[noutputs]: the tensor output j replaces after a good step, -1 none */
  int64_t checked_off; /* int64_t[noutputs]: 1 when the kernel writing output j flags a non-finite value
                        * itself (the entry's error bit 0x100), so the runner need not scan it */
  int64_t seed;       /* the train block's (saved as __meta.seed) */
  double beta1, beta2, grad_noise;
  lathe_rt_sched sched;
} lathe_rt_train;

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

/* rt_model.c, for rt_train.c: bind every node's buffer (ins: per model
 * input, outs: per output, w: the weights section, work: the 64-aligned
 * workspace, whose pointer tables then hold the buffers) and call the
 * entry; copies outputs that live elsewhere into outs. Returns the entry's
 * error code (LATHE_RT_EBAD_ID ...) with its non-finite flag (0x100: a
 * checked output held a non-finite value). ins may
 * point into the workspace's scr table (it is read before that is filled). */
int rt_image_call(const lathe_rt_image *im, lathe_rt_entry entry, const unsigned char *w, void **ins,
                  void *const *outs, unsigned char *work);
/* Set this thread's lathe_rt_last_error() and return code. */
int rt_failf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
