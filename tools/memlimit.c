/* memlimit.c -- the `lathe` command under an address-space limit (ulimit -v).
 *
 * Why: libopenblas starts its worker threads from its constructor, before
 * main, and each worker's first act is to allocate a 128 MiB buffer, which
 * OpenBLAS retries for ever when it fails. Under a tight limit that worker
 * never finished and exit() waited for it: every command hung, even
 * `lathe check`; a little tighter, the thread's stack did not fit and
 * OpenBLAS raised SIGINT. Lathe never uses those workers (OpenBLAS runs on
 * one thread inside Lathe's own pool, rt/blas.h), and only the
 * environment stops OpenBLAS from starting them. So a limited process
 * re-executes itself with OPENBLAS_NUM_THREADS=1 from the executable's
 * preinit array, which runs before any shared library's constructor (a
 * setenv there would not last: libc sets up environ again afterwards). The
 * buffers Lathe does use are checked and made up front (rt_blas_ready): a
 * clean error, never a hang. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char blas_one[] = "OPENBLAS_NUM_THREADS=1";

static void limit_openblas(int argc, char **argv, char **envp) {
  (void)argc;
  struct rlimit rl;
  if (!envp || getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  size_t n = 0, k = 0;
  for (; envp[n]; n++)
    if (!strcmp(envp[n], blas_one)) return; /* already so: no workers started */
  char **env = malloc((n + 2) * sizeof *env);
  if (!env) return;
  for (size_t i = 0; i < n; i++)
    if (strncmp(envp[i], blas_one, sizeof blas_one - 2) != 0) env[k++] = envp[i];
  env[k++] = (char *)blas_one;
  env[k] = NULL;
  execve("/proc/self/exe", argv, env);
  free(env); /* no /proc: carry on; a generous limit still works */
}

__attribute__((section(".preinit_array"), used)) static void (*const limit_openblas_at_start)(int, char **,
                                                                                             char **) = limit_openblas;
