#!/usr/bin/env bash
# train writes a periodic checkpoint by default (at every evaluation): a run
# killed with SIGKILL (nothing saved at the kill) keeps the steps up to its
# last evaluation, and `train --resume` finishes it with the model of an
# uninterrupted run, byte for byte. `run` resumes a training of a job without
# [train] checkpoint_every. Negative control: --checkpoint-every 0 keeps the
# old behaviour (nothing to resume after the kill). Env: CORPUSLENS, PYTHON.
. "$(dirname "$0")/lib.sh"
cl_workdir train_default_checkpoint
export JOBDIR=$d
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null || exit 1
"$E" init --config n_layer=1,n_embd=16,n_head=2,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null || exit 1
step_of() { "$PY" -c "import h5py, sys; print(int(h5py.File(sys.argv[1], 'r')['/train/step'][0]))" "$1" 2>/dev/null; }
# no --checkpoint-every: the default
TRAIN=(train --corpus demo.txt --init m.h5 --steps 8 --batch 4 --ctx 8 --eval-every 3 --eval-batches 1 --seed 3)
timeout -k 5 120 "$E" "${TRAIN[@]}" -o ref.h5 >/dev/null 2>&1 || bad "the uninterrupted run failed"

# $1 output, $2.. extra options: parks at step 7, then SIGKILL
killed_run() {
    local out=$1
    shift
    CORPUSLENS_FAULT=0:train.step@7:wait "$E" "${TRAIN[@]}" "$@" -o "$out" >out.txt 2>err.txt &
    local pid=$!
    for _ in $(seq 1 600); do grep -q "waits for a signal" err.txt 2>/dev/null && break; sleep 0.1; done
    kill -KILL $pid
    wait $pid 2>/dev/null
}
killed_run k.h5
s=$(step_of k.h5)
[ "$s" = 6 ] && ok "killed (SIGKILL) at step 7: k.h5 holds the checkpoint of step 6 (the last evaluation)" ||
    bad "killed at step 7: checkpoint step '$s' (want 6)"
if timeout -k 5 120 "$E" train --resume k.h5 --steps 8 -o k.h5 >out.txt 2>err.txt && cmp -s ref.h5 k.h5; then
    ok "train --resume finished it: == the uninterrupted model, byte for byte"
else bad "the resumed model differs or the resume failed"; tail -3 err.txt; fi

# negative control: --checkpoint-every 0 writes nothing before the end
killed_run k0.h5 --checkpoint-every 0
[ -z "$(step_of k0.h5)" ] && ok "control: --checkpoint-every 0, killed: no checkpoint" || bad "control: a checkpoint at step $(step_of k0.h5)"

# run: a job without [train] checkpoint_every, stopped after its first checkpoint, resumes
cl_tiny_job 6 2 ""
CORPUSLENS_TRAIN_STOP_AFTER=2 timeout -k 5 120 "$E" run job.ini --stages generate,train >out.txt 2>err.txt
rc=$?
[ $rc = 3 ] && [ "$(step_of out/model.h5)" = 2 ] && ok "run: the training stopped at its default checkpoint (step 2, exit 3)" ||
    { bad "run: exit $rc (want 3), step '$(step_of out/model.h5)'"; tail -3 err.txt; }
timeout -k 5 120 "$E" run job.ini --stages generate,train >out.txt 2>err.txt
rc=$?
[ $rc = 0 ] && grep -q "resuming from its checkpoint" out.txt && [ "$(step_of out/model.h5)" = 6 ] &&
    ok "run again: resumed the training to step 6" || { bad "run again: exit $rc, $(grep -c 'resuming' out.txt) resume lines"; tail -3 err.txt; }

cl_finish
