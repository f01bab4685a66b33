#!/usr/bin/env bash
# `run --force` keeps each old output until its replacement is complete: a
# stage that fails (CORPUSLENS_FAULT) or is interrupted (SIGINT) half-way
# leaves the old scan.h5 / model.h5 / report byte for byte as they were, still
# stamped (a plain run afterwards skips every stage); an interrupted forced
# training resumes from its replacement's checkpoint (model.h5.next) and,
# finished, puts a model identical to the old one in place; an interrupted
# forced scan keeps scan.h5.state/ for the forced run's resume, and a plain run
# (which keeps the old scan.h5) removes it. One process.
# Env: CORPUSLENS.
. "$(dirname "$0")/lib.sh"
cl_workdir run_force_keeps
export JOBDIR=$d
run() { timeout -k 5 300 "$E" run job.ini "$@" >out.txt 2>err.txt; }
cl_tiny_job 6 0 2 scan
O=out
FILES=(model.h5 corpus.h5 scan.h5 report/report.h5 report/report.md)
run || { echo "the first run failed"; tail -5 err.txt; exit 1; }
mkdir -p keep/report
for f in "${FILES[@]}"; do cp "$O/$f" "keep/$f"; done
same() { # $1 label: every old output still there, byte for byte
    local diff=""
    for f in "${FILES[@]}"; do cmp -s "keep/$f" "$O/$f" || diff="$diff $f"; done
    if [ -z "$diff" ]; then ok "$1: every old output intact (${FILES[*]})"
    else bad "$1: changed or gone:$diff"; fi
}

# 1. the scan stage fails half-way under --force
CORPUSLENS_FAULT=0:scan.shard@3 run --force
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && ok "scan failing under --force: exit $rc" || bad "scan failing under --force: exit $rc"
same "scan failing under --force"
grep -q "is kept until its replacement is complete" err.txt && ok "it says the old output is kept" ||
    { bad "no 'kept' message"; tail -3 err.txt; }
rm -rf "$O/scan.h5.state"

# 2. the training interrupted (SIGINT at its 3rd step, after the checkpoint at step 2) under --force
CORPUSLENS_FAULT=0:train.step@3:int run --force --stages train
rc=$?
[ $rc = 130 ] && ok "training interrupted under --force: exit 130" || { bad "training interrupted: exit $rc, want 130"; tail -3 err.txt; }
same "training interrupted under --force"
[ -f "$O/model.h5.next" ] && ok "the replacement's checkpoint is $O/model.h5.next" || bad "no model.h5.next"
run --force --stages train
rc=$?
if [ $rc = 0 ] && grep -q "an interrupted replacement of .*resuming" out.txt; then ok "the next forced run resumed the replacement"
else bad "the next forced run: exit $rc, resumed: $(grep -c 'interrupted replacement' out.txt)"; tail -3 err.txt; fi
same "the resumed replacement finished (a trained model is deterministic)"
[ ! -e "$O/model.h5.next" ] && ok "model.h5.next is gone" || bad "model.h5.next left"

# 3. the reduce stage fails under --force (reduce removes its files when it fails)
CORPUSLENS_FAULT=0:reduce.write run --force --stages reduce
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && ok "reduce failing under --force: exit $rc" || bad "reduce failing under --force: exit $rc"
same "reduce failing under --force"
run --force --stages reduce
rc=$?
[ $rc = 0 ] && [ -f "$O/report/report.h5" ] && [ -f "$O/report/report.md" ] && [ ! -e "$O/report.next" ] &&
    [ ! -e "$O/report.old" ] && ok "a forced reduce replaces the report folder (nothing left beside it)" ||
    { bad "forced reduce: exit $rc, $(ls "$O")"; tail -3 err.txt; }
same "the report replaced by an identical one"

# 4. every old output is still stamped: a plain run skips every stage
run
rc=$?
if [ $rc = 0 ] && grep -q "0 stages run" out.txt; then ok "a plain run afterwards: $(grep -o '0 stages run, [0-9]* skipped' out.txt)"
else bad "a plain run afterwards: exit $rc, $(grep -o '[0-9]* stages\? run, [0-9]* skipped' out.txt)"; fi

# 5. the scan interrupted (SIGINT at its 3rd shard) under --force: the old
# scan.h5 stays and its checkpoint is kept for the forced run's resume; a plain
# run afterwards keeps the old outputs, so it removes that checkpoint (and says so)
CORPUSLENS_FAULT=0:scan.shard@3:int run --force --stages scan
rc=$?
[ $rc = 130 ] && ok "scan interrupted under --force: exit 130" || { bad "scan interrupted: exit $rc, want 130"; tail -3 err.txt; }
same "scan interrupted under --force"
[ -f "$O/scan.h5.state/rank0.bin" ] && ok "its checkpoint is kept in $O/scan.h5.state/" || bad "no scan.h5.state/rank0.bin"
run
rc=$?
if [ $rc = 0 ] && grep -q "0 stages run" out.txt && grep -q "removed .*scan.h5.state/, the checkpoint of an interrupted forced run" out.txt &&
    [ ! -e "$O/scan.h5.state" ]; then ok "a plain run afterwards skips the scan and removes scan.h5.state/, saying so"
else bad "a plain run after the interrupted forced scan: exit $rc, scan.h5.state $( [ -e "$O/scan.h5.state" ] && echo left || echo gone), message $(grep -c 'removed .*scan.h5.state' out.txt)"; fi
same "the plain run after the interrupted forced scan"

# 6. interrupted under --force again, the same forced command resumes the scan
CORPUSLENS_FAULT=0:scan.shard@3:int run --force --stages scan
run --force --stages scan
rc=$?
if [ $rc = 0 ] && grep -q "resuming: 3 of" err.txt && [ ! -e "$O/scan.h5.state" ]; then ok "the same forced run resumed the scan: $(grep -o 'resuming: [^(]*' err.txt)"
else bad "the forced rerun: exit $rc, resumed $(grep -c 'resuming:' err.txt), scan.h5.state $( [ -e "$O/scan.h5.state" ] && echo left || echo gone)"; tail -3 err.txt; fi

# negative control: the comparison sees a changed file
printf x >>"$O/report/report.md"
if ! cmp -s keep/report/report.md "$O/report/report.md"; then ok "control: cmp sees a changed report.md"; else bad "control: cmp missed it"; fi

cl_finish
