/* conv.h -- the convolution's geometry, said once (ir/conv.c) and read by
 * the shape rules, the reference kernels and the LLVM kernels of conv2d and
 * its two backward ops.
 *
 * conv2d is rank-polymorphic:
 *   2-d: x [N, C, H, W], w [O, C/groups, KH, KW] -> y [N, O, OH, OW]
 *   1-d: x [N, C, L],    w [O, C/groups, K]      -> y [N, O, OL]
 * A 1-d conv is the 2-d one with H = KH = OH = 1 and no padding along H, so
 * every kernel loops over the 2-d form. Attributes (ops.def): stride, pad
 * (top/left), pad_hi (bottom/right), the same along both axes; n = dilation
 * and k = groups, each 0 or 1 for none. Groups: channels c of group
 * g = c / (C/groups) meet only output channels o with o / (O/groups) = g, so
 * w's row o reads input channel g*(C/groups) + its own channel index.
 */
#ifndef LATHE_IR_CONV_H
#define LATHE_IR_CONV_H

#include "ir.h"

typedef struct {
  int64_t N, C, H, W;   /* the input, as 2-d (H = 1 for 1-d) */
  int64_t O, KH, KW;    /* the weight: [O, Cg, KH, KW] */
  int64_t OH, OW;       /* the output */
  int64_t s, dil, G;    /* stride (both axes), dilation (both axes), groups */
  int64_t padT, padL;   /* leading zeros along H (0 for 1-d) and along W */
  int64_t Cg, Og;       /* channels per group: input, output */
  int rank;             /* 3 (1-d) or 4 (2-d) */
} ir_conv;

/* The geometry of a conv2d with input shape x, weight shape w and the
 * node's attributes. Returns 0, or -1 with "conv2d: what is wrong" in msg
 * when they do not make a convolution (the output would be empty, groups do
 * not divide the channels, ranks differ, ...). */
int ir_conv_geom(const ir_shape *x, const ir_shape *w, const ir_attr *a, ir_conv *c, char *msg, size_t mn);

/* qconv2d's geometry (ir/shape_qconv.c): its input's shape and the f32
 * weight's shape its list holds, groups 1. */
int ir_qconv_geom(const ir_graph *g, const ir_node *n, ir_conv *c, char *msg, size_t mn);

/* The output shape of the geometry: [N, O, OH, OW] or [N, O, OW]. */
ir_shape ir_conv_out(const ir_conv *c);

/* The pools (maxpool2d, avgpool2d and their gradient) share the view:
 * x [N, C, H, W] with k x k windows, or the 1-d x [N, C, L] (maxpool1d,
 * avgpool1d: the same ops) with windows of k, as H = KH = 1; attributes
 * k and stride, no padding. planes = N*C. */
typedef struct {
  int64_t planes, H, W, OH, OW, KH, KW, s;
} ir_pool;

/* x's view; OH/OW are -1 when the window does not fit (shape rules). */
ir_pool ir_pool_geom(const ir_shape *x, const ir_attr *a);

#endif
