/* test_files.c -- runtime/: atomic writes, dtype conversion, .npy and
 * safetensors. Reads reference files made by NumPy and by a reference-style
 * safetensors writer (tests/files/gen_files.py), round-trips every dtype,
 * and feeds malformed files that must give an exact message, never a crash. */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"
#include "tests/test.h"

#define FILES "tests/files/"

static char tmpdir[64];
static char msg[1024];

/* A path in the temporary directory (four rotating buffers). */
static const char *tpath(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

static void put_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static float f32(const lathe_tensor *t, int i) { return ((const float *)t->data)[i]; }

/* The -2 -1 0 1 2 3 pattern the reference files hold, as float. */
static const double BASE[6] = {-2, -1, 0, 1, 2, 3};

/* Check a tensor against BASE (scaled), whatever its dtype. */
static void check_base(const lathe_tensor *t, lathe_dtype dt, double scale, double offset) {
  CHECK(t->dtype == dt);
  CHECK(t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
  float got[6];
  rt_convert(t->data, t->dtype, got, LATHE_F32, 6);
  for (int i = 0; i < 6; i++) {
    double want = dt == LATHE_BOOL ? ((int)BASE[i] % 2 == 0) : BASE[i] * scale + offset;
    CHECK_MSG(got[i] == want, "%s element %d: got %g want %g", lathe_dtype_name(dt), i, got[i], want);
  }
}

/* ---- conversion ---- */

static void test_f16(void) {
  CHECK(rt_f32_to_f16(0.0f) == 0x0000);
  CHECK(rt_f32_to_f16(-0.0f) == 0x8000);
  CHECK(rt_f32_to_f16(1.0f) == 0x3c00);
  CHECK(rt_f32_to_f16(-2.0f) == 0xc000);
  CHECK(rt_f32_to_f16(65504.0f) == 0x7bff);            /* largest finite */
  CHECK(rt_f32_to_f16(65519.0f) == 0x7bff);            /* below the midpoint */
  CHECK(rt_f32_to_f16(65520.0f) == 0x7c00);            /* midpoint ties to inf */
  CHECK(rt_f32_to_f16(1e10f) == 0x7c00);
  CHECK(rt_f32_to_f16(-INFINITY) == 0xfc00);
  CHECK((rt_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (rt_f32_to_f16(NAN) & 0x3ff) != 0);
  CHECK(rt_f32_to_f16(0x1p-14f) == 0x0400);            /* smallest normal */
  CHECK(rt_f32_to_f16(0x1p-24f) == 0x0001);            /* smallest subnormal */
  CHECK(rt_f32_to_f16(0x1p-25f) == 0x0000);            /* tie to even: 0 */
  CHECK(rt_f32_to_f16(0x1.8p-24f) == 0x0002);          /* tie to even: 2 */
  CHECK(rt_f32_to_f16(0x1.000002p-25f) == 0x0001);     /* just above the tie */
  CHECK(rt_f32_to_f16(-0x1p-30f) == 0x8000);
  CHECK(rt_f32_to_f16(FLT_TRUE_MIN) == 0x0000);
  CHECK(rt_f32_to_f16(1023 * 0x1p-24f) == 0x03ff);     /* largest subnormal */
  CHECK(rt_f32_to_f16(0x1.ffcp-15f) == 0x0400);        /* rounds up into the normals */
  CHECK(rt_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);     /* tie, even stays */
  CHECK(rt_f32_to_f16(1.0f + 0x1.8p-10f) == 0x3c02);   /* tie, odd rounds up */
  CHECK(rt_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01);
  CHECK(rt_f16_to_f32(0x0001) == 0x1p-24f);
  CHECK(rt_f16_to_f32(0x7bff) == 65504.0f);
  CHECK(rt_f16_to_f32(0x7c00) == INFINITY && rt_f16_to_f32(0xfc00) == -INFINITY);
  CHECK(isnan(rt_f16_to_f32(0x7e00)) && isnan(rt_f16_to_f32(0x7c01)));
  CHECK(signbit(rt_f16_to_f32(0x8000)) && rt_f16_to_f32(0x8000) == 0.0f);
  /* every half survives f16 -> f32 -> f16 (NaNs stay NaNs) */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = rt_f16_to_f32((uint16_t)h);
    uint16_t back = rt_f32_to_f16(f);
    if (isnan(f) ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) bad++;
  }
  CHECK_MSG(bad == 0, "%d halves do not round-trip", bad);
}

static void test_bf16(void) {
  CHECK(rt_f32_to_bf16(1.0f) == 0x3f80);
  CHECK(rt_f32_to_bf16(-0.0f) == 0x8000);
  CHECK(rt_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);     /* tie, even stays */
  CHECK(rt_f32_to_bf16(1.0f + 0x1.8p-7f) == 0x3f82);   /* tie, odd rounds up */
  CHECK(rt_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);
  CHECK(rt_f32_to_bf16(FLT_MAX) == 0x7f80);            /* rounds to inf */
  CHECK(rt_f32_to_bf16(-INFINITY) == 0xff80);
  CHECK(rt_f32_to_bf16(FLT_TRUE_MIN) == 0x0000);
  CHECK(isnan(rt_bf16_to_f32(rt_f32_to_bf16(NAN))));
  CHECK(isnan(rt_bf16_to_f32(rt_f32_to_bf16(-NAN))));
  /* a NaN whose payload sits only in the low bits must not become inf */
  uint32_t u = 0x7f800001u;
  float lownan;
  memcpy(&lownan, &u, 4);
  CHECK(isnan(rt_bf16_to_f32(rt_f32_to_bf16(lownan))));
  CHECK(rt_bf16_to_f32(0x4049) == 3.140625f);
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = rt_bf16_to_f32((uint16_t)h);
    if (!isnan(f) && rt_f32_to_bf16(f) != h) bad++;
  }
  CHECK_MSG(bad == 0, "%d bf16 values do not round-trip", bad);
}

static void test_convert(void) {
  float f[6] = {-1.7f, 2.9f, NAN, 1e10f, -1e10f, -0.5f};
  int32_t i32[6];
  rt_convert(f, LATHE_F32, i32, LATHE_I32, 6);
  CHECK(i32[0] == -1 && i32[1] == 2 && i32[2] == 0 && i32[3] == INT32_MAX && i32[4] == INT32_MIN && i32[5] == 0);
  uint8_t b[6], u8[6];
  rt_convert(f, LATHE_F32, b, LATHE_BOOL, 6);
  CHECK(b[0] == 1 && b[2] == 1 && b[5] == 1);
  rt_convert(f, LATHE_F32, u8, LATHE_U8, 6);
  CHECK(u8[0] == 0 && u8[1] == 2 && u8[3] == 255);
  int32_t wide[3] = {300, -129, 255};
  int8_t i8[3];
  rt_convert(wide, LATHE_I32, i8, LATHE_I8, 3);
  CHECK(i8[0] == 44 && i8[1] == 127 && i8[2] == -1);   /* wraps as two's complement */
  int64_t big[2] = {INT64_MAX, -3}, back[2];
  rt_convert(big, LATHE_I64, back, LATHE_I64, 2);
  CHECK(back[0] == INT64_MAX && back[1] == -3);
  uint8_t odd[3] = {0, 7, 1}, norm[3];
  rt_convert(odd, LATHE_BOOL, norm, LATHE_BOOL, 3);
  CHECK(norm[0] == 0 && norm[1] == 1 && norm[2] == 1);
  uint16_t h[2];
  float inf2[2] = {INFINITY, NAN}, out2[2];
  rt_convert(inf2, LATHE_F32, h, LATHE_F16, 2);
  rt_convert(h, LATHE_F16, h, LATHE_BF16, 2);          /* in place, same width */
  rt_convert(h, LATHE_BF16, out2, LATHE_F32, 2);
  CHECK(out2[0] == INFINITY && isnan(out2[1]));
  /* every pair: small values survive f32 -> A -> B -> f32 */
  const float vals[5] = {0, 1, 1, 0, 1};
  for (int a = LATHE_F32; a <= LATHE_BOOL; a++)
    for (int c = LATHE_F32; c <= LATHE_BOOL; c++) {
      unsigned char ba[40], bc[40];
      float r[5];
      rt_convert(vals, LATHE_F32, ba, (lathe_dtype)a, 5);
      rt_convert(ba, (lathe_dtype)a, bc, (lathe_dtype)c, 5);
      rt_convert(bc, (lathe_dtype)c, r, LATHE_F32, 5);
      CHECK_MSG(memcmp(r, vals, sizeof r) == 0, "%s -> %s", lathe_dtype_name(a), lathe_dtype_name(c));
    }
}

static void test_helpers(void) {
  CHECK_STR(lathe_dtype_name(LATHE_BF16), "bf16");
  CHECK_STR(lathe_dtype_name((lathe_dtype)42), "?");
  CHECK(lathe_dtype_size(LATHE_I64) == 8 && lathe_dtype_size(LATHE_BOOL) == 1);
  lathe_tensor t = {LATHE_F16, 2, {3, 5}, NULL};
  CHECK(lathe_tensor_numel(&t) == 15 && lathe_tensor_bytes(&t) == 30);
  t.rank = 0;
  CHECK(lathe_tensor_numel(&t) == 1);
  t.rank = 3;
  t.shape[0] = t.shape[1] = t.shape[2] = INT64_C(1) << 32;
  CHECK(lathe_tensor_numel(&t) == -1 && lathe_tensor_bytes(&t) == 0);
  lathe_error e = {LATHE_EUSER, strdup("x")};
  lathe_error_clear(&e);
  CHECK(e.message == NULL && e.code == LATHE_OK);
}

/* ---- atomic writes ---- */

static int count_temps(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (strstr(de->d_name, ".tmp.")) n++;
  if (d) closedir(d);
  return n;
}

static void check_content(const char *path, const char *want) {
  char *data;
  size_t len;
  CHECK(rt_read_file(path, &data, &len, msg, sizeof msg) == 0);
  if (!data) return;
  CHECK(len == strlen(want) && strcmp(data, want) == 0);
  free(data);
}

static void test_atomic(void) {
  char p[512];
  snprintf(p, sizeof p, "%s", tpath("keep.bin"));
  rt_chunk old[1] = {{"old", 3}}, two[2] = {{"new ", 4}, {"content", 7}};
  CHECK(rt_write_atomic(p, old, 1, msg, sizeof msg) == 0);
  check_content(p, "old");
  CHECK(rt_write_atomic(p, two, 2, msg, sizeof msg) == 0);
  check_content(p, "new content");
  CHECK(rt_write_atomic(p, old, 1, msg, sizeof msg) == 0);

  /* a directory that does not exist */
  const char *q = tpath("no/such/dir/x.bin");
  char want[1100];
  CHECK(rt_write_atomic(q, two, 2, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot write '%s': No such file or directory", q);
  CHECK_STR(msg, want);

  /* the temp file cannot be created next to an existing file whose name
   * leaves no room for the suffix: the old file stays as it was */
  char longname[260];
  memset(longname, 'n', 250);
  longname[250] = '\0';
  const char *lp = tpath(longname);
  put_file(lp, "old", 3);
  CHECK(rt_write_atomic(lp, two, 2, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot write '%s': File name too long", lp);
  CHECK_STR(msg, want);
  check_content(lp, "old");
  unlink(lp);

  /* the write itself fails half way (file size limit): the old file stays,
   * the temp file is removed */
  struct rlimit saved, small;
  if (getrlimit(RLIMIT_FSIZE, &saved) == 0) {
    small = saved;
    small.rlim_cur = 5;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &small) == 0) {
      CHECK(rt_write_atomic(p, two, 2, msg, sizeof msg) == -1);
      setrlimit(RLIMIT_FSIZE, &saved);
      snprintf(want, sizeof want, "cannot write '%s': File too large", p);
      CHECK_STR(msg, want);
      check_content(p, "old");
    }
    signal(SIGXFSZ, prev);
  }
  CHECK(count_temps() == 0);

  /* rename over a directory fails: nothing left behind either */
  mkdir(tpath("adir"), 0777);
  put_file(tpath("adir/inside"), "x", 1);
  CHECK(rt_write_atomic(tpath("adir"), old, 1, msg, sizeof msg) == -1);
  CHECK(count_temps() == 0);
  unlink(tpath("adir/inside"));

  char *data;
  size_t len;
  CHECK(rt_read_file(tpath("adir"), &data, &len, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot read '%s': Is a directory", tpath("adir"));
  CHECK_STR(msg, want);
  CHECK(data == NULL);
  rmdir(tpath("adir"));
  CHECK(rt_read_file(tpath("missing"), &data, &len, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot read '%s': No such file or directory", tpath("missing"));
  CHECK_STR(msg, want);
  unlink(p);
}

/* ---- .npy ---- */

static void test_npy_reference(void) {
  static const struct {
    const char *file;
    lathe_dtype dt;
    double scale, offset;
  } ref[] = {
    {"f32_2x3.npy", LATHE_F32, 0.5, 0}, {"f64_2x3.npy", LATHE_F32, 0.5, 0}, {"f16_2x3.npy", LATHE_F16, 0.5, 0},
    {"i32_2x3.npy", LATHE_I32, 1, 0},   {"i64_2x3.npy", LATHE_I64, 1, 0},   {"i8_2x3.npy", LATHE_I8, 1, 0},
    {"u8_2x3.npy", LATHE_U8, 1, 250},   {"bool_2x3.npy", LATHE_BOOL, 1, 0}, {"v2_f32.npy", LATHE_F32, 0.5, 0},
    {"v3_f32.npy", LATHE_F32, 0.5, 0},
  };
  for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
    lathe_tensor t;
    char path[256];
    snprintf(path, sizeof path, FILES "%s", ref[i].file);
    CHECK_MSG(rt_npy_read(path, &t, msg, sizeof msg) == 0, "%s: %s", path, msg);
    if (t.data) check_base(&t, ref[i].dt, ref[i].scale, ref[i].offset);
    lathe_tensor_free(&t);
  }
  lathe_tensor t;
  CHECK(rt_npy_read(FILES "scalar_f32.npy", &t, msg, sizeof msg) == 0);
  CHECK(t.rank == 0 && t.dtype == LATHE_F32 && t.data && f32(&t, 0) == 3.5f);
  lathe_tensor_free(&t);
  CHECK(rt_npy_read(FILES "vec5_i64.npy", &t, msg, sizeof msg) == 0);
  CHECK(t.rank == 1 && t.shape[0] == 5 && t.data && ((int64_t *)t.data)[4] == INT64_C(4000000000000));
  lathe_tensor_free(&t);
  CHECK(rt_npy_read(FILES "empty_0x3_f32.npy", &t, msg, sizeof msg) == 0);
  CHECK(t.rank == 2 && t.shape[0] == 0 && t.shape[1] == 3 && t.data != NULL);
  lathe_tensor_free(&t);
  CHECK(rt_npy_read(FILES "rank4_f32.npy", &t, msg, sizeof msg) == 0);
  CHECK(t.rank == 4 && t.shape[3] == 4 && t.data && f32(&t, 23) == 23.0f);
  lathe_tensor_free(&t);
}

static void test_npy_roundtrip(void) {
  for (int d = LATHE_F32; d <= LATHE_BOOL; d++) {
    float src[6];
    double off = d == LATHE_U8 ? 250 : 0;
    for (int i = 0; i < 6; i++) src[i] = (float)(d == LATHE_BOOL ? ((int)BASE[i] % 2 == 0) : BASE[i] + off);
    unsigned char buf[48];
    rt_convert(src, LATHE_F32, buf, (lathe_dtype)d, 6);
    lathe_tensor t = {(lathe_dtype)d, 2, {2, 3}, buf}, r;
    const char *p = tpath("rt.npy");
    CHECK(rt_npy_write(p, &t, msg, sizeof msg) == 0);
    CHECK_MSG(rt_npy_read(p, &r, msg, sizeof msg) == 0, "%s", msg);
    if (r.data) check_base(&r, d == LATHE_BF16 ? LATHE_F32 : (lathe_dtype)d, 1, off); /* bf16 widens */
    lathe_tensor_free(&r);
    struct stat st;
    CHECK(stat(p, &st) == 0 && st.st_size == 128 + 6 * (off_t)lathe_dtype_size(d == LATHE_BF16 ? LATHE_F32 : d));
  }
  /* scalar, 1-d, empty, rank 8 */
  float one = 2.5f;
  lathe_tensor s = {LATHE_F32, 0, {0}, &one}, r;
  CHECK(rt_npy_write(tpath("s.npy"), &s, msg, sizeof msg) == 0);
  CHECK(rt_npy_read(tpath("s.npy"), &r, msg, sizeof msg) == 0 && r.rank == 0 && r.data && f32(&r, 0) == 2.5f);
  lathe_tensor_free(&r);
  lathe_tensor v = {LATHE_F32, 1, {1}, &one};
  CHECK(rt_npy_write(tpath("s.npy"), &v, msg, sizeof msg) == 0);
  CHECK(rt_npy_read(tpath("s.npy"), &r, msg, sizeof msg) == 0 && r.rank == 1 && r.shape[0] == 1);
  lathe_tensor_free(&r);
  lathe_tensor e = {LATHE_I32, 2, {4, 0}, NULL};
  CHECK(rt_npy_write(tpath("s.npy"), &e, msg, sizeof msg) == 0);
  CHECK(rt_npy_read(tpath("s.npy"), &r, msg, sizeof msg) == 0 && r.rank == 2 && r.shape[1] == 0);
  lathe_tensor_free(&r);
  lathe_tensor r8 = {LATHE_U8, 8, {1, 1, 1, 1, 1, 1, 1, 1}, "z"};
  CHECK(rt_npy_write(tpath("s.npy"), &r8, msg, sizeof msg) == 0);
  CHECK(rt_npy_read(tpath("s.npy"), &r, msg, sizeof msg) == 0 && r.rank == 8 && r.data && *(char *)r.data == 'z');
  lathe_tensor_free(&r);
  lathe_tensor bad = {LATHE_F32, 9, {0}, &one};
  CHECK(rt_npy_write(tpath("s.npy"), &bad, msg, sizeof msg) == -1);
  char want[600];
  snprintf(want, sizeof want, "cannot write '%s': invalid rank", tpath("s.npy"));
  CHECK_STR(msg, want);
  unlink(tpath("s.npy"));
  unlink(tpath("rt.npy"));
}

/* A v1.0 file with the given dict and n zero bytes of data. */
static size_t make_npy(unsigned char *out, const char *dict, size_t n) {
  size_t k = strlen(dict);
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  out[8] = (unsigned char)(k & 0xff);
  out[9] = (unsigned char)(k >> 8);
  memcpy(out + 10, dict, k);
  memset(out + 10 + k, 0, n);
  return 10 + k + n;
}

/* Read `bytes` as a .npy file; the message must be want_fmt with the path
 * in place of %s. */
static void expect_npy(const void *bytes, size_t n, const char *want_fmt, int line) {
  const char *p = tpath("bad.npy");
  put_file(p, bytes, n);
  lathe_tensor t = {LATHE_F32, 0, {0}, NULL};
  int rc = rt_npy_read(p, &t, msg, sizeof msg);
  char want[1200];
  snprintf(want, sizeof want, want_fmt, p);
  CHECK_MSG(rc == -1 && t.data == NULL && strcmp(msg, want) == 0, "line %d: got '%s' want '%s'", line, msg,
            want);
  lathe_tensor_free(&t);
}

static void expect_npy_dict(const char *dict, size_t n, const char *want_fmt, int line) {
  unsigned char buf[1024];
  expect_npy(buf, make_npy(buf, dict, n), want_fmt, line);
}

/* A dict that must be accepted. */
static void accept_npy_dict(const char *dict, size_t n, int rank, int64_t d0) {
  unsigned char buf[1024];
  size_t len = make_npy(buf, dict, n);
  const char *p = tpath("ok.npy");
  put_file(p, buf, len);
  lathe_tensor t;
  CHECK_MSG(rt_npy_read(p, &t, msg, sizeof msg) == 0, "%s: %s", dict, msg);
  CHECK(t.rank == rank && (rank == 0 || t.shape[0] == d0));
  lathe_tensor_free(&t);
  unlink(p);
}

static void copy_file_prefix(const char *src, unsigned char *buf, size_t *n) {
  char *d;
  size_t len;
  *n = 0;
  if (rt_read_file(src, &d, &len, msg, sizeof msg)) return;
  memcpy(buf, d, len);
  *n = len;
  free(d);
}

static void test_npy_bad(void) {
#define BAD(dict, n, want) expect_npy_dict(dict, n, want, __LINE__)
  expect_npy("NOTNUMPY\x01\x00\x10\x00{}", 14, "'%s' is not a .npy file (no \\x93NUMPY magic)", __LINE__);
  expect_npy("", 0, "'%s' is truncated: 0 bytes, too short for a .npy header", __LINE__);
  expect_npy("\x93NUMPY\x04\x00\x10\x00", 10, "'%s': unsupported .npy format version 4.0", __LINE__);
  expect_npy("\x93NUMPY\x02\x00\x10\x00", 10, "'%s' is truncated: 10 bytes, too short for a .npy header",
             __LINE__);
  expect_npy("\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14,
             "'%s' is truncated: header length is 4294967295 bytes but 2 follow", __LINE__);
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", 24, "'%s': bad header: expected ',' or '}'");
  BAD("{'descr': '<f4', 'shape': (2,), }", 8,
      "'%s': bad header: missing key (needs 'descr', 'fortran_order' and 'shape')");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", 8, "'%s': bad header: unexpected key");
  BAD("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
      "'%s': bad header: duplicate key");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8, "'%s': bad header: 'shape' must be a tuple");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", 8, "'%s': bad header: 'shape' must be a tuple");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", 8,
      "'%s': bad header: shape entries must be non-negative integers");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", 8, "'%s': bad header: expected ',' or ')' in 'shape'");
  BAD("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8,
      "'%s': bad header: 'fortran_order' must be True or False");
  BAD("{'descr': <f4, 'fortran_order': False, 'shape': (2,)}", 8, "'%s': bad header: expected a quoted string");
  BAD("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", 8, "'%s': unsupported dtype ('<f4, ')");
  BAD("{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "'%s': bad header: expected ':' after a key");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk", 8,
      "'%s': bad header: unexpected text after '}'");
  BAD("", 0, "'%s': bad header: expected '{'");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", 8,
      "'%s': shape has too many elements");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 8,
      "'%s': a shape entry is too large");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1)}", 8,
      "'%s': rank exceeds the maximum of 8");
  BAD("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", 8,
      "'%s': structured arrays are not supported ('[...]')");
  BAD("{'descr': '|f4', 'fortran_order': False, 'shape': (2,)}", 8, "'%s': unsupported dtype ('|f4')");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
      "'%s' is truncated: header says 2x3 f32 (24 bytes) but 20 bytes follow");
  BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 2,
      "'%s' is truncated: header says scalar f32 (4 bytes) but 2 bytes follow");
  BAD("{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }", 41,
      "'%s': 1 bytes of trailing data after the 5 f64 array (40 bytes)");
#undef BAD

  /* files NumPy wrote */
  unsigned char buf[4096];
  size_t n;
  copy_file_prefix(FILES "bigendian_f32.npy", buf, &n);
  expect_npy(buf, n, "'%s': big-endian arrays are not supported ('>f4')", __LINE__);
  copy_file_prefix(FILES "fortran_f32.npy", buf, &n);
  expect_npy(buf, n, "'%s': Fortran-order arrays are not supported (save with np.ascontiguousarray)", __LINE__);
  copy_file_prefix(FILES "object.npy", buf, &n);
  expect_npy(buf, n, "'%s': object arrays are not supported ('|O')", __LINE__);
  copy_file_prefix(FILES "complex64.npy", buf, &n);
  expect_npy(buf, n, "'%s': unsupported dtype ('<c8')", __LINE__);

  /* every truncation of a real file */
  copy_file_prefix(FILES "f32_2x3.npy", buf, &n);
  size_t hend = 10 + (buf[8] | (size_t)buf[9] << 8);
  for (size_t k = 0; k < n; k++) {
    char want[200];
    if (k < 10)
      snprintf(want, sizeof want, "'%%s' is truncated: %zu bytes, too short for a .npy header", k);
    else if (k < hend)
      snprintf(want, sizeof want, "'%%s' is truncated: header length is %zu bytes but %zu follow", hend - 10,
               k - 10);
    else
      snprintf(want, sizeof want, "'%%s' is truncated: header says 2x3 f32 (24 bytes) but %zu bytes follow",
               k - hend);
    expect_npy(buf, k, want, __LINE__);
  }

  /* random bytes after a valid magic, and fully random: never a crash */
  uint64_t s = 12345;
  for (int r = 0; r < 200; r++) {
    size_t len = 10 + (size_t)(r % 60);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    for (size_t i = r % 2 ? 0 : 8; i < len; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      buf[i] = (unsigned char)(s >> 56);
    }
    if (r % 3 == 0 && len > 20) memcpy(buf + 10, "{'descr': ", 10);
    const char *p = tpath("rand.npy");
    put_file(p, buf, len);
    lathe_tensor t;
    msg[0] = '\0';
    int rc = rt_npy_read(p, &t, msg, sizeof msg);
    CHECK(rc == -1 && msg[0] != '\0');
    if (rc == 0) lathe_tensor_free(&t);
  }
  unlink(tpath("rand.npy"));
  unlink(tpath("bad.npy"));
}

static void test_npy_dialects(void) {
  accept_npy_dict("{'shape': (3,), 'fortran_order': False, 'descr': '<i4'}", 12, 1, 3);
  accept_npy_dict("{ \"descr\" : \"|u1\" ,\"fortran_order\":False,\"shape\":( 3L , ) , }   \n", 3, 1, 3);
  accept_npy_dict("{'descr': '<u1', 'fortran_order': False, 'shape': (3,)}", 3, 1, 3);
  accept_npy_dict("{'descr': '<i1', 'fortran_order': False, 'shape': (3,)}", 3, 1, 3);
  accept_npy_dict("{'descr': '|b1', 'fortran_order': False, 'shape': ()}", 1, 0, 0);
  accept_npy_dict("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 0, 5,),}", 0, 3, 2);
}

/* ---- safetensors ---- */

static void test_st_reference(void) {
  rt_st_file f;
  CHECK_MSG(rt_st_read(FILES "ref.safetensors", &f, msg, sizeof msg) == 0, "%s", msg);
  CHECK(f.n == 12);
  static const struct {
    const char *name;
    lathe_dtype dt;
    double scale, offset;
  } ref[] = {
    {"a.f32", LATHE_F32, 0.5, 0}, {"b.f16", LATHE_F16, 0.5, 0}, {"c.bf16", LATHE_BF16, 0.5, 0},
    {"d.i32", LATHE_I32, 1, 0},   {"e.i64", LATHE_I64, 1, 0},   {"f.i8", LATHE_I8, 1, 0},
    {"g.u8", LATHE_U8, 1, 250},   {"h.bool", LATHE_BOOL, 1, 0}, {"i.f64", LATHE_F32, 0.5, 0},
  };
  for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
    const rt_st_entry *e = rt_st_find(&f, ref[i].name);
    CHECK_MSG(e != NULL, "%s missing", ref[i].name);
    if (e) check_base(&e->t, ref[i].dt, ref[i].scale, ref[i].offset);
    if (e) CHECK(((uintptr_t)e->t.data % 16) == 0);
  }
  const rt_st_entry *e = rt_st_find(&f, "j.scalar");
  CHECK(e && e->t.rank == 0 && f32(&e->t, 0) == 3.5f);
  e = rt_st_find(&f, "k.empty");
  CHECK(e && e->t.rank == 2 && e->t.shape[0] == 0 && e->t.shape[1] == 3);
  e = rt_st_find(&f, "layers/0.weight");
  CHECK(e && e->t.rank == 2 && e->t.shape[0] == 3 && f32(&e->t, 11) == 11.0f);
  CHECK(rt_st_find(&f, "nope") == NULL && rt_st_find(&f, "__metadata__") == NULL);
  rt_st_free(&f);
  CHECK(f.n == 0 && f.e == NULL);
}

static void test_st_roundtrip(void) {
  unsigned char bufs[8][48];
  rt_st_entry in[11];
  static const char *names[8] = {"z.f32", "y.f16", "x.bf16", "w.i32", "v.i64", "u.i8", "t.u8", "s.bool"};
  for (int d = LATHE_F32; d <= LATHE_BOOL; d++) {
    float src[6];
    for (int i = 0; i < 6; i++)
      src[i] = (float)(d == LATHE_BOOL ? ((int)BASE[i] % 2 == 0) : BASE[i] + (d == LATHE_U8 ? 250 : 0));
    rt_convert(src, LATHE_F32, bufs[d], (lathe_dtype)d, 6);
    in[d] = (rt_st_entry){(char *)names[d], {(lathe_dtype)d, 2, {2, 3}, bufs[d]}};
  }
  float sc = -7.25f;
  in[8] = (rt_st_entry){"scalar", {LATHE_F32, 0, {0}, &sc}};
  in[9] = (rt_st_entry){"empty", {LATHE_I64, 3, {2, 0, 4}, NULL}};
  in[10] = (rt_st_entry){"a/b\"c\\d", {LATHE_U8, 1, {3}, "odd"}};  /* 3 bytes: later data misaligned */
  const char *p = tpath("rt.safetensors");
  CHECK_MSG(rt_st_write(p, in, 11, msg, sizeof msg) == 0, "%s", msg);
  rt_st_file f;
  CHECK_MSG(rt_st_read(p, &f, msg, sizeof msg) == 0, "%s", msg);
  CHECK(f.n == 11);
  for (int i = 0; i < f.n && f.n == 11; i++) CHECK_STR(f.e[i].name, in[i].name);  /* order kept */
  for (int d = LATHE_F32; d <= LATHE_BOOL && f.n == 11; d++) check_base(&f.e[d].t, (lathe_dtype)d, 1, d == LATHE_U8 ? 250 : 0);
  if (f.n == 11) {
    CHECK(f.e[8].t.rank == 0 && f32(&f.e[8].t, 0) == -7.25f);
    CHECK(f.e[9].t.rank == 3 && f.e[9].t.shape[1] == 0 && f.e[9].t.shape[2] == 4);
    CHECK(f.e[10].t.shape[0] == 3 && memcmp(f.e[10].t.data, "odd", 3) == 0);
  }
  rt_st_free(&f);
  /* header size is a multiple of 8 and the header ends in space padding */
  char *raw;
  size_t len;
  CHECK(rt_read_file(p, &raw, &len, msg, sizeof msg) == 0);
  if (raw) {
    uint64_t hn;
    memcpy(&hn, raw, 8);
    CHECK(hn % 8 == 0 && raw[8] == '{');
    static const char head[] = "{\"z.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},";
    CHECK(strncmp(raw + 8, head, sizeof head - 1) == 0);
    free(raw);
  }
  /* an empty file */
  CHECK(rt_st_write(p, NULL, 0, msg, sizeof msg) == 0);
  CHECK(rt_st_read(p, &f, msg, sizeof msg) == 0 && f.n == 0);
  rt_st_free(&f);
  CHECK(rt_read_file(p, &raw, &len, msg, sizeof msg) == 0);
  if (raw) {
    CHECK(len == 16 && memcmp(raw + 8, "{}      ", 8) == 0);
    free(raw);
  }
  /* writer refusals */
  char want[600];
  rt_st_entry dup[2] = {in[0], in[0]};
  CHECK(rt_st_write(p, dup, 2, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot write '%s': tensor 'z.f32' appears twice", p);
  CHECK_STR(msg, want);
  rt_st_entry meta = {"__metadata__", in[0].t};
  CHECK(rt_st_write(p, &meta, 1, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot write '%s': tensor '__metadata__': '__metadata__' is not a valid tensor name",
           p);
  CHECK_STR(msg, want);
  rt_st_entry neg = {"neg", {LATHE_F32, 1, {-1}, &sc}};
  CHECK(rt_st_write(p, &neg, 1, msg, sizeof msg) == -1);
  snprintf(want, sizeof want, "cannot write '%s': tensor 'neg': invalid shape", p);
  CHECK_STR(msg, want);
  unlink(p);
}

/* A file with header text h (size field = strlen(h)) and n zero data bytes. */
static size_t make_st(unsigned char *out, const char *h, size_t n) {
  uint64_t k = strlen(h);
  memcpy(out, &k, 8);
  memcpy(out + 8, h, k);
  memset(out + 8 + k, 0, n);
  return 8 + k + n;
}

static void expect_st(const void *bytes, size_t n, const char *want_fmt, int line) {
  const char *p = tpath("w.safetensors");
  put_file(p, bytes, n);
  rt_st_file f = {.e = NULL, .n = 5};
  int rc = rt_st_read(p, &f, msg, sizeof msg);
  char want[1200];
  snprintf(want, sizeof want, want_fmt, p);
  CHECK_MSG(rc == -1 && f.n == 0 && f.e == NULL && strcmp(msg, want) == 0, "line %d: got '%s' want '%s'", line,
            msg, want);
}

static void expect_st_hdr(const char *h, size_t n, const char *want_fmt, int line) {
  static unsigned char buf[8192];
  expect_st(buf, make_st(buf, h, n), want_fmt, line);
}

static void test_st_bad(void) {
#define BAD(h, n, want) expect_st_hdr(h, n, want, __LINE__)
  expect_st("\x02\0\0", 3, "'%s' is truncated: 3 bytes, too short for a safetensors header", __LINE__);
  expect_st("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10,
            "'%s': header size 18446744073709551615 exceeds the file size (10 bytes)", __LINE__);
  expect_st("\x10\0\0\0\0\0\0\0{}", 10, "'%s': header size 16 exceeds the file size (10 bytes)", __LINE__);
  BAD("", 0, "'%s': header is not valid JSON: unexpected end of header at byte 0");
  BAD("{\"a\": ", 0, "'%s': header is not valid JSON: unexpected end of header at byte 5");
  BAD("{\"a\": 1,}", 0, "'%s': header is not valid JSON: unexpected character at byte 8");
  BAD("{'a': 1}", 0, "'%s': tensor 'a': entry is not a JSON object"); /* json-c takes single quotes */
  BAD("{} {}", 0, "'%s': header is not valid JSON: unexpected character at byte 3");
  BAD("[1, 2]", 0, "'%s': header is not a JSON object");
  BAD("{\"x\": 5}", 0, "'%s': tensor 'x': entry is not a JSON object");
  BAD("{\"x\": {\"shape\": [], \"data_offsets\": [0, 4]}}", 4, "'%s': tensor 'x': missing 'dtype'");
  BAD("{\"x\": {\"dtype\": 4, \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': 'dtype' is not a string");
  BAD("{\"x\": {\"dtype\": \"U16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': unsupported dtype 'U16'");
  BAD("{\"x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "'%s': tensor 'x': missing 'shape'");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": 3, \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': 'shape' is not an array");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': 'shape' has a negative dimension");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': 'shape' entries must be integers");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [18446744073709551615], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': 'shape' has a dimension that is too large");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': rank exceeds the maximum of 8");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4,
      "'%s': tensor 'x': shape has too many elements");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "'%s': tensor 'x': missing 'data_offsets'");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
      "'%s': tensor 'x': 'data_offsets' must be two non-negative integers");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
      "'%s': tensor 'x': 'data_offsets' must be two non-negative integers");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 4,
      "'%s': tensor 'x': data_offsets [4, 8] are out of range (the data section is 4 bytes)");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", 4,
      "'%s': tensor 'x': data_offsets [4, 0] are out of range (the data section is 4 bytes)");
  BAD("{\"fc1.weight\": {\"dtype\": \"F32\", \"shape\": [10, 5], \"data_offsets\": [0, 100]}}", 200,
      "'%s': tensor 'fc1.weight': data_offsets [0, 100] do not match shape [10, 5] f32 (200 bytes)");
  BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
      " \"b\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
      "'%s': tensors 'a' and 'b' overlap (data_offsets [0, 8] and [4, 12])");
  BAD("{\"__metadata__\": {\"format\": 1}}", 0, "'%s': '__metadata__' must be an object of strings");
  BAD("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}\x01", 4,
      "'%s': header is not valid JSON: unexpected character at byte 61");
#undef BAD

  /* accepted: zero-size tensors anywhere, metadata, space padding */
  unsigned char buf[8192];
  size_t n = make_st(buf, "{\"__metadata__\":{\"format\":\"pt\"},\"e\":{\"dtype\":\"BOOL\",\"shape\":[0],"
                          "\"data_offsets\":[1,1]},\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}   ",
                     2);
  put_file(tpath("ok.safetensors"), buf, n);
  rt_st_file f;
  CHECK_MSG(rt_st_read(tpath("ok.safetensors"), &f, msg, sizeof msg) == 0, "%s", msg);
  CHECK(f.n == 2);
  rt_st_free(&f);
  unlink(tpath("ok.safetensors"));

  /* every truncation of the reference file */
  copy_file_prefix(FILES "ref.safetensors", buf, &n);
  uint64_t hn;
  memcpy(&hn, buf, 8);
  for (size_t k = 0; k < n; k++) {
    const char *p = tpath("w.safetensors");
    put_file(p, buf, k);
    char want[200];
    if (k < 8) snprintf(want, sizeof want, "'%s' is truncated: %zu bytes, too short for a safetensors header", p, k);
    else if (k < 8 + hn)
      snprintf(want, sizeof want, "'%s': header size %llu exceeds the file size (%zu bytes)", p,
               (unsigned long long)hn, k);
    rt_st_file g = {.e = NULL, .n = 0};
    CHECK(rt_st_read(p, &g, msg, sizeof msg) == -1 && g.e == NULL);
    if (k < 8 + hn) CHECK_STR(msg, want);
    else CHECK_MSG(strstr(msg, "are out of range") != NULL, "%zu: %s", k, msg);
  }

  /* random bytes, random headers: never a crash */
  uint64_t s = 777;
  for (int r = 0; r < 300; r++) {
    size_t len = 8 + (size_t)(r % 90);
    for (size_t i = 0; i < len; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      buf[i] = (unsigned char)(s >> 56);
    }
    if (r % 2) {
      size_t cut = (size_t)(r % 5);
      uint64_t k = len - 8 - (cut < len - 8 ? cut : 0);
      memcpy(buf, &k, 8);
      buf[8] = '{';
    }
    const char *p = tpath("rand.safetensors");
    put_file(p, buf, len);
    rt_st_file g;
    msg[0] = '\0';
    int rc = rt_st_read(p, &g, msg, sizeof msg);
    CHECK(rc == -1 && msg[0] != '\0');
    if (rc == 0) rt_st_free(&g);
  }
  unlink(tpath("rand.safetensors"));
  unlink(tpath("w.safetensors"));
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lathe_test_files.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_helpers();
  test_f16();
  test_bf16();
  test_convert();
  test_atomic();
  test_npy_reference();
  test_npy_roundtrip();
  test_npy_bad();
  test_npy_dialects();
  test_st_reference();
  test_st_roundtrip();
  test_st_bad();
  CHECK(count_temps() == 0);
  if (rmdir(tmpdir) != 0) {
    fprintf(stderr, "temp dir not empty: %s\n", strerror(errno));
    test_fail_++;
  }
  return TEST_REPORT();
}
