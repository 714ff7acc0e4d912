/* rt_loss.c -- lathe_rt_cross_entropy: cross_entropy with class weights or
 * an ignore_index (and its gradient), the CPU kernel of the weighted form
 * (the plain one is generated inline, codegen/llvm/cg_ops.c). The same sums
 * as the reference interpreter (ir/interp_nn.c ik_cross_entropy), in double,
 * rows in order: results do not depend on the pool. Labels come as i64, each
 * a class or the ignore_index (the generated code has checked them). */
#include <math.h>
#include <string.h>

#include "rt/lathe_rt.h"

static int counted(int64_t lab, int64_t C, int64_t has_ignore, int64_t ignore) {
  return !(has_ignore && lab == ignore) && lab >= 0 && lab < C;
}

void lathe_rt_cross_entropy(float *out, const float *x, const int64_t *labels, const float *w, const float *dl,
                            int64_t rows, int64_t C, int64_t has_ignore, int64_t ignore, int64_t ls_bits) {
  double ls, wsum = 0.0, wall = 0.0;
  memcpy(&ls, &ls_bits, sizeof ls);
  for (int64_t r = 0; r < rows; r++)
    if (counted(labels[r], C, has_ignore, ignore)) wsum += w ? (double)w[labels[r]] : 1.0;
  for (int64_t j = 0; j < C; j++) wall += w ? (double)w[j] : 1.0;
  double total = 0.0, scale = dl ? (double)dl[0] / wsum : 0.0;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * C;
    int64_t lab = labels[r];
    if (!counted(lab, C, has_ignore, ignore)) {
      if (dl) memset(out + r * C, 0, sizeof(float) * (size_t)C);
      continue;
    }
    double mx = -INFINITY, sum = 0.0, wl = w ? (double)w[lab] : 1.0;
    for (int64_t j = 0; j < C; j++) mx = xr[j] > mx ? xr[j] : mx;
    for (int64_t j = 0; j < C; j++) sum += exp((double)xr[j] - mx);
    if (dl) { /* dl / W ((1-ls) w[lab] (p_j - [j == lab]) + ls / C (p_j sum_c w[c] - w[j])) */
      for (int64_t j = 0; j < C; j++) {
        double p = exp((double)xr[j] - mx) / sum, wj = w ? (double)w[j] : 1.0;
        double g = (1.0 - ls) * wl * (p - (j == lab ? 1.0 : 0.0)) + ls / (double)C * (p * wall - wj);
        out[r * C + j] = (float)(scale * g);
      }
      continue;
    }
    double lse = mx + log(sum), all = 0.0;
    for (int64_t j = 0; j < C; j++) all += (w ? (double)w[j] : 1.0) * (lse - xr[j]);
    total += (1.0 - ls) * wl * (lse - xr[lab]) + ls * all / (double)C;
  }
  if (!dl) out[0] = (float)(total / wsum); /* every row ignored: 0 / 0, NaN as PyTorch */
}
