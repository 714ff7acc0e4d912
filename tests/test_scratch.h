/* test_scratch.h -- a scratch folder for tests that write data files:
 * scratch_open("name") makes a fresh folder under /tmp (mkdtemp), tmp("f")
 * is a path inside it (four live at once), write_file/write_gz/write_text
 * fill files (idx_header starts an IDX one), scratch_close removes the
 * folder. Include after test.h. */
#ifndef LATHE_TEST_SCRATCH_H
#define LATHE_TEST_SCRATCH_H
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64];

static int scratch_open(const char *name) {
  snprintf(dir, sizeof dir, "/tmp/lathe_test_%s_XXXXXX", name);
  return mkdtemp(dir) != NULL;
}

static void scratch_close(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static const char *tmp(const char *name) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(data, 1, n, f);
  fclose(f);
}

static inline void write_gz(const char *path, const void *data, size_t n) {
  gzFile g = gzopen(path, "wb");
  gzwrite(g, data, (unsigned)n);
  gzclose(g);
}

/* idx_header: an IDX file's header (magic with TYPE and RANK, big-endian
 * dims) into b; returns its length. */
static inline size_t idx_header(unsigned char *b, unsigned char type, int rank, const uint32_t *dims) {
  b[0] = b[1] = 0, b[2] = type, b[3] = (unsigned char)rank;
  for (int d = 0; d < rank; d++)
    for (int k = 0; k < 4; k++) b[4 + 4 * d + k] = (unsigned char)(dims[d] >> (24 - 8 * k));
  return 4 + 4 * (size_t)rank;
}

static inline void write_text(const char *name, const char *text) { write_file(tmp(name), text, strlen(text)); }

#endif
