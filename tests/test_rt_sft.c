/* test_rt_sft.c -- liblathe_rt's safetensors reader and writer (rt/rt_sft.c,
 * used by emitted training steps): round trips, files written by it read by
 * Lathe's own reader (runtime/safetensors.c, json-c) and the other way
 * round, and hostile files -- truncated at every length, bad headers of
 * every kind, wrong dtypes and shapes, every header byte flipped -- each
 * refused with a sentence naming the file, never a crash (the suite runs
 * under ASan and UBSan in CI). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt/rt_sft.h"
#include "runtime/runtime.h"
#include "test.h"

static char dir[64];

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

/* A file from a header text and data bytes. */
static unsigned char *file_of(const char *header, const void *data, size_t dn, size_t *len) {
  size_t hn = strlen(header);
  unsigned char *b = malloc(8 + hn + dn + 1);
  for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)hn >> (8 * k));
  memcpy(b + 8, header, hn);
  if (dn) memcpy(b + 8 + hn, data, dn);
  *len = 8 + hn + dn;
  return b;
}

/* parse a copy; 0 or -1, msg filled */
static int parse(const unsigned char *b, size_t len, char *msg, size_t msgn) {
  unsigned char *c = malloc(len + 1);
  memcpy(c, b, len);
  rt_sft_file f;
  int rc = rt_sft_parse("h.safetensors", c, len, &f, msg, msgn);
  if (rc == 0) rt_sft_free(&f);
  return rc;
}

static void round_trip(void) {
  float a[6] = {1, -2, 3.5f, 0, 1e-20f, -0.0f};
  int64_t step = 42;
  rt_sft_tensor t[4] = {
    {.name = "fc1.weight", .dtype = RT_SFT_F32, .rank = 2, .shape = {2, 3}, .data = a, .bytes = sizeof a},
    {.name = "__meta.step", .dtype = RT_SFT_I64, .rank = 1, .shape = {1}, .data = &step, .bytes = 8},
    {.name = "empty", .dtype = RT_SFT_F32, .rank = 1, .shape = {0}, .data = NULL, .bytes = 0},
    {.name = "odd \"name\\ \x01 \xc3\xa9", .dtype = RT_SFT_F32, .rank = 0, .data = a, .bytes = 4},
  };
  char p[128], msg[512];
  path_of(p, sizeof p, "rt.safetensors");
  CHECK_MSG(rt_sft_write(p, t, 4, msg, sizeof msg) == 0, "%s", msg);
  rt_sft_file f;
  CHECK_MSG(rt_sft_read(p, &f, msg, sizeof msg) == 0, "%s", msg);
  CHECK(f.n == 4);
  for (int k = 0; k < 4 && f.n == 4; k++) {
    const rt_sft_tensor *g = rt_sft_find(&f, t[k].name);
    CHECK_MSG(g != NULL, "tensor %d not found", k);
    if (!g) continue;
    CHECK(g->dtype == t[k].dtype && g->rank == t[k].rank && g->bytes == t[k].bytes);
    CHECK(memcmp(g->shape, t[k].shape, sizeof(int64_t) * (size_t)t[k].rank) == 0);
    CHECK(t[k].bytes == 0 || memcmp(g->data, t[k].data, (size_t)t[k].bytes) == 0);
  }
  CHECK(rt_sft_find(&f, "nope") == NULL);
  rt_sft_free(&f);
  /* Lathe's own reader (json-c) takes the file */
  rt_st_file lf = {0};
  CHECK_MSG(rt_st_read(p, &lf, msg, sizeof msg) == 0, "%s", msg);
  const rt_st_entry *e = lf.n ? rt_st_find(&lf, "fc1.weight") : NULL;
  CHECK(e && e->t.dtype == LATHE_F32 && e->t.rank == 2 && e->t.shape[1] == 3 && !memcmp(e->t.data, a, sizeof a));
  e = lf.n ? rt_st_find(&lf, "odd \"name\\ \x01 \xc3\xa9") : NULL;
  CHECK(e != NULL);
  rt_st_free(&lf);
  /* and the other way round: a file from Lathe's writer, with metadata-free header */
  rt_st_entry le[2] = {{.name = "w", .t = {.dtype = LATHE_F32, .rank = 2, .shape = {3, 2}, .data = a}},
                       {.name = "__meta.step", .t = {.dtype = LATHE_I64, .rank = 1, .shape = {1}, .data = &step}}};
  path_of(p, sizeof p, "lathe.safetensors");
  CHECK_MSG(rt_st_write(p, le, 2, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(rt_sft_read(p, &f, msg, sizeof msg) == 0, "%s", msg);
  const rt_sft_tensor *g = rt_sft_find(&f, "w");
  CHECK(g && g->dtype == RT_SFT_F32 && g->shape[0] == 3 && g->shape[1] == 2 && !memcmp(g->data, a, sizeof a));
  g = rt_sft_find(&f, "__meta.step");
  CHECK(g && g->dtype == RT_SFT_I64 && !memcmp(g->data, &step, 8));
  rt_sft_free(&f);
}

/* Every prefix of a good file is refused cleanly; every header byte
 * changed still parses or is refused, never crashes (ASan watches). */
static void truncations_and_flips(void) {
  float a[6] = {0};
  rt_sft_tensor t[2] = {{.name = "a", .dtype = RT_SFT_F32, .rank = 2, .shape = {2, 3}, .data = a, .bytes = 24},
                        {.name = "b", .dtype = RT_SFT_F32, .rank = 1, .shape = {1}, .data = a, .bytes = 4}};
  char p[128], msg[512];
  path_of(p, sizeof p, "good.safetensors");
  CHECK(rt_sft_write(p, t, 2, msg, sizeof msg) == 0);
  FILE *fp = fopen(p, "rb");
  unsigned char buf[4096];
  size_t len = fp ? fread(buf, 1, sizeof buf, fp) : 0;
  if (fp) fclose(fp);
  CHECK(len > 40);
  int refused = 0;
  for (size_t n = 0; n < len; n++) {
    msg[0] = '\0';
    refused += parse(buf, n, msg, sizeof msg) != 0 && strstr(msg, "h.safetensors") != NULL;
  }
  CHECK_MSG(refused == (int)len, "%d of %zu truncations refused with the file named", refused, len);
  CHECK(parse(buf, len, msg, sizeof msg) == 0);
  size_t hn = buf[0] | (size_t)buf[1] << 8;
  for (size_t i = 8; i < 8 + hn; i++)
    for (int v = 0; v < 256; v += 37) {
      unsigned char c = buf[i];
      buf[i] = (unsigned char)v;
      (void)parse(buf, len, msg, sizeof msg);
      buf[i] = c;
    }
  CHECK(1);
}

static void hostile_headers(void) {
  static const struct {
    const char *header;
    size_t data;      /* bytes of data after the header */
    const char *want; /* in the message */
  } cases[] = {
    {"", 0, "ends too early"},
    {"[1, 2]", 0, "expected '{'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "ends too early"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]} x}", 8, "expected ','"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "after the header"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "lacks dtype, shape or data_offsets"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown field"},
    {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "appears twice"},
    {"{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unsupported dtype"},
    {"{\"a\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "expected '\"'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "not a fraction"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8, "too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "too many values"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "do not match"},
    {"{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "do not match"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "out of range"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "out of range"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "two integers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "appears twice"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlap"},
    {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "NUL"},
    {"{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "surrogate"},
    {"{\"a\\q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "bad escape"},
    {"{\"a\n\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "control character"},
    {"{\"a", 0, "unterminated string"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "expected '\"'"},
  };
  char zeros[16] = {0}, msg[512];
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    size_t len;
    unsigned char *b = file_of(cases[k].header, zeros, cases[k].data, &len);
    msg[0] = '\0';
    int rc = parse(b, len, msg, sizeof msg);
    CHECK_MSG(rc != 0 && strstr(msg, cases[k].want) && strstr(msg, "h.safetensors"),
              "case %zu: rc %d, message '%s', want '%s'", k, rc, msg, cases[k].want);
    free(b);
  }
  /* accepted: metadata, whitespace, escapes, an empty object */
  static const char *const fine[] = {
    "{}",
    " { \"__metadata__\" : { \"format\" : \"pt\" } , \"a\\u00e9\\ud83d\\ude00\" : { \"shape\" : [ 2 ] , "
    "\"data_offsets\" : [ 0 , 8 ] , \"dtype\" : \"F32\" } }   ",
    "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
  };
  for (size_t k = 0; k < sizeof fine / sizeof fine[0]; k++) {
    size_t len;
    unsigned char *b = file_of(fine[k], zeros, 8, &len);
    CHECK_MSG(parse(b, len, msg, sizeof msg) == 0, "fine %zu: %s", k, msg);
    free(b);
  }
  /* a header length beyond the file */
  unsigned char big[16] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, '{', '}'};
  CHECK(parse(big, sizeof big, msg, sizeof msg) != 0 && strstr(msg, "truncated"));
}

static void writer_errors(void) {
  float a[2] = {0};
  char p[128], msg[512];
  rt_sft_tensor t = {.name = "a", .dtype = RT_SFT_F32, .rank = 1, .shape = {2}, .data = a, .bytes = 8};
  path_of(p, sizeof p, "no/such/dir/x.safetensors");
  CHECK(rt_sft_write(p, &t, 1, msg, sizeof msg) != 0 && strstr(msg, "cannot write") && strstr(msg, "x.safetensors"));
  path_of(p, sizeof p, "w.safetensors");
  rt_sft_tensor bad = t;
  bad.bytes = 4;
  CHECK(rt_sft_write(p, &bad, 1, msg, sizeof msg) != 0 && strstr(msg, "malformed"));
  bad = t, bad.dtype = 99;
  CHECK(rt_sft_write(p, &bad, 1, msg, sizeof msg) != 0 && strstr(msg, "malformed"));
  rt_sft_tensor two[2] = {t, t};
  CHECK(rt_sft_write(p, two, 2, msg, sizeof msg) != 0 && strstr(msg, "twice"));
  struct stat st;
  CHECK(stat(p, &st) != 0); /* nothing written by a refused write */
  /* a write replaces the file whole, and leaves no temporary file */
  CHECK(rt_sft_write(p, &t, 1, msg, sizeof msg) == 0);
  a[0] = 5;
  CHECK(rt_sft_write(p, &t, 1, msg, sizeof msg) == 0);
  rt_sft_file f;
  CHECK(rt_sft_read(p, &f, msg, sizeof msg) == 0 && f.n == 1 && ((const unsigned char *)f.t[0].data)[3] == 0x40);
  rt_sft_free(&f);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", dir);
  CHECK(system(cmd) != 0);
  path_of(p, sizeof p, "missing.safetensors");
  CHECK(rt_sft_read(p, &f, msg, sizeof msg) != 0 && strstr(msg, "cannot open") && f.n == 0);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/test_rt_sft.XXXXXX");
  if (!mkdtemp(dir)) return 1;
  round_trip();
  truncations_and_flips();
  hostile_headers();
  writer_errors();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return TEST_REPORT();
}
