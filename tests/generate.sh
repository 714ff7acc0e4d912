#!/usr/bin/env bash
# generate.sh -- `lathe generate` from the command line: the prompt and the
# generated text on stdout, statistics on stderr, the key/value cache giving
# the same text as --recompute, a prompt longer than T (sliding window), the
# LSTM's carried state (the same text as --recompute), and user errors (exit
# status 1 with a message).
# $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"

"$LATHE" init examples/gpt.nn -o "$tmp/gpt.safetensors" --seed 4 >/dev/null 2>&1 && ok || bad "init gpt"
"$LATHE" init examples/lstm.nn -o "$tmp/lstm.safetensors" --seed 4 >/dev/null 2>&1 && ok || bad "init lstm"
gen() { "$LATHE" generate examples/gpt.nn --weights "$tmp/gpt.safetensors" "$@"; }

# 1. greedy: prompt first, cache = recompute, tokens/s on stderr
gen --prompt "Once upon" --tokens 30 --temperature 0 >"$tmp/a.out" 2>"$tmp/a.err" && ok || bad "greedy: $(cat "$tmp/a.err")"
gen --prompt "Once upon" --tokens 30 --temperature 0 --recompute >"$tmp/b.out" 2>"$tmp/b.err" && ok || bad "recompute"
head -c 9 "$tmp/a.out" | grep -qx "Once upon" && ok || bad "stdout does not start with the prompt"
[ "$(wc -c <"$tmp/a.out")" -ge 40 ] && ok || bad "expected 9 + 30 characters and a newline"
cmp -s "$tmp/a.out" "$tmp/b.out" && ok || bad "cache and recompute differ: $(cat "$tmp/a.out") / $(cat "$tmp/b.out")"
grep -q "tokens/s (key/value cache" "$tmp/a.err" && ok || bad "no statistics: $(cat "$tmp/a.err")"

# 2. seeded sampling, a prompt longer than T = 64 (the window slides)
long=$(printf 'the quick brown fox jumps over the lazy dog %.0s' 1 2 3)
gen --prompt "$long" --tokens 80 --temperature 0.9 --top-k 20 --seed 3 >"$tmp/c.out" 2>"$tmp/c.err" && ok || bad "long prompt: $(cat "$tmp/c.err")"
gen --prompt "$long" --tokens 80 --temperature 0.9 --top-k 20 --seed 3 --recompute >"$tmp/d.out" 2>/dev/null && ok || bad "long recompute"
cmp -s "$tmp/c.out" "$tmp/d.out" && ok || bad "sampled cache and recompute differ"

# 3. the LSTM carries its state between tokens: the same text as recomputing
# (sampled, the window sliding past T = 32), the same text again for the same
# seed, another for another seed
lstm() { "$LATHE" generate examples/lstm.nn --weights "$tmp/lstm.safetensors" --prompt "Hi there" --tokens 60 \
  --temperature 0.9 --seed "$@"; }
lstm 5 >"$tmp/e.out" 2>"$tmp/e.err" && ok || bad "lstm: $(cat "$tmp/e.err")"
lstm 5 --recompute >"$tmp/f.out" 2>/dev/null && ok || bad "lstm recompute"
lstm 5 >"$tmp/g.out" 2>/dev/null && ok || bad "lstm again"
lstm 6 >"$tmp/h.out" 2>/dev/null && ok || bad "lstm seed 6"
grep -q "note:" "$tmp/e.err" && bad "lstm: a note: $(cat "$tmp/e.err")" || ok
cmp -s "$tmp/e.out" "$tmp/f.out" && ok || bad "lstm: carried state and recompute differ: $(cat "$tmp/e.out") / $(cat "$tmp/f.out")"
cmp -s "$tmp/e.out" "$tmp/g.out" && ok || bad "lstm: the same seed gave another text"
cmp -s "$tmp/e.out" "$tmp/h.out" && bad "lstm: seeds 5 and 6 gave the same text" || ok

# 4. user errors: exit 1 and a message naming the problem
err() { # expected-text args...
  local want=$1; shift
  "$LATHE" generate "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  [ $rc -eq 1 ] && grep -q -- "$want" "$tmp/err" && ok || bad "generate $*: exit $rc, stderr: $(cat "$tmp/err")"
}
err "no weights" examples/gpt.nn --prompt a --tokens 3
err "tokens" examples/gpt.nn --weights "$tmp/gpt.safetensors" --prompt a
err "unknown" examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens 3 --bogus 1
err "tokens" examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens -3
err "temperature" examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens 3 --temperature -1
err "temperature" examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens 3 --temperature abc
err "top-k" examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens 3 --top-k x
err "nope.safetensors" examples/gpt.nn --weights "$tmp/nope.safetensors" --tokens 3
err "missing tensor" examples/gpt.nn --weights "$tmp/lstm.safetensors" --tokens 3
err "token-sequence" examples/mlp.nn --weights "$tmp/gpt.safetensors" --tokens 3

finish
