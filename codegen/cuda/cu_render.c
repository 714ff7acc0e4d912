/* cu_render.c -- the kernel plan as CUDA C. One renderer per kernel kind
 * (a table: kinds the table has no entry for are refused, naming the kind
 * and the node); kinds made of one node go on by the head's op
 * (cu_render_rows.c). Every function is extern "C" __global__ with its
 * __launch_bounds__, every shape is a constant in its source, and its
 * arguments are pointers only (operand buffers, a scratch block, the
 * status word), so a launch is a list of pointers. Functions whose text is
 * equal are one function (the plan's identical layers). Matrix products go
 * to the driver's gemm (cuBLASLt on a GPU), their bias/ReLU/GELU epilogue
 * with it when cuBLASLt has that epilogue, else as a kernel after it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/norm.h"
#include "codegen/cuda/cu_render.h"

/* The helpers every module starts with. Reductions: a warp by shuffles, a
 * block through one float per warp in shared memory. */
const char cu_prelude[] =
  "// Lathe CUDA backend: generated code (codegen/cuda/cu_render.c)\n"
  "#define LT_INF __int_as_float(0x7f800000)\n"
  "// A bf16 tensor element (--precision bf16): widened to f32 on every read, rounded to nearest even once on\n"
  "// every store; kernels compute in f32. The constructor is explicit so that `c ? x[i] : 0.f` stays f32.\n"
  "struct lt_bf16 {\n  unsigned short u;\n  lt_bf16() = default;\n"
  "  __device__ explicit lt_bf16(float f) { set(f); }\n"
  "  __device__ void set(float f) {\n    unsigned x = __float_as_uint(f);\n"
  "    u = (x & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((x >> 16) | 0x40u)\n"
  "                                        : (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);\n  }\n"
  "  __device__ operator float() const { return __uint_as_float((unsigned)u << 16); }\n"
  "  __device__ lt_bf16& operator=(float f) { set(f); return *this; }\n"
  "  __device__ lt_bf16& operator+=(float f) { set((float)*this + f); return *this; }\n"
  "  __device__ lt_bf16& operator-=(float f) { set((float)*this - f); return *this; }\n"
  "  __device__ lt_bf16& operator*=(float f) { set((float)*this * f); return *this; }\n"
  "  __device__ lt_bf16& operator/=(float f) { set((float)*this / f); return *this; }\n};\n"
  "// Four bf16 elements from one 8-byte load (element 4q at byte 8q: every buffer is 64-byte aligned), each\n"
  "// widened as lt_bf16's read does; and four rounded as its store does, written with one 8-byte store.\n"
  "__device__ __forceinline__ float4 lt_ld4(const lt_bf16* p, long long q) {\n"
  "  unsigned long long v = reinterpret_cast<const unsigned long long*>(p)[q];\n"
  "  return make_float4(__uint_as_float((unsigned)(v << 16)), __uint_as_float((unsigned)v & 0xffff0000u),\n"
  "                     __uint_as_float((unsigned)(v >> 16) & 0xffff0000u),\n"
  "                     __uint_as_float((unsigned)(v >> 32) & 0xffff0000u));\n}\n"
  "__device__ __forceinline__ void lt_st4(lt_bf16* p, long long q, float4 f) {\n"
  "  lt_bf16 a(f.x), b(f.y), c(f.z), d(f.w);\n"
  "  reinterpret_cast<unsigned long long*>(p)[q] = (unsigned long long)a.u | (unsigned long long)b.u << 16 |\n"
  "                                                 (unsigned long long)c.u << 32 | (unsigned long long)d.u << 48;\n}\n"
  "__device__ __forceinline__ float lt_sigmoid(float x) {\n"
  "  if (x >= 0.f) return 1.f / (1.f + expf(-x));\n"
  "  float e = expf(x); return e / (1.f + e);\n}\n"
  "__device__ __forceinline__ float lt_gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }\n"
  "__device__ __forceinline__ float lt_gelu_tanh(float x) {\n"
  "  return 0.5f * x * (1.f + tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x)));\n}\n"
  "__device__ __forceinline__ float lt_dgelu_erf(float x) {\n"
  "  return 0.5f * (1.f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143267794f * expf(-0.5f * x * x);\n}\n"
  "__device__ __forceinline__ float lt_dgelu_tanh(float x) {\n"
  "  float t = tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x));\n"
  "  return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * 0.79788456080286535588f * (1.f + 3.f * 0.044715f * x * x);\n}\n"
  "__device__ __forceinline__ float lt_minimum(float a, float b) { return a != a ? a : b != b ? b : (a < b ? a : b); }\n"
  "__device__ __forceinline__ float lt_maxn(float a, float b) { return (b > a || b != b) && a == a ? b : a; }\n"
  "__device__ __forceinline__ float lt_minn(float a, float b) { return (b < a || b != b) && a == a ? b : a; }\n"
  "__device__ __forceinline__ float lt_clamp(float x, float lo, float hi) {\n"
  "  if (x != x) return x; float v = x < lo ? lo : x; return v > hi ? hi : v;\n}\n"
  "__device__ __forceinline__ float lt_warp_sum(float v) {\n"
  "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n  return v;\n}\n"
  "__device__ __forceinline__ float lt_warp_max(float v) {\n"
  "  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));\n  return v;\n}\n"
  "__device__ __forceinline__ float lt_warp_maxn(float v) {\n"
  "  for (int o = 16; o > 0; o >>= 1) v = lt_maxn(v, __shfl_xor_sync(0xffffffffu, v, o));\n  return v;\n}\n"
  "__device__ __forceinline__ float lt_warp_minn(float v) {\n"
  "  for (int o = 16; o > 0; o >>= 1) v = lt_minn(v, __shfl_xor_sync(0xffffffffu, v, o));\n  return v;\n}\n"
  "// A block's reduction (op: 0 sum, 1 max, 2 max with NaN winning, 3 min with NaN winning); every thread gets it.\n"
  "__device__ __forceinline__ float lt_block_reduce(float v, int op) {\n"
  "  __shared__ float lt_part[32];\n"
  "  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;\n"
  "  v = op == 0 ? lt_warp_sum(v) : op == 1 ? lt_warp_max(v) : op == 2 ? lt_warp_maxn(v) : lt_warp_minn(v);\n"
  "  __syncthreads();\n"
  "  if (lane == 0) lt_part[warp] = v;\n"
  "  __syncthreads();\n"
  "  float id = op == 0 ? 0.f : op == 1 || op == 2 ? -LT_INF : LT_INF;\n"
  "  v = lane < nw ? lt_part[lane] : id;\n"
  "  v = op == 0 ? lt_warp_sum(v) : op == 1 ? lt_warp_max(v) : op == 2 ? lt_warp_maxn(v) : lt_warp_minn(v);\n"
  "  return v;\n}\n"
  "__device__ __forceinline__ void lt_fail(int *status, int code) { atomicCAS(status, 0, code); }\n"
  "// ir/rng.c's stream: SplitMix64's finaliser, Philox-4x32-10, a 53-bit uniform from two words.\n"
  "__device__ __forceinline__ unsigned long long lt_mix64(unsigned long long z) {\n"
  "  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; z = (z ^ (z >> 27)) * 0x94D049BB133111EBull; return z ^ (z >> 31);\n}\n"
  "__device__ __forceinline__ void lt_philox(unsigned c[4], unsigned k0, unsigned k1) {\n"
  "  for (int r = 0; r < 10; r++) {\n"
  "    if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }\n"
  "    unsigned long long p0 = 0xD2511F53ull * c[0], p1 = 0xCD9E8D57ull * c[2];\n"
  "    unsigned n0 = (unsigned)(p1 >> 32) ^ c[1] ^ k0, n2 = (unsigned)(p0 >> 32) ^ c[3] ^ k1;\n"
  "    c[0] = n0; c[1] = (unsigned)p1; c[2] = n2; c[3] = (unsigned)p0;\n  }\n}\n"
  "__device__ __forceinline__ double lt_uniform(unsigned a, unsigned b) {\n"
  "  return ((double)(a >> 5) * 67108864.0 + (double)(b >> 6)) * (1.0 / 9007199254740992.0);\n}\n";

void cu_sb_printf(cu_sb *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0) { b->oom = 1; return; }
    if (b->s && b->n + (size_t)w < b->cap) { b->n += (size_t)w; return; }
    size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)w;
    char *s = realloc(b->s, cap);
    if (!s) { b->oom = 1; return; }
    b->s = s, b->cap = cap;
  }
}

int cu_opnode(const cu_rctx *r, int j) { return j == 0 ? r->k->node : r->k->arg[j - 1]; }
const ir_node *cu_opn(const cu_rctx *r, int j) { return &r->g->nodes[cu_opnode(r, j)]; }

static const char *ctype(ir_dtype t) {
  static const char *const names[IR_NDTYPES] = {
    [IR_F32] = "float", [IR_F16] = "unsigned short", [IR_BF16] = "unsigned short", [IR_I32] = "int",
    [IR_I64] = "long long", [IR_I8] = "signed char", [IR_U8] = "unsigned char", [IR_BOOL] = "unsigned char",
  };
  return t < IR_NDTYPES && names[t] ? names[t] : "float";
}

int cu_is_bf16(const cu_rctx *r, const ir_node *n) {
  return r->bf16 && n >= r->g->nodes && n < r->g->nodes + r->g->nnodes && r->bf16[n - r->g->nodes];
}

void cu_param(cu_rctx *r, const char *name, const ir_node *n, int is_out) {
  cu_sb_printf(&r->b, "%s%s%s* __restrict__ %s", r->b.s && r->b.s[r->b.n - 1] == '(' ? "" : ", ",
               is_out ? "" : "const ", cu_is_bf16(r, n) ? "lt_bf16" : ctype(n->dtype), name);
}

void cu_begin(cu_rctx *r, int threads) {
  r->b.n = 0;
  cu_sb_printf(&r->b, "extern \"C\" __global__ void __launch_bounds__(%d) @K@(", threads);
}

void cu_refs(const cu_rctx *r, cu_ref *ops, int nops) {
  for (int j = 0; j < nops; j++) ops[j].node = cu_opnode(r, j), ops[j].off = 0;
}

int cu_unsupported(cu_rctx *r, const char *why, ...) {
  const ir_node *h = &r->g->nodes[r->k->head];
  int w = snprintf(r->msg, r->msgn, "cuda backend: kernel k%d (%s) at node %%%d %s: ", r->pk, pl_kind_name(r->k->kind),
                   r->k->head, ir_ops[h->op].name);
  va_list ap;
  va_start(ap, why);
  if (w > 0 && (size_t)w < r->msgn) vsnprintf(r->msg + w, r->msgn - (size_t)w, why, ap);
  va_end(ap);
  return -1;
}

const char *cu_flt(double v, char *buf, size_t n) {
  if (isnan(v)) snprintf(buf, n, "__int_as_float(0x7fc00000)");
  else if (isinf(v)) snprintf(buf, n, "%sLT_INF", v < 0 ? "-" : "");
  else snprintf(buf, n, "%.9gf", v);
  if (!isnan(v) && !isinf(v) && !strpbrk(buf, ".en")) { /* 2f is not a literal: 2.f */
    size_t k = strlen(buf);
    if (k + 2 < n) buf[k - 1] = '.', buf[k] = 'f', buf[k + 1] = 0;
  }
  return buf;
}

unsigned cu_blocks(int64_t count, unsigned threads) {
  int64_t b = (count + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535 * 16) b = 65535 * 16; /* kernels loop over the rest (grid-stride) */
  return (unsigned)b;
}

void cu_load(cu_sb *b, const char *name, const ir_shape *out, const ir_node *in, const char *o) {
  int64_t m = 1;
  const char *cast = in->dtype == IR_F32 ? "" : "(float)";
  switch (ir_bcast_kind_of(out, &in->shape, &m)) {
  case IR_BC_FULL: cu_sb_printf(b, "%s%s[%s]", cast, name, o); return;
  case IR_BC_SCALAR: cu_sb_printf(b, "%s%s[0]", cast, name); return;
  case IR_BC_SUFFIX: cu_sb_printf(b, "%s%s[(%s) %% %lldLL]", cast, name, o, (long long)m); return;
  case IR_BC_PREFIX: cu_sb_printf(b, "%s%s[(%s) / %lldLL]", cast, name, o, (long long)m); return;
  default: break;
  }
  /* any other broadcast: the index walks the axes (as ik_bcast_index) */
  cu_sb_printf(b, "%s%s[0", cast, name);
  int64_t stride = 1, div = 1;
  for (int i = out->rank - 1, j = in->shape.rank - 1; i >= 0; i--, j--) {
    if (j >= 0 && in->shape.d[j] != 1)
      cu_sb_printf(b, " + ((%s) / %lldLL %% %lldLL) * %lldLL", o, (long long)div, (long long)out->d[i], (long long)stride);
    if (j >= 0) stride *= in->shape.d[j];
    div *= out->d[i];
  }
  cu_sb_printf(b, "]");
}

int cu_unary_expr(cu_sb *b, int op, const ir_attr *a, const char *x) {
  char f1[48], f2[48];
  switch (op) {
  case IR_RELU: cu_sb_printf(b, "(%s > 0.f ? %s : (%s == %s ? 0.f : %s))", x, x, x, x, x); return 0;
  case IR_LEAKY_RELU: cu_sb_printf(b, "(%s >= 0.f ? %s : %s * %s)", x, x, cu_flt(a->f, f1, sizeof f1), x); return 0;
  case IR_SIGMOID: cu_sb_printf(b, "lt_sigmoid(%s)", x); return 0;
  case IR_TANH: cu_sb_printf(b, "tanhf(%s)", x); return 0;
  case IR_GELU: cu_sb_printf(b, "%s(%s)", a->approx ? "lt_gelu_tanh" : "lt_gelu_erf", x); return 0;
  case IR_SWISH: cu_sb_printf(b, "(%s * lt_sigmoid(%s))", x, x); return 0;
  case IR_EXP: cu_sb_printf(b, "expf(%s)", x); return 0;
  case IR_LOG: cu_sb_printf(b, "logf(%s)", x); return 0;
  case IR_SQRT: cu_sb_printf(b, "sqrtf(%s)", x); return 0;
  case IR_ABS: cu_sb_printf(b, "fabsf(%s)", x); return 0;
  case IR_NEG: cu_sb_printf(b, "(-%s)", x); return 0;
  case IR_POW: cu_sb_printf(b, "powf(%s, %s)", x, cu_flt(a->f, f1, sizeof f1)); return 0;
  case IR_CLAMP:
    cu_sb_printf(b, "lt_clamp(%s, %s, %s)", x, cu_flt(a->f, f1, sizeof f1), cu_flt(a->f2, f2, sizeof f2));
    return 0;
  case IR_DROPOUT: cu_sb_printf(b, "(%s)", x); return 0;
  case IR_SIGN: cu_sb_printf(b, "(%s > 0.f ? 1.f : %s < 0.f ? -1.f : %s)", x, x, x); return 0;
  default: return -1;
  }
}

int cu_deriv_expr(cu_sb *b, const ir_attr *a, const char *x, const char *dy) {
  char f1[48], f2[48];
  switch ((int)a->i) {
  case IR_RELU: cu_sb_printf(b, "(%s > 0.f ? %s : 0.f)", x, dy); return 0;
  case IR_LEAKY_RELU: cu_sb_printf(b, "(%s >= 0.f ? %s : %s * %s)", x, dy, cu_flt(a->f, f1, sizeof f1), dy); return 0;
  case IR_SIGMOID: cu_sb_printf(b, "(%s * lt_sigmoid(%s) * (1.f - lt_sigmoid(%s)))", dy, x, x); return 0;
  case IR_TANH: cu_sb_printf(b, "(%s * (1.f - tanhf(%s) * tanhf(%s)))", dy, x, x); return 0;
  case IR_GELU: cu_sb_printf(b, "(%s * %s(%s))", dy, a->approx ? "lt_dgelu_tanh" : "lt_dgelu_erf", x); return 0;
  case IR_SWISH:
    cu_sb_printf(b, "(%s * (lt_sigmoid(%s) + %s * lt_sigmoid(%s) * (1.f - lt_sigmoid(%s))))", dy, x, x, x, x);
    return 0;
  case IR_EXP: cu_sb_printf(b, "(%s * expf(%s))", dy, x); return 0;
  case IR_LOG: cu_sb_printf(b, "(%s / %s)", dy, x); return 0;
  case IR_SQRT: cu_sb_printf(b, "(%s * (0.5f / sqrtf(%s)))", dy, x); return 0;
  case IR_ABS: cu_sb_printf(b, "(%s * (%s > 0.f ? 1.f : %s < 0.f ? -1.f : 0.f))", dy, x, x); return 0;
  case IR_NEG: cu_sb_printf(b, "(-%s)", dy); return 0;
  case IR_POW:
    if (a->f == 0) cu_sb_printf(b, "(%s * 0.f)", dy);
    else cu_sb_printf(b, "(%s * %s * powf(%s, %s))", dy, cu_flt(a->f, f1, sizeof f1), x, cu_flt(a->f - 1.0, f2, sizeof f2));
    return 0;
  case IR_CLAMP:
    cu_sb_printf(b, "(%s >= %s && %s <= %s ? %s : 0.f)", x, cu_flt(a->f, f1, sizeof f1), x,
                 cu_flt(a->f2, f2, sizeof f2), dy);
    return 0;
  case IR_DROPOUT: cu_sb_printf(b, "(%s)", dy); return 0;
  default: return -1;
  }
}

int cu_binary_expr(cu_sb *b, int op, const char *x, const char *y) {
  static const char *const sym[IR_NOPS] = {
    [IR_ADD] = "+", [IR_SUB] = "-", [IR_MUL] = "*", [IR_DIV] = "/", [IR_LESS] = "<", [IR_LESS_EQUAL] = "<=",
    [IR_GREATER] = ">", [IR_GREATER_EQUAL] = ">=", [IR_EQUAL] = "==", [IR_NOT_EQUAL] = "!=",
  };
  if (op == IR_MINIMUM) { cu_sb_printf(b, "lt_minimum(%s, %s)", x, y); return 0; }
  if (op < 0 || op >= IR_NOPS || !sym[op]) return -1;
  cu_sb_printf(b, "(%s %s %s)", x, sym[op], y);
  return 0;
}

/* ---- the function table ---- */

static int add_fn(cu_rctx *r, const char *text) {
  cu_program *cp = r->out;
  for (int f = 0; f < cp->nfn; f++)
    if (!strcmp(cp->fn[f].src + 0, text)) return f; /* compared before naming: see below */
  if (cp->nfn == cp->capfn) {
    int cap = cp->capfn ? cp->capfn * 2 : 64;
    cu_fn *fn = realloc(cp->fn, sizeof *fn * (size_t)cap);
    if (!fn) return -1;
    cp->fn = fn, cp->capfn = cap;
  }
  cu_fn *f = &cp->fn[cp->nfn];
  f->src = strdup(text);
  f->name = malloc(64);
  if (!f->src || !f->name) {
    free(f->src);
    free(f->name);
    return -1;
  }
  const ir_node *h = &r->g->nodes[r->k->head];
  snprintf(f->name, 64, "k%d_%s", cp->nfn, ir_ops[h->op].name);
  f->pk = r->pk;
  return cp->nfn++;
}

int cu_add_launch(cu_rctx *r, const cu_launch *l) {
  cu_program *cp = r->out;
  if (cp->nl == cp->capl) {
    int cap = cp->capl ? cp->capl * 2 : 64;
    cu_launch *v = realloc(cp->l, sizeof *v * (size_t)cap);
    if (!v) return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
    cp->l = v, cp->capl = cap;
  }
  cp->l[cp->nl] = *l;
  cp->l[cp->nl].pk = r->pk;
  cp->nl++;
  return 0;
}

int cu_end(cu_rctx *r, unsigned grid, unsigned threads, const cu_ref *ops, int nops) {
  if (r->b.oom) return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
  int f = add_fn(r, r->b.s);
  if (f < 0) return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
  cu_launch l;
  memset(&l, 0, sizeof l);
  l.what = CU_L_KERNEL, l.fn = f;
  l.grid[0] = grid, l.grid[1] = l.grid[2] = 1;
  l.block[0] = threads, l.block[1] = l.block[2] = 1;
  l.nops = nops;
  memcpy(l.op, ops, sizeof *ops * (size_t)nops);
  return cu_add_launch(r, &l);
}

/* ---- elementwise maps, fused programs, siblings ---- */

enum { EW_THREADS = 256 };

/* The grid-stride loop over count elements, index e. */
void cu_grid_loop(cu_sb *b, int64_t count) {
  cu_sb_printf(b, "  for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < %lldLL;"
                  " e += (long long)gridDim.x * blockDim.x) {\n", (long long)count);
}

/* The grid-stride loop of a warp-per-row kernel (attention, mha: a warp
 * per (batch, head, row)): lane the thread's lane, w the warp's row. */
void cu_warp_loop(cu_sb *b, int64_t rows) {
  cu_sb_printf(b, "  const int lane = threadIdx.x & 31;\n"
                  "  for (long long w = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; w < %lldLL;"
                  " w += ((long long)gridDim.x * blockDim.x) >> 5) {\n", (long long)rows);
}

void cu_loop_open(cu_sb *b, int64_t count) {
  cu_sb_printf(b, ") {\n");
  cu_grid_loop(b, count);
}

/* Statements computing fused program f of node n at element e into s<k>,
 * the inputs read through operand names in[j] ("" to use v<j> already
 * loaded); the last step's value is s<nsteps-1>. prefix keeps two
 * programs' names apart (siblings). */
static int fused_body(cu_rctx *r, const ir_fusion *f, const char *prefix, char in[][16]) {
  for (int s = 0; s < f->nsteps; s++) {
    const ir_fstep *st = &f->step[s];
    char a[2][48];
    for (int q = 0; q < st->nin; q++) {
      if (st->arg[q] >= 0) snprintf(a[q], sizeof a[q], "%s", in[st->arg[q]]);
      else snprintf(a[q], sizeof a[q], "%ss%d", prefix, -1 - st->arg[q]);
    }
    cu_sb_printf(&r->b, "    float %ss%d = ", prefix, s);
    int rc = st->op == IR_UNARY_GRAD ? cu_deriv_expr(&r->b, &f->attr[s], a[0], a[1])
             : st->nin == 1          ? cu_unary_expr(&r->b, st->op, &f->attr[s], a[0])
                                     : cu_binary_expr(&r->b, st->op, a[0], a[1]);
    if (rc) return cu_unsupported(r, "fused step %d (%s) is not rendered", s, ir_ops[st->op].name);
    cu_sb_printf(&r->b, ";\n");
  }
  return 0;
}

/* The value of node n at element e (of its own shape) as statements ending
 * in `float <res> = ...;`, its inputs read as operands named by in[]. */
static int node_value(cu_rctx *r, const ir_node *n, char in[][16], const char *res) {
  char x[8][96];
  for (int j = 0; j < n->nin && j < 8; j++) {
    cu_sb tmp = {0};
    if (in[j][0] == '=') cu_sb_printf(&tmp, "%s", in[j] + 1); /* a value in a register */
    else cu_load(&tmp, in[j], &n->shape, &r->g->nodes[n->in[j]], "e");
    snprintf(x[j], sizeof x[j], "%s", tmp.s ? tmp.s : "0");
    free(tmp.s);
  }
  if (n->op == IR_FUSED) {
    char v[PL_MAXARGS][16];
    for (int j = 0; j < n->nin && j < PL_MAXARGS; j++) {
      snprintf(v[j], sizeof v[j], "%sv%d", res, j);
      cu_sb_printf(&r->b, "    float %s = ", v[j]);
      if (in[j][0] == '=') cu_sb_printf(&r->b, "%s", in[j] + 1);
      else cu_load(&r->b, in[j], &n->shape, &r->g->nodes[n->in[j]], "e");
      cu_sb_printf(&r->b, ";\n");
    }
    char pre[24];
    snprintf(pre, sizeof pre, "%s_", res);
    if (fused_body(r, n->fusion, pre, v)) return -1;
    cu_sb_printf(&r->b, "    float %s = %s_s%d;\n", res, res, n->fusion->nsteps - 1);
    return 0;
  }
  cu_sb_printf(&r->b, "    float %s = ", res);
  int rc = -1;
  int cat = ir_ops[n->op].cat;
  if (n->op == IR_UNARY_GRAD) rc = cu_deriv_expr(&r->b, &n->attr, x[0], x[1]);
  else if (n->op == IR_WHERE) cu_sb_printf(&r->b, "(%s != 0.f ? %s : %s)", x[0], x[1], x[2]), rc = 0;
  else if (n->op == IR_CAST) cu_sb_printf(&r->b, "%s", x[0]), rc = 0;
  else if (cat == IR_CAT_UNARY || n->op == IR_SIGN) rc = cu_unary_expr(&r->b, n->op, &n->attr, x[0]);
  else if (n->nin == 2) rc = cu_binary_expr(&r->b, n->op, x[0], x[1]);
  if (rc) return cu_unsupported(r, "the elementwise op %s is not rendered", ir_ops[n->op].name);
  cu_sb_printf(&r->b, ";\n");
  return 0;
}

/* Store v into an output of dtype t (integer results truncate, bool is != 0). */
static void store(cu_sb *b, const char *dst, ir_dtype t, const char *v) {
  if (t == IR_F32) cu_sb_printf(b, "    %s[e] = %s;\n", dst, v);
  else if (t == IR_BOOL) cu_sb_printf(b, "    %s[e] = %s != 0.f;\n", dst, v);
  else if (t == IR_I32 || t == IR_I64 || t == IR_I8 || t == IR_U8)
    cu_sb_printf(b, "    %s[e] = (%s)%s;\n", dst, ctype(t), v);
  else cu_sb_printf(b, "    %s[e] = %s;\n", dst, v);
}

/* ---- float4: four elements a thread ----
 * A full-shaped f32 operand (and an f32 result) is loaded and stored as
 * float4 when the loop is vectorised, a bf16 one (--precision bf16) as one
 * 8-byte load or store of four elements (lt_ld4, lt_st4: widened and
 * rounded lane by lane as lt_bf16's scalar reads and stores are): every
 * buffer starts 64-byte aligned (the arena's blocks, passes/memplan.c; the
 * constants', plan_buffers.c; the device allocation's parts, 256,
 * cu_run.c), so element 4q is 16-byte aligned (checked: vec_aligned).
 * Broadcast operands (scalars, suffix and prefix forms) are read per
 * element as before; the last count % 4 elements run a scalar tail. Each
 * lane computes the same expression as the scalar loop, so the values are
 * the same bits. */

static const char lane_c[4] = {'x', 'y', 'z', 'w'};

/* Whether node i's buffer starts 16-byte aligned (its element 4q then is,
 * at 4 or 2 bytes an element). Inputs, parameters and outputs have parts
 * of the device allocation of their own (256, cu_run.c). */
static int vec_aligned(const cu_rctx *r, int i) {
  const pl_buf *b = &r->p->buf[i];
  for (int hops = 0; b->kind == PL_BUF_ALIAS && hops < r->g->nnodes; hops++) b = &r->p->buf[b->idx];
  return (b->kind != PL_BUF_ARENA && b->kind != PL_BUF_CONST) || b->off % 16 == 0;
}

/* Operand `in` (f32, or f32 stored as bf16) can be read four elements at
 * once against a result shaped `out`. */
static int vec_full(const cu_rctx *r, const ir_shape *out, const ir_node *in) {
  return in->dtype == IR_F32 && ir_shape_eq(out, &in->shape) && vec_aligned(r, (int)(in - r->g->nodes));
}

/* `const float4 wJ = ...;`: operand `name` (node x) at float4 q. */
static void vec_load(cu_rctx *r, const ir_node *x, int j, const char *name) {
  if (cu_is_bf16(r, x)) cu_sb_printf(&r->b, "    const float4 w%d = lt_ld4(%s, q);\n", j, name);
  else cu_sb_printf(&r->b, "    const float4 w%d = reinterpret_cast<const float4*>(%s)[q];\n", j, name);
}

/* The float4 register v into result `name` (node x) at float4 q. */
static void vec_store(cu_rctx *r, const ir_node *x, const char *name, const char *v) {
  if (cu_is_bf16(r, x)) cu_sb_printf(&r->b, "    lt_st4(%s, q, %s);\n", name, v);
  else cu_sb_printf(&r->b, "    reinterpret_cast<float4*>(%s)[q] = %s;\n", name, v);
}

/* Whether a loop producing the f32 results res[0..nres) (stored as f32 or
 * bf16) can run four elements a thread (an operand that is not full is
 * read per element). */
static int vec_loop_ok(const cu_rctx *r, const ir_node *const *res, int nres) {
  for (int m = 0; m < nres; m++)
    if (!vec_full(r, &res[0]->shape, res[m])) return 0;
  return ir_numel(&res[0]->shape) >= 4;
}

/* "(t, st) = this thread's first float4 and the stride" and the vector
 * loop's head; then the tail's head after vec_tail_open. */
static void vec_loop_open(cu_sb *b, int64_t count) {
  cu_sb_printf(b, "  for (long long q = t; q < %lldLL; q += st) {\n", (long long)(count / 4));
}
static void vec_tail_open(cu_sb *b, int64_t count) {
  cu_sb_printf(b, "  }\n  for (long long e = %lldLL + t; e < %lldLL; e += st) {\n", (long long)(count / 4 * 4),
               (long long)count);
}

/* `float4 wJ = ...;` (vec_load) for each full operand name[j] of node n
 * (once per operand: seen[]), and in[j] set to lane l's register. */
static void vec_loads(cu_rctx *r, const ir_node *n, const char *const *opname, const int *opidx, char *seen) {
  for (int j = 0; j < n->nin; j++) {
    const ir_node *x = &r->g->nodes[n->in[j]];
    if (opidx[j] < 0 || !vec_full(r, &n->shape, x) || seen[opidx[j]]) continue;
    seen[opidx[j]] = 1;
    vec_load(r, x, opidx[j], opname[j]);
  }
}

static void vec_names(const cu_rctx *r, const ir_node *n, const char *const *opname, const int *opidx, int l,
                      char in[][16]) {
  for (int j = 0; j < n->nin; j++) {
    if (opidx[j] >= 0 && vec_full(r, &n->shape, &r->g->nodes[n->in[j]]))
      snprintf(in[j], 16, "=w%d.%c", opidx[j], lane_c[l]);
    else /* a member's register, or an operand read per element */
      snprintf(in[j], 16, "%s", opname[j]);
  }
}

static int render_elementwise(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  if (n->dtype == IR_F16 || n->dtype == IR_BF16) return cu_unsupported(r, "16-bit floats are not rendered");
  int nops = 1 + r->k->narg;
  char in[PL_MAXARGS + 1][16];
  const char *opname[PL_MAXARGS + 1];
  int opidx[PL_MAXARGS + 1];
  cu_begin(r, EW_THREADS);
  cu_param(r, "o", n, 1);
  for (int j = 1; j < nops; j++) {
    snprintf(in[j - 1], sizeof in[j - 1], "a%d", j);
    opname[j - 1] = in[j - 1], opidx[j - 1] = j;
    cu_param(r, in[j - 1], cu_opn(r, j), 0);
  }
  int64_t count = ir_numel(&n->shape);
  int vec = vec_loop_ok(r, &n, 1) && n->nin == nops - 1;
  if (!vec) {
    cu_loop_open(&r->b, count);
  } else {
    char lane[PL_MAXARGS + 1][16], seen[CU_MAXOPS] = {0};
    cu_sb_printf(&r->b, ") {\n  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x,"
                        " st = (long long)gridDim.x * blockDim.x;\n");
    vec_loop_open(&r->b, count);
    vec_loads(r, n, opname, opidx, seen);
    cu_sb_printf(&r->b, "    float4 o4;\n");
    for (int l = 0; l < 4; l++) {
      vec_names(r, n, opname, opidx, l, lane);
      cu_sb_printf(&r->b, "    {\n    const long long e = q * 4 + %d;\n    (void)e;\n", l);
      if (node_value(r, n, lane, "r")) return -1;
      cu_sb_printf(&r->b, "    o4.%c = r;\n    }\n", lane_c[l]);
    }
    vec_store(r, n, "o", "o4");
    vec_tail_open(&r->b, count);
  }
  if (node_value(r, n, in, "r")) return -1;
  store(&r->b, "o", n->dtype, "r");
  cu_sb_printf(&r->b, "  }\n}\n");
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  return cu_end(r, cu_blocks(vec ? (count + 3) / 4 : count, EW_THREADS), EW_THREADS, ops, nops);
}

/* One sibling group's members at element e (lane < 0), or at lane `lane`
 * of the float4 q (each member's value into its o<m> register's lane): a
 * member reading an earlier member takes its value from registers, an
 * input its operand (name[]). */
static int sibling_body(cu_rctx *r, const pl_siblings *mu, char name[][16], int lane) {
  for (int m = 0; m < mu->n; m++) {
    const ir_node *n = &r->g->nodes[mu->node[m]];
    char in[PL_MAXARGS][16];
    const char *opname[PL_MAXARGS];
    int opidx[PL_MAXARGS];
    for (int j = 0; j < n->nin; j++) { /* a member's value from registers, an input from its operand */
      int x = n->in[j], found = 0;
      opidx[j] = -1;
      for (int q = 0; q < m && !found; q++)
        if (mu->node[q] == x) snprintf(in[j], sizeof in[j], "=m%d", q), found = 1;
      for (int q = 0; q < mu->nin && !found; q++)
        if (mu->in[q] == x) snprintf(in[j], sizeof in[j], "%s", name[mu->inop[q]]), opidx[j] = mu->inop[q], found = 1;
      if (!found) return cu_unsupported(r, "a sibling's input is not among the kernel's operands");
      opname[j] = in[j];
    }
    char lanes[PL_MAXARGS][16];
    if (lane >= 0) vec_names(r, n, opname, opidx, lane, lanes);
    char res[16];
    snprintf(res, sizeof res, "m%d", m);
    if (node_value(r, n, lane >= 0 ? lanes : in, res)) return -1;
    if (lane >= 0) cu_sb_printf(&r->b, "    o%d.%c = %s;\n", m, lane_c[lane], res);
    else store(&r->b, name[mu->res[m]], n->dtype, res);
  }
  return 0;
}

/* One group's loops, this thread's first element (float4) t and stride st
 * set: four elements a thread when every member is an f32 result, then
 * the tail. */
static int sibling_loops(cu_rctx *r, const pl_siblings *mu, char name[][16]) {
  const ir_node *res[PL_MAXMULTI];
  for (int m = 0; m < mu->n; m++) res[m] = &r->g->nodes[mu->node[m]];
  int64_t count = ir_numel(&res[0]->shape);
  if (vec_loop_ok(r, res, mu->n)) {
    char *seen = calloc((size_t)r->k->narg + 1, 1); /* per kernel operand: its float4 loaded */
    if (!seen) return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
    vec_loop_open(&r->b, count);
    for (int m = 0; m < mu->n; m++) {
      const ir_node *n = res[m];
      const char *opname[PL_MAXARGS];
      int opidx[PL_MAXARGS];
      for (int j = 0; j < n->nin; j++) {
        opidx[j] = -1, opname[j] = "";
        for (int q = 0; q < mu->nin; q++)
          if (mu->in[q] == n->in[j]) opidx[j] = mu->inop[q], opname[j] = name[mu->inop[q]];
      }
      vec_loads(r, n, opname, opidx, seen);
      cu_sb_printf(&r->b, "    float4 o%d;\n", m);
    }
    free(seen);
    for (int l = 0; l < 4; l++) {
      cu_sb_printf(&r->b, "    {\n    const long long e = q * 4 + %d;\n    (void)e;\n", l);
      if (sibling_body(r, mu, name, l)) return -1;
      cu_sb_printf(&r->b, "    }\n");
    }
    for (int m = 0; m < mu->n; m++) {
      char o[16];
      snprintf(o, sizeof o, "o%d", m);
      vec_store(r, res[m], name[mu->res[m]], o);
    }
    vec_tail_open(&r->b, count);
  } else {
    cu_sb_printf(&r->b, "  for (long long e = t; e < %lldLL; e += st) {\n", (long long)count);
  }
  if (sibling_body(r, mu, name, -1)) return -1;
  cu_sb_printf(&r->b, "  }\n");
  return 0;
}

/* Blocks of one group of an update kernel: a grid-stride loop over its
 * elements when it has more than this many. */
enum { SIB_MAX_BLOCKS = 4096 };

/* Operand j of an update kernel read from its table (the launch's one
 * argument, lt_tab): `T* __restrict__ aJ = ...;` in the group that uses it. */
static void table_operand(cu_rctx *r, int j, int is_out) {
  const ir_node *n = cu_opn(r, j);
  const char *t = cu_is_bf16(r, n) ? "lt_bf16" : ctype(n->dtype), *c = is_out ? "" : "const ";
  cu_sb_printf(&r->b, "  %s%s* __restrict__ a%d = reinterpret_cast<%s%s*>(lt_tab[%d]);\n", c, t, j, c, t, j);
}

/* The launch of an update kernel: its operands as the table's entries. */
static int end_table(cu_rctx *r, unsigned grid, int nops) {
  if (r->b.oom) return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
  int f = add_fn(r, r->b.s);
  cu_ref *tab = malloc(sizeof *tab * (size_t)nops);
  if (f < 0 || !tab) {
    free(tab);
    return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
  }
  cu_refs(r, tab, nops);
  cu_launch l;
  memset(&l, 0, sizeof l);
  l.what = CU_L_KERNEL, l.fn = f;
  l.grid[0] = grid, l.grid[1] = l.grid[2] = 1;
  l.block[0] = EW_THREADS, l.block[1] = l.block[2] = 1;
  l.ntab = nops, l.tab = tab;
  if (cu_add_launch(r, &l)) {
    free(tab);
    return -1;
  }
  return 0;
}

/* Siblings: each group's results, then its inputs (pl_siblings.res and
 * inop). One group is one grid-stride loop over pointer arguments. Several
 * (every parameter's update, any number of operands: pl_target.upd_table)
 * are one function whose one argument is a table of the operands'
 * addresses: group g owns blocks [first_g, first_g+1) (the constants of an
 * if-chain, every shape known) and reads its own operands' addresses from
 * the table (one 8-byte load each a thread, the same address across the
 * block), so one launch updates every parameter. */
static int render_siblings(cu_rctx *r) {
  int nops = 1 + r->k->narg, ns = r->k->nsib, table = ns > 1;
  char (*name)[16] = malloc(sizeof *name * (size_t)nops);
  int *written = calloc((size_t)nops, sizeof *written);
  if (!name || !written) {
    free(name), free(written);
    return ir_fail(r->msg, r->msgn, "out of memory rendering CUDA C");
  }
  for (int g = 0; g < ns; g++)
    for (int m = 0; m < r->k->sib[g].n; m++) written[r->k->sib[g].res[m]] = 1;
  cu_begin(r, EW_THREADS);
  if (table) cu_sb_printf(&r->b, "const unsigned long long* __restrict__ lt_tab");
  for (int j = 0; j < nops; j++) {
    snprintf(name[j], sizeof name[j], "a%d", j);
    if (!table) cu_param(r, name[j], cu_opn(r, j), written[j]);
  }
  cu_sb_printf(&r->b, ") {\n  const long long bx = blockIdx.x;\n");
  int64_t first = 0;
  int rc = 0;
  for (int g = 0; g < ns && !rc; g++) {
    const pl_siblings *mu = &r->k->sib[g];
    int64_t count = ir_numel(&r->g->nodes[mu->node[0]].shape), nb = cu_blocks((count + 3) / 4, EW_THREADS);
    if (nb > SIB_MAX_BLOCKS) nb = SIB_MAX_BLOCKS;
    cu_sb_printf(&r->b, "  %sif (bx < %lldLL) {\n", g ? "else " : "", (long long)(first + nb));
    for (int m = 0; table && m < mu->n; m++) table_operand(r, mu->res[m], 1);
    for (int q = 0; table && q < mu->nin; q++) table_operand(r, mu->inop[q], 0);
    cu_sb_printf(&r->b, "  const long long t = (bx - %lldLL) * blockDim.x + threadIdx.x, st = %lldLL * blockDim.x;\n",
                 (long long)first, (long long)nb);
    rc = sibling_loops(r, mu, name);
    cu_sb_printf(&r->b, "  }\n");
    first += nb;
  }
  free(name), free(written);
  if (rc) return -1;
  cu_sb_printf(&r->b, "}\n");
  if (table) return end_table(r, (unsigned)first, nops);
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  return cu_end(r, (unsigned)first, EW_THREADS, ops, nops);
}

/* ---- matrix products ---- */

/* The driver gemm(s) of matmul node n into the buffer of `dst` (node):
 * one product, the batch folded into rows, or a strided batch. */
/* count f32 elements from src rounded to bf16 into the arena at byte at
 * (a product's f32 operand, a kernel's bf16 scratch: cu_as_bf16), four a
 * thread when both ends are 16-byte aligned (lt_st4 rounds each as the
 * scalar store does); its ref there. */
int cu_round_bf16(cu_rctx *r, cu_ref src, int64_t count, int64_t at, cu_ref *out) {
  int vec = count >= 4 && at % 16 == 0 && src.off % 16 == 0 && (src.node < 0 || vec_aligned(r, src.node));
  cu_begin(r, EW_THREADS);
  cu_sb_printf(&r->b, "const float* __restrict__ x, lt_bf16* __restrict__ y");
  if (vec) {
    cu_sb_printf(&r->b, ") {\n  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x,"
                        " st = (long long)gridDim.x * blockDim.x;\n");
    vec_loop_open(&r->b, count);
    cu_sb_printf(&r->b, "    lt_st4(y, q, reinterpret_cast<const float4*>(x)[q]);\n");
    vec_tail_open(&r->b, count);
  } else {
    cu_loop_open(&r->b, count);
  }
  cu_sb_printf(&r->b, "    y[e] = x[e];\n  }\n}\n");
  cu_ref ops[2] = {src, {CU_REF_ARENA, at}};
  *out = ops[1];
  return cu_end(r, cu_blocks(vec ? (count + 3) / 4 : count, EW_THREADS), EW_THREADS, ops, 2);
}

/* Operand `node` of a bf16 product rounded into the kernel's scratch at
 * byte `at` (a kernel before the product); its ref there. */
int cu_to_bf16(cu_rctx *r, int node, int64_t at, cu_ref *ref) {
  return cu_round_bf16(r, cu_ref_at(node, 0), ir_numel(&r->g->nodes[node].shape), at, ref);
}

/* --precision bf16: a product with a bf16 operand or result runs in bf16
 * (cuBLASLt's A and B share one type): an f32 operand (a master weight) is
 * rounded into the kernel's scratch first. */
static int bf16_operands(cu_rctx *r, const ir_node *n, int dst, cu_launch *l) {
  const ir_node *A = &r->g->nodes[n->in[0]], *B = &r->g->nodes[n->in[1]];
  int ba = cu_is_bf16(r, A), bb = cu_is_bf16(r, B), bc = cu_is_bf16(r, &r->g->nodes[dst]);
  l->gemm.c_type = bc ? CU_T_BF16 : CU_T_F32;
  if (!ba && !bb && !bc) return 0;
  l->gemm.ab_type = CU_T_BF16;
  int64_t scr = r->p->buf[r->k->node].scr, at = scr;
  if (scr < 0) return cu_unsupported(r, "no scratch for a bf16 product's operands");
  if (!ba && cu_to_bf16(r, n->in[0], at, &l->ga)) return -1;
  at += (2 * ir_numel(&A->shape) + 255) / 256 * 256;
  if (!bb && cu_to_bf16(r, n->in[1], at, &l->gb)) return -1;
  return 0;
}

/* A bf16 result's cuBLASLt epilogue reads a bias of its own type (D's):
 * the f32 bias (a master weight) rounded into the scratch after the
 * operands' (cu_scratch_bytes_bf16 keeps room). */
static int bf16_bias(cu_rctx *r, const ir_node *n, int bias, cu_launch *l) {
  int64_t a = ir_numel(&r->g->nodes[n->in[0]].shape), b = ir_numel(&r->g->nodes[n->in[1]].shape);
  int64_t at = r->p->buf[r->k->node].scr + (2 * a + 255) / 256 * 256 + (2 * b + 255) / 256 * 256;
  l->gemm.bias_type = CU_T_BF16;
  return cu_to_bf16(r, bias, at, &l->gbias);
}

static int gemm_of(cu_rctx *r, const ir_node *n, int dst, int epilogue, int bias) {
  const ir_node *A = &r->g->nodes[n->in[0]], *B = &r->g->nodes[n->in[1]];
  const ir_shape *sa = &A->shape, *sb = &B->shape;
  if (A->dtype != IR_F32 || B->dtype != IR_F32) return cu_unsupported(r, "a product of non-f32 operands");
  int ta = (n->attr.i & IR_MM_TA) != 0, tb = (n->attr.i & IR_MM_TB) != 0;
  int64_t m = sa->rank >= 2 ? sa->d[sa->rank - 2 + ta] : 1, k = sa->d[sa->rank - 1 - ta];
  int64_t p = sb->rank >= 2 ? sb->d[sb->rank - 1 - tb] : 1;
  int64_t nbatch = ir_numel(&n->shape) / (m * p > 0 ? m * p : 1);
  int64_t na = sa->rank > 2 ? ir_numel(sa) / (m * k) : 1, nb = sb->rank > 2 ? ir_numel(sb) / (k * p) : 1;
  if ((na != 1 && na != nbatch) || (nb != 1 && nb != nbatch))
    return cu_unsupported(r, "a product broadcasting both operands' batch dimensions");
  if (m > 2147483647 || k > 2147483647 || p > 2147483647) return cu_unsupported(r, "a product too large for int");
  cu_launch l;
  memset(&l, 0, sizeof l);
  l.what = CU_L_GEMM;
  cu_gemm *g = &l.gemm;
  g->trans_a = ta, g->trans_b = tb;
  g->k = (int)k, g->n = (int)p;
  g->lda = (int)(ta ? m : k), g->ldb = (int)(tb ? k : p), g->ldc = (int)p;
  g->alpha = 1.f, g->beta = 0.f;
  g->epilogue = epilogue;
  if (nbatch > 1 && nb == 1 && !ta) { /* [batch, m, k] @ [k, p]: batch * m rows */
    g->m = (int)(m * nbatch);
    g->batch = 1;
  } else {
    g->m = (int)m;
    g->batch = (int)nbatch;
    g->stride_a = na == 1 ? 0 : m * k, g->stride_b = nb == 1 ? 0 : k * p, g->stride_c = m * p;
  }
  l.ga.node = n->in[0], l.gb.node = n->in[1], l.gc.node = dst;
  l.gbias.node = bias;
  if (r->bf16 && bf16_operands(r, n, dst, &l)) return -1;
  if (epilogue != CU_EPI_NONE && l.gemm.c_type == CU_T_BF16 && bf16_bias(r, n, bias, &l)) return -1;
  return cu_add_launch(r, &l);
}

static int render_gemm(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  if (n->op != IR_MATMUL) return cu_render_by_op(r); /* convolutions: direct kernels */
  return gemm_of(r, n, r->k->node, CU_EPI_NONE, -1);
}

/* cuBLASLt's own epilogue for [bias row] or [bias row, relu | tanh-gelu]
 * (*done = every step); for any other chain that opens with a bias row
 * (the exact, erf GELU, which cuBLASLt does not have; a saved
 * pre-activation; further steps) the bias alone (*done = 1), the rest a
 * kernel after the product. A bf16 result's bias is rounded to bf16 first
 * (bf16_bias). */
static int lt_epilogue(const cu_rctx *r, const pl_epilogue *e, int *bias, int *done) {
  *done = 0;
  if (e->nsteps < 1 || e->kind[0] != PL_EPI_ROW || e->node[0]->op != IR_ADD) return 0;
  *bias = r->k->arg[e->arg[0] - 1];
  if (cu_is_bf16(r, &r->g->nodes[*bias])) return 0; /* a bf16 activation as the row: the kernel reads it */
  *done = 1;
  if (e->nsteps == 1 || e->save[0]) return CU_EPI_BIAS;
  if (e->nsteps > 2 || e->kind[1] != PL_EPI_UNARY || e->save[1]) return CU_EPI_BIAS;
  *done = 2;
  if (e->node[1]->op == IR_RELU) return CU_EPI_BIAS_RELU;
  if (e->node[1]->op == IR_GELU && e->node[1]->attr.approx) return CU_EPI_BIAS_GELU;
  *done = 1;
  return CU_EPI_BIAS;
}

/* The epilogue's steps from `done` on at element e: `float v` from the
 * product, each step applied, each saved value stored; lane >= 0: lane l
 * of float4 q, full operands from their registers w<j> (seen[j]) and saved
 * values into s<j>'s lane. */
static int epi_body(cu_rctx *r, const pl_epilogue *e, int done, int lane, const char *seen) {
  const ir_node *out = cu_opn(r, 0);
  int64_t N = out->shape.d[out->shape.rank - 1];
  if (lane >= 0) cu_sb_printf(&r->b, "    float v = w0.%c;\n", lane_c[lane]);
  else cu_sb_printf(&r->b, "    float v = a0[e];\n");
  for (int s = 0; s < e->nsteps; s++) {
    const ir_node *sn = e->node[s];
    char saved[32];
    if (lane >= 0) snprintf(saved, sizeof saved, "s%d.%c", e->save[s], lane_c[lane]);
    else snprintf(saved, sizeof saved, "a%d[e]", e->save[s]);
    if (s < done) { /* cuBLASLt's: only its saved value */
      if (e->save[s]) cu_sb_printf(&r->b, "    %s = v;\n", saved);
      continue;
    }
    char other[64];
    cu_sb_printf(&r->b, "    {\n");
    if (e->kind[s] == PL_EPI_UNARY) {
      cu_sb_printf(&r->b, "    v = ");
      if (cu_unary_expr(&r->b, sn->op, &sn->attr, "v")) return cu_unsupported(r, "epilogue step %s", ir_ops[sn->op].name);
    } else if (e->kind[s] == PL_EPI_ROW || e->kind[s] == PL_EPI_FULL) {
      if (e->kind[s] == PL_EPI_ROW) snprintf(other, sizeof other, "a%d[e %% %lldLL]", e->arg[s], (long long)N);
      else if (lane >= 0 && seen[e->arg[s]]) snprintf(other, sizeof other, "w%d.%c", e->arg[s], lane_c[lane]);
      else snprintf(other, sizeof other, "a%d[e]", e->arg[s]);
      cu_sb_printf(&r->b, "    v = ");
      if (cu_binary_expr(&r->b, sn->op, e->right[s] ? other : "v", e->right[s] ? "v" : other))
        return cu_unsupported(r, "epilogue step %s", ir_ops[sn->op].name);
    } else { /* a fused program reading the running value */
      char in[PL_MAXARGS][16];
      for (int j = 0; j < sn->nin; j++) {
        snprintf(in[j], sizeof in[j], "pv%d", j);
        int o = e->parg[s][j];
        if (o < 0) { cu_sb_printf(&r->b, "    float pv%d = v;\n", j); continue; }
        cu_sb_printf(&r->b, "    float pv%d = ", j);
        if (lane >= 0 && seen[o] && vec_full(r, &sn->shape, &r->g->nodes[sn->in[j]])) {
          cu_sb_printf(&r->b, "w%d.%c;\n", o, lane_c[lane]);
          continue;
        }
        char opn[16];
        snprintf(opn, sizeof opn, "a%d", o);
        cu_load(&r->b, opn, &sn->shape, &r->g->nodes[sn->in[j]], "e");
        cu_sb_printf(&r->b, ";\n");
      }
      if (fused_body(r, sn->fusion, "p", in)) return -1;
      cu_sb_printf(&r->b, "    v = ps%d", sn->fusion->nsteps - 1);
    }
    cu_sb_printf(&r->b, ";\n    }\n");
    if (e->save[s]) cu_sb_printf(&r->b, "    %s = v;\n", saved);
  }
  return 0;
}

/* The epilogue kernel runs four elements a thread when its result and
 * every saved value are f32 (stored as f32 or bf16) and it has at least 4
 * elements. */
static int epi_vec_ok(const cu_rctx *r, const pl_epilogue *e) {
  const ir_node *out = cu_opn(r, 0);
  if (!vec_full(r, &out->shape, out) || ir_numel(&out->shape) < 4) return 0;
  for (int s = 0; s < e->nsteps; s++)
    if (e->save[s] && !vec_full(r, &out->shape, cu_opn(r, e->save[s]))) return 0;
  return 1;
}

/* The epilogue as a kernel over the product stored in operand 0 (its
 * steps from `done` on; the ones before were cuBLASLt's). */
static int render_gemm_epi(cu_rctx *r) {
  const pl_epilogue *e = r->k->epi;
  const ir_node *h = &r->g->nodes[r->k->head], *out = cu_opn(r, 0);
  int bias = -1, done = 0, lt = lt_epilogue(r, e, &bias, &done);
  if (gemm_of(r, h, r->k->node, lt ? lt : CU_EPI_NONE, bias)) return -1;
  if (done && done == e->nsteps && !e->save[done - 1]) return 0;
  int nops = 1 + r->k->narg, gone = done ? e->arg[0] : -1; /* the bias, when only cuBLASLt reads it */
  for (int s = done; s < e->nsteps && gone > 0; s++) {
    if (e->kind[s] == PL_EPI_ROW || e->kind[s] == PL_EPI_FULL) gone = e->arg[s] == gone ? -1 : gone;
    if (e->kind[s] != PL_EPI_UNARY && e->kind[s] != PL_EPI_ROW && e->kind[s] != PL_EPI_FULL)
      for (int j = 0; j < e->node[s]->nin; j++) gone = e->parg[s][j] == gone ? -1 : gone;
  }
  char name[CU_MAXOPS][16];
  cu_begin(r, EW_THREADS);
  for (int j = 0; j < nops; j++) {
    snprintf(name[j], sizeof name[j], "a%d", j);
    int stored = j == 0;
    for (int s = 0; s < e->nsteps; s++) stored |= e->save[s] == j;
    if (j == 1 || j == 2 || j == gone) continue; /* the product's operands (and bias): read by the gemm */
    cu_param(r, name[j], cu_opn(r, j), stored);
  }
  int64_t count = ir_numel(&out->shape);
  int vec = epi_vec_ok(r, e);
  if (!vec) {
    cu_loop_open(&r->b, count);
  } else {
    char seen[CU_MAXOPS] = {0};
    cu_sb_printf(&r->b, ") {\n  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x,"
                        " st = (long long)gridDim.x * blockDim.x;\n");
    vec_loop_open(&r->b, count);
    vec_load(r, out, 0, "a0");
    cu_sb_printf(&r->b, "    float4 o4;\n");
    for (int s = 0; s < e->nsteps; s++) {
      if (s >= done && e->kind[s] == PL_EPI_FULL && !seen[e->arg[s]] && vec_full(r, &out->shape, cu_opn(r, e->arg[s]))) {
        seen[e->arg[s]] = 1;
        vec_load(r, cu_opn(r, e->arg[s]), e->arg[s], name[e->arg[s]]);
      }
      for (int j = 0; s >= done && e->kind[s] == PL_EPI_PROGRAM && j < e->node[s]->nin; j++) {
        int o = e->parg[s][j];
        if (o < 0 || seen[o] || !vec_full(r, &e->node[s]->shape, &r->g->nodes[e->node[s]->in[j]])) continue;
        seen[o] = 1;
        vec_load(r, &r->g->nodes[e->node[s]->in[j]], o, name[o]);
      }
      if (e->save[s]) cu_sb_printf(&r->b, "    float4 s%d;\n", e->save[s]);
    }
    for (int l = 0; l < 4; l++) {
      cu_sb_printf(&r->b, "    {\n    const long long e = q * 4 + %d;\n    (void)e;\n", l);
      if (epi_body(r, e, done, l, seen)) return -1;
      cu_sb_printf(&r->b, "    o4.%c = v;\n    }\n", lane_c[l]);
    }
    vec_store(r, out, "a0", "o4");
    for (int s = 0; s < e->nsteps; s++) {
      char sv[16];
      snprintf(sv, sizeof sv, "s%d", e->save[s]);
      if (e->save[s]) vec_store(r, cu_opn(r, e->save[s]), name[e->save[s]], sv);
    }
    vec_tail_open(&r->b, count);
  }
  if (epi_body(r, e, done, -1, NULL)) return -1;
  cu_sb_printf(&r->b, "    a0[e] = v;\n  }\n}\n");
  cu_ref ops[CU_MAXOPS];
  int no = 0;
  for (int j = 0; j < nops; j++)
    if (j != 1 && j != 2 && j != gone) ops[no].node = cu_opnode(r, j), ops[no++].off = 0;
  return cu_end(r, cu_blocks(count, EW_THREADS), EW_THREADS, ops, no);
}

/* Kernels q1 < q2, a weight gradient's product and its bias gradient's
 * column sum (cu_bgrad.c), as the product with cuBLASLt's bias-gradient
 * epilogue: launched as the product's plan kernel at q1's place. */
static int render_bgrad_pair(cu_rctx *r, int q1, int q2) {
  int m = r->p->k[q1].kind == PL_K_GEMM ? q1 : q2, s = m == q1 ? q2 : q1;
  r->pk = m, r->k = &r->p->k[m];
  if (render_gemm(r)) return -1;
  cu_launch *l = &r->out->l[r->out->nl - 1];
  l->gemm.epilogue = CU_EPI_BGRAD_B, l->gemm.bias_type = CU_T_F32;
  l->gbias = cu_ref_at(r->p->k[s].node, 0);
  return 0;
}

/* ---- the table ---- */

static int64_t cu_scratch_bytes(const ir_graph *g, const ir_node *n);

static const cu_render_fn by_kind[PL_NKINDS] = {
  [PL_K_GEMM_EPI] = render_gemm_epi,     [PL_K_SIBLINGS] = render_siblings,
  [PL_K_ADD_NORM] = cu_render_by_op,     [PL_K_NORM_GRAD_ADD] = cu_render_by_op,
  [PL_K_GEMM] = render_gemm,             [PL_K_ELEMENTWISE] = render_elementwise,
  [PL_K_ROWS] = cu_render_by_op,         [PL_K_MOVE] = cu_render_by_op,
  [PL_K_LOSS] = cu_render_by_op,         [PL_K_OTHER] = cu_render_by_op,
  [PL_K_ATTENTION] = cu_render_by_op,    [PL_K_RECURRENCE] = cu_render_by_op,
};

cu_render_fn cu_op_renderer(int op) {
  cu_render_fn f = cu_rows_renderer(op);
  if (!f) f = cu_misc_renderer(op);
  if (!f) f = cu_seq_renderer(op);
  if (!f) f = cu_mha_renderer(op);
  if (!f) f = cu_comm_renderer(op);
  if (!f) f = cu_quant_renderer(op);
  return f;
}

int cu_op_rendered(int op) {
  if (op < 0 || op >= IR_NOPS) return 0;
  int cat = ir_ops[op].cat;
  if (cat == IR_CAT_LEAF || cat == IR_CAT_FUSED || op == IR_MATMUL || op == IR_UNARY_GRAD || op == IR_WHERE ||
      op == IR_CAST || cu_op_renderer(op))
    return 1;
  /* the elementwise maps: the expression node_value would write */
  cu_sb b = {0};
  ir_attr a;
  memset(&a, 0, sizeof a);
  int ok = (cat == IR_CAT_UNARY || op == IR_SIGN) ? !cu_unary_expr(&b, op, &a, "x")
           : cat == IR_CAT_BINARY || ir_ops[op].arity == 2 ? !cu_binary_expr(&b, op, "x", "y") : 0;
  free(b.s);
  return ok;
}

int cu_render(const pl_plan *p, cu_program *out, char *msg, size_t n) { return cu_render_prec(p, NULL, out, msg, n); }

int cu_render_prec(const pl_plan *p, const unsigned char *bf16, cu_program *out, char *msg, size_t n) {
  memset(out, 0, sizeof *out);
  cu_rctx r = {.p = p, .g = p->g, .out = out, .msg = msg, .msgn = n, .bf16 = bf16};
  int *partner = malloc(sizeof(int) * (size_t)(p->nk ? p->nk : 1));
  int rc = !partner || cu_bgrad_pairs(p, bf16, partner) ? ir_fail(msg, n, "out of memory rendering CUDA C") : 0;
  for (int i = 0; i < p->nk && !rc; i++) {
    r.pk = i, r.k = &p->k[i];
    if (partner[i] >= 0) { /* a weight gradient and its bias gradient: one product, at the earlier's place */
      if (partner[i] < i) continue;
      rc = render_bgrad_pair(&r, i, partner[i]);
      continue;
    }
    cu_render_fn f = r.k->kind < PL_NKINDS ? by_kind[r.k->kind] : NULL;
    rc = f ? f(&r) : cu_unsupported(&r, "the kind is not rendered");
  }
  free(r.b.s);
  free(partner);
  /* name the functions: @K@ becomes each one's name */
  for (int f = 0; f < out->nfn && !rc; f++) {
    char *at = strstr(out->fn[f].src, "@K@");
    if (!at) continue;
    size_t pre = (size_t)(at - out->fn[f].src), nl = strlen(out->fn[f].name), rest = strlen(at + 3);
    char *s = malloc(pre + nl + rest + 1);
    if (!s) { rc = ir_fail(msg, n, "out of memory rendering CUDA C"); break; }
    memcpy(s, out->fn[f].src, pre);
    memcpy(s + pre, out->fn[f].name, nl);
    memcpy(s + pre + nl, at + 3, rest + 1);
    free(out->fn[f].src);
    out->fn[f].src = s;
  }
  if (rc) cu_program_free(out);
  return rc;
}

void cu_program_free(cu_program *cp) {
  if (!cp) return;
  for (int f = 0; f < cp->nfn; f++) free(cp->fn[f].src), free(cp->fn[f].name);
  free(cp->fn);
  for (int l = 0; l < cp->nl; l++) free(cp->l[l].tab);
  free(cp->l);
  memset(cp, 0, sizeof *cp);
}

/* ---- the plan target ---- */

static int64_t cu_scratch_bytes(const ir_graph *g, const ir_node *n) {
  /* attention keeps qkv [B*T, 3d] and the heads' context [B*T, d] */
  if (n->op == IR_ATTENTION) return 4 * 4 * ir_numel(&g->nodes[n->in[0]].shape);
  if (n->op == IR_ATTENTION_GRAD || n->op == IR_ATTENTION_GRAD_SAVED) return cu_attention_grad_scratch(g, n);
  if (n->op == IR_RNN || n->op == IR_LSTM || n->op == IR_GRU || n->op == IR_RNN_GRAD || n->op == IR_LSTM_GRAD ||
      n->op == IR_GRU_GRAD)
    return cu_seq_scratch(g, n);
  if (n->op == IR_MHA || n->op == IR_MHA_GRAD) return cu_mha_scratch(g, n);
  if (n->op == IR_QMATMUL || n->op == IR_QCONV2D) return cu_quant_scratch(g, n); /* quantized rows or weights */
  /* the weighted or ignoring cross-entropy's gradient: the rows' total weight, the classes' */
  if (n->op == IR_CROSS_ENTROPY_GRAD && (n->nin == 4 || n->attr.k)) return 4 * (int64_t)sizeof(float);
  /* layernorm's weight gradient keeps each row's mean and 1/std */
  if (n->op == IR_LAYERNORM_GRAD && n->attr.i == 1) {
    const ir_shape *x = &g->nodes[n->in[0]].shape;
    return 2 * (int64_t)sizeof(float) * (ir_numel(x) / x->d[x->rank - 1]);
  }
  /* norm_grad's weight gradient keeps each group's mean and 1/std */
  if (n->op == IR_NORM_GRAD && n->attr.i == 1) {
    rt_norm_geom ng = ir_norm_geom_of((int)n->attr.k, &g->nodes[n->in[0]].shape, n->attr.n, n->attr.f);
    return 2 * (int64_t)sizeof(float) * (ng.ngroups > 0 ? ng.ngroups : 1);
  }
  return 0;
}

static int cu_epilogue_unary(int op) {
  return op != IR_LOG && op != IR_POW && op != IR_CLAMP && op != IR_CAST && op != IR_DROPOUT &&
         ir_ops[op].cat == IR_CAT_UNARY;
}

static const pl_target cuda_target = {"cuda", cu_scratch_bytes, cu_epilogue_unary, 0, NULL, NULL, 1};
const pl_target *cu_plan_target(void) { return &cuda_target; }

/* --precision bf16: a product may round its f32 operands (bf16_operands)
 * and its epilogue's bias (bf16_bias) into scratch, each at a 256-byte
 * boundary. */
static int64_t cu_scratch_bytes_bf16(const ir_graph *g, const ir_node *n) {
  if (n->op == IR_ATTENTION) return cu_attention_scratch_bf16(g, n);
  if (n->op == IR_ATTENTION_SAVE || n->op == IR_ATTENTION_GRAD || n->op == IR_ATTENTION_GRAD_SAVED)
    return cu_attention_train_scratch_bf16(g, n);
  if (n->op == IR_RNN || n->op == IR_LSTM || n->op == IR_GRU) return cu_seq_scratch_bf16(g, n);
  if (n->op == IR_MHA || n->op == IR_MHA_GRAD) return cu_mha_scratch_bf16(g, n);
  if (n->op == IR_RNN_GRAD || n->op == IR_LSTM_GRAD || n->op == IR_GRU_GRAD) return cu_seq_grad_scratch_bf16(g, n);
  if (n->op != IR_MATMUL) return cu_scratch_bytes(g, n);
  int64_t a = ir_numel(&g->nodes[n->in[0]].shape), b = ir_numel(&g->nodes[n->in[1]].shape);
  int64_t cols = n->shape.rank ? n->shape.d[n->shape.rank - 1] : 1;
  return (2 * a + 255) / 256 * 256 + (2 * b + 255) / 256 * 256 + (2 * cols + 255) / 256 * 256;
}
static const pl_target cuda_target_bf16 = {"cuda", cu_scratch_bytes_bf16, cu_epilogue_unary, 0, NULL, NULL, 1};
const pl_target *cu_plan_target_bf16(void) { return &cuda_target_bf16; }
