#!/usr/bin/env bash
# api_docs.sh -- docs/api.md documents every function include/lathe.h
# declares: each name appears in one of its "### " headings.
. "$(dirname "$0")/lib/common.sh"
funcs=$(grep -oE '\blathe_[a-z0-9_]+\(' include/lathe.h | tr -d '(' | sort -u)
[ -n "$funcs" ] && ok || bad "found no functions in include/lathe.h"
heads=$(grep '^### ' docs/api.md)
for f in $funcs; do
  echo "$heads" | grep -qE "(### |, )$f(,|\$)" && ok || bad "docs/api.md has no section for $f"
done
finish
