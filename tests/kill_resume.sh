#!/usr/bin/env bash
# Kill a rank half-way (CORPUSLENS_FAULT=1:STEP@N:kill sends SIGKILL to rank 1
# at its N-th shard / training step): mpiexec exits nonzero; the same command
# run again resumes from the checkpoints and writes a file byte-identical to
# an uninterrupted run. Scan: compared with cmp after setting the one
# wall-time attribute (wall_seconds) to 0 in copies of both files (h5py
# rewrites the scalar in place); training (train --resume on the killed run's
# checkpoint, and `run` with a [train] section, which resumes by itself):
# compared with cmp as written (a model file holds no times).
# Env: CORPUSLENS, PYTHON (h5py).
. "$(dirname "$0")/lib.sh"
cl_workdir kill_resume
mpi() { timeout -k 5 120 mpiexec -n 2 --oversubscribe "$E" "$@"; }
set -e
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 40 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
set +e

# ---- scan: a checkpoint after every shard, rank 1 killed at its 4th shard
SCAN=(scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.02 --batch 64 --checkpoint-every 0.000001)
mpi "${SCAN[@]}" -o ref.h5 >/dev/null 2>&1 || bad "scan: the uninterrupted run failed"
t0=$SECONDS
CORPUSLENS_FAULT=1:scan.shard@4:kill mpi "${SCAN[@]}" -o s.h5 >out.txt 2>err.txt
rc=$? dt=$((SECONDS - t0))
# mpiexec passes the signal on (137 = 128 + SIGKILL); the timeout would take 120 s
if [ $rc -ne 0 ] && [ $dt -lt 100 ] && [ ! -f s.h5 ]; then
    ok "scan: rank 1 killed at its 4th shard: mpiexec exit $rc, no s.h5, state: $(ls s.h5.state | tr '\n' ' ')"
else
    bad "scan: killed run: exit $rc after $dt s (want nonzero, no timeout), s.h5 $( [ -f s.h5 ] && echo exists || echo absent)"
fi
mpi "${SCAN[@]}" -o s.h5 >out.txt 2>err.txt || { bad "scan: the rerun failed"; cat err.txt; }
if grep -q "resuming: [1-9][0-9]* of" err.txt; then ok "scan: the rerun $(grep -o 'resuming: [^(]*' err.txt)"; else bad "scan: the rerun did not resume"; fi
"$PY" - <<'PY'
import shutil, h5py
for a, b in (("ref.h5", "ref0.h5"), ("s.h5", "s0.h5")):
    shutil.copyfile(a, b)
    with h5py.File(b, "r+") as f:
        f.attrs.modify("wall_seconds", 0.0)
PY
if [ -f s.h5 ] && cmp ref0.h5 s0.h5; then ok "scan: resumed file == uninterrupted file, byte for byte (wall_seconds set to 0 in both)"
else bad "scan: resumed file differs from the uninterrupted one"; fi
# negative control: the comparison sees a changed attribute
"$PY" -c "import h5py; f = h5py.File('s0.h5', 'r+'); f.attrs.modify('n_trie_nodes', 1)"
if ! cmp -s ref0.h5 s0.h5; then ok "control: cmp sees one changed attribute"; else bad "control: cmp missed a change"; fi
[ ! -d s.h5.state ] && ok "scan: the state is gone after the finished rerun" || bad "scan: s.h5.state left"

# ---- the same with --next-layout csr (sparse checkpoints; the model side as
# supports, the lens as H from take_prompts): killed, resumed, the same bytes
mpi "${SCAN[@]}" --next-layout csr -o cref.h5 >/dev/null 2>&1 || bad "scan csr: the uninterrupted run failed"
CORPUSLENS_FAULT=1:scan.shard@4:kill mpi "${SCAN[@]}" --next-layout csr -o cs.h5 >out.txt 2>err.txt
rc=$?
[ $rc -ne 0 ] && [ ! -f cs.h5 ] && ok "scan csr: rank 1 killed at its 4th shard (exit $rc), no cs.h5" \
    || bad "scan csr: killed run: exit $rc, cs.h5 $( [ -f cs.h5 ] && echo exists || echo absent)"
mpi "${SCAN[@]}" --next-layout csr -o cs.h5 >out.txt 2>err.txt || { bad "scan csr: the rerun failed"; cat err.txt; }
grep -q "resuming: [1-9][0-9]* of" err.txt && ok "scan csr: the rerun $(grep -o 'resuming: [^(]*' err.txt)" \
    || bad "scan csr: the rerun did not resume"
"$PY" - <<'PY'
import shutil, h5py
for a, b in (("cref.h5", "cref0.h5"), ("cs.h5", "cs0.h5")):
    shutil.copyfile(a, b)
    with h5py.File(b, "r+") as f:
        f.attrs.modify("wall_seconds", 0.0)
PY
"$PY" -c "import h5py, sys; f = h5py.File('cs0.h5', 'r'); sys.exit(0 if '/model/support/token' in f and '/model/probs' not in f else 1)" \
    && ok "scan csr: the file has /model/support, no /model/probs" || bad "scan csr: not the csr model side"
if [ -f cs.h5 ] && cmp cref0.h5 cs0.h5; then ok "scan csr: resumed file == uninterrupted file, byte for byte"
else bad "scan csr: resumed file differs from the uninterrupted one"; fi

# ---- training: a checkpoint every step, rank 1 killed at its 4th step
TRAIN=(train --corpus demo.txt --init m.h5 --steps 6 --batch 4 --ctx 8 --eval-every 2 --eval-batches 1
       --checkpoint-every 1 --dropout 0.1 --seed 3)
mpi "${TRAIN[@]}" -o tref.h5 >/dev/null 2>&1 || bad "train: the uninterrupted run failed"
t0=$SECONDS
CORPUSLENS_FAULT=1:train.step@4:kill mpi "${TRAIN[@]}" -o t.h5 >out.txt 2>err.txt
rc=$? dt=$((SECONDS - t0))
step=$("$PY" -c "import h5py; print(int(h5py.File('t.h5', 'r')['/train/step'][0]))" 2>/dev/null)
if [ $rc -ne 0 ] && [ $dt -lt 100 ] && [ "$step" = 3 ]; then
    ok "train: rank 1 killed at its 4th step: mpiexec exit $rc, checkpoint at step $step"
else
    bad "train: killed run: exit $rc, checkpoint step '$step' (want 3)"
fi
mpi train --resume t.h5 --steps 6 -o t.h5 >out.txt 2>err.txt || { bad "train: --resume failed"; cat err.txt; }
if cmp tref.h5 t.h5; then ok "train: resumed model file == uninterrupted one, byte for byte"; else bad "train: resumed file differs"; fi

# ---- the same through `run` (its train stage resumes from the checkpoint by itself)
cat > job.ini <<JOB
[corpus]
path = $d/demo.txt
len = 6
prompts = 40
seed = 1
[train]
config = n_layer=2,n_embd=32,n_head=4,block_size=16
steps = 6
batch = 4
ctx = 8
eval_every = 2
checkpoint_every = 1
seed = 3
[scan]
prefilter = 0.5
bin_width = 0.02
batch = 64
checkpoint_every = 0.000001
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = \${OUT}
JOB
# both jobs write to the same folder (the job stamps name the paths): the
# uninterrupted one's is moved aside
export OUT=$d/job
mpi run job.ini >/dev/null 2>&1 || bad "run: the uninterrupted job failed"
mv job jref
CORPUSLENS_FAULT=1:train.step@4:kill mpi run job.ini >/dev/null 2>&1 && bad "run: the killed job exited 0"
mpi run job.ini >out.txt 2>err.txt || { bad "run: the rerun failed"; tail -5 err.txt; }
if grep -q "resuming from its checkpoint" out.txt; then ok "run: the rerun resumed the training"; else bad "run: the training did not resume"; fi
if cmp jref/model.h5 job/model.h5; then ok "run: trained model.h5 byte-identical to the uninterrupted job"; else bad "run: model.h5 differs"; fi
rm -rf job/scan.h5 job/report
CORPUSLENS_FAULT=1:scan.shard@3:kill mpi run job.ini >/dev/null 2>&1 && bad "run: the job killed in the scan exited 0"
mpi run job.ini >out.txt 2>err.txt || { bad "run: the rerun failed"; tail -5 err.txt; }
if grep -q "resuming: [1-9]" err.txt; then ok "run: the rerun resumed the scan ($(grep -o 'resuming: [^(]*' err.txt))"; else bad "run: the scan did not resume"; fi
"$PY" - <<'PY'
import shutil, h5py
for a, b in (("jref/scan.h5", "js_ref.h5"), ("job/scan.h5", "js.h5")):
    shutil.copyfile(a, b)
    with h5py.File(b, "r+") as f:
        f.attrs.modify("wall_seconds", 0.0)
PY
if cmp js_ref.h5 js.h5; then ok "run: scan.h5 byte-identical to the uninterrupted job (wall_seconds set to 0)"; else bad "run: scan.h5 differs"; fi
cl_finish
