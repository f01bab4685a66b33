#!/usr/bin/env bash
# jobs/tinyshakespeare.ini, the paper's job: its variables resolve against
# SHARED, the scan/reduce arguments are the paper's, and its light stages
# (import of the lecture checkpoint, prepare with the paper's prompt file) run
# and are skipped on a second run. The scan itself is left to the benchmarks.
# Env: CORPUSLENS (binary), SRC (source tree), SHARED (../shared), PYTHON (h5py).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
SRC=${SRC:?SRC must name the source tree}
SHARED=${SHARED:?SHARED must name the shared data folder}
for f in data/tinyshakespeare.txt data/paper-prompts-L10.txt models/lecture-tinyshakespeare-s1337.pt; do
    [ -f "$SHARED/$f" ] || { echo "skip: $SHARED/$f is not there (SHARED names ../shared)"; exit 77; }
done
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
export CORPUSLENS_SHARED=$SHARED CORPUSLENS_OUT=$T/out
unset CORPUSLENS_DATA CORPUSLENS_MODEL

[ "$("$CL" run "$SRC/jobs/tinyshakespeare.ini" --get stages)" = "import prepare scan reduce" ] ||
    fail "stages: $("$CL" run "$SRC/jobs/tinyshakespeare.ini" --get stages)"
"$CL" run "$SRC/jobs/tinyshakespeare.ini" --dry-run >"$T/dry" 2>&1 || fail "dry run: $(cat "$T/dry")"
grep -qF -- "--hook mlp_out --prefilter 0.7 --bin-width 0.01" "$T/dry" || fail "scan argv: $(grep scan "$T/dry")"
grep -qF -- "--thresholds 0.95,0.94,0.85,0.76,0.81,0.89 --weights 0.01,0.01,0.1,1.5,6,0.01 --examples 33,40,57" "$T/dry" ||
    fail "reduce argv: $(grep reduce "$T/dry")"
"$CL" run "$SRC/jobs/tinyshakespeare.ini" --stages import,prepare >"$T/1" 2>&1 || fail "import,prepare: $(tail "$T/1")"
"$CL" run "$SRC/jobs/tinyshakespeare.ini" --stages import,prepare >"$T/2" 2>&1 || fail "second run: $(tail "$T/2")"
grep -qF "0 stages run, 2 skipped" "$T/2" || fail "second run did not skip: $(grep '^==' "$T/2")"
"$PY" - "$T/out" <<'PYEOF' || fail "corpus.h5 checks"
import sys, h5py
with h5py.File(sys.argv[1] + "/corpus.h5") as f:
    assert f.attrs["n_substrings"] == 858923, f.attrs["n_substrings"]
    assert f.attrs["n_prompts"] == 20000
    t = [x.decode() for x in f["prompts/text"][[33, 40, 57]]]
    assert t == ["med me Aut", "hing tremb", "And only l"], t
PYEOF
[ "$failures" = 0 ] && echo "jobs_tinyshakespeare: all checks passed"
exit $((failures > 0))
