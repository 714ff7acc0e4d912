#!/bin/bash
# diag.sh -- the malformed-input suite: every tests/diag/NN_name.nn must be
# rejected by `lathe check` with exit status exactly 1 (not 0, not 2, not a
# signal), the first stderr line must equal NN_name.expect, and when that line
# carries LINE:COL the next two lines must be the source line (as diag.c shows
# it: cut at '\r' and at 400 bytes, control bytes as '?') and a caret line
# (spaces or tabs, then '^' under COL, counted in code points). A diagnostic
# without LINE:COL (a whole-model error) must be the only stderr line.
# Then two generated stress inputs: a million '(' and 1 MiB of binary.
#
# usage (from the repository root): bash tests/diag.sh build/lathe
# The binary cases (NUL byte, invalid UTF-8, random bytes) are written by
# tests/diag/make_binary.py and committed.
set -u
lathe=${1:?usage: diag.sh LATHE_BINARY}
dir=tests/diag
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

bad() {
  echo "FAIL $1: $2" >&2
  fail=$((fail + 1))
}

# check_case MODEL_FILE WANTED_FIRST_LINE
check_case() {
  local nn=$1 want=$2 rc l1 rest line col
  timeout 60 "$lathe" check "$nn" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ "$rc" -ne 1 ]; then bad "$nn" "exit status $rc, want 1"; return; fi
  l1=$(sed -n 1p "$tmp/err")
  if [ "$l1" != "$want" ]; then
    bad "$nn" "first stderr line differs:"$'\n'"  got:  $l1"$'\n'"  want: $want"
    return
  fi
  rest=${l1#"$nn":}
  if ! [[ $rest =~ ^([0-9]+):([0-9]+):\ error: ]]; then
    if [ "$(wc -l <"$tmp/err")" -ne 1 ]; then bad "$nn" "a diagnostic without a location has more lines"; return; fi
    pass=$((pass + 1))
    return
  fi
  line=${BASH_REMATCH[1]}
  col=${BASH_REMATCH[2]}
  { LC_ALL=C sed -n "${line}{s/\r.*//;p;q}" "$nn" | LC_ALL=C tr -d '\n' | head -c 400 |
      LC_ALL=C tr '\000-\010\013-\037\177' '?'; echo; } >"$tmp/want2"
  sed -n 2p "$tmp/err" >"$tmp/got2"
  if ! cmp -s "$tmp/want2" "$tmp/got2"; then bad "$nn" "second line is not source line $line"; return; fi
  local caret cps prefix
  caret=$(LC_ALL=C sed -n 3p "$tmp/err")
  if ! [[ $caret =~ ^[\ $'\t']*\^$ ]]; then bad "$nn" "third line is not a caret line: '$caret'"; return; fi
  prefix=${caret%^}
  cps=$(($(LC_ALL=C tr -d '\200-\277' <"$tmp/want2" | wc -c) - 1))  # code points in the shown line
  [ "$cps" -gt $((col - 1)) ] && cps=$((col - 1))
  if [ "${#prefix}" -ne "$cps" ]; then bad "$nn" "caret at column $((${#prefix} + 1)), want $col"; return; fi
  pass=$((pass + 1))
}

n=0
for nn in "$dir"/[0-9]*_*.nn; do
  exp=${nn%.nn}.expect
  if [ ! -f "$exp" ]; then bad "$nn" "no $exp"; continue; fi
  check_case "$nn" "$(cat "$exp")"
  n=$((n + 1))
done
[ "$n" -ge 45 ] || bad "$dir" "only $n cases"

# A million unclosed parentheses: one error, no stack overflow.
printf 'y = ' >"$tmp/deep.nn"
head -c 1000000 /dev/zero | tr '\0' '(' >>"$tmp/deep.nn"
check_case "$tmp/deep.nn" "$tmp/deep.nn:1:205: error: expression nested too deeply (limit 200)"

# 1 MiB of binary: the committed 4 KiB of random bytes, 256 times; the first
# error is the one the committed case expects.
for _ in $(seq 256); do cat "$dir/21_random_binary.nn"; done >"$tmp/big.nn"
want=$(sed "s|^$dir/21_random_binary.nn:|$tmp/big.nn:|" "$dir/21_random_binary.expect")
check_case "$tmp/big.nn" "$want"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
