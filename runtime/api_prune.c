/* api_prune.c -- lathe_prune (docs/prune.md): magnitude pruning of a
 * model's dense and conv2d weights, unstructured (entries zeroed, held at
 * zero while fine-tuning by the masks passes/prune.c puts in the training
 * step) or structured (neurons, channels and attention heads removed, the
 * model's source rewritten to the smaller widths), with fine-tuning through lathe_train
 * and a report of what changed (runtime/api_prune_report.c). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/program.h"
#include "runtime/prune.h"
#include "runtime/runtime.h"

/* ---- small helpers ---- */

static int code_of(const lathe_error *err) { return err && err->code ? err->code : LATHE_EUSER; }

static lathe_program *compile_interp(lathe_model *m, int masked, lathe_error *err) {
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1, .masked = masked, .opt_level_set = 1};
  return lathe_compile(m, &o, err);
}

/* dst's parameters from src by name; a parameter src lacks (a mask) is
 * left for the caller. */
static int copy_by_name(lathe_program *dst, const lathe_program *src, lathe_error *err) {
  if (api_alloc_params(dst, err)) return -1;
  for (int i = 0; i < dst->g.nparams; i++) {
    int j = ir_find_param(&src->g, dst->g.params[i].name);
    if (j < 0 || dst->g.params[i].state) continue;
    memcpy(dst->params[i], src->params[j], sizeof(float) * (size_t)ir_numel(&dst->g.params[i].shape));
  }
  dst->weights_set = 1;
  return 0;
}

/* The normalisation the original weights carry, into dst: it belongs to
 * the inputs, which pruning leaves alone. */
static int copy_pre(lathe_program *dst, const char *weights_path, lathe_error *err) {
  rt_st_file f = {0};
  char msg[1024];
  api_pre *pre = NULL;
  if (rt_st_read(weights_path, &f, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  int rc = api_pre_read(dst, weights_path, &f, &pre, err);
  rt_st_free(&f);
  if (rc) return -1;
  api_pre_replace(dst, pre);
  return 0;
}

/* A scratch directory for fine-tuning's files; removed with what is in it. */
typedef struct {
  char dir[4096];
} scratch;

static int scratch_make(scratch *s, lathe_error *err) {
  const char *t = getenv("TMPDIR");
  snprintf(s->dir, sizeof s->dir, "%s/lathe-prune-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(s->dir)) {
    s->dir[0] = 0;
    return api_fail(err, LATHE_EUSER, "cannot make a scratch directory for fine-tuning in '%s'", t && *t ? t : "/tmp");
  }
  return 0;
}

static void scratch_free(scratch *s) {
  if (!s->dir[0]) return;
  DIR *d = opendir(s->dir);
  struct dirent *e;
  char path[8192];
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(path, sizeof path, "%s/%s", s->dir, e->d_name);
      unlink(path);
    }
  if (d) closedir(d);
  rmdir(s->dir);
  s->dir[0] = 0;
}

/* Fine-tune model m from the weights in p (saved to the scratch directory),
 * then load the best epoch's weights back into p. */
static int finetune(lathe_model *m, lathe_program *p, const lathe_prune_options *o, int64_t epochs, int masked,
                    lathe_error *err) {
  scratch s = {{0}};
  if (scratch_make(&s, err)) return -1;
  char in[8192], best[8192];
  snprintf(in, sizeof in, "%s/start.safetensors", s.dir);
  snprintf(best, sizeof best, "%s/best.safetensors", s.dir);
  lathe_options co = {.masked = masked};
  lathe_train_options t = {.data = o->data, .out_dir = s.dir, .weights = in, .backend = o->backend,
                           .epochs = epochs, .lr = o->lr, .batch = o->batch, .progress = o->progress, .tty = 0, .compile = &co};
  lathe_train_result tr;
  int rc = lathe_weights_save(p, in, err);
  if (rc == 0) rc = lathe_train(m, &t, &tr, err);
  if (rc == 0) rc = lathe_weights_load(p, best, err);
  scratch_free(&s);
  return rc;
}

/* ---- unstructured ---- */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Zero the k smallest |w| of the n values at v[0..nv) (mask too). */
static int mask_smallest(float *const *w, float *const *mask, const int64_t *len, int nv, double frac,
                         lathe_error *err) {
  int64_t n = 0;
  for (int i = 0; i < nv; i++) n += len[i];
  int64_t k = (int64_t)llround(frac * (double)n);
  if (k <= 0 || n == 0) return 0;
  float *a = malloc(sizeof(float) * (size_t)n);
  if (!a) return api_fail(err, LATHE_ENOMEM, "out of memory");
  int64_t at = 0;
  for (int i = 0; i < nv; i++)
    for (int64_t j = 0; j < len[i]; j++) a[at++] = fabsf(w[i][j]);
  qsort(a, (size_t)n, sizeof *a, cmp_float);
  float thr = a[k - 1];
  int64_t below = 0;
  for (int64_t j = 0; j < k; j++) below += a[j] < thr;
  free(a);
  int64_t ties = k - below; /* entries equal to thr that go, in order */
  for (int i = 0; i < nv; i++)
    for (int64_t j = 0; j < len[i]; j++) {
      float x = fabsf(w[i][j]);
      if (x < thr || (x == thr && ties-- > 0)) w[i][j] = 0, mask[i][j] = 0;
    }
  return 0;
}

static int unstructured(lathe_model *m, lathe_program *src, const lathe_prune_options *o, pr_report *rep,
                        lathe_error *err) {
  int np = 0, rc = 0;
  int *idx = malloc(sizeof(int) * ((size_t)src->g.nparams + 1));
  float **w = calloc((size_t)src->g.nparams + 1, sizeof *w), **mask = calloc((size_t)src->g.nparams + 1, sizeof *mask);
  int64_t *len = calloc((size_t)src->g.nparams + 1, sizeof *len);
  if (!idx || !w || !mask || !len) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; rc == 0 && i < src->g.nparams; i++) {
    if (!pr_prunable(&src->g, i)) continue;
    idx[np] = i, w[np] = src->params[i], len[np] = ir_numel(&src->g.params[i].shape);
    if (!(mask[np] = malloc(sizeof(float) * (size_t)len[np] + 1))) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
    for (int64_t j = 0; rc == 0 && j < len[np]; j++) mask[np][j] = w[np][j] != 0;
    np++;
  }
  rep->layers = np;
  int steps = o->steps > 0 ? o->steps : 1;
  lathe_program *mp = NULL;
  for (int t = 1; rc == 0 && t <= steps; t++) {
    /* Zhu & Gupta's cubic schedule: most is removed early, while the
     * network still has the capacity to recover */
    double u = 1.0 - (double)t / steps, s_t = o->sparsity * (1.0 - u * u * u);
    if (o->per_layer)
      for (int i = 0; rc == 0 && i < np; i++) rc = mask_smallest(&w[i], &mask[i], &len[i], 1, s_t, err);
    else rc = mask_smallest(w, mask, len, np, s_t, err);
    int64_t epochs = o->finetune * t / steps - o->finetune * (t - 1) / steps;
    if (rc || epochs <= 0) continue;
    if (!mp && !(mp = compile_interp(m, 1, err))) rc = code_of(err);
    if (rc == 0) rc = copy_by_name(mp, src, err);
    if (rc == 0) rc = copy_pre(mp, o->weights, err);
    for (int i = 0; rc == 0 && i < np; i++) {
      char name[1024];
      snprintf(name, sizeof name, "%s%s", src->g.params[idx[i]].name, PR_MASK_SUFFIX);
      int q = ir_find_param(&mp->g, name);
      if (q < 0) rc = api_fail(err, LATHE_EINTERNAL, "internal error: no mask '%s'", name);
      else memcpy(mp->params[q], mask[i], sizeof(float) * (size_t)len[i]);
    }
    if (o->progress) fprintf(o->progress, "prune: step %d of %d, sparsity %.4f, fine-tuning %lld epoch%s\n", t, steps,
                             s_t, (long long)epochs, epochs == 1 ? "" : "s");
    if (rc == 0) rc = finetune(m, mp, o, epochs, 1, err);
    for (int i = 0; rc == 0 && i < np; i++) {
      const float *nw = mp->params[ir_find_param(&mp->g, src->g.params[idx[i]].name)];
      for (int64_t j = 0; j < len[i]; j++) w[i][j] = nw[j] * mask[i][j];
    }
    for (int i = 0; rc == 0 && i < src->g.nparams; i++) { /* biases and the rest as fine-tuned */
      int q = ir_find_param(&mp->g, src->g.params[i].name);
      if (q >= 0 && !pr_prunable(&src->g, i) && !src->g.params[i].state)
        memcpy(src->params[i], mp->params[q], sizeof(float) * (size_t)ir_numel(&src->g.params[i].shape));
    }
  }
  lathe_program_free(mp);
  if (rc == 0) rc = lathe_weights_save(src, o->out, err);
  for (int i = 0; mask && i < np; i++) free(mask[i]);
  free(idx), free(w), free(mask), free(len);
  return rc;
}

/* ---- structured ---- */

typedef struct {
  int64_t *keep; /* the units kept, ascending */
  int64_t nkeep;
} kept;

typedef struct {
  float norm;
  int64_t unit;
} unit_norm;

/* largest norm first; equal norms by index, so the choice is reproducible */
static int by_norm(const void *a, const void *b) {
  const unit_norm *x = a, *y = b;
  if (x->norm != y->norm) return x->norm < y->norm ? 1 : -1;
  return (x->unit > y->unit) - (x->unit < y->unit);
}
static int by_index(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The squared norms of attention heads: head h's hd columns in each of the
 * q, k and v blocks of qkv [d, 3e], and its hd rows of proj [e, d]. */
static void head_norms(const lathe_program *src, const ir_graph *g, const pr_layer *L, unit_norm *norm) {
  int w = ir_find_param(&src->g, g->params[L->weight].name), p = ir_find_param(&src->g, g->params[L->proj].name);
  const float *W = src->params[w], *P = src->params[p];
  int64_t cols = src->g.params[w].shape.d[1], e = cols / 3, nw = ir_numel(&src->g.params[w].shape);
  int64_t np = ir_numel(&src->g.params[p].shape), dout = src->g.params[p].shape.d[1];
  for (int64_t i = 0; i < nw; i++) norm[i % cols % e / L->hd].norm += W[i] * W[i];
  for (int64_t i = 0; i < np; i++) norm[i / dout / L->hd].norm += P[i] * P[i];
}

/* Per unit u of layer l, the sum of squares of the entries it owns in every
 * slice of the plan on a parameter of rank >= 2 other than the layer's own
 * weight: the weight of the layer reading it (rows of a dense weight, input
 * channels of a conv's, each channel's block through flatten). 0, or -1
 * when a batchnorm stands between the two (a slice of rank 1 that is not
 * the layer's bias): its scale, not the weights, sets what a unit hands on. */
static int reader_norms(const lathe_program *src, const ir_graph *g, const pr_plan *pl, int l, unit_norm *norm) {
  for (int s = 0; s < pl->nslices; s++) {
    const pr_slice *sl = &pl->slices[s];
    if (sl->layer == l && g->params[sl->param].shape.rank < 2 && sl->param != pl->layers[l].bias) return -1;
  }
  for (int s = 0; s < pl->nslices; s++) {
    const pr_slice *sl = &pl->slices[s];
    if (sl->layer != l || sl->param == pl->layers[l].weight || g->params[sl->param].shape.rank < 2) continue;
    int p = ir_find_param(&src->g, g->params[sl->param].name);
    if (p < 0) continue;
    const ir_shape *sh = &src->g.params[p].shape;
    int64_t inner = 1, n = ir_numel(sh);
    for (int d = sl->dim + 1; d < sh->rank; d++) inner *= sh->d[d];
    for (int64_t e = 0; e < n; e++) {
      int64_t u = e / inner % sh->d[sl->dim] / sl->group;
      norm[u].norm += src->params[p][e] * src->params[p][e];
    }
  }
  return 0;
}

/* Which units of layer L (plan layer l) stay. A dense neuron or conv
 * channel scores the L2 norm of its own weights (a column of W, a filter)
 * times the L2 norm of the weights that read it in the next layer: what it
 * takes in and what it hands on together (a relu unit scaled by a in and
 * 1/a out is the same unit; with the first factor alone it is not). With
 * a batchnorm between the two a unit scores its own norm. Attention heads:
 * the norm of each head's q, k, v and output-projection slices. The
 * largest scores stay. */
static int choose_units(const lathe_program *src, const ir_graph *g, const pr_plan *pl, int l, double s, kept *k,
                        lathe_error *err) {
  const pr_layer *L = &pl->layers[l];
  int w = ir_find_param(&src->g, g->params[L->weight].name);
  const ir_shape *ws = &src->g.params[w].shape;
  const float *W = src->params[w];
  int64_t U = L->units, n = ir_numel(ws), per = n / U;
  unit_norm *norm = calloc((size_t)U + 1, sizeof *norm), *out = calloc((size_t)U + 1, sizeof *out);
  k->keep = malloc(sizeof(int64_t) * ((size_t)U + 1));
  if (!norm || !out || !k->keep) {
    free(norm), free(out);
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  for (int64_t u = 0; u < U; u++) norm[u].unit = u;
  if (L->attn) head_norms(src, g, L, norm);
  for (int64_t e = 0; !L->attn && e < n; e++) { /* conv: unit = e / per (first axis); dense: e % U (last) */
    int64_t u = L->conv ? e / per : e % U;
    norm[u].norm += W[e] * W[e];
  }
  if (!L->attn) {
    int any = 0, ok = reader_norms(src, g, pl, l, out) == 0;
    for (int64_t u = 0; ok && u < U; u++) any |= out[u].norm > 0;
    for (int64_t u = 0; any && u < U; u++) norm[u].norm = sqrtf(norm[u].norm) * sqrtf(out[u].norm);
  }
  free(out);
  qsort(norm, (size_t)U, sizeof *norm, by_norm);
  k->nkeep = U - (int64_t)llround(s * (double)U);
  if (k->nkeep < 1) k->nkeep = 1;
  for (int64_t u = 0; u < k->nkeep; u++) k->keep[u] = norm[u].unit;
  qsort(k->keep, (size_t)k->nkeep, sizeof *k->keep, by_index);
  free(norm);
  return 0;
}

/* dst = src gathered along every axis that has an index list (NULL: all). */
static void gather(const float *src, const ir_shape *ss, float *dst, const ir_shape *ds, int64_t *const *map) {
  int64_t n = ir_numel(ds), idx[IR_MAXDIM] = {0};
  for (int64_t e = 0; e < n; e++) {
    int64_t off = 0;
    for (int d = 0; d < ss->rank; d++) off = off * ss->d[d] + (map[d] ? map[d][idx[d]] : idx[d]);
    dst[e] = src[off];
    for (int d = ds->rank - 1; d >= 0; d--) {
      if (++idx[d] < ds->d[d]) break;
      idx[d] = 0;
    }
  }
}

/* The kept entries of an axis a layer's units index, `group` per unit, in
 * each of sl's blocks. */
static int64_t *axis_map(const kept *k, const pr_slice *sl) {
  int64_t group = sl->group, nk = k->nkeep;
  int64_t *m = malloc(sizeof(int64_t) * ((size_t)(sl->blocks * nk * group) + 1));
  for (int64_t b = 0; m && b < sl->blocks; b++)
    for (int64_t u = 0; u < nk; u++)
      for (int64_t j = 0; j < group; j++) m[(b * nk + u) * group + j] = b * sl->stride + k->keep[u] * group + j;
  return m;
}

/* Fill the resized program's parameters from src's through the plan. */
static int fill_resized(lathe_program *dst, const lathe_program *src, const ir_graph *g, const pr_plan *pl,
                        const kept *ks, lathe_error *err) {
  if (api_alloc_params(dst, err)) return -1;
  for (int i = 0; i < dst->g.nparams; i++) {
    const ir_param *pd = &dst->g.params[i];
    if (pd->state) continue;
    int j = ir_find_param(&src->g, pd->name), gi = ir_find_param(g, pd->name);
    if (j < 0 || gi < 0)
      return api_fail(err, LATHE_EINTERNAL, "internal error: the resized model has a parameter '%s' the model has not",
                      pd->name);
    const ir_param *ps = &src->g.params[j];
    int64_t *map[IR_MAXDIM] = {0};
    ir_shape want = ps->shape;
    int rc = 0;
    for (int s = 0; s < pl->nslices; s++) {
      const pr_slice *sl = &pl->slices[s];
      if (sl->param != gi || ks[sl->layer].keep == NULL) continue;
      if (!(map[sl->dim] = axis_map(&ks[sl->layer], sl))) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
      want.d[sl->dim] = sl->blocks * ks[sl->layer].nkeep * sl->group;
    }
    char a[128], b[128];
    if (rc == 0 && (want.rank != pd->shape.rank || memcmp(want.d, pd->shape.d, sizeof(int64_t) * (size_t)want.rank))) {
      ir_shape_str(&pd->shape, a, sizeof a), ir_shape_str(&want, b, sizeof b);
      rc = api_fail(err, LATHE_EUSER, "the resized model does not fit the pruned weights: its '%s' is %s, the pruned "
                    "tensor %s (a layer's width is shared with another through the model's source?)", pd->name, a, b);
    }
    if (rc == 0) gather(src->params[j], &ps->shape, dst->params[i], &pd->shape, map);
    for (int d = 0; d < IR_MAXDIM; d++) free(map[d]);
    if (rc) return rc;
  }
  return 0;
}

static int structured(lathe_model *m, lathe_program *src, const lathe_prune_options *o, lathe_model **pm_out,
                      char **src_out, pr_report *rep, lathe_error *err) {
  lathe_options lo = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *raw = api_program_lower(m, &lo, err); /* the graph as written: the layers' calls */
  if (!raw) return code_of(err);
  pr_plan *pl = calloc(1, sizeof *pl);
  kept *ks = calloc(PR_MAXLAYERS, sizeof *ks);
  fe_arg_edit *ed = calloc(2 * PR_MAXLAYERS, sizeof *ed);
  char (*txt)[32] = calloc(2 * PR_MAXLAYERS, sizeof *txt);
  int rc = pl && ks && ed && txt ? 0 : api_fail(err, LATHE_ENOMEM, "out of memory"), ne = 0;
  if (rc == 0) pr_structure(&raw->g, pl);
  for (int l = 0; rc == 0 && pl && l < pl->nlayers; l++) {
    const pr_layer *L = &pl->layers[l];
    if (L->why) {
      if (!rep->note[0] && L->weight >= 0)
        snprintf(rep->note, sizeof rep->note, "%s stays whole: %s", raw->g.params[L->weight].name, L->why);
      else if (!rep->note[0]) /* an attention whose weights are not its own parameters */
        snprintf(rep->note, sizeof rep->note, "the attention at line %d stays whole: %s", L->loc.line, L->why);
      continue;
    }
    rc = choose_units(src, &raw->g, pl, l, o->sparsity, &ks[l], err);
    snprintf(txt[l], sizeof txt[l], "%lld", (long long)ks[l].nkeep);
    ed[ne++] = (fe_arg_edit){L->loc, 1, L->attn ? "heads" : L->conv ? "channels" : "units", txt[l], 0};
    if (L->attn) { /* fewer heads of the same width: head_dim= keeps it (the default is width / heads) */
      snprintf(txt[PR_MAXLAYERS + l], sizeof txt[l], "%lld", (long long)L->hd);
      ed[ne++] = (fe_arg_edit){L->loc, 7, "head_dim", txt[PR_MAXLAYERS + l], 1};
    }
    rep->layers++;
  }
  if (rc == 0 && ne == 0)
    rc = api_fail(err, LATHE_EUSER, "model '%s' has nothing to prune structurally: %s", raw->g.model_name,
                  rep->note[0] ? rep->note : "it has no dense, conv2d or attention layer");
  char *msg = NULL, *body = rc ? NULL : fe_rewrite_args(m->fe, ed, ne, &msg), *text = NULL;
  if (rc == 0 && !body) rc = api_fail_take(err, LATHE_EUSER, msg);
  if (body) { /* a first line saying what changed: comments below may still give the old widths */
    size_t n = strlen(body) + 256 + (size_t)ne * 64;
    if ((text = malloc(n))) {
      int k = snprintf(text, n, "# lathe prune --structured --sparsity %g: the widths of", o->sparsity);
      for (int l = 0, c = 0; l < pl->nlayers; l++)
        if (!pl->layers[l].why && k > 0 && (size_t)k < n)
        {
          const char *wn = raw->g.params[pl->layers[l].weight].name; /* the layer: "fc1" of "fc1.weight" */
          int at = pl->layers[l].attn, sl = at ? 11 : 7; /* "attn" of "attn.qkv.weight" */
          int len = (int)strlen(wn) - (int)(strlen(wn) > (size_t)sl && !strcmp(wn + strlen(wn) - sl, at ? ".qkv.weight" : ".weight")) * sl;
          k += snprintf(text + k, n - (size_t)k, "%s %.*s%s", c++ ? "," : "", len, wn, at ? " (heads)" : "");
        }
      if (k > 0 && (size_t)k < n) snprintf(text + k, n - (size_t)k, " changed\n%s", body);
    } else rc = api_fail(err, LATHE_ENOMEM, "out of memory");
    free(body);
  }
  lathe_model *pm = text ? lathe_model_parse(o->model_out, text, strlen(text), err) : NULL;
  if (rc == 0 && !pm) rc = code_of(err);
  lathe_program *dst = pm ? compile_interp(pm, 0, err) : NULL;
  if (rc == 0 && !dst) rc = code_of(err);
  if (rc == 0) rc = fill_resized(dst, src, &raw->g, pl, ks, err);
  if (rc == 0) rc = copy_pre(dst, o->weights, err), dst->weights_set = 1;
  if (rc == 0 && o->finetune > 0) rc = finetune(pm, dst, o, o->finetune, 0, err);
  if (rc == 0) rc = lathe_weights_save(dst, o->out, err);
  lathe_program_free(dst);
  for (int l = 0; ks && l < PR_MAXLAYERS; l++) free(ks[l].keep);
  free(pl), free(ks), free(ed), free(txt);
  lathe_program_free(raw);
  if (rc) {
    lathe_model_free(pm);
    free(text);
    return rc;
  }
  *pm_out = pm, *src_out = text;
  return 0;
}

/* ---- the call ---- */

static int check_options(const lathe_prune_options *o, lathe_error *err) {
  static const char fn[] = "lathe_prune";
  if (!o->weights) return api_null(err, fn, "the weights path");
  if (!o->out) return api_null(err, fn, "the output path");
  if (!(o->sparsity >= 0 && o->sparsity < 1))
    return api_fail(err, LATHE_EUSER, "%s: sparsity must be in [0, 1) (the fraction removed), got %g", fn, o->sparsity);
  if (o->steps < 0 || o->steps > 1000) return api_fail(err, LATHE_EUSER, "%s: steps must be 0 to 1000, got %d", fn, o->steps);
  if (o->finetune < 0 || o->finetune > 1000000000)
    return api_fail(err, LATHE_EUSER, "%s: finetune must be 0 to 10^9 epochs, got %lld", fn, (long long)o->finetune);
  if (!(o->lr >= 0 && o->lr < 1e6)) return api_fail(err, LATHE_EUSER, "%s: lr must be 0 (the train block's) or positive, got %g", fn, o->lr);
  if (o->batch < 0 || o->batch > (int64_t)1 << 40)
    return api_fail(err, LATHE_EUSER, "%s: batch must be 0 (the train block's) to 2^40, got %lld", fn, (long long)o->batch);
  if (o->finetune > 0 && !o->data)
    return api_fail(err, LATHE_EUSER, "%s: fine-tuning needs data: give the data set the model trains on", fn);
  if (o->structured && !o->model_out)
    return api_fail(err, LATHE_EUSER, "%s: structured pruning writes a resized model: give its path (model_out)", fn);
  if (o->structured && (o->per_layer || o->steps > 1))
    return api_fail(err, LATHE_EUSER, "%s: structured pruning removes the same fraction of every layer at once: "
                    "per-layer and steps are for unstructured pruning", fn);
  if (o->time_batch < 0 || o->time_batch > 1 << 20)
    return api_fail(err, LATHE_EUSER, "%s: time_batch must be 0 to 2^20, got %lld", fn, (long long)o->time_batch);
  return api_check_backend(err, fn, o->backend);
}

int lathe_prune(lathe_model *m, const lathe_prune_options *o, lathe_prune_result *r, lathe_error *err) {
  lathe_prune_result scratch_r;
  if (!r) r = &scratch_r;
  memset(r, 0, sizeof *r);
  if (!m) return api_null(err, "lathe_prune", "the model");
  if (!o) return api_null(err, "lathe_prune", "the options");
  if (check_options(o, err)) return code_of(err);
  int have;
  if (lathe_weights_quant(o->weights, &have, err)) return code_of(err);
  if (have)
    return api_fail(err, LATHE_EUSER, "'%s' holds %s-quantized weights: prune the f32 weights (then quantize)",
                    o->weights, lathe_quant_name(have));
  char msg[1024];
  if (rt_check_writable(o->out, msg, sizeof msg) ||
      (o->structured && rt_check_writable(o->model_out, msg, sizeof msg)) ||
      (o->report && rt_check_writable(o->report, msg, sizeof msg)))
    return api_fail(err, LATHE_EUSER, "%s", msg);
  lathe_program *src = compile_interp(m, 0, err);
  if (!src) return code_of(err);
  int rc = lathe_weights_load(src, o->weights, err), np = 0;
  for (int i = 0; rc == 0 && i < src->g.nparams; i++) np += pr_prunable(&src->g, i);
  if (rc == 0 && !np && !o->structured) /* structured: attention heads too; structured() says when none */
    rc = api_fail(err, LATHE_EUSER, "model '%s' has nothing to prune: no dense or conv2d weight", src->g.model_name);
  /* measured on the weights alone: a training checkpoint also holds the
   * optimizer's state, which would inflate the file size before */
  pr_report rep = {.o = o, .before_model = m, .r = r};
  scratch sd = {{0}};
  char dense[8192];
  if (rc == 0) rc = scratch_make(&sd, err);
  snprintf(dense, sizeof dense, "%s/dense.safetensors", sd.dir);
  if (rc == 0) rc = lathe_weights_save(src, dense, err);
  if (rc == 0) rc = pr_measure(&rep, 0, m, dense, err);
  scratch_free(&sd);
  lathe_model *pm = NULL;
  char *text = NULL;
  if (rc == 0 && o->structured) rc = structured(m, src, o, &pm, &text, &rep, err);
  else if (rc == 0) rc = unstructured(m, src, o, &rep, err);
  if (rc == 0) rc = pr_measure(&rep, 1, pm ? pm : m, o->out, err);
  r->layers = rep.layers;
  snprintf(r->note, sizeof r->note, "%s", rep.note);
  if (rc == 0 && text) { /* the resized model beside its weights */
    rt_chunk c = {text, strlen(text)};
    if (rt_write_atomic(o->model_out, &c, 1, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
  }
  if (rc == 0 && o->report) rc = pr_report_write(&rep, o->report, err);
  lathe_program_free(src);
  lathe_model_free(pm);
  free(text);
  return rc;
}
