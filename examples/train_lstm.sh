#!/usr/bin/env bash
# Train the char-level LSTM (examples/lstm.nn) on the same fortunes text as
# examples/train_gpt.sh, then generate from it (lathe generate carries the
# LSTM's hidden and cell state from token to token instead of recomputing
# the context: passes/decode.c). Same variables as train_gpt.sh; EPOCHS overrides the
# model's epochs (default: the model's train block).
#
#   LATHE=build/lathe OUT=/tmp/lstm examples/train_lstm.sh
set -euo pipefail
here=$(dirname "$0")
MODEL=examples/lstm.nn PROMPT=${PROMPT:-"A fool "} exec "$here/train_gpt.sh"
