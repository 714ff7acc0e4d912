/* decode.h -- the decode-step program for generation (passes/decode.c).
 *
 * dec_build turns a sequence model's forward graph, lowered at batch 1
 * (token input i32[1, T], output logits [1, T, V]), into a graph that
 * computes the logits of ONE position from that position's token, given
 * everything earlier through per-layer key/value caches. Each new token then
 * costs O(T) (one row of attention over the cache), not O(T^2).
 *
 * The decode graph has:
 *   inputs   the model's token input, i32[1, 1] (same name), and
 *            DEC_IN_POS, an i32 scalar: the position of that token (0-based)
 *   params   the model's parameters (same names and shapes) and, per causal
 *            attention layer, state parameters (ir_param.state = 1, zeros)
 *            "cache.<layer>.k" and "cache.<layer>.v", f32[T, d] (f32[T, dk]
 *            for mha's grouped key/value heads, dk = kv_heads * d / heads); per
 *            rnn/lstm/gru layer its hidden state "cache.<layer>.h" f32[1, h]
 *            (the lstm also its cell "cache.<layer>.c")
 *   outputs  the model's output at that position, [1, 1, V] (same name), and
 *            OPT_NEW_PREFIX "cache.<layer>.k"/".v": the caches with row pos
 *            written; the driver copies each back into its parameter after
 *            the run (as the training step does with optimizer state).
 * Feeding tokens at positions 0, 1, ..., n-1 in order reproduces the full
 * graph's logits at each position.
 *
 * How each op becomes its one-position form: every node is classified by
 * its time axis (the axis indexing positions; -1 for nodes that do not
 * depend on the position, like weights). Per-position ops (elementwise,
 * dense, layernorm, gelu, embedding, reductions and movement off the time
 * axis) are rebuilt unchanged on [.., 1, ..] slices. A position-independent
 * tensor broadcast along the time axis (a learned position embedding
 * param[T, D] added to [1, T, D]) becomes a row gather at pos, expressed as
 * embedding(pos, table). arange(T) becomes pos itself. A causal attention
 * becomes qkv = x W + b, kv_write of its k and v rows into the caches, and
 * attention_decode of q over cache rows 0..pos, then the projection. mha
 * (causal self-attention with rope= or kv_heads=) is the same with its own
 * q and kv products, q and k rotated at pos by constant cos/sin tables'
 * rows (embedding lookups), and caches of its K key/value heads; a mask or
 * a context (inputs that are not the token sequence) has no decode form.
 * A recurrent layer (rnn, lstm, gru) becomes one step of its cell written
 * with elementwise ops and two row products, reading the state the step at
 * pos - 1 left (zeros at pos 0: where(pos > 0, state, 0)) and publishing its
 * new state. Anything else that mixes positions (a bidirectional layer's
 * time reversal, non-causal attention, products or reductions over the time
 * axis) has no decode form:
 * dec_build fails with a message saying which op, and the caller falls back
 * to recomputing the whole sequence. */
#ifndef LATHE_DECODE_H
#define LATHE_DECODE_H

#include "ir.h"

#define DEC_IN_POS "__pos"
#define DEC_CACHE_PREFIX "cache."

/* Build into *out (initialised here, strings and arrays in out_arena) the
 * decode graph of full's output number `output`. full must be the model at
 * batch 1 with one sequence input `input` (index into full->inputs) of shape
 * [1, T]. Returns 0, or -1 with a message naming the op that has no decode
 * form. */
int dec_build(const ir_graph *full, int input, int output, arena *out_arena, ir_graph *out, char *msg,
              size_t msgn);

#endif
