/* rt_amx.h -- the int8 and bf16 products on AMX tiles (rt/rt_amx.c):
 * AMX-INT8 (TDPBUSD) for int8-dynamic and static int8, AMX-BF16
 * (TDPBF16PS) for bf16. Each runs the native tile code where the host has
 * AMX and Linux granted the tile state, else (and with LATHE_AMX_EMULATE=1)
 * the same code on the software tile emulator (rt/rt_amx_tile.h), which
 * gives the same results, slowly: the tests' path on hosts without AMX. */
#ifndef LATHE_RT_AMX_H
#define LATHE_RT_AMX_H

#include <stdint.h>

#include "rt/rt_qgemm.h"

/* which copy of the tile code runs: the native one where the host allows
 * it and LATHE_AMX_EMULATE is not 1, or one forced (the tests) */
enum { RT_AMX_AUTO = 0, RT_AMX_NATIVE = 1, RT_AMX_EMULATED = 2 };

/* What a host allows, from its facts: CPUID.(7,0):EDX, CPUID.1's OSXSAVE,
 * XCR0 (read only where OSXSAVE says xgetbv works) and Linux's answer to
 * arch_prctl(ARCH_REQ_XCOMP_PERM) (0 or an errno; asked only where the
 * CPU and the OS have the tile state). why: the reason where neither kernel
 * is usable, as lathe_rt_amx_status says it. */
typedef struct {
  int int8, bf16; /* natively usable */
  char why[200];  /* why not, "" when usable */
} rt_amx_host;
rt_amx_host rt_amx_decide(uint32_t edx7, int osxsave, uint64_t (*xcr0_of)(void), int (*perm)(void));

/* 1 where this host runs AMX-INT8 (bf16 0) or AMX-BF16 (bf16 1) natively:
 * CPUID, the OS's tile state in XCR0, and Linux's permission (asked once) */
int rt_amx_native(int bf16);

/* The int8 product of rt_qgemm_args's rows by column blocks [b0, b1)
 * (16 columns each; pairs of blocks per tile pass), xq = x + 128: the
 * results of rt_qgemm_512's, bit for bit. how: RT_AMX_*; RT_AMX_NATIVE on a
 * host without AMX is an internal error. */
void rt_amx_qgemm(const rt_qgemm_args *a, int64_t b0, int64_t b1, int how);
/* one activation row to u8 (x + 128) as rt_q_row_static, on this host's
 * widest SIMD */
float rt_amx_row(const float *x, int64_t K, int64_t Kp, float sx, uint8_t *q);

/* out[M, N] = bf16(x) [M, K] . w^T (w bf16 [N, K]) [+ bias] [relu] on
 * AMX-BF16 tiles: the activations rounded as rt/rt_qbf16.c rounds them, the
 * weights packed per call into the scratch (rt_amx_bf16_scratch_bytes) */
void rt_amx_bf16_matmul(float *out, const float *x, const uint16_t *w, const float *bias, int64_t act, void *scr,
                        int64_t M, int64_t K, int64_t N, int how);
int64_t rt_amx_bf16_scratch_bytes(int64_t M, int64_t K, int64_t N);

#endif
