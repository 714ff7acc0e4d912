#!/usr/bin/env bash
# plan_cli.sh -- `lathe check --kernels` prints the kernel plan (forward and
# --train), --dump-dir writes it to plan.txt next to the pass dumps, and the
# help says so. $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
has() { grep -q -- "$2" "$1" && ok || bad "$1 lacks '$2': $(head -5 "$1")"; }

"$LATHE" check examples/mlp.nn --bind batch=4 --kernels >"$tmp/fwd" 2>&1 && ok || bad "check --kernels failed"
has "$tmp/fwd" "^kernel plan: 5 kernels, arena "
has "$tmp/fwd" "^k0    gemm+epilogue      matmul%4,fused%5  writes %5@arena+0  reads %0@input0 %2@param0 %3@param1  flops "
has "$tmp/fwd" "^k3    rows               softmax%14  writes %14@output0"
[ "$(grep -c '^k[0-9]' "$tmp/fwd")" = 5 ] && ok || bad "5 kernel lines expected"

"$LATHE" check examples/gpt.nn --bind batch=2 --train --kernels >"$tmp/train" 2>&1 && ok || bad "check --train --kernels failed"
has "$tmp/train" "^kernel plan: 222 kernels"
for kind in gemm+epilogue siblings add+layernorm layernorm_grad+add attention rows; do
  has "$tmp/train" "^k[0-9]* *$kind "
done
has "$tmp/train" "(in place of %"

# no plan without the flag
"$LATHE" check examples/mlp.nn >"$tmp/plain" 2>&1
grep -q "kernel plan" "$tmp/plain" && bad "plan printed without --kernels" || ok

"$LATHE" check examples/mlp.nn --dump-dir "$tmp/dump" >/dev/null 2>&1 && ok || bad "check --dump-dir failed"
has "$tmp/dump/plan.txt" "^kernel plan: 5 kernels"

"$LATHE" check --help >"$tmp/help" 2>&1
has "$tmp/help" "--kernels"
has "$tmp/help" "plan.txt"

finish
