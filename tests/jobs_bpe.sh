#!/usr/bin/env bash
# jobs/shakespeare-bpe.ini (issue 25 item 4) and [train] tokenizer: the job
# parses, its train stage passes --tokenizer, and its scan writes no index
# (a BPE scan refuses --index-out) although holdout_fraction is set; a char job
# with holdout_fraction still gets --index-out. Dry runs only: no npm needed.
# Env: CORPUSLENS (binary), SRC (source tree).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
SRC=${SRC:?SRC must name the source tree}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
printf 'First Citizen:\nBefore we proceed any further, hear me speak.\n' >"$T/tinyshakespeare.txt"
mkdir -p "$T/tok"
export CORPUSLENS_DATA=$T CORPUSLENS_TOKENIZER=$T/tok CORPUSLENS_OUT=$T/out
[ "$("$CL" run "$SRC/jobs/shakespeare-bpe.ini" --get stages)" = "train prepare scan tune reduce" ] ||
    fail "stages: $("$CL" run "$SRC/jobs/shakespeare-bpe.ini" --get stages)"
"$CL" run "$SRC/jobs/shakespeare-bpe.ini" --dry-run >"$T/dry" 2>&1 || fail "dry run: $(cat "$T/dry")"
grep -E '^ +corpuslens train ' "$T/dry" | grep -qF -- "--tokenizer $T/tok " || fail "train argv: $(grep 'corpuslens train' "$T/dry")"
grep -qF -- "--len 3 --prompts 1000 --seed 1337 --holdout-fraction 0.1" "$T/dry" || fail "prepare argv: $(grep prepare "$T/dry")"
grep -E '^ +corpuslens scan ' "$T/dry" >"$T/scan" || fail "no scan command: $(cat "$T/dry")"
grep -qF -- "--index-out" "$T/scan" && fail "a BPE scan got --index-out: $(cat "$T/scan")"
# tune is reported beside [reduce]'s values (its reference), which reduce uses too
grep -E '^ +corpuslens tune ' "$T/dry" | grep -qF -- "--thresholds 0.85,0.76,0.81,0.89 --weights 0.1,1.5,6,0.01 " ||
    fail "tune argv lacks [reduce]'s values as its reference: $(grep 'corpuslens tune' "$T/dry")"
grep -E '^ +corpuslens reduce ' "$T/dry" | grep -qF -- "--tuned $T/out/tune.h5" || fail "reduce argv lacks --tuned: $(grep 'corpuslens reduce' "$T/dry")"
# the same job as a char model (no tokenizer): the scan writes the index
grep -v '^tokenizer' "$SRC/jobs/shakespeare-bpe.ini" >"$T/char.ini"
"$CL" run "$T/char.ini" --dry-run >"$T/dry2" 2>&1 || fail "char dry run: $(cat "$T/dry2")"
grep -E '^ +corpuslens scan ' "$T/dry2" | grep -qF -- "--index-out" || fail "char scan lost --index-out: $(grep scan "$T/dry2")"
grep -E '^ +corpuslens train ' "$T/dry2" | grep -qF -- "--tokenizer" && fail "char train got --tokenizer"
[ "$failures" = 0 ] && echo "jobs_bpe: all checks passed"
exit $((failures > 0))
