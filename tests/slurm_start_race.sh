#!/usr/bin/env bash
# Jobs of a Slurm pipeline that start together on one node do not race
# (issue 21, defect 12). CI saw a one-rank array task of the noise-floor round
# fail at start-up: "mkdir .../ompi.HOST.UID: File exists", "orte_session_dir
# failed". Open MPI 4.1 creates its top session directory when a job starts
# and removes it when the last job ends, so a job that starts while another
# ends can fail. Now a one-rank stage starts no MPI at all (neither mpirun nor
# MPI_Init), and a stage of several ranks gets a session directory of its own.
#
# The real sbatch scripts, run by bash with the environment Slurm gives them
# (no Slurm needed: SLURM_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_NTASKS; launched
# with mpirun), in 5 lanes that start at the same instant: lanes 1-3
# alternatives.sbatch, array tasks 1-3 (one-rank trainings of three seeds, as
# in the noise-floor round), lanes 4 and 5 scan.sbatch on 2 ranks (two MPI
# jobs at once). The outputs are made first (corpuslens run), so each stage
# starts, finds its output complete, and ends: start-up is all a run does.
#  1. One round with Open MPI's top directory in the shared base made a plain
#     file: a stage that would use it fails (deterministic).
#  2. Each lane runs its stage over and over until it ran RUNS times or LIMIT
#     seconds passed, while LOAD busy loops compete for the cores, so that
#     the starts and ends of the lanes interleave. Every run must succeed, and
#     no per-job session directory may be left.
# Against the scripts and binary before the fix (SLURM_DIR=old/slurm
# CORPUSLENS=old/corpuslens): part 1 fails every stage; part 2 fails at
# random, about 1 run in 50 on a 2-core machine.
# Env: CORPUSLENS (binary), SRC (source tree), SLURM_DIR (default SRC/slurm),
# RUNS (40), LIMIT (90 s), LOAD (1), KEEP (keep the folder).
set -u
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
SRC=${SRC:?SRC must name the source tree}
SD=${SLURM_DIR:-$SRC/slurm}
RUNS=${RUNS:-40} LIMIT=${LIMIT:-90} LOAD=${LOAD:-1}
command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
D=$(mktemp -d /tmp/cl-start-race.XXXXXX)
loads=() lanes=()
cleanup() {
    for p in "${loads[@]}"; do kill "$p" 2>/dev/null; done
    if [ -n "${KEEP:-}" ]; then echo "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
cd "$D" || exit 1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 # 2 ranks on a 1-core machine
# one session base for every lane, as the jobs of one test (or one node) share it
export OMPI_MCA_orte_tmpdir_base=$D/ompi
mkdir -p "$OMPI_MCA_orte_tmpdir_base"
# as slurm/submit.sh exports them to its jobs
export CORPUSLENS_BIN=$CL CORPUSLENS_JOB=$D/job.ini CORPUSLENS_SLURM_DIR=$SD CORPUSLENS_LAUNCH=mpirun
cat >job.ini <<INI
[corpus]
generate = demo
chars = 3000
len = 4
prompts = 6
[train]
config = n_layer=1,n_embd=16,n_head=2,block_size=8
steps = 2
batch = 2
ctx = 8
eval_every = 0
[alternatives]
seeds = 2, 3, 4
[scan]
prefilter = 0.5
bin_width = 0.05
[reduce]
thresholds = 0.8
weights = 1
[output]
dir = $D/out
INI
OMPI_MCA_orte_tmpdir_base=$D/ompi-setup "$CL" run job.ini >setup.log 2>&1 || { echo "FAIL: the job itself: $(tail -5 setup.log)"; exit 1; }

# lane N SCRIPT NTASKS [ARRAY_TASK]: runs until RUNS runs or the deadline
lane() {
    local n=$1 script=$2 ntasks=$3 task=${4:-} i=0 failed=0 rc
    : <gate # every lane starts when the gate opens
    while [ $i -lt "$RUNS" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        i=$((i + 1))
        # the ids Slurm would give: a job id per run (an array task has its own)
        env SLURM_JOB_ID=$((n * 10000 + i)) SLURM_NTASKS="$ntasks" SLURM_JOB_NODELIST=localhost SLURM_RESTART_COUNT=0 \
            ${task:+SLURM_ARRAY_JOB_ID=9999 SLURM_ARRAY_TASK_ID=$task} \
            timeout -k 5 120 bash "$SD/$script" >"lane$n.$i.log" 2>&1
        rc=$?
        if [ $rc != 0 ]; then
            failed=$((failed + 1))
            echo "FAIL: lane $n ($script${task:+ task $task}, $ntasks rank(s)) run $i: exit $rc"
            grep -m3 -E "File exists|orte_session_dir|mkdir|rror" "lane$n.$i.log" | sed 's/^/    /'
        else
            rm -f "lane$n.$i.log"
        fi
    done
    echo "lane $n: $i runs, $failed failed" >"lane$n.sum"
}

# 1. No job uses the shared session directory: Open MPI's top directory there
#    (ompi.HOST.UID) is made a plain file, so that any job that would create
#    or use it fails; one round of every lane (deterministic). Then the file
#    goes and the lanes run again and again.
top=$OMPI_MCA_orte_tmpdir_base/ompi.$(hostname -s).$(id -u)
rm -rf "$top" && : >"$top" || exit 1
mkfifo gate
deadline=$(($(date +%s) + LIMIT))
RUNS_ALL=$RUNS RUNS=1
for k in 1 2 3; do
    lane "$k" alternatives.sbatch 1 "$k" &
    lanes+=($!)
done
for k in 4 5; do
    lane "$k" scan.sbatch 2 &
    lanes+=($!)
done
sleep 0.5
exec 9>gate
sleep 0.5
exec 9>&-
for p in "${lanes[@]}"; do wait "$p"; done
poisoned=0
for k in 1 2 3 4 5; do read -r _ _ _ _ f _ <"lane$k.sum"; poisoned=$((poisoned + f)); done
[ "$poisoned" = 0 ] && echo "ok: no stage used the shared session directory" ||
    echo "FAIL: $poisoned stage(s) used the shared session directory (ompi.HOST.UID)"
rm -f "$top"

# 2. the lanes, started together, again and again, under load
RUNS=$RUNS_ALL lanes=()
deadline=$(($(date +%s) + LIMIT))
for _ in $(seq "$LOAD"); do
    timeout "$((LIMIT + 30))" bash -c 'while :; do :; done' &
    loads+=($!)
done
for k in 1 2 3; do
    lane "$k" alternatives.sbatch 1 "$k" &
    lanes+=($!)
done
for k in 4 5; do
    lane "$k" scan.sbatch 2 &
    lanes+=($!)
done
sleep 0.5
exec 9>gate # open the gate: the lanes start together
sleep 0.5
exec 9>&-
for p in "${lanes[@]}"; do wait "$p"; done
runs=0 failed=$poisoned
for k in 1 2 3 4 5; do
    read -r _ _ r _ f _ <"lane$k.sum"
    cat "lane$k.sum"
    runs=$((runs + r)) failed=$((failed + f))
done
left=$(find "$OMPI_MCA_orte_tmpdir_base" -mindepth 1 -maxdepth 1 -name 'cl-ompi-*' | wc -l)
[ "$left" = 0 ] || { echo "FAIL: $left per-job session directories left behind"; failed=$((failed + 1)); }
# each lane started at least a few times together with the others
[ "$runs" -ge 8 ] || { echo "FAIL: only $runs runs in $LIMIT s"; failed=$((failed + 1)); }
echo "slurm_start_race: $runs runs of 5 lanes started together, $failed failure(s)"
[ "$failed" = 0 ]
