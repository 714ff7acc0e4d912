/* atomic.c -- whole-file reads, and writes that never leave a half-written
 * file behind: the data goes to a temporary file in the same directory
 * (so rename stays on one filesystem), is fsynced, then renamed over the
 * target; a crash leaves either the old file or the new one.
 *
 * What is already at the path is respected, never replaced by a regular
 * file: a symbolic link is followed and the file it names is the one
 * replaced (the temporary file goes next to it); a FIFO, a device
 * (/dev/full, /dev/null) or a /proc link (/dev/stdout -> /proc/self/fd/1)
 * is written straight through, with no temporary file. */
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

enum { LINK_MAX_HOPS = 40 };
typedef enum { TARGET_FILE, TARGET_DIRECT } target_kind;

/* the link at p points to t: the path t names, relative to p's directory */
static char *link_next(const char *p, const char *t) {
  const char *slash = strrchr(p, '/');
  if (t[0] == '/' || !slash) return strdup(t);
  size_t dn = (size_t)(slash - p) + 1, tn = strlen(t);
  char *n = malloc(dn + tn + 1);
  if (n) memcpy(n, p, dn), memcpy(n + dn, t, tn + 1);
  return n;
}

/* Where a write to path goes. A FIFO, device or socket (after links) and
 * anything reached through a /proc link, whose target is not a path one can
 * rename over (pipe:[123]), are written directly: TARGET_DIRECT, *real =
 * path. Otherwise *real is the path with every symbolic link followed (it
 * need not exist yet). -1 with errno on failure. */
static int write_target(const char *path, char **real, target_kind *kind) {
  struct stat st;
  *real = NULL;
  *kind = TARGET_FILE;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) *kind = TARGET_DIRECT;
  char *p = strdup(path);
  for (int hop = 0; p && *kind == TARGET_FILE; hop++) {
    char buf[4096];
    if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode)) break;
    ssize_t k = hop < LINK_MAX_HOPS ? readlink(p, buf, sizeof buf - 1) : -1;
    if (hop >= LINK_MAX_HOPS) errno = ELOOP;
    if (k < 0) {
      free(p);
      return -1;
    }
    buf[k] = '\0';
    if (!strncmp(p, "/proc/", 6)) *kind = TARGET_DIRECT;
    char *n = link_next(p, buf);
    free(p);
    p = n;
  }
  if (*kind == TARGET_DIRECT) {
    free(p);
    p = strdup(path);
  }
  if (!p) errno = ENOMEM;
  *real = p;
  return p ? 0 : -1;
}

/* Straight into what is there (a FIFO blocks until it has a reader, as a
 * shell redirection would). No fsync: a pipe or device has nothing to sync. */
static int write_direct(const char *path, const rt_chunk *chunks, int nchunks) {
  struct stat st;
  int trunc = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? O_TRUNC : 0;
  int fd = open(path, O_WRONLY | O_CLOEXEC | trunc);
  if (fd < 0) return -1;
  int err = 0;
  for (int i = 0; i < nchunks && !err; i++)
    if (chunks[i].len > 0 && write_all(fd, chunks[i].data, chunks[i].len) != 0) err = errno;
  if (close(fd) != 0 && !err && errno != EINTR) err = errno;
  errno = err;
  return err ? -1 : 0;
}

static int write_replace(const char *path, const char *shown, const rt_chunk *chunks, int nchunks, char *msg,
                         size_t msgn);

int rt_write_atomic(const char *path, const rt_chunk *chunks, int nchunks, char *msg, size_t msgn) {
  if (!path || !*path) {
    snprintf(msg, msgn, "cannot write '': empty file name");
    return -1;
  }
  char *real;
  target_kind kind;
  if (write_target(path, &real, &kind) != 0) {
    snprintf(msg, msgn, "cannot write '%s': %s", path, strerror(errno));
    return -1;
  }
  int rc;
  if (kind == TARGET_DIRECT) {
    rc = write_direct(real, chunks, nchunks);
    if (rc) snprintf(msg, msgn, "cannot write '%s': %s", path, strerror(errno));
  } else {
    rc = write_replace(real, path, chunks, nchunks, msg, msgn);
  }
  free(real);
  return rc;
}

int rt_check_writable(const char *path, char *msg, size_t msgn) {
  if (!path || !*path) {
    snprintf(msg, msgn, "cannot write '': empty file name");
    return -1;
  }
  char *real;
  target_kind kind;
  int err = 0;
  struct stat st;
  if (write_target(path, &real, &kind) != 0) err = errno;
  else if (kind == TARGET_DIRECT) err = access(real, W_OK) == 0 ? 0 : errno;
  else if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) err = EISDIR;
  else {
    /* the one sure test: make (and remove) a file where the temporary
     * file of the real write will go */
    size_t tn = strlen(real) + 64;
    char *tmp = malloc(tn);
    int fd = -1;
    if (tmp) {
      snprintf(tmp, tn, "%s.tmp.%ld.%u", real, (long)getpid(), atomic_fetch_add(&tmp_counter, 1u));
      fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) err = tmp ? errno : ENOMEM;
    else close(fd), unlink(tmp);
    free(tmp);
  }
  free(real);
  if (err) snprintf(msg, msgn, "cannot write '%s': %s", path, strerror(err));
  return err ? -1 : 0;
}

/* The temporary file next to path, renamed over it; shown is the name the
 * caller gave (before links were followed), for the message. */
static int write_replace(const char *path, const char *shown, const rt_chunk *chunks, int nchunks, char *msg,
                         size_t msgn) {
  size_t tn = strlen(path) + 64;
  char *tmp = malloc(tn);
  if (!tmp) {
    snprintf(msg, msgn, "cannot write '%s': out of memory", shown);
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
  else snprintf(msg, msgn, "cannot write '%s': %s", shown, strerror(err));
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
