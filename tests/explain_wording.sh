#!/usr/bin/env bash
# The words of explain, reduce and the run summary (issue 23):
#   - explain's block header counts the strings above the threshold ("N strings
#     above T", N = /blocks/n_matches of -o), and the listed strings below it
#     (listed to fill the top list) come after a "(below T, ...)" line;
#   - a distribution empty for every text prints "n/a (no match)", never 0.0000
#     (explain's --eval-text summary, reduce's summary line, report.md);
#     weights 0 make explain's approximation empty for every text, and
#     --backoff-min 10^9 reduce's backoff n-gram;
#   - the logit lens of the last block says "(= the model)" (explain's
#     per-text line and summary, report.md, the run's table).
# Env: CORPUSLENS (binary), PYTHON (python3 with h5py).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok    $*"; }

set -e
"$CL" demo-corpus --chars 20000 -o demo.txt >/dev/null
"$CL" init --config n_layer=2,n_embd=16,n_head=2,block_size=16 --vocab-from demo.txt --seed 3 -o m.h5 >/dev/null
"$CL" prepare demo.txt --len 6 --prompts 40 --seed 1 --holdout-fraction 0.1 --vocab-from m.h5 -o c.h5 >/dev/null
"$CL" index --model m.h5 --corpus c.h5 -o ix.h5 >/dev/null 2>&1
set +e
EX=(explain --index ix.h5 --corpus c.h5 --model m.h5)

# 1. the block header and the below-threshold marker, against the -o file's counts
TEXT=$(head -c 6 demo.txt | tr '\n' ' ')
"$CL" "${EX[@]}" --thresholds 0.95,0.95 --weights 1,1 --top 40 --show 40 -o one.h5 -- "$TEXT" >one.txt 2>one.err ||
    fail "explain: $(cat one.err)"
"$PY" - one.txt one.h5 0.95 <<'PY' || fail "block header/marker"
import re, sys, h5py
out, thr = open(sys.argv[1], encoding="utf-8").read().split("\n"), float(sys.argv[3])
n = h5py.File(sys.argv[2])["/blocks/n_matches"][0]
bad, seen_below = [], 0
for b in range(len(n)):
    hdr = [i for i, l in enumerate(out) if re.match(rf"  block {b} \(weight 1\): \d+ strings? above {thr:g}", l)]
    if len(hdr) != 1:
        bad.append(f"block {b}: header {hdr}"); continue
    got = int(re.match(r"  block \d+ \(weight 1\): (\d+)", out[hdr[0]]).group(1))
    if got != n[b]: bad.append(f"block {b}: header says {got}, n_matches {n[b]}")
    listed, below, marker = [], False, 0
    for l in out[hdr[0] + 1:]:
        if l.startswith(f"    (below {thr:g}, not in the approximation:)"):
            below, marker = True, marker + 1
            continue
        m = re.match(r'    ".*" ([01]\.\d{3})  next:', l)
        if not m: break
        listed.append((float(m.group(1)), below))
    above = [s for s, bl in listed if not bl]
    if len(above) != min(n[b], len(listed)): bad.append(f"block {b}: {len(above)} listed above, n_matches {n[b]}")
    if any(s < thr - 1e-3 for s in above) or any(s > thr + 1e-3 for s, bl in listed if bl):
        bad.append(f"block {b}: similarities on the wrong side of the marker {listed}")
    if marker != (1 if len(listed) > n[b] else 0): bad.append(f"block {b}: {marker} markers")
    seen_below += marker
if not seen_below: bad.append("no block listed a string below the threshold (the marker is untested)")
print("\n".join(bad) or "header and marker agree with /blocks/n_matches")
sys.exit(1 if bad else 0)
PY
grep -qE '^  logit lens: block 0 H [0-9.]+ top .*; block 1 \(= the model\) H 0\.000 top ' one.txt &&
    ok "explain: the last block's lens is '(= the model)'" || fail "explain lens line: $(grep 'logit lens' one.txt)"

# 2. an approximation empty for every window: n/a, never 0.0000
"$CL" "${EX[@]}" --thresholds 0.5,0.5 --weights 0,0 --eval-text 20 --quiet >eval.txt 2>eval.err || fail "eval: $(cat eval.err)"
grep -qE '^  approximation +n/a \(no match\)  \(n 0, empty 20\)$' eval.txt &&
    ok "explain --eval-text: an all-empty approximation is n/a (no match)" || fail "eval: $(cat eval.txt)"
grep -qE '^  logit lens, block 1 \(= the model\) +mean 0\.0000' eval.txt &&
    ok "explain --eval-text: '(= the model)'" || fail "eval lens: $(cat eval.txt)"
grep -qE '^  logit lens, block 0 +mean' eval.txt || fail "eval: block 0's lens row changed: $(cat eval.txt)"
"$CL" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o s.h5 >/dev/null 2>&1 || fail "scan"
# reduce refuses weights 0; a backoff n-gram needing 10^9 occurrences is empty for every prompt
"$CL" reduce s.h5 --thresholds 0.8,0.8 --weights 1,1 --backoff-min 1000000000 -o rep >red.txt 2>red.err ||
    fail "reduce: $(cat red.err)"
grep -qE "^reduce: 40 prompts, mean H 0\.[0-9]{4}, .*; n-gram 0\.[0-9]{4}, .*, backoff n/a \(no match\)" red.txt &&
    ok "reduce: an all-empty baseline is n/a (no match)" || fail "reduce summary: $(cat red.txt)"
grep -qF "| backoff n-gram (K = 1000000000) (\`backoff\`) | 0 | 40 | n/a (no match) |" rep/report.md &&
    ok "report.md: n/a (no match)" || fail "report.md: $(grep backoff rep/report.md | head -3)"
grep -qF "| logit lens, block 1 (= the model) (\`lens_1\`) | 40 |" rep/report.md &&
    ok "report.md: '(= the model)'" || fail "report.md lens: $(grep 'logit lens' rep/report.md)"
grep -qF "| logit lens, block 0 (\`lens_0\`) |" rep/report.md || fail "report.md: block 0's lens row changed"

# 3. the run's table (its n/a: the same code as its other rows, which a job cannot make empty)
cat >job.ini <<JOB
[corpus]
path = demo.txt
len = 6
prompts = 40
seed = 1
[model]
path = m.h5
[scan]
prefilter = 0.5
bin_width = 0.01
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = out
JOB
"$CL" run job.ini >run.txt 2>&1 || fail "run: $(tail -5 run.txt)"
grep -qE '^  logit lens, block 1 \(= the model\) +0\.0000' run.txt &&
    ok "run: '(= the model)'" || fail "run lens: $(grep 'logit lens' run.txt)"
grep -qE '^  logit lens, block 0 +0\.[0-9]{4}' run.txt || fail "run: block 0's lens row changed: $(cat run.txt)"

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
