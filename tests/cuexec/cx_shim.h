/* cx_shim.h: what CUDA C needs from the device, given to g++ so that a
 * rendered kernel module compiles for the host (cx_module.c includes this
 * first, with -include). Kernels become plain functions run once per GPU
 * thread; indices, barriers and shuffles go through the executor's cx_api
 * (cx_abi.h). C++17. Only what kernels use: no textures, no cooperative
 * groups, no half-precision arithmetic beyond conversions. */
#ifndef CX_SHIM_H
#define CX_SHIM_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <type_traits>
#include <utility>

#include "cx_abi.h"

#define CX_EXPORT extern "C" __attribute__((visibility("default")))

static cx_api *cx_rt;
CX_EXPORT void cx_bind(cx_api *api) { cx_rt = api; }

/* ---- qualifiers: a __shared__ variable is static, one per block because
 * blocks run one after another and every thread of a block is a fiber of
 * one OS thread; extern __shared__ arrays are rewritten by cx_module.c ---- */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __shared__ static
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

/* ---- indices ---- */
typedef cx_dim3 uint3;
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
#define threadIdx (cx_rt->threadIdx)
#define blockIdx (cx_rt->blockIdx)
#define blockDim (cx_rt->blockDim)
#define gridDim (cx_rt->gridDim)
#define warpSize 32

static inline unsigned cx_tid_() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
static inline unsigned cx_lane_() { return cx_tid_() & 31u; }

/* ---- barriers and warps ---- */
static inline void __syncthreads() { cx_rt->sync_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { cx_rt->sync_warp(mask); }
static inline unsigned __activemask() { return cx_rt->active_mask(); }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __trap() { cx_rt->trap("__trap() called"); }

template <class T> static inline T cx_shfl_from_(unsigned mask, T v, unsigned src) {
  static_assert(sizeof(T) <= CX_LANE_BYTES, "shuffle of a value wider than 16 bytes");
  unsigned char mine[CX_LANE_BYTES] = {0}, all[32 * CX_LANE_BYTES];
  memcpy(mine, &v, sizeof(T));
  unsigned have = cx_rt->warp_exchange(mask, mine, all);
  if (!(have >> src & 1u)) {
    char why[160];
    snprintf(why, sizeof why,
             "lane %u shuffles from lane %u, which is outside the mask 0x%08x, absent or exited",
             cx_lane_(), src, mask);
    cx_rt->trap(why);
  }
  T r;
  memcpy(&r, all + src * CX_LANE_BYTES, sizeof(T));
  return r;
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  unsigned lane = cx_lane_(), base = lane & ~(unsigned)(width - 1);
  return cx_shfl_from_(mask, v, base + ((unsigned)src & (unsigned)(width - 1)));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  unsigned lane = cx_lane_(), base = lane & ~(unsigned)(width - 1), src = lane ^ (unsigned)lane_mask;
  return cx_shfl_from_(mask, v, src >= base + (unsigned)width ? lane : src);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  unsigned lane = cx_lane_(), in = lane & (unsigned)(width - 1);
  return cx_shfl_from_(mask, v, in + delta >= (unsigned)width ? lane : lane + delta);
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  unsigned lane = cx_lane_(), in = lane & (unsigned)(width - 1);
  return cx_shfl_from_(mask, v, in < delta ? lane : lane - delta);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned char mine[CX_LANE_BYTES] = {0}, all[32 * CX_LANE_BYTES];
  mine[0] = pred != 0;
  unsigned have = cx_rt->warp_exchange(mask, mine, all), r = 0;
  for (unsigned i = 0; i < 32; i++)
    if ((have >> i & 1u) && all[i * CX_LANE_BYTES]) r |= 1u << i;
  return r;
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) {
  return __ballot_sync(mask, pred) == (__ballot_sync(mask, 1));
}

/* ---- atomics: blocks and fibers share one OS thread, but say atomic anyway ---- */
template <class T> static inline T cx_atomic_float_add_(T *p, T v) {
  T old = *p, want;
  do want = old + v;
  while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
  return old;
}
static inline float atomicAdd(float *p, float v) { return cx_atomic_float_add_(p, v); }
static inline double atomicAdd(double *p, double v) { return cx_atomic_float_add_(p, v); }
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline int atomicSub(int *p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <class T, class F> static inline T cx_atomic_op_(T *p, F f) {
  T old = *p, want;
  do want = f(old);
  while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
  return old;
}
static inline int atomicMax(int *p, int v) { return cx_atomic_op_(p, [v](int o) { return o > v ? o : v; }); }
static inline int atomicMin(int *p, int v) { return cx_atomic_op_(p, [v](int o) { return o < v ? o : v; }); }
static inline unsigned atomicMax(unsigned *p, unsigned v) {
  return cx_atomic_op_(p, [v](unsigned o) { return o > v ? o : v; });
}
static inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline float atomicExch(float *p, float v) {
  float old;
  __atomic_exchange(p, &v, &old, __ATOMIC_SEQ_CST);
  return old;
}
template <class T> static inline T cx_cas_(T *p, T cmp, T v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
}
static inline int atomicCAS(int *p, int c, int v) { return cx_cas_(p, c, v); }
static inline unsigned atomicCAS(unsigned *p, unsigned c, unsigned v) { return cx_cas_(p, c, v); }
static inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long c,
                                           unsigned long long v) {
  return cx_cas_(p, c, v);
}

/* ---- math: the intrinsics as their accurate host twins ---- */
/* macros: glibc declares __expf and friends itself */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline int __float_as_int(float x) { int r; memcpy(&r, &x, 4); return r; }
static inline unsigned __float_as_uint(float x) { unsigned r; memcpy(&r, &x, 4); return r; }
static inline float __int_as_float(int x) { float r; memcpy(&r, &x, 4); return r; }
static inline float __uint_as_float(unsigned x) { float r; memcpy(&r, &x, 4); return r; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T> static inline T __ldg(const T *p) { return *p; }
/* float to int, round to nearest even, as cvt.rni.s32.f32: NaN gives 0, out of
 * range saturates (the int8 kernels' rounding, rt_q_rint's on the CPU) */
static inline int __float2int_rn(float x) {
  if (x != x) return 0;
  if (x >= 2147483648.0f) return 2147483647;
  if (x < -2147483648.0f) return (-2147483647 - 1);
  return (int)nearbyintf(x);
}
static inline float __int2float_rn(int x) { return (float)x; }
/* __dp4a (sm_61+): c + the four byte products of a and b, signed (or both
 * unsigned), in 32 bits that wrap as the device's do */
static inline int __dp4a(int a, int b, int c) {
  uint32_t s = (uint32_t)c;
  for (int i = 0; i < 4; i++) s += (uint32_t)((int32_t)(int8_t)(a >> 8 * i) * (int32_t)(int8_t)(b >> 8 * i));
  return (int)s;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
  for (int i = 0; i < 4; i++) c += ((a >> 8 * i) & 255u) * ((b >> 8 * i) & 255u);
  return c;
}

/* ---- vector types ---- */
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

/* ---- bf16: storage and conversions (round to nearest even), arithmetic
 * between two bf16 rounds its result like cuda_bf16.hpp's operators ---- */
static inline unsigned short cx_f2bf_(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
static inline float cx_bf2f_(unsigned short b) {
  unsigned u = (unsigned)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(cx_f2bf_(f)) {}
  __nv_bfloat16(double f) : __x(cx_f2bf_((float)f)) {}
  __nv_bfloat16(int i) : __x(cx_f2bf_((float)i)) {}
  operator float() const { return cx_bf2f_(__x); }
};
struct alignas(4) __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;
static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 b) { return cx_bf2f_(b.__x); }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__nv_bfloat16(a), __nv_bfloat16(b)};
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
static inline float2 __bfloat1622float2(__nv_bfloat162 b) {
  return float2{__bfloat162float(b.x), __bfloat162float(b.y)};
}
static inline float __low2float(__nv_bfloat162 b) { return __bfloat162float(b.x); }
static inline float __high2float(__nv_bfloat162 b) { return __bfloat162float(b.y); }
#define CX_BF_OP_(op)                                                                   \
  static inline __nv_bfloat16 operator op(__nv_bfloat16 a, __nv_bfloat16 b) {           \
    return __nv_bfloat16((float)a op (float)b);                                         \
  }
CX_BF_OP_(+) CX_BF_OP_(-) CX_BF_OP_(*) CX_BF_OP_(/)
#undef CX_BF_OP_

/* ---- the launch wrappers cx_module.c appends, one pair per kernel ---- */
template <class... A, size_t... I>
static inline void cx_call_(void (*f)(A...), void **a, std::index_sequence<I...>) {
  f(*static_cast<std::remove_reference_t<A> *>(a[I])...);
}
template <class... A> static inline void cx_call(void (*f)(A...), void **a) {
  cx_call_(f, a, std::index_sequence_for<A...>{});
}
template <class T> static inline int cx_ptr1_(int i, void *slot) {
  if constexpr (std::is_pointer_v<T>) cx_rt->check_ptr(i, *static_cast<const void *const *>(slot));
  return 0;
}
template <class... A, size_t... I>
static inline void cx_ptrs_(void (*)(A...), void **a, std::index_sequence<I...>) {
  int none[] = {0, cx_ptr1_<A>((int)I, a[I])...};
  (void)none;
}
template <class... A> static inline void cx_ptrs(void (*f)(A...), void **a) {
  cx_ptrs_(f, a, std::index_sequence_for<A...>{});
}
/* the kernel's argument count (a graph records that many by value) */
template <class... A> static inline int cx_nargs(void (*)(A...)) { return (int)sizeof...(A); }

#endif
