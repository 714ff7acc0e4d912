/* cx_launch.c: one kernel launch on the CPU. Blocks run one after another;
 * within a block every GPU thread is a fiber (a small stack switch on x86-64,
 * ucontext elsewhere) when the kernel reaches
 * barriers or warp collectives, so __syncthreads and shuffles meet as on a
 * GPU: a fiber runs until it reaches one, and the scheduler releases a
 * barrier when every live thread of the block (a collective: every lane of its
 * mask) has arrived. Modules without them run thread after thread on the
 * caller's stack. A fault in a kernel (a guard page of cx_mem.c, a bad
 * pointer, __trap, a deadlock) ends the launch with a message naming the
 * kernel, the block and the thread. Under AddressSanitizer every stack switch
 * is announced with its fiber annotations. One launch at a time per process
 * (the fault handlers are process-wide). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "cx.h"

#if defined(__SANITIZE_ADDRESS__)
#define CX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CX_ASAN 1
#endif
#endif
#ifdef CX_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* ---- a context: the stack switch (ucontext's swapcontext makes a signal-
 * mask system call per switch, ten times the cost of the switch itself) ---- */
#if defined(__x86_64__) && !defined(CX_UCONTEXT) /* -DCX_UCONTEXT: the portable path */
/* cx_swap(&save, to): pushes the callee-saved registers and the SSE and x87
 * control words, saves the stack pointer in *save, continues on `to`'s. */
__asm__(".text\n"
        ".p2align 4\n"
        "cx_swap:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n");
void cx_swap(void **save, void *to) __asm__("cx_swap");
typedef struct cx_ctx { void *sp; } cx_ctx;
/* A fresh stack laid out as cx_swap leaves one: control words, six
 * registers, then fn as the return address, 16-byte aligned as at a call. */
static void cx_ctx_make(cx_ctx *c, unsigned char *stack, size_t size, void (*fn)(void)) {
  uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
  uint64_t *sp = (uint64_t *)(top - 16);
  sp[1] = 0; /* no caller */
  sp[0] = (uint64_t)(uintptr_t)fn;
  sp -= 7;
  memset(sp, 0, 7 * sizeof *sp);
  uint32_t csr = 0x1f80, cw = 0x037f; /* the ABI's initial SSE and x87 modes */
  memcpy(sp, &csr, 4);
  memcpy((char *)sp + 4, &cw, 4);
  c->sp = sp;
}
static void cx_ctx_swap(cx_ctx *from, cx_ctx *to) { cx_swap(&from->sp, to->sp); }
#else
typedef struct cx_ctx { ucontext_t uc; } cx_ctx;
static void cx_ctx_make(cx_ctx *c, unsigned char *stack, size_t size, void (*fn)(void)) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = NULL;
  makecontext(&c->uc, fn, 0);
}
static void cx_ctx_swap(cx_ctx *from, cx_ctx *to) { swapcontext(&from->uc, &to->uc); }
#endif

enum { CX_RUN, CX_BAR, CX_WARP, CX_DONE };
enum { CX_STACK = 256 << 10, CX_ALTSTACK = 256 << 10, CX_MAX_SHMEM = 48 << 10 };

typedef struct cx_fiber {
  cx_ctx ctx;
  unsigned char *stack;        /* lowest usable byte; CX_STACK bytes */
  int state;                   /* CX_RUN ... */
  unsigned mask;               /* CX_WARP: the collective's mask */
  const unsigned char *mine;   /* CX_WARP: this lane's value */
  unsigned char *all;          /* CX_WARP: where the warp's values go */
  unsigned got;                /* lanes delivered into all */
  cx_dim3 tid;
  void *fake;                  /* ASan's fake stack while switched away */
} cx_fiber;

/* Fiber stacks, kept across launches: one mapping, a guard page below each. */
typedef struct cx_stacks {
  unsigned char *map;
  size_t len;
  int count;
} cx_stacks;

typedef struct cx_run {
  cu_driver *d;
  cx_state *s;
  cx_kernel *k;
  void **args;
  cx_api api;
  cx_fiber *f;
  int n;                       /* threads per block */
  int fibers;
  int cur;                     /* running fiber, -1: the scheduler */
  cx_ctx sched;
  const void *sched_bottom;    /* the scheduler's stack, for ASan */
  size_t sched_size;
  sigjmp_buf escape;
  int in_kernel;
  int started;                 /* blocks began: failures name a thread */
  unsigned char *shmem_map;    /* dynamic shared memory with a guard page after */
  size_t shmem_len;
  char why[200];
  int failed;
} cx_run;

static _Thread_local cx_run *cx_cur;

/* ---- failing: a message with the place, then back to cx_launch ---- */

static void cx_note(cx_run *r, const char *why) {
  if (r->failed) return;
  r->failed = 1;
  snprintf(r->why, sizeof r->why, "%s", why);
}

static _Noreturn void cx_escape(cx_run *r) {
#ifdef CX_ASAN
  if (r->cur >= 0) __sanitizer_start_switch_fiber(NULL, r->sched_bottom, r->sched_size);
#endif
  siglongjmp(r->escape, 1);
}

static void cx_api_trap(const char *why) {
  cx_note(cx_cur, why);
  cx_escape(cx_cur);
}

/* ---- fibers ---- */

static void cx_to_sched(cx_run *r, cx_fiber *f, int dying) {
#ifdef CX_ASAN
  __sanitizer_start_switch_fiber(dying ? NULL : &f->fake, r->sched_bottom, r->sched_size);
#endif
  cx_ctx_swap(&f->ctx, &r->sched);
#ifdef CX_ASAN
  __sanitizer_finish_switch_fiber(f->fake, &r->sched_bottom, &r->sched_size);
#endif
  (void)dying;
}

static void cx_fiber_main(void) {
  cx_run *r = cx_cur;
#ifdef CX_ASAN
  __sanitizer_finish_switch_fiber(NULL, &r->sched_bottom, &r->sched_size);
#endif
  cx_fiber *f = &r->f[r->cur];
  r->k->run(r->args);
  f->state = CX_DONE;
  cx_to_sched(r, f, 1);
  abort(); /* a finished fiber is never resumed */
}

static void cx_resume(cx_run *r, int i) {
  r->cur = i;
  r->api.threadIdx = r->f[i].tid;
#ifdef CX_ASAN
  void *fake = NULL;
  __sanitizer_start_switch_fiber(&fake, r->f[i].stack, CX_STACK);
#endif
  cx_ctx_swap(&r->sched, &r->f[i].ctx);
#ifdef CX_ASAN
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
  r->cur = -1;
}

static cx_fiber *cx_self(const char *what) {
  cx_run *r = cx_cur;
  if (!r->fibers || r->cur < 0) {
    char why[160];
    snprintf(why, sizeof why, "%s in a kernel the executor found no barrier in (cx_module.c's scan missed it)", what);
    cx_api_trap(why);
  }
  return &r->f[r->cur];
}

static void cx_api_sync_block(void) {
  cx_fiber *f = cx_self("__syncthreads");
  f->state = CX_BAR;
  cx_to_sched(cx_cur, f, 0);
}

static unsigned cx_api_exchange(unsigned mask, const void *mine, void *all) {
  cx_fiber *f = cx_self("a warp collective");
  unsigned lane = (unsigned)(f - cx_cur->f) & 31u;
  if (!(mask >> lane & 1u)) {
    char why[160];
    snprintf(why, sizeof why, "lane %u calls a warp collective whose mask 0x%08x leaves it out", lane, mask);
    cx_api_trap(why);
  }
  f->state = CX_WARP, f->mask = mask, f->mine = mine, f->all = all, f->got = 0;
  cx_to_sched(cx_cur, f, 0);
  return f->got;
}

static void cx_api_sync_warp(unsigned mask) {
  unsigned char mine[CX_LANE_BYTES] = {0}, all[32 * CX_LANE_BYTES];
  cx_api_exchange(mask, mine, all);
}

/* Lanes of the running thread's warp that exist and have not exited. */
static unsigned cx_api_active_mask(void) {
  cx_run *r = cx_cur;
  int me = r->cur >= 0 ? r->cur : 0, w0 = me & ~31;
  unsigned m = 0;
  for (int i = w0; i < w0 + 32 && i < r->n; i++)
    if (!r->fibers || r->f[i].state != CX_DONE) m |= 1u << (i - w0);
  return m;
}

static void cx_api_check_ptr(int arg, const void *p) {
  cx_run *r = cx_cur;
  if (!p || cx_mem_find(&r->s->mem, (uintptr_t)p)) return;
  char why[160];
  snprintf(why, sizeof why, "argument %d is %p, which is not device memory (a host pointer?)", arg, p);
  cx_note(r, why);
}

/* ---- the scheduler of one block ---- */

static int cx_stacks_ready(cx_state *s, int n, char *err, size_t errlen) {
  cx_stacks *st = s->stacks;
  if (st && st->count >= n) return 0;
  if (!st && !(st = s->stacks = calloc(1, sizeof *st))) {
    snprintf(err, errlen, "launch: out of host memory");
    return 1;
  }
  if (st->map) munmap(st->map, st->len);
  size_t page = (size_t)sysconf(_SC_PAGESIZE), each = CX_STACK + page;
  st->len = each * (size_t)n, st->count = 0;
  st->map = mmap(NULL, st->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (st->map == MAP_FAILED) {
    st->map = NULL;
    snprintf(err, errlen, "launch: cannot map %d fiber stacks", n);
    return 1;
  }
  for (int i = 0; i < n; i++) mprotect(st->map + each * (size_t)i, page, PROT_NONE);
  st->count = n;
  return 0;
}

static unsigned char *cx_stack(cx_state *s, int i) {
  cx_stacks *st = s->stacks;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return st->map + (CX_STACK + page) * (size_t)i + page;
}

static int cx_in_stack_guard(cx_state *s, uint64_t addr) {
  cx_stacks *st = s->stacks;
  if (!st || !st->map) return 0;
  uint64_t lo = (uintptr_t)st->map, each = CX_STACK + (uint64_t)sysconf(_SC_PAGESIZE);
  return addr >= lo && addr < lo + st->len && (addr - lo) % each < each - CX_STACK;
}

/* Releases every collective whose mask lanes have all arrived with the same
 * mask; 1 if any was released, -1 on a lane that exited first. */
static int cx_release_warps(cx_run *r) {
  int released = 0;
  for (int l = 0; l < r->n; l++) {
    cx_fiber *f = &r->f[l];
    if (f->state != CX_WARP || f->got) continue;
    int w0 = l & ~31, ok = 1;
    unsigned group = 0;
    for (int j = w0; j < w0 + 32 && j < r->n; j++) {
      if (!(f->mask >> (j - w0) & 1u)) continue;
      if (r->f[j].state == CX_DONE) {
        char why[200];
        r->api.threadIdx = f->tid;
        snprintf(why, sizeof why,
                 "warp %d: lane %d exited before the warp collective of lane %d (mask 0x%08x)", l / 32,
                 j - w0, l - w0, f->mask);
        cx_note(r, why);
        return -1;
      }
      ok &= r->f[j].state == CX_WARP && r->f[j].mask == f->mask && !r->f[j].got;
      group |= 1u << (j - w0);
    }
    if (!ok) continue;
    for (int to = w0; to < w0 + 32 && to < r->n; to++) {
      if (!(group >> (to - w0) & 1u)) continue;
      for (int from = w0; from < w0 + 32 && from < r->n; from++)
        if (group >> (from - w0) & 1u)
          memcpy(r->f[to].all + (from - w0) * CX_LANE_BYTES, r->f[from].mine, CX_LANE_BYTES);
    }
    for (int to = w0; to < w0 + 32 && to < r->n; to++)
      if (group >> (to - w0) & 1u) r->f[to].got = group;
    released = 1;
  }
  for (int l = 0; l < r->n; l++)
    if (r->f[l].state == CX_WARP && r->f[l].got) r->f[l].state = CX_RUN;
  return released;
}

static void cx_deadlock(cx_run *r) {
  int bar = 0, warp = 0, done = 0, first = -1;
  for (int i = 0; i < r->n; i++) {
    bar += r->f[i].state == CX_BAR, done += r->f[i].state == CX_DONE;
    if (r->f[i].state == CX_WARP && warp++ == 0) first = i;
  }
  char why[200];
  for (int i = 0; i < r->n; i++)
    if (i == first || (first < 0 && r->f[i].state == CX_BAR)) {
      r->api.threadIdx = r->f[i].tid; /* the message names a waiting thread */
      break;
    }
  if (first >= 0)
    snprintf(why, sizeof why,
             "deadlock: %d threads wait at __syncthreads, %d at warp collectives (first: thread %d, "
             "mask 0x%08x), %d exited", bar, warp, first, r->f[first].mask, done);
  else
    snprintf(why, sizeof why, "deadlock: %d threads wait at __syncthreads, %d exited", bar, done);
  cx_note(r, why);
}

/* Out of line: ucontext's getcontext returns twice, which upsets a loop. */
static __attribute__((noinline)) void cx_fiber_init(cx_run *r, int i) {
  cx_fiber *f = &r->f[i];
  memset(f, 0, sizeof *f);
  f->stack = cx_stack(r->s, i);
  f->tid.x = (unsigned)i % r->api.blockDim.x;
  f->tid.y = (unsigned)i / r->api.blockDim.x % r->api.blockDim.y;
  f->tid.z = (unsigned)i / (r->api.blockDim.x * r->api.blockDim.y);
#ifdef CX_ASAN
  __asan_unpoison_memory_region(f->stack, CX_STACK);
#endif
  cx_ctx_make(&f->ctx, f->stack, CX_STACK, cx_fiber_main);
}

static void cx_run_block_fibers(cx_run *r) {
  for (int i = 0; i < r->n; i++) cx_fiber_init(r, i);
  for (;;) {
    for (int i = 0; i < r->n; i++)
      if (r->f[i].state == CX_RUN) cx_resume(r, i);
    int live = 0, bar = 0;
    for (int i = 0; i < r->n; i++) live += r->f[i].state != CX_DONE, bar += r->f[i].state == CX_BAR;
    if (live == 0) return;
    if (bar == live) {
      for (int i = 0; i < r->n; i++)
        if (r->f[i].state == CX_BAR) r->f[i].state = CX_RUN;
      continue;
    }
    int rel = cx_release_warps(r);
    if (rel < 0) return;
    if (rel == 0) {
      cx_deadlock(r);
      return;
    }
  }
}

static void cx_run_block_plain(cx_run *r) {
  const cx_dim3 bd = r->api.blockDim;
  for (unsigned z = 0; z < bd.z; z++)
    for (unsigned y = 0; y < bd.y; y++)
      for (unsigned x = 0; x < bd.x; x++) {
        r->api.threadIdx = (cx_dim3){x, y, z};
        r->k->run(r->args);
      }
}

/* ---- faults ---- */

static void cx_on_signal(int sig, siginfo_t *si, void *ucv) {
  cx_run *r = cx_cur;
  if (!r || !r->in_kernel) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  uint64_t addr = (uintptr_t)si->si_addr;
  const char *rw = "access";
#if defined(__x86_64__) && defined(REG_ERR)
  rw = ((ucontext_t *)ucv)->uc_mcontext.gregs[REG_ERR] & 2 ? "write" : "read";
#else
  (void)ucv;
#endif
  char where[160], why[200];
  uint64_t sh = (uintptr_t)r->shmem_map, page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (sig == SIGFPE)
    snprintf(why, sizeof why, "arithmetic exception (integer division by zero?)");
  else if (cx_mem_describe_fault(&r->s->mem, addr, where, sizeof where))
    snprintf(why, sizeof why, "out-of-range %s at %s", rw, where);
  else if (r->shmem_map && addr >= sh + r->shmem_len - page && addr < sh + r->shmem_len)
    snprintf(why, sizeof why, "out-of-range %s of dynamic shared memory: byte %llu of %u", rw,
             (unsigned long long)(addr - (uintptr_t)r->api.dyn_shared), r->api.dyn_shared_bytes);
  else if (cx_in_stack_guard(r->s, addr))
    snprintf(why, sizeof why, "stack overflow of a GPU thread (the executor gives each %d KiB)",
             CX_STACK >> 10);
  else
    snprintf(why, sizeof why, "%s %s at %p, near no device allocation (a host or wild pointer?)",
             sig == SIGBUS ? "bus error" : "segmentation fault:", rw, si->si_addr);
  cx_note(r, why);
  cx_escape(r);
}

static int cx_dims_ok(const unsigned g[3], const unsigned b[3], unsigned shmem, char *err, size_t errlen) {
  static const unsigned gmax[3] = {0x7fffffffu, 65535, 65535}, bmax[3] = {1024, 1024, 64};
  for (int i = 0; i < 3; i++)
    if (g[i] == 0 || g[i] > gmax[i] || b[i] == 0 || b[i] > bmax[i]) {
      snprintf(err, errlen, "launch: grid (%u,%u,%u) block (%u,%u,%u) is outside the device's limits",
               g[0], g[1], g[2], b[0], b[1], b[2]);
      return 1;
    }
  if ((unsigned long long)b[0] * b[1] * b[2] > 1024) {
    snprintf(err, errlen, "launch: block (%u,%u,%u) has more than 1024 threads", b[0], b[1], b[2]);
    return 1;
  }
  if (shmem > CX_MAX_SHMEM) {
    snprintf(err, errlen, "launch: %u bytes of dynamic shared memory; above 48 KiB a kernel needs "
             "cuFuncSetAttribute, which the driver seam does not have", shmem);
    return 1;
  }
  return 0;
}

int cx_launch(cu_driver *d, cx_kernel *k, const unsigned grid[3], const unsigned block[3],
              unsigned shmem_bytes, void **args) {
  cx_state *s = d->self;
  if (cx_dims_ok(grid, block, shmem_bytes, d->err, sizeof d->err)) return 1;
  int n = (int)(block[0] * block[1] * block[2]);
  int fibers = k->fibers || s->force_fibers;
  if (fibers && cx_stacks_ready(s, n, d->err, sizeof d->err)) return 1;

  cx_run *r = calloc(1, sizeof *r);
  cx_fiber *f = fibers ? calloc((size_t)n, sizeof *f) : NULL;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t sh_span = (shmem_bytes + 15u) / 16u * 16u, sh_data = (sh_span + page - 1) / page * page;
  unsigned char *sh = mmap(NULL, sh_data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void *alt = malloc(CX_ALTSTACK);
  if (!r || (fibers && !f) || sh == MAP_FAILED || !alt) {
    if (sh != MAP_FAILED) munmap(sh, sh_data + page);
    free(r), free(f), free(alt);
    snprintf(d->err, sizeof d->err, "launch: out of host memory");
    return 1;
  }
  mprotect(sh + sh_data, page, PROT_NONE);
  r->d = d, r->s = s, r->k = k, r->args = args, r->f = f, r->n = n, r->fibers = fibers, r->cur = -1;
  r->shmem_map = sh, r->shmem_len = sh_data + page;
  r->api.gridDim = (cx_dim3){grid[0], grid[1], grid[2]};
  r->api.blockDim = (cx_dim3){block[0], block[1], block[2]};
  r->api.dyn_shared = sh + sh_data - sh_span;
  r->api.dyn_shared_bytes = shmem_bytes;
  r->api.self = s;
  r->api.sync_block = cx_api_sync_block;
  r->api.sync_warp = cx_api_sync_warp;
  r->api.warp_exchange = cx_api_exchange;
  r->api.active_mask = cx_api_active_mask;
  r->api.trap = cx_api_trap;
  r->api.check_ptr = cx_api_check_ptr;

  cx_run *outer = cx_cur;
  cx_cur = r;
  k->mod->bind(&r->api);
  k->ptrs(args); /* pointer arguments must be device memory */

  stack_t ss = {.ss_sp = alt, .ss_size = CX_ALTSTACK}, old_ss;
  struct sigaction sa, old[3];
  static const int sigs[3] = {SIGSEGV, SIGBUS, SIGFPE};
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = cx_on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaltstack(&ss, &old_ss);
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, &old[i]);

  if (!r->failed && sigsetjmp(r->escape, 1) == 0) {
    r->in_kernel = 1, r->started = 1;
    for (unsigned z = 0; z < grid[2] && !r->failed; z++)
      for (unsigned y = 0; y < grid[1] && !r->failed; y++)
        for (unsigned x = 0; x < grid[0] && !r->failed; x++) {
          r->api.blockIdx = (cx_dim3){x, y, z};
          memset(r->api.dyn_shared, 0xff, sh_span); /* shared memory starts undefined */
          if (fibers) cx_run_block_fibers(r);
          else cx_run_block_plain(r);
        }
  } else {
#ifdef CX_ASAN
    if (r->cur >= 0) __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
  }
  r->in_kernel = 0;
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);
  sigaltstack(&old_ss, NULL);
  cx_cur = outer;
  s->launches++;

  int rc = 0;
  if (r->failed && !r->started) {
    snprintf(d->err, sizeof d->err, "kernel %.48s: %.150s", k->name, r->why);
    rc = 1;
  } else if (r->failed) {
    snprintf(d->err, sizeof d->err, "kernel %.48s, block (%u,%u,%u), thread (%u,%u,%u): %.150s", k->name,
             r->api.blockIdx.x, r->api.blockIdx.y, r->api.blockIdx.z, r->api.threadIdx.x,
             r->api.threadIdx.y, r->api.threadIdx.z, r->why);
    rc = 1;
  } else if (cx_mem_check_canaries(&s->mem, r->why, sizeof r->why)) {
    snprintf(d->err, sizeof d->err, "kernel %.48s: %.150s", k->name, r->why);
    rc = 1;
  }
  munmap(sh, sh_data + page);
  free(alt);
  free(f);
  free(r);
  return rc;
}

void cx_launch_release(cx_state *s) {
  cx_stacks *st = s->stacks;
  if (st && st->map) munmap(st->map, st->len);
  free(st);
  s->stacks = NULL;
}
