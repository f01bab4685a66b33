#!/usr/bin/env bash
# corpuslens run: a whole (tiny) job under mpiexec -n 2; a scan stopped on
# purpose (CORPUSLENS_SCAN_STOP_AFTER) makes the run fail with a resume hint;
# the rerun skips the finished stages (their files untouched) and completes;
# a third run skips everything; a changed [reduce] setting reruns only reduce.
# Env: CORPUSLENS (binary), PYTHON (h5py).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
PY=${PYTHON:-/usr/bin/python3}
MPIEXEC=${MPIEXEC:-mpiexec}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

cat >"$T/tiny.ini" <<'INI'
[corpus]
generate = demo
chars = 20000
len = 6
prompts = 20
seed = 5
[train]
config = n_layer=1,n_embd=16,n_head=2,block_size=16
steps = 10
batch = 4
ctx = 16
lr = 1e-2
dropout = 0
eval_every = 0
[scan]
prefilter = 0.5
bin_width = 0.05
batch = 64
[reduce]
thresholds = 0.8
weights = ${TINY_WEIGHT:-1}
[output]
dir = ${JOBDIR}/out
INI
run() { $MPIEXEC -n 2 --oversubscribe "$CL" run "$T/tiny.ini" "$@"; }
mtime() { stat -c %Y.%y "$1"; }

# 1. the scan stops after one shard per rank: the run fails and says how to go on
CORPUSLENS_SCAN_STOP_AFTER=1 run >"$T/1.out" 2>"$T/1.err"
rc=$?
# the scan's own status comes through (Slurm's RequeueExit=3 relies on it)
[ "$rc" = 3 ] || fail "run with a stopped scan: exit status $rc, expected 3"
grep -qF "stage scan failed" "$T/1.err" || fail "no failure line: $(tail -5 "$T/1.err")"
grep -qF "run the same command again" "$T/1.err" || fail "no resume hint"
[ -f "$T/out/model.h5" ] || fail "no model after run 1"
[ -f "$T/out/report/report.h5" ] && fail "report written although the scan stopped"
m_model=$(mtime "$T/out/model.h5")
m_corpus=$(mtime "$T/out/corpus.h5")
sleep 1.1

# 2. rerun: generate/train/prepare skipped, scan resumes, reduce runs
run >"$T/2.out" 2>"$T/2.err" || fail "rerun failed: $(tail -5 "$T/2.err")"
for st in generate train prepare; do
    grep -q "^== \[[0-9]/5\] $st: skipped" "$T/2.out" || fail "rerun did not skip $st: $(grep "^==" "$T/2.out")"
done
grep -q "^== \[4/5\] scan: running (.*incomplete" "$T/2.out" || fail "rerun: scan not resumed: $(grep "^==" "$T/2.out")"
grep -q "^== \[5/5\] reduce: running" "$T/2.out" || fail "rerun: reduce not run"
[ "$(mtime "$T/out/model.h5")" = "$m_model" ] || fail "model.h5 rewritten by the rerun"
[ "$(mtime "$T/out/corpus.h5")" = "$m_corpus" ] || fail "corpus.h5 rewritten by the rerun"
grep -q "approximation" "$T/2.out" || fail "no report summary printed"

# 3. nothing to do
run >"$T/3.out" 2>"$T/3.err" || fail "third run failed"
grep -qF "0 stages run, 5 skipped" "$T/3.out" || fail "third run: $(grep "^==" "$T/3.out")"

# 4. another weight: only reduce runs
TINY_WEIGHT=2 run >"$T/4.out" 2>"$T/4.err" || fail "reweighted run failed"
grep -q "^== \[4/5\] scan: skipped" "$T/4.out" || fail "reweighted run: scan not skipped"
grep -q "^== \[5/5\] reduce: running (.*other settings" "$T/4.out" || fail "reweighted run: reduce: $(grep "^==" "$T/4.out")"
grep -qF "1 stage run, 4 skipped" "$T/4.out" || fail "reweighted run: $(tail -3 "$T/4.out")"

# 5. a training with checkpoints, killed: the rerun resumes it from its checkpoint
sed -e 's/^steps = 10$/steps = 4000/' -e 's/^eval_every = 0$/eval_every = 0\ncheckpoint_every = 100/' \
    -e 's|^dir = .*|dir = ${JOBDIR}/out2|' "$T/tiny.ini" >"$T/ckpt.ini"
grep -q "^checkpoint_every = 100" "$T/ckpt.ini" || fail "could not make ckpt.ini"
# stop right after the checkpoint at step 100 (deterministic; a timed kill raced
# a training that finishes 4000 tiny steps in under a second on a quiet machine)
CORPUSLENS_TRAIN_STOP_AFTER=100 $MPIEXEC -n 2 --oversubscribe "$CL" run "$T/ckpt.ini" >"$T/5.out" 2>"$T/5.err" &&
    fail "the stopped training did not fail"
grep -q "stopped after step 100" "$T/5.err" || fail "no stop message: $(tail -3 "$T/5.err")"
[ -f "$T/out2/model.h5.job_stamp" ] || fail "no model.h5.job_stamp beside the checkpoint"
run2() { $MPIEXEC -n 2 --oversubscribe "$CL" run "$T/ckpt.ini" "$@"; }
run2 >"$T/6.out" 2>"$T/6.err" || fail "resumed run failed: $(tail -5 "$T/6.err")"
grep -q "^== \[2/5\] train: running (an interrupted training: resuming" "$T/6.out" ||
    fail "training not resumed: $(grep -A1 "^== \[2/5\]" "$T/6.out")"
grep -qF -- "--resume $T/out2/model.h5" "$T/6.out" || fail "no --resume in the train command"
grep -q "resuming" "$T/6.out" || fail "train did not say it resumes"
[ -e "$T/out2/model.h5.job_stamp" ] && fail "model.h5.job_stamp left after the training finished"
run2 >"$T/7.out" 2>&1 || fail "run after the resumed one failed"
grep -qF "0 stages run, 5 skipped" "$T/7.out" || fail "after resume: $(grep "^==" "$T/7.out")"

# the stamps are text files beside the outputs (never written into them)
"$PY" - "$T/out" <<'PYEOF' || fail "job stamps"
import os, sys, h5py
d = sys.argv[1]
for f, stage in [("model.h5", "train"), ("corpus.h5", "prepare"), ("scan.h5", "scan"),
                 ("report/report.h5", "reduce")]:
    lines = open(f"{d}/{f}.stamp").read().split("\n")
    assert lines[0] == "corpuslens-job-stamp 1", (f, lines[0])
    assert lines[1].startswith("job_stamp ") and len(lines[1]) == 10 + 64, (f, lines[1])
    assert lines[2] == "job_stage " + stage, (f, lines[2])
    st = os.stat(f"{d}/{f}")
    assert lines[3].split()[1] == str(st.st_size), (f, lines[3], st.st_size)
    assert lines[4] == "key" and lines[5] == "corpuslens-run 1" and lines[6] == "stage " + stage, (f, lines[4:7])
    with h5py.File(f"{d}/{f}") as h:
        assert "job_stamp" not in h.attrs, f
with h5py.File(f"{d}/report/report.h5") as h:
    assert list(h.attrs["weights"]) == [2.0], h.attrs["weights"]
PYEOF

[ "$failures" = 0 ] && echo "jobs_resume: all checks passed"
exit $((failures > 0))
