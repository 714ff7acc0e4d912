/* stage.h -- cutting a forward graph into pipeline stages (passes/stage.c,
 * docs/distributed.md "Pipeline parallelism").
 *
 * A cut after node c is valid where exactly one computed value (the
 * activation, a float tensor) is used on both sides, and no layer's
 * parameters (a parameter's name up to its last '.': "h.0.ln1", "fc1") are
 * used on both sides: so the stages meet at layer boundaries, the residual
 * stream between two transformer blocks, the output of a dense + relu.
 * st_plan picks K - 1 valid cuts that split the forward FLOPs
 * (ir_node_flops) most evenly; st_extract rewrites a graph into one stage:
 *   - stage s > 0 reads the activation as the parameter ST_ACT_IN (a
 *     parameter, not an input, so that autodiff gives its gradient: the one
 *     stage s sends back to stage s - 1), or with ST_P2P receives it from
 *     rank s - 1 with the op recv and publishes it as the output ST_ACT_IN;
 *   - stage s < K - 1 publishes the activation it passes on as the output
 *     ST_ACT_OUT (with ST_P2P: through the op send to rank s + 1) and has
 *     no loss; the last stage keeps the loss (ST_TRAIN) or the model's
 *     outputs;
 *   - only the nodes between the stage's two cuts that lead to its result
 *     remain, with the leaves they read (parameters keep their names, so a
 *     checkpoint's names still find them). */
#ifndef LATHE_STAGE_H
#define LATHE_STAGE_H

#include "ir.h"

#define ST_MAX 64
#define ST_ACT_IN "__pipe.act_in"
#define ST_ACT_OUT "__pipe.act_out"
#define ST_GOUT "__pipe.grad_out"

typedef struct {
  int k;                 /* stages */
  int cut[ST_MAX];       /* cut[s], s < k - 1: the last node id of stage s */
  int act[ST_MAX];       /* act[s]: the activation stage s passes on (node id) */
  int64_t flops[ST_MAX]; /* forward FLOPs of each stage */
} st_plan;

/* K stages of g's forward graph: for training (train: the loss is the
 * sink) or inference (the outputs are). -1 with msg when g has fewer than
 * K - 1 valid cuts (more stages than layers). */
int st_plan_make(const ir_graph *g, int k, int train, st_plan *pl, char *msg, size_t msgn);

/* Rewrite g (the graph st_plan_make saw, unchanged) into stage s of pl. */
/* ST_KEEP_LOSS: an inference stage (not ST_TRAIN) that is the last keeps
 * the loss too, with the target inputs it reads (evaluation's metrics). */
enum { ST_TRAIN = 1, ST_P2P = 2, ST_KEEP_LOSS = 4 };
int st_extract(ir_graph *g, const st_plan *pl, int s, int flags, char *msg, size_t msgn);

/* Rewrite g (as for st_extract) into the receiver of stage s > 0: one op
 * recv from rank s - 1, published as the output ST_ACT_IN. The last
 * training stage runs it for every micro-batch's forward, so the
 * activation arrives on the channel stage s - 1's op send used (MPI on the
 * CPU, NCCL on GPUs) without computing the stage's forward twice. */
int st_receiver(ir_graph *g, const st_plan *pl, int s, char *msg, size_t msgn);

/* A non-last training stage: the loss sum(ST_ACT_OUT * gout), gout the
 * gradient the next stage sends back (the op recv from rank peer; peer < 0:
 * the input ST_GOUT), so autodiff gives the stage's gradients for it. */
int st_surrogate_loss(ir_graph *g, int peer, char *msg, size_t msgn);

/* Output `name` of g becomes send(it) to rank peer (a gradient sent back). */
int st_send_output(ir_graph *g, const char *name, int peer, char *msg, size_t msgn);

#endif
