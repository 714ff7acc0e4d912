/* rt_model.c -- the runner of emitted models: MODEL_forward and its
 * friends (generated wrappers) call these with their object's image
 * (rt_image.h), entry and state. A run binds every node's buffer as
 * codegen/llvm/cg_jit.c's cg_run does (same plan, same bytes), applies the
 * input normalisation the weights carry as `lathe run` does, calls the
 * entry and copies outputs that live elsewhere back. Nothing here
 * allocates except MODEL_forward's one workspace and the weights file's
 * buffer, and nothing refers to OpenBLAS: the kernels that call it put it
 * on one thread themselves (rt/blas.h), and a model without them links and
 * starts without loading it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/lathe_rt.h"
#include "rt/rt_image.h"

enum { RT_ERR_NONFINITE = 0x100 }; /* codegen/llvm/cg.h's CG_ERR_NONFINITE: not an error here */

uint64_t lathe_rt_fnv1a(const void *data, int64_t n) {
  const unsigned char *p = data;
  uint64_t h = UINT64_C(14695981039346656037);
  for (int64_t i = 0; i < n; i++) h = (h ^ p[i]) * UINT64_C(1099511628211);
  return h;
}

static _Thread_local char last_error[512];

const char *lathe_rt_last_error(void) { return last_error; }

static int fail(int code, const char *fmt, const char *a, const char *b) {
  snprintf(last_error, sizeof last_error, fmt, a ? a : "", b ? b : "");
  return code;
}

int rt_failf(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

const char *lathe_rt_strerror(int code) {
  static const struct {
    int code;
    const char *text;
  } texts[] = {
    {LATHE_RT_OK, "success"},
    {LATHE_RT_EBAD_ID, "an embedding id is out of range"},
    {LATHE_RT_EBAD_LABEL, "a label is out of range for the classes"},
    {LATHE_RT_EDIV_ZERO, "integer division by zero"},
    {LATHE_RT_EBAD_INDEX, "a one_hot id or gather index is out of range"},
    {LATHE_RT_ECOMM, "a collective was compiled for another number of ranks than this job has, or a send/recv names a rank it lacks"},
    {LATHE_RT_ENOMEM, "out of memory for the workspace"},
    {LATHE_RT_ENO_WEIGHTS, "no weights: call MODEL_load_weights first"},
    {LATHE_RT_EABI, "the object was emitted for another version of liblathe_rt"},
    {LATHE_RT_EARG, "a NULL argument"},
    {LATHE_RT_EFILE, "cannot open or read the weights file"},
    {LATHE_RT_EFORMAT, "not a weights file of this model (tensor names, shapes or size differ)"},
    {LATHE_RT_ECHECKSUM, "the weights file is corrupt (its data does not match its checksum)"},
    {LATHE_RT_ENONFINITE, "the training step's loss or an update is not finite (the state is unchanged)"},
    {LATHE_RT_EWRITE, "cannot write the state file"},
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
    if (texts[i].code == code) return texts[i].text;
  return "unknown error";
}

static const void *at(const lathe_rt_image *im, int64_t off) { return (const char *)im + off; }

static const unsigned char *weights_of(const lathe_rt_image *im, const lathe_rt_state *st) {
  return im->weights_off >= 0 ? at(im, im->weights_off) : st->weights;
}

/* The model's inputs into the workspace's pointer table: targets as zeros,
 * normalised inputs as normalised copies, the rest as given. */
static void bind_inputs(const lathe_rt_image *im, const unsigned char *w, void *const *args, unsigned char *work,
                        void **in) {
  const lathe_rt_io *io = at(im, im->inputs_off);
  const lathe_rt_tensor *t = at(im, im->tensors_off);
  int64_t a = 0;
  for (int64_t i = 0; i < im->ninputs; i++) {
    const lathe_rt_io *x = &io[i];
    if (x->is_target) {
      in[i] = work + x->copy_off;
      memset(in[i], 0, (size_t)x->bytes);
      continue;
    }
    in[i] = args[a++];
    if (x->shift < 0) continue;
    float *copy = (float *)(void *)(work + x->copy_off);
    memcpy(copy, in[i], (size_t)x->bytes);
    lathe_rt_normalize(copy, x->bytes / 4 / x->width, x->width, (const float *)(const void *)(w + t[x->shift].off),
                       (const float *)(const void *)(w + t[x->scale].off));
    in[i] = copy;
  }
}

int rt_image_call(const lathe_rt_image *im, lathe_rt_entry entry, const unsigned char *w, void **ins,
                  void *const *outs, unsigned char *work) {
  void **bufs = (void **)(void *)(work + im->tables_off), **scr = bufs + im->nnodes;
  const lathe_rt_buf *b = at(im, im->bufs_off);
  const lathe_rt_tensor *t = at(im, im->tensors_off);
  for (int64_t i = 0; i < im->nnodes; i++) {
    void *v = NULL;
    switch (b[i].kind) {
    case LATHE_RT_BUF_ARENA: v = work + b[i].off; break;
    case LATHE_RT_BUF_INPUT: v = ins[b[i].idx]; break;
    case LATHE_RT_BUF_PARAM: v = (void *)(uintptr_t)(w + t[b[i].idx].off); break;
    case LATHE_RT_BUF_CONST: v = (void *)(uintptr_t)((const char *)im + im->consts_off + b[i].off); break;
    case LATHE_RT_BUF_OUTPUT: v = outs[b[i].idx]; break;
    case LATHE_RT_BUF_ALIAS: v = bufs[b[i].idx]; break;
    default: v = NULL; break;
    }
    bufs[i] = v;
  }
  for (int64_t i = 0; i < im->nnodes; i++) scr[i] = b[i].scr >= 0 ? work + b[i].scr : NULL;
  int32_t err = 0;
  entry(bufs, scr, &err);
  const lathe_rt_io *out = at(im, im->outputs_off);
  for (int64_t j = 0; j < im->noutputs; j++)
    if (bufs[out[j].node] != outs[j]) memcpy(outs[j], bufs[out[j].node], (size_t)out[j].bytes);
  return err;
}

static int run(const lathe_rt_image *im, lathe_rt_entry entry, const lathe_rt_state *st, void *const *args,
               void *const *outs, void *workspace) {
  if (im->magic != LATHE_RT_IMAGE_MAGIC || im->abi != LATHE_RT_ABI) return LATHE_RT_EABI;
  if (im->train_off >= 0) return LATHE_RT_EABI; /* a training step's image: MODEL_train_step runs it */
  const unsigned char *w = weights_of(im, st);
  if (!w) return LATHE_RT_ENO_WEIGHTS;
  unsigned char *work = (unsigned char *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
  void *in[64];
  void **ins = im->ninputs <= 64 ? in : (void **)(void *)(work + im->tables_off) + im->nnodes; /* many inputs: scr holds them until it is filled */
  bind_inputs(im, w, args, work, ins);
  return rt_image_call(im, entry, w, ins, outs, work) & ~RT_ERR_NONFINITE;
}

static int null_arg(void *const *p, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!p[i]) return 1;
  return 0;
}

int lathe_rt_forward(const void *image, lathe_rt_entry entry, lathe_rt_state *st, void *const *io) {
  const lathe_rt_image *im = image;
  lathe_rt_default_threads(1); /* embedded use: one thread unless MODEL_set_threads or LATHE_THREADS say */
  if (!io || null_arg(io, im->nargs + im->noutputs)) return LATHE_RT_EARG;
  if (!st->work) {
    st->work = malloc((size_t)im->work_bytes + 64);
    if (!st->work) return LATHE_RT_ENOMEM;
  }
  return run(im, entry, st, io, io + im->nargs, st->work);
}

int lathe_rt_forward_ws(const void *image, lathe_rt_entry entry, lathe_rt_state *st, const void *in, void *out,
                        void *workspace) {
  const lathe_rt_image *im = image;
  lathe_rt_default_threads(1);
  void *const *args = in, *const *outs = out;
  if (!in || !out || !workspace || null_arg(args, im->nargs) || null_arg(outs, im->noutputs)) return LATHE_RT_EARG;
  return run(im, entry, st, args, outs, workspace);
}

/* ---- --weights-file: the loader ---- */

static int read_exact(FILE *f, void *dst, size_t n) { return fread(dst, 1, n, f) == n ? 0 : -1; }

static int check_records(const lathe_rt_image *im, const lathe_rt_tensor *got, const char *path) {
  const lathe_rt_tensor *want = at(im, im->tensors_off);
  for (int64_t i = 0; i < im->ntensors; i++) {
    const lathe_rt_tensor *a = &got[i], *b = &want[i];
    if (memchr(a->name, 0, sizeof a->name) == NULL || strcmp(a->name, b->name))
      return fail(LATHE_RT_EFORMAT, "%s: a tensor is not the expected '%s' (wrong model or order)", path, b->name);
    int same = a->rank == b->rank && a->off == b->off && a->bytes == b->bytes;
    for (int64_t d = 0; same && d < b->rank && d < LATHE_RT_MAXDIM; d++) same = a->dim[d] == b->dim[d];
    if (!same) return fail(LATHE_RT_EFORMAT, "%s: tensor '%s' has another shape than the emitted model's", path, b->name);
  }
  return 0;
}

/* Header, records, then the section: sizes, names, shapes and the checksum
 * all checked before the state takes the weights. */
static int load(const lathe_rt_image *im, FILE *f, const char *path, void **out) {
  lathe_rt_wfile h;
  if (read_exact(f, &h, sizeof h) || h.magic != LATHE_RT_WEIGHTS_MAGIC)
    return fail(LATHE_RT_EFORMAT, "%s: not a Lathe weights file%s", path, "");
  const char *model = at(im, im->name_off);
  if (h.abi != LATHE_RT_ABI || h.ntensors != im->ntensors)
    return fail(LATHE_RT_EFORMAT, "%s: another number of tensors than model '%s' has", path, model);
  lathe_rt_tensor *rec = malloc(sizeof *rec * (size_t)(h.ntensors > 0 ? h.ntensors : 1));
  if (!rec) return fail(LATHE_RT_ENOMEM, "%s: out of memory%s", path, "");
  int rc = read_exact(f, rec, sizeof *rec * (size_t)h.ntensors) ? fail(LATHE_RT_EFORMAT, "%s: truncated%s", path, "")
                                                                 : check_records(im, rec, path);
  free(rec);
  if (rc) return rc;
  if (h.weights_bytes != im->weights_bytes)
    return fail(LATHE_RT_EFORMAT, "%s: another weights size than model '%s' has", path, model);
  void *data = aligned_alloc(64, ((size_t)h.weights_bytes + 63) / 64 * 64 + 64);
  if (!data) return fail(LATHE_RT_ENOMEM, "%s: out of memory%s", path, "");
  if (h.data_off < 0 || fseek(f, (long)h.data_off, SEEK_SET) || read_exact(f, data, (size_t)h.weights_bytes))
    rc = fail(LATHE_RT_EFORMAT, "%s: truncated%s", path, "");
  else if (fgetc(f) != EOF) rc = fail(LATHE_RT_EFORMAT, "%s: data after the weights%s", path, "");
  else if (lathe_rt_fnv1a(data, h.weights_bytes) != h.weights_sum)
    rc = fail(LATHE_RT_ECHECKSUM, "%s: checksum mismatch: the file is corrupt%s", path, "");
  if (rc) free(data);
  else *out = data;
  return rc;
}

int lathe_rt_load_weights(const void *image, lathe_rt_state *st, const char *path) {
  const lathe_rt_image *im = image;
  last_error[0] = '\0';
  if (!path) return fail(LATHE_RT_EARG, "the weights path is NULL%s%s", "", "");
  if (im->magic != LATHE_RT_IMAGE_MAGIC || im->abi != LATHE_RT_ABI) return LATHE_RT_EABI;
  if (im->weights_off >= 0) return fail(LATHE_RT_EFORMAT, "model '%s' has its weights embedded%s", (const char *)at(im, im->name_off), "");
  FILE *f = fopen(path, "rb");
  if (!f) return fail(LATHE_RT_EFILE, "%s: cannot open%s", path, "");
  void *data = NULL;
  int rc = load(im, f, path, &data);
  fclose(f);
  if (rc) return rc;
  free(st->weights); /* a second load replaces the first */
  st->weights = data;
  return 0;
}
