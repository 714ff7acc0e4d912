/* cg_conv.h -- the forward convolution's emitter (cg_conv.c; its backward
 * ops and scratch sizes are declared in cg_internal.h). */
#ifndef LATHE_CG_CONV_H
#define LATHE_CG_CONV_H

#include "cg_internal.h"

/* conv2d: im2col over chunks of the batch, one GEMM per chunk, the bias
 * added as the result is regrouped; scratch from cg_conv_scratch_bytes */
void cg_emit_conv_fwd(cg_k *k);

/* cg_dconv.c: the direct kernel (liblathe_rt's lathe_rt_conv2d), where it
 * applies to conv2d node n on this CPU; its scratch; its call */
int cg_dconv_applies(const ir_graph *g, const ir_node *n);
int64_t cg_dconv_scratch_bytes(const ir_graph *g, const ir_node *n);
void cg_emit_dconv(cg_k *k);
/* the plan's pl_target.conv_pool for the LLVM backend */
int cg_dconv_pool_ok(const ir_graph *g, const ir_node *conv, const pl_epilogue *sofar, const ir_node *pool);

#endif
