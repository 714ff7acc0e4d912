/* api_quant.c -- quantized weights in the public API: lathe_quantize (f32
 * weights to the tensors passes/quantize.c's graph reads), which mode a
 * weights file holds, and the stored parameters' buffers. The weight math
 * (scales, rounding, packing) is rt/rt_quant.h's. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"
#include "runtime/program.h"
#include "runtime/runtime.h"
#include "runtime/train.h"

const char *lathe_quant_name(int mode) { return qz_mode_name(mode); }
int lathe_quant_parse(const char *name) { return qz_mode_parse(name); }

size_t api_param_elem_size(const ir_param *pr) { return pr->stored ? ir_dtype_size(pr->dtype) : sizeof(float); }

/* the mode and base-name length of a quantized tensor's name, 0 if none */
static int tensor_mode(const char *name, size_t *base) {
  size_t n = strlen(name);
  for (int m = 1; m <= LATHE_QUANT_INT8; m++)
    for (int k = 0; k < 3; k++) {
      const char *s = qz_suffix(m, k);
      size_t ls = s ? strlen(s) : 0;
      if (s && n > ls && !strcmp(name + n - ls, s)) {
        if (base) *base = n - ls;
        return m;
      }
    }
  return 0;
}

static int file_mode(const rt_st_file *f, const char **which) {
  for (int k = 0; k < f->n; k++) {
    int m = tensor_mode(f->e[k].name, NULL);
    if (m) {
      if (which) *which = f->e[k].name;
      return m;
    }
  }
  return 0;
}

static int has_layout(int mode) { return mode == LATHE_QUANT_W8 || mode == LATHE_QUANT_W4; }

/* A w8/w4 file of another layout version (or none: written before the
 * layouts had one) would load its bytes in the wrong places without a word. */
static int check_layout(const char *path, const rt_st_file *f, int mode, lathe_error *err) {
  const char *v = rt_st_meta(f, RT_Q_LAYOUT_KEY);
  if (!has_layout(mode) || (v && !strcmp(v, RT_Q_LAYOUT))) return 0;
  return api_fail(err, LATHE_EUSER,
                  "'%s' holds %s-quantized weights in %s%s%s, not this Lathe's (%s): re-run lathe quantize on "
                  "the f32 weights", path, qz_mode_name(mode), v ? "layout " : "an older layout (no ",
                  v ? v : RT_Q_LAYOUT_KEY, v ? "" : " in its metadata)", RT_Q_LAYOUT);
}

const char *const *api_quant_meta(const lathe_program *p, int *n) {
  static const char *const meta[] = {RT_Q_LAYOUT_KEY, RT_Q_LAYOUT};
  *n = has_layout(p->g.quant) ? 1 : 0;
  return meta;
}

int lathe_weights_quant(const char *path, int *mode, lathe_error *err) {
  if (!path) return api_null(err, "lathe_weights_quant", "the path");
  if (!mode) return api_null(err, "lathe_weights_quant", "the mode");
  *mode = 0;
  rt_st_file f = {0};
  char msg[1024];
  if (rt_st_read(path, &f, msg, sizeof msg) != 0) return api_fail(err, LATHE_EUSER, "%s", msg);
  *mode = file_mode(&f, NULL);
  int rc = check_layout(path, &f, *mode, err);
  rt_st_free(&f);
  return rc;
}

int api_quant_mismatch(const lathe_program *p, const char *path, const rt_st_file *f, lathe_error *err) {
  const char *t = NULL;
  int m = file_mode(f, &t);
  if (m == p->g.quant) return check_layout(path, f, m, err);
  if (!m) return 0;
  if (!p->g.quant)
    return api_fail(err, LATHE_EUSER,
                    "'%s' holds %s-quantized weights (tensor '%s'), but the program was compiled for f32 weights: "
                    "compile with that quantization (lathe_options.quant; lathe run, eval and generate do it "
                    "themselves)", path, qz_mode_name(m), t);
  return api_fail(err, LATHE_EUSER, "'%s' holds %s-quantized weights (tensor '%s'), but the program was compiled for %s",
                  path, qz_mode_name(m), t, qz_mode_name(p->g.quant));
}

/* ---- lathe_quantize ---- */

/* W [K, N] (f32, row-major) into the stored tensors of mode (out[k] sized
 * as passes/quantize.c declared them); sx: static int8's input scale */
static void quantize_matrix(int mode, const float *W, int64_t K, int64_t N, void *const *out, float *col, float sx) {
  int64_t G = K / RT_Q_GROUP, Kp = rt_q_kpad(K);
  for (int64_t n = 0; n < N; n++) {
    for (int64_t k = 0; k < K; k++) col[k] = W[k * N + n];
    switch (mode) {
    case LATHE_QUANT_W8: case LATHE_QUANT_W4: {
      int w4 = mode == LATHE_QUANT_W4, qmax = w4 ? 7 : 127;
      for (int64_t g = 0; g < G; g++) {
        const float *v = col + g * RT_Q_GROUP;
        float s = rt_q_scale(v, RT_Q_GROUP, qmax);
        ((float *)out[1])[rt_q_ws_at(n, g, G)] = s;
        for (int j = 0; j < RT_Q_GROUP; j++) {
          int q = rt_q_round(v[j], s, w4 ? -8 : -127, qmax), hi;
          int64_t k = g * RT_Q_GROUP + j;
          if (!w4) ((int8_t *)out[0])[rt_q_w8_at(n, k, K)] = (int8_t)q;
          else {
            uint8_t *b = (uint8_t *)out[0] + rt_q_w4_at(n, k, K, &hi);
            *b = (uint8_t)(hi ? (*b & 0x0f) | ((q + 8) << 4) : (*b & 0xf0) | (q + 8));
          }
        }
      }
      break;
    }
    case LATHE_QUANT_INT8_DYNAMIC: case LATHE_QUANT_INT8: {
      float s = rt_q_scale(col, K, 127);
      int32_t sum = 0;
      for (int64_t k = 0; k < Kp; k++) {
        int q = k < K ? rt_q_round(col[k], s, -127, 127) : 0;
        ((int8_t *)out[0])[rt_q_dq8_at(n, k, Kp)] = (int8_t)q; /* the padding columns stay zero */
        sum += q;
      }
      ((float *)out[1])[n] = s;
      ((int32_t *)out[2])[n] = 128 * sum;
      if (mode == LATHE_QUANT_INT8 && n == N - 1) ((float *)out[1])[N] = sx;
      break;
    }
    default: /* bf16, f16: rounded to nearest even */
      rt_convert(col, LATHE_F32, (uint16_t *)out[0] + n * K,
                 mode == LATHE_QUANT_BF16 ? LATHE_BF16 : LATHE_F16, K);
      break;
    }
  }
}

/* static int8's input scale of src's weight j (0: not calibrated) */
static float calib_scale(const api_calib *cal, const char *name) {
  for (int i = 0; cal && i < cal->n; i++)
    if (!strcmp(cal->name[i], name)) return cal->scale[i];
  return 0.0f;
}

/* dst's weights from src's (runtime/program.h) */
int api_fill_params(lathe_program *dst, const lathe_program *src, const api_calib *cal, lathe_error *err) {
  const ir_graph *g = &dst->g;
  for (int i = 0; i < g->nparams; i++) {
    const ir_param *pr = &g->params[i];
    if (pr->state || pr->from_quant) continue; /* optimizer state, caches: zero; kept f32: derived below */
    int j = ir_find_param(&src->g, pr->name);
    if (j >= 0) {
      memcpy(dst->params[i], src->params[j], (size_t)ir_numel(&pr->shape) * api_param_elem_size(pr));
      continue;
    }
    size_t base = strlen(pr->name);
    if (pr->stored) tensor_mode(pr->name, &base);
    char *name = strndup(pr->name, base);
    j = name && pr->stored ? ir_find_param(&src->g, name) : -1;
    free(name);
    if (j < 0 || src->g.params[j].stored)
      return api_fail(err, LATHE_EINTERNAL, "internal error: parameter '%s' has no source", pr->name);
    const ir_param *sp = &src->g.params[j];
    if (strcmp(pr->name + base, qz_suffix(g->quant, 0))) continue; /* filled with its weights tensor */
    void *out[3] = {dst->params[i], NULL, NULL};
    for (int k = 1; k < 3 && qz_suffix(g->quant, k); k++) {
      char *nm = malloc(base + 16);
      if (!nm) return api_fail(err, LATHE_ENOMEM, "out of memory");
      snprintf(nm, base + 16, "%.*s%s", (int)base, pr->name, qz_suffix(g->quant, k));
      int q = ir_find_param(g, nm);
      free(nm);
      if (q < 0) return api_fail(err, LATHE_EINTERNAL, "internal error: '%s' has no tensor %d", pr->name, k);
      out[k] = dst->params[q];
    }
    int64_t K, N;
    qz_weight_kn(sp, &K, &N);
    /* a conv's weight [O, C, KH, KW] is the product's [K, N] transposed,
     * k = (kh * KW + kw) * C + c (rt/rt_qconv.h: channels last) */
    float *col = malloc(sizeof(float) * (size_t)K + 1), *t = sp->shape.rank == 2 ? NULL : malloc(sizeof(float) * (size_t)(K * N) + 1);
    if (!col || (sp->shape.rank != 2 && !t)) {
      free(col), free(t);
      return api_fail(err, LATHE_ENOMEM, "out of memory");
    }
    const float *W = src->params[j];
    int64_t C = sp->shape.rank > 2 ? sp->shape.d[1] : 1, KHW = K / (C ? C : 1);
    for (int64_t n = 0; t && n < N; n++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < KHW; p++) t[(p * C + c) * N + n] = W[n * K + c * KHW + p];
    quantize_matrix(g->quant, t ? t : W, K, N, out, col, calib_scale(cal, sp->name));
    free(col), free(t);
  }
  api_derive_params(dst);
  return 0;
}

/* stored tensor k of W (named W + the mode's suffix k) in p, NULL if none */
static const void *stored_of(const lathe_program *p, const ir_param *W, int k) {
  const char *sfx = qz_suffix(W->from_quant, k);
  size_t n = strlen(W->name);
  for (int i = 0; sfx && i < p->g.nparams; i++) {
    const char *nm = p->g.params[i].name;
    if (p->g.params[i].stored && !strncmp(nm, W->name, n) && !strcmp(nm + n, sfx)) return p->params[i];
  }
  return NULL;
}

/* W [K, N] row-major from mode's stored tensors w, s (layouts: rt/rt_quant.h) */
static void dequantize_matrix(int mode, const void *w, const float *s, int64_t K, int64_t N, float *W) {
  int64_t G = K / RT_Q_GROUP, Kp = rt_q_kpad(K);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      float v;
      switch (mode) {
      case LATHE_QUANT_W8: case LATHE_QUANT_W4:
        v = s[rt_q_ws_at(n, k / RT_Q_GROUP, G)] * (float)rt_q_wo_q(mode == LATHE_QUANT_W4, w, n, k, K);
        break;
      case LATHE_QUANT_INT8_DYNAMIC: case LATHE_QUANT_INT8:
        v = s[n] * (float)((const int8_t *)w)[rt_q_dq8_at(n, k, Kp)];
        break;
      case LATHE_QUANT_BF16: v = rt_q_bf16(((const uint16_t *)w)[n * K + k]); break;
      default: v = rt_q_f16(((const uint16_t *)w)[n * K + k]); break;
      }
      W[k * N + n] = v;
    }
}

void api_derive_params(lathe_program *p) {
  for (int i = 0; p->params && i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    const void *w = pr->from_quant ? stored_of(p, pr, 0) : NULL;
    const float *s = w ? stored_of(p, pr, 1) : NULL;
    if (!w || !p->params[i] || (!s && qz_suffix(pr->from_quant, 1))) continue; /* not allocated yet */
    dequantize_matrix(pr->from_quant, w, s, pr->shape.d[0], pr->shape.d[1], p->params[i]);
  }
}

/* counts and the first reason, on the graph as lowered (before any pass) */
static int survey(lathe_model *m, int mode, lathe_quantize_result *r, lathe_error *err) {
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = api_program_lower(m, &o, err);
  if (!p) return -1;
  for (int i = 0; i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    r->bytes_before += ir_numel(&pr->shape) * 4;
    int conv = (pr->shape.rank == 3 || pr->shape.rank == 4) && qz_conv_mode(mode); /* quantize_conv.c */
    if (pr->state || pr->buffer || pr->dtype != IR_F32 || (pr->shape.rank != 2 && !conv)) continue;
    const char *why = qz_keep_reason(&p->g, i, mode);
    if (!why) { r->quantized++; continue; }
    if (!r->kept++) snprintf(r->note, sizeof r->note, "%s stays f32: %s", pr->name, why);
  }
  lathe_program_free(p);
  return 0;
}

/* static int8: the input scale of every weight dst quantizes */
static int calibrate(lathe_model *m, const lathe_quantize_options *o, const lathe_program *dst, api_calib *cal,
                     lathe_error *err) {
  const ir_graph *g = &dst->g;
  size_t base;
  cal->name = calloc((size_t)g->nparams + 1, sizeof *cal->name);
  cal->scale = calloc((size_t)g->nparams + 1, sizeof *cal->scale);
  if (!cal->name || !cal->scale) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < g->nparams; i++) {
    const char *nm = g->params[i].name;
    if (!g->params[i].stored || tensor_mode(nm, &base) != LATHE_QUANT_INT8 || strcmp(nm + base, qz_suffix(g->quant, 0)))
      continue;
    if (!(cal->name[cal->n] = strndup(nm, base))) return api_fail(err, LATHE_ENOMEM, "out of memory");
    cal->n++;
  }
  return tr_calibrate(m, o, cal, err);
}

void api_calib_free(api_calib *cal) {
  for (int i = 0; cal->name && i < cal->n; i++) free(cal->name[i]);
  free(cal->name);
  free(cal->scale);
}

int lathe_quantize(lathe_model *m, const lathe_quantize_options *o, lathe_quantize_result *r, lathe_error *err) {
  static const char fn[] = "lathe_quantize";
  lathe_quantize_result scratch;
  if (!r) r = &scratch;
  memset(r, 0, sizeof *r);
  if (!m) return api_null(err, fn, "the model");
  if (!o) return api_null(err, fn, "the options");
  if (!o->weights) return api_null(err, fn, "the weights path");
  if (!o->out) return api_null(err, fn, "the output path");
  if (o->mode < LATHE_QUANT_W8 || o->mode > LATHE_QUANT_INT8)
    return api_fail(err, LATHE_EUSER, "%s: unknown mode %d (expected w8, w4, int8-dynamic, bf16, f16 or int8)", fn,
                    o->mode);
  if (o->mode == LATHE_QUANT_INT8 && !o->data)
    return api_fail(err, LATHE_EUSER, "%s: int8 needs activation scales and there is no calibration data: give "
                    "the training data (lathe quantize --data D; lathe_quantize_options.data), or use int8-dynamic",
                    fn);
  if (o->calib < LATHE_CALIB_MINMAX || o->calib > LATHE_CALIB_PERCENTILE || o->calib_batches < 0 ||
      !(o->percentile >= 0 && o->percentile <= 100))
    return api_fail(err, LATHE_EUSER, "%s: calib must be minmax (0) or percentile (1), calib_batches >= 0 and "
                    "percentile in [0, 100]; got %d, %lld, %g", fn, o->calib, (long long)o->calib_batches,
                    o->percentile);
  int have;
  if (lathe_weights_quant(o->weights, &have, err)) return err ? err->code : LATHE_EUSER;
  if (have)
    return api_fail(err, LATHE_EUSER, "'%s' holds %s-quantized weights already: quantize the f32 weights", o->weights,
                    qz_mode_name(have));
  if (survey(m, o->mode, r, err)) return err ? err->code : LATHE_EUSER;
  if (!r->quantized)
    return api_fail(err, LATHE_EUSER, "model '%s' has nothing to quantize in mode %s: %s", lathe_model_name(m),
                    qz_mode_name(o->mode), r->kept ? r->note : "it has no dense weight matrix");
  lathe_options so = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1}, qo = so;
  qo.quant = o->mode;
  lathe_program *src = lathe_compile(m, &so, err), *dst = src ? lathe_compile(m, &qo, err) : NULL;
  int rc = src && dst ? 0 : (err ? err->code : LATHE_EUSER);
  if (rc == 0) rc = lathe_weights_load(src, o->weights, err);
  rt_st_file f = {0};
  char msg[1024];
  api_pre *pre = NULL;
  if (rc == 0 && rt_st_read(o->weights, &f, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
  if (rc == 0) rc = api_pre_read(dst, o->weights, &f, &pre, err); /* the normalisation the weights carry */
  if (rc == 0) api_pre_replace(dst, pre);
  rt_st_free(&f);
  if (rc == 0) rc = api_alloc_params(dst, err);
  api_calib cal = {0};
  if (rc == 0 && o->mode == LATHE_QUANT_INT8) rc = calibrate(m, o, dst, &cal, err);
  if (rc == 0) rc = api_fill_params(dst, src, &cal, err);
  api_calib_free(&cal);
  if (rc == 0) dst->weights_set = 1, rc = lathe_weights_save(dst, o->out, err);
  r->f32_form = o->mode == LATHE_QUANT_INT8 && qz_s8_kernel(lathe_rt_quant_isa()) == LATHE_RT_ISA_F32;
  r->slow_rows = has_layout(o->mode) && lathe_rt_quant_isa() == LATHE_RT_ISA_SCALAR;
  for (int i = 0; rc == 0 && i < dst->g.nparams; i++)
    if (!dst->g.params[i].from_quant) /* not in the file */
      r->bytes_after += ir_numel(&dst->g.params[i].shape) * (int64_t)api_param_elem_size(&dst->g.params[i]);
  lathe_program_free(src);
  lathe_program_free(dst);
  return rc;
}
