#!/usr/bin/env bash
# losses.sh -- the regression losses l1_loss and huber (issue 17, item 6):
# a small MLP trains with each through `lathe train` (alone and as a term of
# a composite loss) and reaches a good test r2; bad arguments are refused
# with the source position. $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
metric() { grep -E "^$1: " "$2" | head -1 | awk '{print $NF}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# y = 2a - b + 0.5 on 300 rows
awk 'BEGIN { srand(5); for (i = 0; i < 300; i++) { a = rand(); b = rand(); printf "%f,%f,%f\n", a, b, 2*a - b + 0.5 } }' \
  >"$tmp/r.csv"
model() { # model LOSS-LINE -> $tmp/m.nn
  cat >"$tmp/m.nn" <<NN
model reg
input  x : f32[batch, 2]
target y : f32[batch, 1]
h = dense(x, 16, name="fc1") |> tanh
p = dense(h, 1, name="out")
output pred = p
$1
train {
  optimizer = adam(lr=1e-2)
  epochs = 30
  batch = 32
}
NN
}

trains() { # trains LOSS-LINE: the model trains and reaches test r2 >= 0.9
  model "$1"
  if "$LATHE" train "$tmp/m.nn" --data "$tmp/r.csv" --out "$tmp/o" >"$tmp/t.out" 2>"$tmp/t.err"; then ok
  else bad "train with '$1': $(tail -3 "$tmp/t.err")"; return; fi
  local r2
  r2=$(metric "test r2" "$tmp/t.out")
  ge "${r2:-0}" 0.9 && ok || bad "'$1': test r2 ${r2:-none} < 0.9"
}
trains "loss = l1_loss(p, y)"
# the metrics' loss is the term's own: l1_loss's is the mae
[ "$(metric "test loss" "$tmp/t.out")" = "$(metric "test mae" "$tmp/t.out")" ] && ok \
  || bad "l1_loss: test loss $(metric "test loss" "$tmp/t.out") != test mae $(metric "test mae" "$tmp/t.out")"
trains "loss = huber(p, y)"
trains "loss = huber(p, y, delta=0.25)"
trains "loss = huber(p, y, delta=2)"
# every |error| < 2 here, so huber's loss is half the mse
awk -v l="$(metric "test loss" "$tmp/t.out")" -v m="$(metric "test mse" "$tmp/t.out")" \
  'BEGIN { exit !(l > 0 && (l - m / 2) ^ 2 < 4e-8) }' && ok \
  || bad "huber: test loss $(metric "test loss" "$tmp/t.out") is not mse/2 ($(metric "test mse" "$tmp/t.out"))"
trains "loss = l1_loss(p, y) + 0.001 * mean(p * p)"

# nll(log_softmax(z), y) trains exactly as cross_entropy(z, y): the same test loss (the metrics' loss is the
# nll term's own, -log_probs[label]) and accuracy
small_task "$tmp"
sed -i 's/epochs = 2/epochs = 20/' "$tmp/m.nn"
sed 's/loss = cross_entropy(logits, y)/loss = nll(log_softmax(logits), y)/' "$tmp/m.nn" >"$tmp/n.nn"
"$LATHE" train "$tmp/m.nn" --data "$tmp/d.csv" --out "$tmp/oc" --quiet >"$tmp/c.out" 2>&1 || bad "train ce: $(cat "$tmp/c.out")"
if "$LATHE" train "$tmp/n.nn" --data "$tmp/d.csv" --out "$tmp/on" --quiet >"$tmp/n.out" 2>"$tmp/n.err"; then ok
else bad "train nll: $(tail -3 "$tmp/n.err")"; fi
acc=$(metric "test accuracy" "$tmp/n.out")
ge "${acc:-0}" 0.9 && ok || bad "nll: test accuracy ${acc:-none} < 0.9"
[ -n "$acc" ] && [ "$(metric "test loss" "$tmp/n.out")" = "$(metric "test loss" "$tmp/c.out")" ] && ok \
  || bad "nll test loss $(metric "test loss" "$tmp/n.out") != cross_entropy's $(metric "test loss" "$tmp/c.out")"
# ... also inside a composite loss
sed 's/loss = cross_entropy(logits, y)/loss = nll(log_softmax(logits), y) + 0.001 * mean(logits * logits)/' \
  "$tmp/m.nn" >"$tmp/n2.nn"
"$LATHE" train "$tmp/n2.nn" --data "$tmp/d.csv" --out "$tmp/on2" --quiet >"$tmp/n2.out" 2>&1 && ok \
  || bad "train composite nll: $(tail -3 "$tmp/n2.out")"
ge "$(metric "test accuracy" "$tmp/n2.out")" 0.9 && ok || bad "composite nll: test accuracy < 0.9"

# kl_div (batchmean) as the distillation term beside cross_entropy: a teacher made from the inputs
cat >"$tmp/k.nn" <<'NN'
model distil
input  x : f32[batch, 4]
target y : i32[batch]
h = dense(x, 16, name="fc1") |> relu
logits = dense(h, 2, name="out")
output probs = softmax(logits)
d = slice(x, 1, 3, 4)
teacher = softmax(concat([neg(d), d], axis=1) * 4)
loss = cross_entropy(logits, y) + kl_div(log_softmax(logits), teacher)
train {
  optimizer = adam(lr=1e-2)
  epochs = 20
  batch = 32
}
NN
if "$LATHE" train "$tmp/k.nn" --data "$tmp/d.csv" --out "$tmp/ok" --quiet >"$tmp/k.out" 2>"$tmp/k.err"; then ok
else bad "train kl_div: $(tail -3 "$tmp/k.err")"; fi
ge "$(metric "test accuracy" "$tmp/k.out")" 0.9 && ok || bad "kl_div: test accuracy < 0.9"
# kl_div has no metrics of its own: alone it is refused, naming the terms that have
sed -i 's/loss = cross_entropy(logits, y) + kl_div/loss = kl_div/' "$tmp/k.nn"
"$LATHE" train "$tmp/k.nn" --data "$tmp/d.csv" --out "$tmp/ok2" --quiet >"$tmp/k2.out" 2>&1 && bad "kl_div alone trained"
grep -q "the loss must be, or contain, a cross_entropy, nll, mse, bce, l1_loss or huber term" "$tmp/k2.out" && ok \
  || bad "kl_div alone: $(cat "$tmp/k2.out")"

refused() { # refused LOSS-LINE MESSAGE
  model "$1"
  if "$LATHE" check "$tmp/m.nn" >"$tmp/e.out" 2>&1; then bad "'$1' accepted"; return; fi
  grep -qF -- "$2" "$tmp/e.out" && ok || bad "'$1': expected '$2', got: $(cat "$tmp/e.out")"
}
refused "loss = huber(p, y, delta=0)" "m.nn:7:26: error: delta must be a positive number, got 0"
refused "loss = huber(p, y, delta=-1)" "error: delta must be a positive number, got -1"
refused "loss = huber(p, y, alpha=1)" "'huber' has no argument named 'alpha'"
refused "loss = l1_loss(p, y, 1)" "'l1_loss' takes at most 2 arguments, got 3"
refused "loss = l1_loss(p, x)" "shapes differ"
refused "loss = kl_div(p, x)" "shapes differ"
refused "loss = nll(p, y)" "error: shape error in the loss: nll: labels must be integers, got f32"
finish
