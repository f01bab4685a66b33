#!/usr/bin/env bash
# A Slurm stage stopped by SIGTERM (scancel --signal=TERM, sbatch
# --signal=TERM@T, a preemption's grace time) saves its work and exits with
# RequeueExit's status 3, not 143, so that Slurm requeues it; the requeued job
# resumes. Without Slurm: slurm/scan.sbatch runs as a batch step would (one
# rank: the binary itself), in a process group of its own, and the whole group
# gets one SIGTERM, as slurmd signals a step, once the scan waits at its 3rd
# shard (CORPUSLENS_FAULT=0:scan.shard@3:wait). Negative control: without
# CL_REQUEUE_EXIT (a stage that is not requeued) the status stays 143. (A
# second SIGTERM is the same request: tests/test_interrupt.c, exact there.)
# Env: CORPUSLENS, SRC (the source tree).
. "$(dirname "$0")/lib.sh"
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
cl_workdir slurm_sigterm_status
export JOBDIR=$d
export CORPUSLENS_JOB=$d/job.ini CORPUSLENS_SLURM_DIR=$SRC/slurm CORPUSLENS_BIN=$E
export SLURM_JOB_ID=4242 SLURM_JOB_NODELIST=$(hostname -s) SLURM_NTASKS=1
cl_tiny_job 4 0 "" scan
timeout -k 5 300 "$E" run job.ini --stages generate,train,prepare >out.txt 2>err.txt || { echo "setup failed"; tail -5 err.txt; exit 1; }

# $1 the script, $2 label; the rest: env assignments. Sets rc.
term_case() {
    local script=$1 label=$2
    shift 2
    rm -f err.txt
    env "$@" CORPUSLENS_FAULT=0:scan.shard@3:wait setsid bash "$script" >out.txt 2>err.txt &
    local pid=$!
    for _ in $(seq 1 600); do grep -q "waits for a signal" err.txt 2>/dev/null && break; sleep 0.1; done
    kill -TERM -- -"$pid" # the group: the batch shell and the binary
    local t0=$SECONDS
    while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt 60 ]; do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- -"$pid"; bad "$label: still running 60 s after SIGTERM"; }
    wait "$pid"
    rc=$?
}

term_case "$SRC/slurm/scan.sbatch" "scan.sbatch"
if [ $rc = 3 ] && [ -f out/scan.h5.state/rank0.bin ] && [ ! -e out/scan.h5 ] &&
    grep -q "interrupted by SIGTERM: [0-9]* of [0-9]* shards done" err.txt; then
    ok "scan.sbatch, SIGTERM at shard 3: exit 3 (RequeueExit), the state kept, no scan.h5"
else
    bad "scan.sbatch, SIGTERM: exit $rc (want 3), state $(ls out/scan.h5.state 2>/dev/null | tr '\n' ' '), scan.h5 $( [ -e out/scan.h5 ] && echo exists || echo absent)"
    tail -5 err.txt
fi
grep -q "cl-scan: stopped by SIGTERM with its work saved: exit 3" err.txt && ok "it says why: $(grep -o 'cl-scan: stopped by SIGTERM.*' err.txt)" ||
    bad "no line saying why the status is 3"

# the requeued job (restart 1) resumes and finishes
SLURM_RESTART_COUNT=1 timeout -k 5 300 bash "$SRC/slurm/scan.sbatch" >out.txt 2>err.txt
rc=$?
[ $rc = 0 ] && grep -q "resuming: [1-9][0-9]* of" err.txt && [ -f out/scan.h5 ] && [ ! -e out/scan.h5.state ] &&
    ok "the requeued scan.sbatch resumed: $(grep -o 'resuming: [^(]*' err.txt)" || { bad "the requeued run: exit $rc"; tail -5 err.txt; }

# negative control: the same launch without CL_REQUEUE_EXIT keeps 143
cat >plain.sh <<EOF2
set -euo pipefail
. "$SRC/slurm/launch.sh"
CL=$E
cl_launch cl-plain run "$d/job.ini" --stages scan --force
EOF2
term_case plain.sh "control"
[ $rc = 143 ] && ok "control: without CL_REQUEUE_EXIT the status stays 143" || { bad "control: exit $rc (want 143)"; tail -3 err.txt; }

cl_finish
