#!/usr/bin/env bash
# Train the char-level GPT (examples/gpt.nn) on text from Debian's `fortunes`
# package, plot its learning curves, and generate text from it with the
# key/value-cache decoder. Run from the repository root after building
# (and ./setup.sh, which installs fortunes).
#
#   LATHE=build/lathe OUT=/tmp/gpt examples/train_gpt.sh
#
# The corpus is a fixed selection of the plain-text fortune files (the ones
# without .dat/.u8 extensions), about 650 KB: three epochs of it fit in about
# ten minutes on two cores. FILES=all uses every file (2.5 MB; raise the time
# budget). MODEL=examples/lstm.nn trains the LSTM the same way.
set -euo pipefail
LATHE=${LATHE:-build/lathe}
MODEL=${MODEL:-examples/gpt.nn}
FORTUNES=${FORTUNES:-/usr/share/games/fortunes}
out=${OUT:-$(mktemp -d)}
FILES=${FILES:-"fortunes wisdom literature people humorists science work education platitudes"}
PROMPT=${PROMPT:-"The meaning of life is "}

if [ ! -d "$FORTUNES" ]; then
  echo "train_gpt.sh: $FORTUNES not found: install the 'fortunes' package (./setup.sh)" >&2
  exit 1
fi
mkdir -p "$out"
corpus="$out/fortunes.txt"
if [ "$FILES" = all ]; then
  FILES=$(cd "$FORTUNES" && ls | grep -v -e '\.dat$' -e '\.u8$')
fi
: > "$corpus"
for f in $FILES; do
  [ -f "$FORTUNES/$f" ] && cat "$FORTUNES/$f" >> "$corpus"
done
echo "corpus: $(wc -c < "$corpus") bytes in $corpus"

time $LATHE train "$MODEL" --data "$corpus" --out "$out" --plot "$out/curves.svg"
echo "checkpoints, log and learning curves in $out"

for temp in 0 0.8; do
  echo "--- temperature $temp"
  $LATHE generate "$MODEL" --weights "$out/best.safetensors" --prompt "$PROMPT" --tokens 300 \
    --temperature "$temp" --top-k 40 --seed 1
  echo
done
