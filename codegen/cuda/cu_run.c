/* cu_run.c -- a compiled program run through a cu_driver: one device
 * allocation holds everything (the plan's activation arena, the constants,
 * every input, parameter and output, the status word), laid out once; a run
 * copies the inputs and parameters in, launches the plan's kernels and
 * products in order on the driver's one stream, and copies the outputs and
 * the loss out. A kernel's run-time error (an id or a label out of range)
 * comes back through the status word as a message naming the node. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"
#include "rt/lathe_rt.h"

struct cu_exec {
  cu_driver *d;
  cu_compiled c;
  const ir_graph *g;
  void **mods;            /* per module */
  void **fns;             /* per function */
  cu_dptr base;
  size_t bytes;
  int64_t arena_off, const_off, status_off, tab_off;
  int64_t *in_off, *param_off, *out_off;
  int64_t *tab_at;        /* per launch: its operand table's place after tab_off (cu_launch.tab) */
  int resident;          /* the device's parameters are the host's: no upload before a run */
  unsigned char *keep;   /* per output: 1 = it stays on the device (not copied out) */
  void *graph;           /* the launches captured as a CUDA graph (NULL: not yet, or not offered) */
  int runs, no_graph;    /* runs so far (the graph is captured on the second); graphs off */
};

static int64_t align256(int64_t v) { return (v + 255) / 256 * 256; }

/* The device address of node i's buffer. */
static cu_dptr addr_of(const cu_exec *x, int i) {
  const pl_buf *b = &x->c.plan.buf[i];
  for (int hops = 0; b->kind == PL_BUF_ALIAS && hops < 64; hops++) i = b->idx, b = &x->c.plan.buf[i];
  switch (b->kind) {
  case PL_BUF_ARENA: return x->base + (cu_dptr)(x->arena_off + b->off);
  case PL_BUF_INPUT: return x->base + (cu_dptr)x->in_off[b->idx];
  case PL_BUF_PARAM: return x->base + (cu_dptr)x->param_off[b->idx];
  case PL_BUF_CONST: return x->base + (cu_dptr)(x->const_off + b->off);
  case PL_BUF_OUTPUT: return x->base + (cu_dptr)x->out_off[b->idx];
  default: return 0;
  }
}

static cu_dptr ref_addr(const cu_exec *x, const cu_ref *r) {
  if (r->node == -1) return x->base + (cu_dptr)(x->arena_off + r->off); /* scratch */
  if (r->node == -2) return x->base + (cu_dptr)x->status_off;
  return addr_of(x, r->node) + (cu_dptr)r->off;
}

/* The constants at their dtype's width, into a host buffer of const_bytes. */
static void fill_consts(const cu_exec *x, unsigned char *h) {
  const ir_graph *g = x->g;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    const pl_buf *b = &x->c.plan.buf[i];
    if (b->kind != PL_BUF_CONST) continue;
    int64_t cnt = ir_numel(&n->shape);
    for (int64_t e = 0; e < cnt; e++) {
      double v = n->op == IR_ARANGE ? (double)e : n->data ? n->data[e] : n->attr.f;
      unsigned char *p = h + b->off + e * (int64_t)ir_dtype_size(n->dtype);
      switch (n->dtype) {
      case IR_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
      case IR_I32: { int32_t q = (int32_t)v; memcpy(p, &q, 4); break; }
      case IR_I64: { int64_t q = (int64_t)v; memcpy(p, &q, 8); break; }
      default: *p = (unsigned char)(v != 0); break;
      }
    }
  }
}

/* The operand tables of the update kernels (cu_launch.tab): every
 * operand's device address, copied once, since one allocation laid out
 * once never moves. */
static int fill_tables(cu_exec *x, int64_t bytes, char *msg, size_t n) {
  uint64_t *h = malloc((size_t)bytes);
  if (!h) return ir_fail(msg, n, "out of memory");
  for (int li = 0; li < x->c.prog.nl; li++) {
    const cu_launch *l = &x->c.prog.l[li];
    for (int j = 0; j < l->ntab; j++) h[x->tab_at[li] / 8 + j] = ref_addr(x, &l->tab[j]);
  }
  int rc = x->d->htod(x->d, x->base + (cu_dptr)x->tab_off, h, (size_t)bytes);
  free(h);
  return rc ? ir_fail(msg, n, "--backend cuda: %s", x->d->err) : 0;
}

/* The program's one allocation against the device: what is free now when
 * the driver says (LATHE_CUDA_FREE_MEM=BYTES stands in for that answer, so
 * the refusal can be seen without a full GPU), else its total. 0 when it
 * fits; -1 with one line saying how much is needed and what there is. */
static int too_large(cu_exec *x, char *msg, size_t n) {
  size_t free_b = 0, total = x->d->total_mem;
  int have_free = x->d->mem_info && !x->d->mem_info(x->d, &free_b, &total);
  const char *fake = getenv("LATHE_CUDA_FREE_MEM");
  if (fake && *fake) free_b = (size_t)strtoull(fake, NULL, 10), have_free = 1;
  if (have_free && x->bytes > free_b)
    return ir_fail(msg, n, "--backend cuda: the model needs %zu bytes of device memory (arena %lld, weights, inputs "
                   "and outputs) and the GPU has %zu bytes free of %zu: use a smaller batch or a GPU with more memory",
                   x->bytes, (long long)x->c.plan.arena_bytes, free_b, total);
  if (!have_free && total && x->bytes > total)
    return ir_fail(msg, n, "--backend cuda: the model needs %zu bytes of device memory (arena %lld, weights, inputs "
                   "and outputs), the GPU has %zu", x->bytes, (long long)x->c.plan.arena_bytes, total);
  return 0;
}

void cu_exec_get_stats(const cu_exec *x, cu_exec_stats *st) {
  memset(st, 0, sizeof *st);
  if (!x) return;
  st->render_ms = x->c.render_ms, st->nvrtc_ms = x->c.mods.wall_ms;
  st->modules = x->c.mods.nmod, st->cache_hits = x->c.mods.cache_hits;
  st->functions = x->c.prog.nfn, st->launches = x->c.prog.nl;
}

void cu_exec_free(cu_exec *x) {
  if (!x) return;
  if (x->d) {
    if (x->graph) x->d->graph_free(x->d, x->graph);
    if (x->base) x->d->mem_free(x->d, x->base);
    x->d->destroy(x->d);
  }
  free(x->keep);
  free(x->mods);
  free(x->fns);
  free(x->in_off);
  free(x->param_off);
  free(x->out_off);
  free(x->tab_at);
  cu_compiled_free(&x->c);
  free(x);
}

static int open_collectives(cu_exec *x, char *msg, size_t n);

/* Whether g talks to other ranks (a data-parallel step's sums, a
 * pipeline stage's transfers). */
static int has_collectives(const ir_graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    int op = g->nodes[i].op;
    if (op == IR_ALLREDUCE || op == IR_REDUCE_SCATTER || op == IR_ALL_GATHER || op == IR_SEND || op == IR_RECV)
      return 1;
  }
  return 0;
}

/* No driver: the one line says so and, for a data-parallel step, whether
 * NCCL is missing too, so a machine without either learns both at once. */
static void no_driver(const ir_graph *g, const char *err, char *msg, size_t n) {
  char why[1024];
  if (!has_collectives(g) || lathe_rt_comm_size() < 2 || cu_dl_nccl(why, sizeof why)) {
    snprintf(msg, n, "%s", err[0] ? err : "--backend cuda: no driver");
    return;
  }
  snprintf(msg, n, "%s; and the %d ranks communicate through NCCL: %s", err[0] ? err : "--backend cuda: no driver",
           lathe_rt_comm_size(), why);
}

cu_exec *cu_exec_create(const ir_graph *g, const char *arch, int bf16, char *msg, size_t n) {
  cu_exec *x = calloc(1, sizeof *x);
  if (!x) return ir_fail(msg, n, "out of memory"), NULL;
  x->g = g;
  char err[512] = "";
  x->d = cu_driver_create(err, sizeof err);
  if (!x->d) {
    no_driver(g, err, msg, n);
    free(x);
    return NULL;
  }
  if (cu_compile_prec(g, arch && *arch ? arch : x->d->arch, bf16, &x->c, msg, n)) goto fail;
  /* the layout: arena, constants, inputs, parameters, outputs, status */
  int64_t at = align256(x->c.plan.arena_bytes);
  x->arena_off = 0;
  x->const_off = at, at = align256(at + x->c.plan.const_bytes);
  x->in_off = calloc((size_t)g->ninputs + 1, sizeof *x->in_off);
  x->param_off = calloc((size_t)g->nparams + 1, sizeof *x->param_off);
  x->out_off = calloc((size_t)g->noutputs + 1, sizeof *x->out_off);
  x->mods = calloc((size_t)x->c.mods.nmod + 1, sizeof *x->mods);
  x->fns = calloc((size_t)x->c.prog.nfn + 1, sizeof *x->fns);
  x->keep = calloc((size_t)g->noutputs + 1, 1);
  const char *gv = getenv("LATHE_CUDA_GRAPH");
  x->no_graph = gv && !strcmp(gv, "0");
  if (!x->in_off || !x->param_off || !x->out_off || !x->mods || !x->fns || !x->keep) { ir_fail(msg, n, "out of memory"); goto fail; }
  for (int i = 0; i < g->ninputs; i++)
    x->in_off[i] = at, at = align256(at + ir_numel(&g->inputs[i].shape) * (int64_t)ir_dtype_size(g->inputs[i].dtype));
  for (int i = 0; i < g->nparams; i++)
    x->param_off[i] = at, at = align256(at + ir_numel(&g->params[i].shape) * (int64_t)ir_dtype_size(g->params[i].dtype));
  for (int i = 0; i < g->noutputs; i++) {
    const ir_node *o = &g->nodes[g->outputs[i].node];
    x->out_off[i] = at, at = align256(at + ir_numel(&o->shape) * (int64_t)ir_dtype_size(o->dtype));
  }
  x->status_off = at, at = align256(at + 16);
  x->tab_at = calloc((size_t)x->c.prog.nl + 1, sizeof *x->tab_at);
  if (!x->tab_at) { ir_fail(msg, n, "out of memory"); goto fail; }
  x->tab_off = at;
  int64_t tab_bytes = 0;
  for (int li = 0; li < x->c.prog.nl; li++)
    if (x->c.prog.l[li].ntab) x->tab_at[li] = tab_bytes, tab_bytes += 8 * (int64_t)x->c.prog.l[li].ntab;
  at = align256(at + tab_bytes);
  x->bytes = (size_t)at;
  if (too_large(x, msg, n)) goto fail;
  if (x->d->mem_alloc(x->d, x->bytes, &x->base)) { ir_fail(msg, n, "--backend cuda: %s", x->d->err); goto fail; }
  if (x->d->memset0(x->d, x->base, x->bytes)) { ir_fail(msg, n, "--backend cuda: %s", x->d->err); goto fail; }
  if (x->c.plan.const_bytes > 0) {
    unsigned char *h = calloc((size_t)x->c.plan.const_bytes, 1);
    if (!h) { ir_fail(msg, n, "out of memory"); goto fail; }
    fill_consts(x, h);
    int rc = x->d->htod(x->d, x->base + (cu_dptr)x->const_off, h, (size_t)x->c.plan.const_bytes);
    free(h);
    if (rc) { ir_fail(msg, n, "--backend cuda: %s", x->d->err); goto fail; }
  }
  if (tab_bytes > 0 && fill_tables(x, tab_bytes, msg, n)) goto fail;
  for (int m = 0; m < x->c.mods.nmod; m++)
    if (x->d->module_load(x->d, x->c.mods.src[m], x->c.mods.img[m].image, x->c.mods.img[m].len, &x->mods[m])) {
      ir_fail(msg, n, "--backend cuda: loading module%02d (%s): %s", m, x->c.arch, x->d->err);
      goto fail;
    }
  for (int f = 0; f < x->c.prog.nfn; f++)
    if (x->d->get_function(x->d, x->mods[x->c.mods.mod_of[f]], x->c.prog.fn[f].name, &x->fns[f])) {
      ir_fail(msg, n, "--backend cuda: %s", x->d->err);
      goto fail;
    }
  if (open_collectives(x, msg, n)) goto fail;
  return x;
fail:
  cu_exec_free(x);
  return NULL;
}

/* A transfer's peer must be another rank of the job (the CPU kernels'
 * lathe_rt_send/recv refuse the same, rt/rt_comm.c). */
static int check_peer(const cu_launch *l, char *msg, size_t n) {
  int size = lathe_rt_comm_size(), peer = l->coll.peer;
  if (size >= 2 && peer >= 0 && peer < size && peer != lathe_rt_comm_rank()) return 0;
  return ir_fail(msg, n, "--backend cuda: the program %s rank %d, but this is rank %d of a job of %d",
                 l->coll.op == CU_COLL_SEND ? "sends to" : "receives from", peer, lathe_rt_comm_rank(), size);
}

/* A program that talks to other ranks (collectives or transfers among its
 * launches) joins the job's communicator: a data-parallel step's rank count
 * must be the job's (as on the CPU backends, rt/rt_comm.c), a transfer's
 * peer one of its ranks, and the driver must offer collectives (the
 * product: NCCL, made here on every rank at the same point of the run: a
 * pipeline's every rank compiles its first stage program at once). */
static int open_collectives(cu_exec *x, char *msg, size_t n) {
  const cu_launch *c = NULL;
  for (int li = 0; li < x->c.prog.nl; li++) {
    const cu_launch *l = &x->c.prog.l[li];
    if (l->what != CU_L_COLL) continue;
    int is_p2p = l->coll.op == CU_COLL_SEND || l->coll.op == CU_COLL_RECV;
    if (is_p2p && check_peer(l, msg, n)) return -1;
    if (!is_p2p && l->ranks != lathe_rt_comm_size())
      return ir_fail(msg, n, "--backend cuda: the step was compiled for %d ranks and runs in a job of %d", l->ranks,
                     lathe_rt_comm_size());
    c = l;
  }
  if (!c) return 0;
  if (!x->d->coll_open || !x->d->coll)
    return ir_fail(msg, n, "--backend cuda: this driver (%s) has no collectives for a job of %d ranks", x->d->name,
                   lathe_rt_comm_size());
  if (x->d->coll_open(x->d, lathe_rt_comm_rank(), lathe_rt_comm_size()))
    return ir_fail(msg, n, "--backend cuda: %s", x->d->err);
  return 0;
}

/* The message of a kernel's status code (1 + 4 * node + what). */
static int status_error(const cu_exec *x, int code, char *msg, size_t n) {
  int node = (code - 1) / 4, what = (code - 1) % 4;
  static const char *const whats[] = {"an id is out of range of the vocabulary", "a label is out of range of the classes",
                                      "an index is out of range", "a run-time check failed"};
  const char *op = node >= 0 && node < x->g->nnodes ? ir_ops[x->g->nodes[node].op].name : "?";
  return ir_fail(msg, n, "%s (node %d): %s", op, node, whats[what]);
}

/* The status word cleared, then every launch of the plan in order. */
static int launch_all(cu_exec *x, char *msg, size_t n) {
  cu_driver *d = x->d;
  const ir_graph *g = x->g;
  if (d->memset0(d, x->base + (cu_dptr)x->status_off, 16)) return ir_fail(msg, n, "--backend cuda: %s", d->err);
  for (int li = 0; li < x->c.prog.nl; li++) {
    const cu_launch *l = &x->c.prog.l[li];
    int rc = 0;
    if (l->what == CU_L_KERNEL) {
      cu_dptr vals[CU_MAXOPS];
      void *args[CU_MAXOPS];
      for (int j = 0; j < l->nops; j++) vals[j] = ref_addr(x, &l->op[j]), args[j] = &vals[j];
      if (l->ntab) vals[0] = x->base + (cu_dptr)(x->tab_off + x->tab_at[li]), args[0] = &vals[0];
      rc = d->launch(d, x->fns[l->fn], l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                     l->shmem, args);
    } else if (l->what == CU_L_GEMM) {
      cu_gemm gm = l->gemm;
      gm.a = ref_addr(x, &l->ga), gm.b = ref_addr(x, &l->gb), gm.c = ref_addr(x, &l->gc);
      gm.bias = gm.epilogue != CU_EPI_NONE ? ref_addr(x, &l->gbias) : 0;
      rc = d->gemm(d, &gm);
    } else if (l->what == CU_L_COLL) {
      cu_coll c = l->coll;
      c.send = ref_addr(x, &l->csend), c.recv = ref_addr(x, &l->crecv);
      rc = d->coll(d, &c);
    } else {
      rc = d->memset0(d, ref_addr(x, &l->zero), (size_t)l->zero_bytes);
    }
    if (rc) {
      const pl_kernel *k = &x->c.plan.k[l->pk];
      return ir_fail(msg, n, "--backend cuda: kernel k%d (%s, node %d %s): %s", l->pk, pl_kind_name(k->kind), k->head,
                     ir_ops[g->nodes[k->head].op].name, d->err);
    }
  }
  return 0;
}

/* The step's launches: the first run launches them one by one (and warms
 * cuBLASLt up); the second captures them as a CUDA graph where the driver
 * offers graphs, and every run from then on replays it (the addresses
 * never change: one allocation laid out once). A capture that fails turns
 * graphs off for this program and launches as the first run did. */
static int launch_step(cu_exec *x, char *msg, size_t n) {
  cu_driver *d = x->d;
  if (x->graph) return d->graph_launch(d, x->graph) ? ir_fail(msg, n, "--backend cuda: %s", d->err) : 0;
  if (x->runs == 0 || x->no_graph || !d->graph_begin) return launch_all(x, msg, n);
  if (d->graph_begin(d)) {
    x->no_graph = 1;
    return launch_all(x, msg, n);
  }
  int rc = launch_all(x, msg, n);
  void *graph = NULL;
  int end = d->graph_end(d, &graph);
  if (rc || end) { /* launch without a graph from now on */
    if (graph) d->graph_free(d, graph);
    x->no_graph = 1;
    return launch_all(x, msg, n);
  }
  x->graph = graph;
  return d->graph_launch(d, x->graph) ? ir_fail(msg, n, "--backend cuda: %s", d->err) : 0;
}

int cu_exec_run(cu_exec *x, void *const *inputs, void *const *params, void *const *outputs, float *loss, char *msg,
                size_t n) {
  const ir_graph *g = x->g;
  cu_driver *d = x->d;
  for (int i = 0; i < g->ninputs; i++)
    if (d->htod(d, x->base + (cu_dptr)x->in_off[i], inputs[i],
                (size_t)(ir_numel(&g->inputs[i].shape) * (int64_t)ir_dtype_size(g->inputs[i].dtype))))
      return ir_fail(msg, n, "--backend cuda: input '%s': %s", g->inputs[i].name, d->err);
  for (int i = 0; i < g->nparams && !x->resident; i++)
    if (d->htod(d, x->base + (cu_dptr)x->param_off[i], params[i],
                (size_t)(ir_numel(&g->params[i].shape) * (int64_t)ir_dtype_size(g->params[i].dtype))))
      return ir_fail(msg, n, "--backend cuda: parameter '%s': %s", g->params[i].name, d->err);
  x->resident = 0; /* until this run has succeeded */
  if (launch_step(x, msg, n)) return -1;
  x->runs++;
  if (d->sync(d)) return ir_fail(msg, n, "--backend cuda: %s", d->err);
  int status = 0;
  if (d->dtoh(d, &status, x->base + (cu_dptr)x->status_off, sizeof status))
    return ir_fail(msg, n, "--backend cuda: %s", d->err);
  if (status) return status_error(x, status, msg, n);
  for (int i = 0; i < g->noutputs; i++) {
    const ir_node *o = &g->nodes[g->outputs[i].node];
    if (x->keep[i]) continue;
    /* from where the plan put the node: an output that repeats another's
     * node (evaluation's "__pred" beside "logits") has its own buffer, but
     * only the first output of a node is written */
    cu_dptr src = addr_of(x, g->outputs[i].node);
    if (!src) src = x->base + (cu_dptr)x->out_off[i];
    if (d->dtoh(d, outputs[i], src, (size_t)(ir_numel(&o->shape) * (int64_t)ir_dtype_size(o->dtype))))
      return ir_fail(msg, n, "--backend cuda: output '%s': %s", g->outputs[i].name, d->err);
  }
  if (loss) {
    *loss = NAN;
    if (g->loss >= 0) {
      cu_dptr a = addr_of(x, g->loss);
      if (a && d->dtoh(d, loss, a, sizeof *loss)) return ir_fail(msg, n, "--backend cuda: the loss: %s", d->err);
    }
  }
  x->resident = 1;
  return 0;
}

void cu_exec_params_changed(cu_exec *x) {
  if (x) x->resident = 0;
}

void cu_exec_keep_output(cu_exec *x, int out, int keep) {
  if (x && out >= 0 && out < x->g->noutputs) x->keep[out] = keep != 0;
}

int cu_exec_feedback(cu_exec *x, int out, int param, char *msg, size_t n) {
  const ir_graph *g = x->g;
  if (out < 0 || out >= g->noutputs || param < 0 || param >= g->nparams)
    return ir_fail(msg, n, "cu_exec_feedback: output %d or parameter %d out of range", out, param);
  const ir_node *o = &g->nodes[g->outputs[out].node];
  size_t bytes = (size_t)(ir_numel(&g->params[param].shape) * (int64_t)ir_dtype_size(g->params[param].dtype));
  if ((size_t)(ir_numel(&o->shape) * (int64_t)ir_dtype_size(o->dtype)) != bytes || !x->d->dtod) {
    x->resident = 0; /* the host's copy goes up again before the next run */
    return 0;
  }
  if (x->d->dtod(x->d, x->base + (cu_dptr)x->param_off[param], x->base + (cu_dptr)x->out_off[out], bytes)) {
    x->resident = 0;
    return ir_fail(msg, n, "--backend cuda: %s", x->d->err);
  }
  return 0;
}


