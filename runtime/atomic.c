/* atomic.c -- whole-file reads, and writes that never leave a half-written
 * file behind: the data goes to a temporary file in the same directory
 * (so rename stays on one filesystem), is fsynced, then renamed over the
 * target; a crash leaves either the old file or the new one. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime.h"

static atomic_uint tmp_counter;

/* Write all of buf, retrying short writes and interrupted calls. */
static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t k = write(fd, buf, len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += k;
    len -= (size_t)k;
  }
  return 0;
}

/* fsync the directory holding path so the rename itself is durable. Some
 * filesystems refuse to fsync directories; the data is already in place by
 * then, so failures here are ignored. */
static void sync_parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = NULL;
  if (!slash) dir = strdup(".");
  else if (slash == path) dir = strdup("/");
  else dir = strndup(path, (size_t)(slash - path));
  if (!dir) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

static int write_chunks(int fd, const rt_chunk *chunks, int nchunks) {
  for (int i = 0; i < nchunks; i++)
    if (chunks[i].len > 0 && write_all(fd, chunks[i].data, chunks[i].len) != 0) return -1;
  return fsync(fd);
}

int rt_write_atomic(const char *path, const rt_chunk *chunks, int nchunks, char *msg, size_t msgn) {
  if (!path || !*path) {
    snprintf(msg, msgn, "cannot write '': empty file name");
    return -1;
  }
  size_t tn = strlen(path) + 64;
  char *tmp = malloc(tn);
  if (!tmp) {
    snprintf(msg, msgn, "cannot write '%s': out of memory", path);
    return -1;
  }
  snprintf(tmp, tn, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1u));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  int rc = -1, err = 0;
  if (fd < 0) {
    err = errno;
  } else {
    if (write_chunks(fd, chunks, nchunks) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    else rc = 0;
  }
  if (rc == 0) sync_parent_dir(path);
  else snprintf(msg, msgn, "cannot write '%s': %s", path, strerror(err));
  free(tmp);
  return rc;
}

int rt_read_file(const char *path, char **data, size_t *len, char *msg, size_t msgn) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(msg, msgn, "cannot read '%s': %s", path, strerror(errno));
    return -1;
  }
  /* Start from the size fstat reports, but keep reading to EOF so pipes and
   * files that change size still work. */
  struct stat st;
  size_t cap = 4096, n = 0;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
      (uint64_t)st.st_size < SIZE_MAX - 1)
    cap = (size_t)st.st_size + 1;
  char *buf = malloc(cap);
  int err = buf ? 0 : ENOMEM;
  while (!err) {
    if (n + 1 >= cap) {
      /* Full: probe for EOF before growing, so a file whose size fstat
       * reported exactly is never reallocated. */
      char probe;
      ssize_t k = read(fd, &probe, 1);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) err = errno;
      if (k <= 0) break;
      char *nb = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        err = ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
      buf[n++] = probe;
      continue;
    }
    ssize_t k = read(fd, buf + n, cap - n - 1);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) err = errno;
    if (k <= 0) break;
    n += (size_t)k;
  }
  close(fd);
  if (err) {
    free(buf);
    snprintf(msg, msgn, "cannot read '%s': %s", path, strerror(err));
    return -1;
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  return 0;
}
