/* optimizer.h -- the training step's optimizer update as graph ops
 * (passes/optimizer.c). Separate from passes.h while it is being built.
 *
 * Before ad_backward, opt_prepare_training turns the forward graph into its
 * training form: every dropout with p > 0 becomes x * dropout_mask, the mask
 * (keep with probability 1 - p, kept values 1 / (1 - p)) drawn from Philox
 * keyed by (train seed, the dropout node's id, OPT_IN_RNG, element); autodiff
 * then sends gradients through the same mask. The stream layout is written
 * out in ir/interp_opt.c. Every batchnorm becomes batchnorm_train (this
 * batch's statistics), and the step publishes its running mean and variance
 * (OPT_NEW_PREFIX + their names, as PyTorch's momentum update; see
 * optimizer.c); they are buffers (ir_param.buffer), which no rule trains.
 *
 * After ad_backward (g->grads filled), opt_append adds to g, as ordinary ops,
 * in PyTorch's order (loss.backward(); clip_grad_norm_(); optimizer.step()):
 *   1. gradient clipping by global norm (clip_norm), as
 *      torch.nn.utils.clip_grad_norm_: g *= min(1, clip / (norm + 1e-6)),
 *      norm over every trainable parameter's raw gradient;
 *   2. gradient noise (grad_noise = eta): g += N(0, std^2), the std given per
 *      step by the driver in OPT_IN_NOISE, random numbers from Philox keyed by
 *      the train seed, 2^32 + the parameter's index and OPT_IN_RNG (identical
 *      on every backend);
 *   3. penalties, inside the step as PyTorch's weight_decay: l2 (and, except
 *      for adamw, weight_decay) adds l2 * p to the gradient, l1 adds
 *      l1 * sign(p);
 *   4. the update rule of t->opt, with PyTorch's formulas (torch.optim.SGD
 *      with momentum/nesterov, dampening 0; Adam; AdamW with decoupled decay
 *      p *= 1 - lr * weight_decay first; RMSprop with momentum, not centered).
 * The penalties, clipping and noise apply only when the block sets them.
 *
 * Per-step scalars are f32[] INPUT nodes the driver sets before every run
 * (only those the graph has: find them with ir_find_input):
 *   OPT_IN_LR     the learning rate of this step (the schedule is the
 *                 driver's, runtime/train.c)
 *   OPT_IN_BC1    1 - beta1^t   (adam, adamw; t = 1-based step)
 *   OPT_IN_BC2    1 - beta2^t
 *   OPT_IN_NOISE  the gradient-noise std of this step
 *   OPT_IN_RNG    i64[]: the step's random stream counter (dropout, noise)
 * Optimizer state (momentum buffers, Adam moments, RMSprop square averages)
 * is added as parameters named "opt.<slot>.<param name>" (zeros init) with
 * ir_param.state = 1, so checkpoints save and restore it like weights.
 * Every trainable parameter and every state X gets an output named
 * OPT_NEW_PREFIX X with its value after the step; the driver copies each back
 * into X's buffer after the run. */
#ifndef LATHE_OPTIMIZER_H
#define LATHE_OPTIMIZER_H

#include "ir.h"

#define OPT_IN_LR "__lr"
#define OPT_IN_BC1 "__bc1"
#define OPT_IN_BC2 "__bc2"
#define OPT_IN_NOISE "__noise_std"
#define OPT_IN_RNG "__rng"
#define OPT_NEW_PREFIX "new."

/* After ad_backward: the update (see above). t must be normalised (every
 * field set, opt not IR_OPT_NONE). Fails when a dropout was left unprepared.
 * g->grads is extended with -1 for the state parameters it adds. */
int opt_append(ir_graph *g, const ir_train *t, char *msg, size_t msgn);

/* Before ad_backward: training-mode batchnorm and dropout (see above). Adds the input
 * OPT_IN_RNG when the graph has a dropout with p > 0, renumbering the nodes
 * (node ids held across this call are stale). Returns 0 or -1 with msg. */
int opt_prepare_training(ir_graph *g, char *msg, size_t msgn);

#endif
