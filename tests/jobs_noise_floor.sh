#!/usr/bin/env bash
# The paper's table from scratch at demo size (issue 14): tests/jobs/noise-floor-demo.ini
# (jobs/reproduce-small.ini scaled down) through `mpiexec -n 2 corpuslens run`:
# reference + 3 alternative seeds, prepare, scan, tune, ablate, reduce.
#  1. every stage runs; the report has the "Beside the paper" rows (3 per-model
#     noise-floor rows, their mean, the ratio, the ablation and fitted tables);
#     /noise_floor of report.h5 against numpy on the per-prompt compare H;
#  2. the compare models' forward passes give identical results on 1 and 2
#     ranks: reduce with the 3 alternatives, -n 1 vs -n 2, /baselines/compare_*
#     bitwise equal (negative control: two different models' rows differ);
#  3. a second run skips every stage; --alt 2 --stages alternatives --force
#     retrains only the second seed (a Slurm array task; same weights bitwise
#     with the same 2 ranks) and leaves the others.
# Prints the time per model. Env: CORPUSLENS, SRC, PYTHON (h5py).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
SRC=${SRC:?SRC must name the source tree}
PY=${PYTHON:-/usr/bin/python3}
MPIEXEC=${MPIEXEC:-mpiexec}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
JOB=$SRC/tests/jobs/noise-floor-demo.ini
O=$T/out
export CORPUSLENS_OUT=$O

(cd "$T" && $MPIEXEC -n 2 --oversubscribe "$CL" run "$JOB") >"$T/out.txt" 2>"$T/err.txt" \
    || fail "run failed: $(tail -20 "$T/err.txt")"
grep "^==\|^--" "$T/out.txt"
grep -qF "10 stages run, 0 skipped" "$T/out.txt" || fail "not every stage ran"
[ "$(grep -c '^-- alternatives: done' "$T/out.txt")" = 3 ] || fail "not 3 alternative trainings"
awk '/^-- (train|alternatives): done in/ {s += $5; n++} END {if (n) printf "time per model: %.1f s (%d models)\n", s / n, n}' "$T/out.txt"
md=$O/report/report.md
for want in "## Beside the paper" "model-seed2.h5) (mean" "model-seed3.h5) (mean" "model-seed4.h5) (mean" \
            "**noise floor**: mean over the 3 other models" "**ratio** approximation / noise floor | 1.58 |" \
            "### Ablation (Appendix IV)" "| range, paper | 0.03–0.11 | 0.13–0.70 |" "| fitted | " "| paper | 0.95, 0.94"; do
    grep -qF -- "$want" "$md" || fail "report.md lacks '$want'"
done

# 2. compare-model forward passes: 1 rank vs 2 ranks
alts=(--compare-model "$O/model-seed2.h5" --compare-model "$O/model-seed3.h5" --compare-model "$O/model-seed4.h5")
"$CL" reduce "$O/scan.h5" "${alts[@]}" -o "$T/r1" >"$T/r1.txt" 2>&1 || fail "reduce -n 1: $(cat "$T/r1.txt")"
$MPIEXEC -n 2 --oversubscribe "$CL" reduce "$O/scan.h5" "${alts[@]}" -o "$T/r2" >"$T/r2.txt" 2>&1 \
    || fail "reduce -n 2: $(cat "$T/r2.txt")"
"$PY" - "$T/r1/report.h5" "$T/r2/report.h5" "$O/report/report.h5" <<'PYEOF' || fail "compare-model checks"
import sys, h5py, numpy as np
r1, r2, rj = (h5py.File(p, "r") for p in sys.argv[1:])
bad = 0
for c in range(3):
    a, b = r1[f"baselines/compare_{c}/hellinger"][()], r2[f"baselines/compare_{c}/hellinger"][()]
    if not np.array_equal(a, b):
        print(f"compare_{c}: 1 rank vs 2 ranks differ by {np.abs(a - b).max()}"); bad += 1
    if np.isnan(a).any() or not (a >= 0).all():
        print(f"compare_{c}: NaN or empty values"); bad += 1
# negative control: the check above tells two different models apart
if np.array_equal(r1["baselines/compare_0/hellinger"][()], r2["baselines/compare_1/hellinger"][()]):
    print("negative control: compare_0 and compare_1 are equal"); bad += 1
# the job's report: noise floor from its per-prompt compare H (numpy)
hs = [rj[f"baselines/compare_{c}/hellinger"][()] for c in range(3)]
means = np.array([h[h >= 0].mean() for h in hs])
pooled = np.concatenate([h[h >= 0] for h in hs])
h = rj["hellinger"][()]
nf = rj["noise_floor"].attrs
want = dict(mean=means.mean(), pooled_std=pooled.std(ddof=0), ratio=h[h >= 0].mean() / means.mean())
for k, v in want.items():
    if not abs(float(nf[k]) - v) <= 1e-12 * max(1.0, abs(v)):
        print(f"/noise_floor {k} {nf[k]} vs numpy {v}"); bad += 1
print("compare-model checks:", "OK" if not bad else "FAILED")
sys.exit(1 if bad else 0)
PYEOF

# 3. skips, and one alternative alone (what a Slurm array task runs)
(cd "$T" && "$CL" run "$JOB") >"$T/again.txt" 2>&1 || fail "second run failed"
grep -qF "0 stages run, 10 skipped" "$T/again.txt" || fail "second run did not skip everything: $(grep '^==' "$T/again.txt")"
cp "$O/model-seed3.h5" "$T/seed3-before.h5"
m2=$(stat -c %Y.%s "$O/model-seed2.h5")
sleep 1
(cd "$T" && $MPIEXEC -n 2 --oversubscribe "$CL" run "$JOB" --stages alternatives --alt 2 --force) >"$T/alt.txt" 2>&1 || fail "--alt 2 failed"
[ "$(grep -c '^== .*alternatives: running' "$T/alt.txt")" = 1 ] || fail "--alt 2 ran $(grep -c '^== .*alternatives: running' "$T/alt.txt") trainings"
grep -q "model-seed3.h5" "$T/alt.txt" || fail "--alt 2 did not train seed 3"
[ "$(stat -c %Y.%s "$O/model-seed2.h5")" = "$m2" ] || fail "--alt 2 touched seed 2"
"$PY" - "$T/seed3-before.h5" "$O/model-seed3.h5" <<'PYEOF' || fail "retraining seed 3 changed its weights (not deterministic)"
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["weights"] for p in sys.argv[1:])
bad = [k for k in a if not np.array_equal(a[k][()], b[k][()])]
sys.exit(print("weights differ:", bad) or 1 if bad or set(a) != set(b) else 0)
PYEOF
"$CL" run "$JOB" --alt 4 >"$T/alt4.txt" 2>&1 && fail "--alt 4 accepted (3 seeds)"
grep -q "has 3 alternative seeds" "$T/alt4.txt" || fail "--alt 4: $(cat "$T/alt4.txt")"

[ $failures = 0 ] && echo "jobs noise floor OK" || echo "jobs noise floor: $failures failure(s)"
exit $((failures > 0))
