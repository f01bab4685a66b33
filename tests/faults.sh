#!/usr/bin/env bash
# Ranks fail together and say why (include/corpuslens/par/par.h): a fault
# injected on one rank (CORPUSLENS_FAULT=RANK:STEP) in scan, train, reduce
# --compare-model, lens --prompts, ablate and run must make mpiexec exit
# nonzero within the timeout (no rank left waiting in a collective), print the
# failing rank's own message ("rank R: injected fault at STEP on rank R") on
# stderr, and leave no output that looks complete. Plus two real one-rank
# failures: a --batch-file whose bad token only rank 1 sees (train), and a
# compare model that only rank 1 cannot read (reduce).
# Env: CORPUSLENS, PYTHON (h5py). Usage: faults.sh [RANKS] (default 2).
. "$(dirname "$0")/lib.sh"
N=${1:-2}
LIMIT=${FAULT_TIMEOUT:-60}
d=$(mktemp -d /tmp/faults.XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"
mpi() { timeout -k 5 "$LIMIT" mpiexec -n "$N" --oversubscribe "$E" "$@"; }

set -e
"$E" demo-corpus --chars 20000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 2 -o m2.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 24 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
"$E" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.05 -o s.h5 2>/dev/null
set +e

# expect NAME OUTPUT_GLOB MESSAGE -- COMMAND...: nonzero exit (not the
# timeout's 124/137), MESSAGE on stderr, nothing matching OUTPUT_GLOB.
expect() {
    local name=$1 out=$2 msg=$3
    shift 4
    local t0=$SECONDS
    "$@" >out.txt 2>err.txt
    local rc=$? dt=$((SECONDS - t0))
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        bad "$name: hung (killed by the ${LIMIT} s timeout)"
    elif [ $rc -eq 0 ]; then
        bad "$name: exit status 0"
    elif ! grep -qF -- "$msg" err.txt; then
        bad "$name: stderr lacks '$msg':"; sed 's/^/      /' err.txt | head -5
    else
        ok "$name: exit $rc after ${dt} s: $(grep -F -- "$msg" err.txt | head -1)"
    fi
    # shellcheck disable=SC2086
    if [ -n "$out" ] && ls $out >/dev/null 2>&1; then bad "$name: left $(ls -d $out | tr '\n' ' ')"; fi
}
inj() { echo "rank $1: injected fault at $2 on rank $1 (CORPUSLENS_FAULT)"; }
last=$((N - 1))
SCAN=(scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.05 --batch 100 -o f.h5)
for step in scan.setup scan.shard scan.shard@3 scan.write h5p.select h5p.select@2; do
    s=${step%@*}
    CORPUSLENS_FAULT=$last:$step expect "scan, $step on rank $last" "f.h5 f.h5.tmp" "$(inj $last $s)" -- mpi "${SCAN[@]}"
done
CORPUSLENS_FAULT=0:scan.write expect "scan, scan.write on rank 0" "f.h5 f.h5.tmp" "$(inj 0 scan.write)" -- mpi "${SCAN[@]}"
rm -rf f.h5.state

B=$((2 * N))
TRAIN=(train --corpus demo.txt --init m.h5 --steps 4 --batch "$B" --ctx 8 --eval-every 2 --eval-batches 1 -o t.h5)
for step in train.load train.step train.step@3 train.checkpoint; do
    s=${step%@*}
    CORPUSLENS_FAULT=$last:$step expect "train, $step on rank $last" "t.h5 t.h5.train.tmp" "$(inj $last $s)" -- mpi "${TRAIN[@]}"
done
# a real fault: token 99 (outside the vocabulary) in the rows only the last rank trains on
"$PY" - "$N" <<'PY'
import sys, h5py, numpy as np
n = int(sys.argv[1]); B = 2 * n
w = np.ones((4, B, 9), dtype=np.int32)
w[1, B - 1, 3] = 99
with h5py.File("bad_batches.h5", "w") as f:
    f["/windows"] = w
PY
expect "train, a bad token only rank $last sees (--batch-file)" "t.h5 t.h5.train.tmp" "rank $last: " -- \
    mpi train --corpus demo.txt --init m.h5 --steps 4 --batch "$B" --ctx 8 --eval-every 0 --batch-file bad_batches.h5 -o t.h5
if grep -q "token\|vocab" err.txt; then ok "  ... the message names the token: $(grep 'rank' err.txt | head -1)"; else bad "  ... the message does not name the bad token"; fi

RED=(reduce s.h5 --thresholds 0.8,0.8 --weights 1,1 --compare-model m2.h5 -o rep)
for step in reduce.load reduce.compare; do
    CORPUSLENS_FAULT=$last:$step expect "reduce --compare-model, $step on rank $last" "rep/report.h5" "$(inj $last $step)" -- mpi "${RED[@]}"
done

CORPUSLENS_FAULT=$last:lens.prompts expect "lens --prompts, lens.prompts on rank $last" "" "$(inj $last lens.prompts)" -- \
    mpi lens --model m.h5 --prompts c.h5
CORPUSLENS_FAULT=$last:ablate.run expect "ablate, ablate.run on rank $last" "bars.svg" "$(inj $last ablate.run)" -- \
    mpi ablate --model m.h5 --corpus c.h5 --svg bars.svg

cat > job.ini <<JOB
[corpus]
path = $d/demo.txt
len = 6
prompts = 24
seed = 1
[model]
path = $d/m.h5
[scan]
prefilter = 0.5
bin_width = 0.05
batch = 100
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = $d/job-out
JOB
CORPUSLENS_FAULT=$last:run.stage expect "run, run.stage on rank $last" "job-out/scan.h5" "$(inj $last run.stage)" -- mpi run job.ini
CORPUSLENS_FAULT=$last:scan.shard@2 expect "run, scan.shard@2 on rank $last (inside the scan stage)" "job-out/scan.h5" \
    "$(inj $last scan.shard)" -- mpi run job.ini
# the same job runs to the end once the fault is gone
if timeout -k 5 "$LIMIT" mpiexec -n "$N" --oversubscribe "$E" run job.ini >out.txt 2>err.txt && [ -f job-out/report/report.h5 ]; then
    ok "run without a fault finishes"
else
    bad "run without a fault failed:"; tail -5 err.txt
fi
# negative control: no fault variable, no failure
if mpi "${SCAN[@]}" >/dev/null 2>&1 && [ -f f.h5 ]; then ok "control: the scan without a fault succeeds"; else bad "control: scan without a fault failed"; fi
cl_finish
