/* rt_seqk.h -- vectorised building blocks of the sequence-layer kernels
 * (cg_attn.c): a register-blocked product of small tiles, the rows of the
 * attention softmax, column sums and the LSTM and GRU cells' elementwise steps.
 * Internal prefix: rt_sk_. Compiled once per x86-64 level (rt_seqk.c);
 * every function's result depends only on its inputs (fixed summation
 * orders), so reruns are bit-identical. */
#ifndef LATHE_RT_SEQK_H
#define LATHE_RT_SEQK_H

#include <stdint.h>

/* Which terms of a rt_sk_mm product may be skipped (causal attention): with
 * offset o, RT_SK_TRI_C computes only C[i][j] with j <= i + o (the rest of
 * each row is left unspecified); RT_SK_TRI_AK and RT_SK_TRI_AKT promise
 * A[i][k] == 0 where k > i + o, respectively k < i - o, and skip those. */
enum { RT_SK_FULL, RT_SK_TRI_C, RT_SK_TRI_AK, RT_SK_TRI_AKT };

/* C[M, N] = (acc ? C : 0) + A B with A[i][k] = A[i * ra + k * ca] (so a
 * transposed A is ra = 1), B row-major (ldb), C row-major (ldc). */
void rt_sk_mm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ra, int64_t ca, const float *B, int64_t ldb,
              float *C, int64_t ldc, int acc, int tri, int64_t o);

/* dst[j][i] = src[i * lds + j] for i < rows, j < cols (dst row stride ldd) */
void rt_sk_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd);

/* Rows passed to the two functions below have room for n rounded up to a
 * multiple of 8 floats (whole vectors are loaded and stored).
 *
 * One row of the online softmax over a key tile: s[0, valid) holds raw
 * scores; *m and *l are the running maximum (of scale * s) and sum. s
 * becomes exp(scale s - m_new) (0 on [valid, n)); returns exp(m_old - m_new)
 * by which the row's running output must be scaled. */
float rt_sk_att_row(float *s, int64_t n, int64_t valid, float scale, float *m, float *l);

/* Rows r < rows of an exact softmax (row r at s + r ld, valid = valid0 +
 * r step >= 1 entries): s[0, valid) becomes exp(scale (s - max s)), 0 on
 * [valid, n) (n rounded up to 16 has room); inv[r] = 1 / the row's sum. */
void rt_sk_softmax_rows(float *s, int64_t ld, int64_t rows, int64_t n, int64_t valid0, int64_t step, float scale,
                        float *inv);

/* The backward's row: p (raw scores) becomes P = exp(scale p - L), dp
 * (dO v^T) becomes dS = P (dp - D) scale; both 0 on [valid, n). */
void rt_sk_att_drow(float *p, float *dp, int64_t n, int64_t valid, float scale, float L, float D);

/* x[0, n) *= a;  the sum of a[i] b[i] */
void rt_sk_scale(float *x, int64_t n, float a);
float rt_sk_dot(const float *a, const float *b, int64_t n);

/* dst[0, n) = a + b;  x[0, n) = a x + b */
void rt_sk_add(float *dst, const float *a, const float *b, int64_t n);
void rt_sk_scale_add(float *x, int64_t n, float a, const float *b);

/* out[n] = column sums of a[m, n] (row stride lda), each summed in double in
 * row order */
void rt_sk_colsum(const float *a, int64_t m, int64_t n, int64_t lda, double *out);

/* LSTM, rows [0, rows) of width 4h: g (pre-activations, += gh unless gh is
 * NULL) becomes the activated gates i f g o */
void rt_sk_lstm_gates(float *g, const float *gh, int64_t rows, int64_t h);

/* LSTM cell states of one sequence: c[t] = i g + f c[t - 1] from the
 * activated gates g[T, 4h]; c[T, h] */
void rt_sk_lstm_cell(const float *g, float *c, int64_t T, int64_t h);

/* One LSTM forward step for one batch row: from the pre-activations g[4h]
 * (i f g o), the cell c[h] (read unless first, then written) and the output
 * y[h] = o tanh(c). */
void rt_sk_lstm_fwd(const float *g, float *c, float *y, int first, int64_t h);

/* One LSTM backward step for one batch row (see cg_attn.c lstm_step). */
void rt_sk_lstm_bwd(const float *g, const float *cl, const float *cp, const float *dy, const float *drec, float *dc,
                    float *da, int64_t h);

/* One GRU forward step for one batch row, from the input and recurrent
 * pre-activations a[3h], ah[3h] (r z n; ah includes b_hh) and h_{t-1} hp[h]
 * (NULL at t = 0: zeros): y[h] = (1 - z) n + z h_{t-1} with
 * n = tanh(a_n + r ah_n), PyTorch's GRU cell. */
void rt_sk_gru_fwd(const float *a, const float *ah, const float *hp, float *y, int64_t h);

/* One GRU backward step for one batch row, from the input and recurrent
 * pre-activations a[3h], ah[3h] (r z n; ah includes b_hh), h_{t-1} hp[h], the
 * gradient dy[h] + drec[h] reaching h_t: the pre-activation gradients da[3h]
 * (input side) and dah[3h] (recurrent side: the n gate's times r), and
 * dd[h] = h_{t-1}'s direct share (dh z). */
void rt_sk_gru_bwd(const float *a, const float *ah, const float *hp, const float *dy, const float *drec, float *da,
                   float *dah, float *dd, int64_t h);

#endif
