#!/usr/bin/env bash
# The embedded demo end to end, as a user runs it: mpiexec -n 2 corpuslens run
# jobs/demo.ini (generate -> train -> prepare -> scan -> reduce), in a fresh
# folder. Checks the summary, the report files, and the time budget of the
# demo (6 minutes on a 2-core machine; DEMO_LIMIT_S overrides).
# Env: CORPUSLENS (binary), SRC (source tree), PYTHON (h5py).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
SRC=${SRC:?SRC must name the source tree}
PY=${PYTHON:-/usr/bin/python3}
MPIEXEC=${MPIEXEC:-mpiexec}
LIMIT=${DEMO_LIMIT_S:-360}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

start=$(date +%s)
(cd "$T" && CORPUSLENS_OUT="$T/demo-out" $MPIEXEC -n 2 --oversubscribe "$CL" run "$SRC/jobs/demo.ini") \
    >"$T/out.txt" 2>"$T/err.txt" || fail "demo failed: $(tail -20 "$T/err.txt")"
secs=$(($(date +%s) - start))
echo "demo: ${secs} s"
grep "^==\|^--" "$T/out.txt"
[ "$secs" -gt "$LIMIT" ] && fail "the demo took ${secs} s (limit ${LIMIT} s)"
grep -qF "5 stages run, 0 skipped" "$T/out.txt" || fail "not every stage ran"
grep -q "^  approximation " "$T/out.txt" || fail "no summary line"
for f in demo.txt model.h5 corpus.h5 scan.h5 report/report.md report/report.h5; do
    [ -s "$T/demo-out/$f" ] || fail "missing $f"
done
# issue 23: the index for explain/serve, one explained HELD-OUT window with its matched strings,
# the baselines (∞-gram, backoff) with a line per row, and a verdict either way
[ -s "$T/demo-out/index.h5" ] || fail "missing index.h5 (explain and serve need it)"
grep -q "^one explained window of the HELD-OUT text" "$T/out.txt" || fail "no explained held-out window"
sed -n '/^one explained window/,$p' "$T/out.txt" > "$T/window.txt"
grep -qE '^  block 0 \(weight [0-9.e+-]+\): [0-9]+ strings? above ' "$T/window.txt" || fail "the window shows no block header"
grep -qE '^    ".*" [01]\.[0-9]{3}  next: ' "$T/window.txt" || fail "the window shows no matched string"
grep -q '^    ∞-gram' "$T/window.txt" || fail "the window shows no ∞-gram line"
for row in "^  ∞-gram " "^  backoff n-gram (K = 10) " "^  lens_B .*the model itself" "^verdict: the approximation"; do
    grep -q "$row" "$T/out.txt" || fail "no summary line '$row'"
done
"$PY" - "$T/demo-out" <<'PYEOF2' || fail "held-out checks"
import sys, h5py
d = sys.argv[1]
with h5py.File(f"{d}/corpus.h5") as c:
    assert "holdout/tokens" in c and "text/suffix_array" in c, list(c)
with h5py.File(f"{d}/report/report.h5") as r:
    assert "infgram" in r["baselines"] and "backoff" in r["baselines"], list(r["baselines"])
PYEOF2
"$PY" - "$T/demo-out" <<'PYEOF' || fail "report checks"
import sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/scan.h5") as s:
    assert s.attrs["complete"] == 1
    P = s.attrs["n_prompts"]
with h5py.File(f"{d}/report/report.h5") as r:
    h = r["hellinger"][()]
    assert h.shape == (P,), h.shape

    def valid(h):  # NaN-strict: no NaN, >90 % non-empty (H >= 0), all <= 1
        ok = h[h >= 0]
        return not np.isnan(h).any() and len(ok) > 0.9 * len(h) and bool(np.all(ok <= 1))
    assert not valid(np.array([np.nan] + [0.1] * 19)), "control: a NaN distance passed"
    assert valid(h)
    mean = r["hellinger"].attrs["mean"]
    uni = r["baselines/unigram/hellinger"].attrs["mean"]
    # the approximation explains the trained model far better than character frequencies
    assert mean < 0.5 * uni, (mean, uni)
    print(f"demo report: {P} prompts, mean H {mean:.4f} (unigram baseline {uni:.4f})")
PYEOF
[ "$failures" = 0 ] && echo "jobs_demo: all checks passed"
exit $((failures > 0))
