/* ops.c -- the op table, generated from ops.def. The shape rules live in
 * shape.c; their prototypes are generated here from the same rows. */
#include <string.h>

#include "ir.h"

#define OP(e, name, arity, cat, shape) int shape(ir_graph *, ir_node *, char *, size_t);
#include "ops.def"
#undef OP

const ir_opinfo ir_ops[IR_NOPS] = {
#define OP(e, name, arity, cat, shape) [IR_##e] = {name, arity, cat, shape},
#include "ops.def"
#undef OP
};

const unsigned ir_op_flags[IR_NOPS] = {
#define OP(e, name, arity, cat, shape)
#define OPF(e, flags) [IR_##e] = flags,
#include "ops.def"
#undef OPF
#undef OP
};

int ir_op_lookup(const char *name) {
  for (int i = 0; name && i < IR_NOPS; i++)
    if (strcmp(ir_ops[i].name, name) == 0) return i;
  return -1;
}
