/* gemm_pack.h -- an inference program's products by constant weights through
 * oneDNN's matmul primitive, the weights reordered once into the layout
 * oneDNN picks (issue 18; bench/README.md, "Packed weights"). Internal
 * prefix: gpk_.
 *
 * Which products: those rt_sgemm (rt/blas.h) is handed whole, outside the
 * pool's loops, with A not transposed (B may be: a tied head), alpha 1, beta 0 or 1 (a bias filled in
 * first), and those rt_sgemm_bias is handed (a dense layer's product and
 * its bias: the bias inside oneDNN's kernel where the pieces run on
 * brgemm, else left to the fill and beta 1), whose B lies inside one of the program's constant weights (a
 * parameter the program never writes: not optimizer state, not a buffer,
 * not a decode step's cache). Everything else stays OpenBLAS's.
 *
 * One table per program (lathe_program.pack): made when the program is
 * compiled for inference on the llvm backend in a build with oneDNN and
 * LATHE_DNNL is not "0"; a run enters it (its products then look it up on
 * the running thread), and every path that writes the program's parameters
 * (api_params_changed) invalidates it, so the next run packs again. Built
 * without oneDNN, gpk_new returns NULL and the rest does nothing. */
#ifndef LATHE_GEMM_PACK_H
#define LATHE_GEMM_PACK_H

#include <stdint.h>

typedef struct gpk_table gpk_table;

/* A table for a program of nparams parameters; constant[i] != 0 marks
 * those whose values the program only reads; bytes[i], each one's size.
 * NULL without oneDNN, with LATHE_DNNL=0, when no parameter is constant,
 * or without memory (the program then runs on OpenBLAS alone). */
gpk_table *gpk_new(int nparams, const int *constant, const int64_t *bytes);
/* Whether gpk_new can make tables: built with oneDNN, LATHE_DNNL not "0". */
int gpk_enabled(void);
void gpk_free(gpk_table *t);

/* Around one run on this thread: params[i] is parameter i's buffer for
 * this run. t may be NULL (both do nothing). */
void gpk_enter(gpk_table *t, void *const *params);
void gpk_leave(gpk_table *t);

/* The weights may have changed: every packing is dropped (freed at the
 * next gpk_enter or gpk_free: never during a run). */
void gpk_invalidate(gpk_table *t);

/* Counters for the tests: products computed through the table, and weight
 * packings made (one per product shape and weight, again after each
 * invalidation). */
long gpk_products(const gpk_table *t);
long gpk_packings(const gpk_table *t);
/* of the products, those that added a bias inside the kernel */
long gpk_bias_products(const gpk_table *t);

#endif
