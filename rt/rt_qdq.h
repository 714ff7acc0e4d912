/* rt_qdq.h -- static int8's explicit quantize / dequantize (IR ops QUANTIZE,
 * DEQUANTIZE, passes/quantize_qdq.c) and the requantizing epilogue that a
 * folded DQ -> Q pair leaves in the producing product: what the kernels
 * (rt/rt_qdq.c, rt/rt_qgemm.c, rt/rt_quant.c) and the interpreter's
 * reference (ir/interp_qdq.c, ir/interp_quant.c) share bit for bit.
 *
 * An int8 activation tensor holds s8 values q = Q(x) with the scale sx of
 * the product that reads it (its calibrated input scale, s[N] of that
 * product's NAME.i8s): Q(x) = round-to-even(x * (1 / sx)) clamped to
 * -127..127, NaN to 0, exactly rt_q_row_static's arithmetic, so a product
 * reading Q(x) computes what it computed when it quantized x itself.
 * DQ(q) = q * sx. Q(DQ(q)) = q for every q in -127..127 (the product and
 * the quotient are each within 2^-24 relative of q: far from a half), and
 * Q(relu(y)) = max(Q(y), 0) (Q is monotone and Q(0) = 0): so the pair
 * DQ [-> relu] -> Q between two products folds into the first product's
 * epilogue (relu, then Q with the second's scale) without changing a bit.
 * A scale that is not positive (not calibrated) quantizes everything to 0:
 * `lathe quantize --mode int8` calibrates every product it writes, and the
 * pass places Q only before products with integer kernels. */
#ifndef LATHE_RT_QDQ_H
#define LATHE_RT_QDQ_H

#include <stdint.h>

#include "rt_quant.h"

/* 1 / sx, or 0 for a scale that is not positive */
static inline float rt_q_inv(float sx) { return sx > 0 ? 1.0f / sx : 0.0f; }

/* Q with inv = rt_q_inv(sx): rt_q_row_static's per-value operations */
static inline int8_t rt_q_requant(float y, float inv) {
  float v = y * inv;
  v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;
  return (int8_t)rt_q_rint(v);
}

#endif
