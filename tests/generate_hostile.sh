#!/usr/bin/env bash
# generate_hostile.sh -- `lathe generate` on hostile input ends in a correct
# result or a clear error, never a silent wrong answer, hang or crash:
# a model that is not a sequence model (or weights that do not load) fails
# before printing anything to stdout; prompt bytes outside the vocabulary
# are dropped as text data's are, with a note naming the first; --tokens
# 10^9 streams (bounded memory) and stops at once when stdout goes away;
# counts above the documented maximum and a full disk are errors.
# $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
export LC_ALL=C # byte counts: ${#s} and head -c agree

"$LATHE" init examples/gpt.nn -o "$tmp/gpt.safetensors" --seed 4 >/dev/null 2>&1 && ok || bad "init gpt"
"$LATHE" init examples/lstm.nn -o "$tmp/lstm.safetensors" --seed 4 >/dev/null 2>&1 && ok || bad "init lstm"
gen() { "$LATHE" generate examples/gpt.nn --weights "$tmp/gpt.safetensors" "$@"; }

# 1. Refused before anything reaches stdout: exit 1, empty stdout, the message.
refused() { # expected-stderr args...
  local want=$1; shift
  "$LATHE" generate "$@" >"$tmp/r.out" 2>"$tmp/r.err"; local rc=$?
  [ $rc -eq 1 ] && ok || bad "generate $*: exit $rc"
  [ ! -s "$tmp/r.out" ] && ok || bad "generate $*: printed before failing: '$(cat "$tmp/r.out")'"
  [ "$(cat "$tmp/r.err")" = "$want" ] && ok || bad "generate $*: stderr '$(cat "$tmp/r.err")', want '$want'"
}
refused "lathe: error: generate: model 'mlp' needs a token-sequence input i32[batch, T]" \
  examples/mlp.nn --weights "$tmp/gpt.safetensors" --prompt "hello" --tokens 3
refused "lathe: error: generate: model 'cnn' needs a token-sequence input i32[batch, T]" \
  examples/cnn.nn --weights "$tmp/gpt.safetensors" --prompt "hello" --tokens 3
refused "lathe: error: cannot read '$tmp/nope.safetensors': No such file or directory" \
  examples/gpt.nn --weights "$tmp/nope.safetensors" --prompt "hello" --tokens 3
"$LATHE" generate examples/gpt.nn --weights "$tmp/lstm.safetensors" --prompt "hello" --tokens 3 >"$tmp/w.out" 2>"$tmp/w.err"
[ $? -eq 1 ] && [ ! -s "$tmp/w.out" ] && grep -q "missing tensor" "$tmp/w.err" && ok \
  || bad "wrong weights: stdout '$(cat "$tmp/w.out")', stderr '$(cat "$tmp/w.err")'"

# 2. Prompt bytes outside the 96-character vocabulary are dropped (the rule
#    for text data), with a note naming the first; the text is what the
#    clean prompt gives (tab reads as space), after the prompt as given.
odd=$(printf 'caf\303\251\tx\r')
gen --prompt "$odd" --tokens 12 --temperature 0 >"$tmp/o.out" 2>"$tmp/o.err" && ok || bad "odd prompt: $(cat "$tmp/o.err")"
gen --prompt "caf x" --tokens 12 --temperature 0 >"$tmp/c.out" 2>/dev/null && ok || bad "clean prompt"
[ "$(head -1 "$tmp/o.err")" = "note: dropped 3 prompt bytes outside the 96-character vocabulary (newline, tab and printable ASCII); the first is byte 4 (0xc3)" ] \
  && ok || bad "odd prompt note: $(cat "$tmp/o.err")"
grep -q "prompt: 5 tokens" "$tmp/o.err" && ok || bad "odd prompt should give 5 tokens: $(cat "$tmp/o.err")"
[ "$(head -c ${#odd} "$tmp/o.out")" = "$odd" ] && ok || bad "stdout does not start with the prompt as given"
[ "$(tail -c +$((${#odd} + 1)) "$tmp/o.out")" = "$(tail -c +6 "$tmp/c.out")" ] && ok \
  || bad "odd prompt generated '$(cat "$tmp/o.out")', clean prompt '$(cat "$tmp/c.out")'"
# a prompt of dropped bytes only starts from a newline, as an empty prompt does
gen --prompt "$(printf '\001\002')" --tokens 8 --temperature 0 >"$tmp/n.out" 2>"$tmp/n.err" && ok || bad "all dropped"
gen --tokens 8 --temperature 0 >"$tmp/e.out" 2>/dev/null
[ "$(head -1 "$tmp/n.err")" = "note: dropped 2 prompt bytes outside the 96-character vocabulary (newline, tab and printable ASCII); the first is byte 1 (0x01)" ] \
  && ok || bad "all-dropped note: $(cat "$tmp/n.err")"
[ "$(tail -c +3 "$tmp/n.out")" = "$(cat "$tmp/e.out")" ] && ok || bad "all-dropped prompt differs from the empty prompt"
gen --prompt "plain text" --tokens 2 >/dev/null 2>"$tmp/p.err"
grep -q "dropped" "$tmp/p.err" && bad "note for a clean prompt: $(cat "$tmp/p.err")" || ok

# 3. --tokens 10^9 streams: the first 300 bytes come at once in bounded
#    memory; a reader that goes away stops it (SIGPIPE), and with SIGPIPE
#    ignored the write error stops it with a message instead of generating
#    into the void for hours.
n=$(timeout 60 "$LATHE" generate examples/gpt.nn --weights "$tmp/gpt.safetensors" --prompt "Hi" \
      --tokens 1000000000 2>/dev/null | head -c 300 | wc -c)
[ "$n" -eq 300 ] && ok || bad "--tokens 1e9: $n bytes streamed"
( trap '' PIPE
  timeout 60 "$LATHE" generate examples/gpt.nn --weights "$tmp/gpt.safetensors" --prompt "Hi" --tokens 1000000000 \
    2>"$tmp/pipe.err" | head -c 300 >/dev/null
  echo "${PIPESTATUS[0]}" >"$tmp/pipe.rc" )
[ "$(cat "$tmp/pipe.rc")" = 1 ] && ok || bad "--tokens 1e9 into a closed pipe: exit $(cat "$tmp/pipe.rc") (124: hung)"
[ "$(cat "$tmp/pipe.err")" = "lathe generate: error: cannot write the text to stdout: Broken pipe" ] && ok \
  || bad "closed pipe: $(cat "$tmp/pipe.err")"
if [ -x /usr/bin/time ]; then
  ( trap '' PIPE
    /usr/bin/time -f "%M" -o "$tmp/rss" timeout 60 "$LATHE" generate examples/gpt.nn --weights "$tmp/gpt.safetensors" \
      --tokens 1000000000 2>/dev/null | head -c 2000 >/dev/null )
  [ "$(tail -1 "$tmp/rss")" -lt 2000000 ] && ok || bad "--tokens 1e9: max RSS $(tail -1 "$tmp/rss") KiB"
else
  echo "note: /usr/bin/time missing; memory of --tokens 1e9 not measured" >&2
fi

# 4. Counts above the documented maximum, and a full disk.
refused "lathe generate: error: --tokens 4294967297 is above the maximum, 4294967296" \
  examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens 4294967297
refused "lathe generate: error: --top-k 1048577 is above the maximum, 1048576" \
  examples/gpt.nn --weights "$tmp/gpt.safetensors" --tokens 3 --top-k 1048577
if [ -w /dev/full ]; then
  gen --prompt "Hi" --tokens 5 >/dev/full 2>"$tmp/full.err"; rc=$?
  [ $rc -eq 1 ] && [ "$(cat "$tmp/full.err")" = "lathe generate: error: cannot write the text to stdout: No space left on device" ] \
    && ok || bad "/dev/full: exit $rc, stderr '$(cat "$tmp/full.err")'"
fi

finish
