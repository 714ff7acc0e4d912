/* api_plan.c -- the kernel plan through the public API: printed for
 * `lathe check --kernels`, written next to the pass dumps (--dump-dir). The
 * plan shown is the one the LLVM backend renders for the program's graph,
 * checked by the plan verifier first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"
#include "runtime/program.h"
#include "runtime/runtime.h"

/* The plan's text (malloc'd) or NULL with err set. */
static char *plan_text(const lathe_program *p, lathe_error *err) {
  pl_plan plan;
  char msg[1024];
  if (pl_build(&p->g, cg_plan_target(), &plan)) {
    api_fail(err, LATHE_ENOMEM, "out of memory for the kernel plan");
    return NULL;
  }
  if (pl_verify(&plan, msg, sizeof msg)) {
    pl_free(&plan);
    api_fail(err, LATHE_EINTERNAL, "internal error: the kernel plan does not verify: %s", msg);
    return NULL;
  }
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f) {
    pl_print(&plan, f);
    fclose(f);
  }
  pl_free(&plan);
  if (!f || !text) {
    free(text);
    api_fail(err, LATHE_ENOMEM, "out of memory for the kernel plan's text");
    return NULL;
  }
  return text;
}

int lathe_program_print_kernels(const lathe_program *p, FILE *f, lathe_error *err) {
  if (!p) return api_null(err, "lathe_program_print_kernels", "the program");
  if (!f) return api_null(err, "lathe_program_print_kernels", "the file");
  char *text = plan_text(p, err);
  if (!text) return -1;
  fputs(text, f);
  free(text);
  return 0;
}

int api_dump_plan(const lathe_program *p, const char *dir, lathe_error *err) {
  char *text = plan_text(p, err), path[4096], msg[1024];
  if (!text) return -1;
  snprintf(path, sizeof path, "%s/plan.txt", dir);
  rt_chunk c = {text, strlen(text)};
  int rc = rt_write_atomic(path, &c, 1, msg, sizeof msg);
  free(text);
  return rc ? api_fail(err, LATHE_EUSER, "--dump-dir: %s", msg) : 0;
}
