/* cg_aot.h -- what cg_aot.c (ahead-of-time objects) borrows from the JIT's
 * driver (cg_jit.c), so an emitted object holds the very code the JIT runs. */
#ifndef LATHE_CG_AOT_H
#define LATHE_CG_AOT_H

#include "cg_internal.h"
#include "plan/plan.h"

/* Once per process: LLVM's native target. 0, or -1 with msg. */
int cg_init_llvm(char *msg, size_t msgn);
/* Once per process: every target the LLVM build has (cross-compilation). */
void cg_init_all_targets(void);
/* Every node compilable, every parameter f32. 0, or -1 with msg. */
int cg_check_graph(const ir_graph *g, char *msg, size_t msgn);
/* The plan's constant buffers' values into consts. */
void cg_fill_consts(unsigned char *consts, const pl_buf *buf, const ir_graph *g);
/* The kernels of the plan and the entry entry_name(bufs, scr, err) calling
 * them in order, into m (m->sym_prefix before every kernel's name). */
void cg_build_entry(cg_mod *m, const pl_plan *plan, arena *A, const char *entry_name);

#endif
