#!/usr/bin/env bash
# Submit a corpuslens job file to Slurm as a chain of batch jobs:
#   [train] -> prepare -> scan -> reduce     (train only when the job has no [model])
# plus, when the job has [alternatives] seeds, ONE JOB ARRAY (sbatch --array=1-N,
# slurm/alternatives.sbatch: task K trains the K-th seed), which starts at once
# (or after the job that writes a generated corpus) and which the scan waits for
# as a whole (afterok on the array); the reduce job also runs [tune] and [ablate].
# Each job starts when the previous one succeeded (--dependency=afterok, and
# --kill-on-invalid-dep=yes so that a failure cancels the rest instead of
# leaving it pending forever). Every stage runs `corpuslens run JOB --stages S`,
# so stages already complete for this job are skipped, and a resubmission after
# a failure resumes (an interrupted scan continues from its checkpoint).
#
# usage: slurm/submit.sh JOB.ini [sbatch options for every stage...]
#
# Resources: the job file's [slurm] section (partition, account, scan_ranks,
# scan_time, train_ranks, train_time, light_time, mem_per_cpu); environment
# variables override it:
#   CORPUSLENS_PARTITION CORPUSLENS_ACCOUNT CORPUSLENS_SCAN_RANKS CORPUSLENS_SCAN_TIME
#   CORPUSLENS_TRAIN_RANKS CORPUSLENS_TRAIN_TIME CORPUSLENS_LIGHT_TIME CORPUSLENS_MEM_PER_CPU
# Paths and launch:
#   CORPUSLENS_BIN     the corpuslens binary (default: corpuslens on PATH, else
#                      build/corpuslens beside this folder)
#   CORPUSLENS_LAUNCH  srun (default; srun --mpi=$CORPUSLENS_SRUN_MPI, default pmix) or mpirun,
#                      for stages of several ranks (each with an Open MPI session
#                      directory of its own); a one-rank stage runs the binary
#                      itself and starts no MPI (slurm/launch.sh)
#   CORPUSLENS_SRUN_WAIT  seconds srun lets the other ranks run once one has
#                      ended (default 60; srun --wait): a rank or node lost ends the job
#   variables the job file uses (${CORPUSLENS_DATA}, ...) are passed to the jobs
#   (sbatch --export=ALL), so they expand the same way on the compute nodes.
# Logs: OUTPUT_DIR/slurm/<stage>-<jobid>.out (OUTPUT_DIR from the job's [output] dir).
# Prints one line per submitted job: "<stage> <jobid>", then a summary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit $(($# < 1 ? 2 : 0))
fi
job=$1
shift
[ -f "$job" ] || { echo "submit.sh: no job file $job" >&2; exit 2; }
job=$(cd "$(dirname "$job")" && pwd)/$(basename "$job")

cl=${CORPUSLENS_BIN:-}
if [ -z "$cl" ]; then
    if command -v corpuslens >/dev/null; then cl=$(command -v corpuslens)
    elif [ -x "$here/../build/corpuslens" ]; then cl=$(cd "$here/../build" && pwd)/corpuslens
    else echo "submit.sh: set CORPUSLENS_BIN (no corpuslens on PATH or in build/)" >&2; exit 2; fi
fi
case $cl in /*) ;; *) cl=$(cd "$(dirname "$cl")" && pwd)/$(basename "$cl") ;; esac
export CORPUSLENS_BIN=$cl CORPUSLENS_JOB=$job CORPUSLENS_SLURM_DIR=$here # the scripts source $here/launch.sh

# Refuse a bad job file now, not in a queued job.
"$cl" run "$job" --dry-run >/dev/null || { echo "submit.sh: $job is not a valid job (see above)" >&2; exit 1; }
get() { "$cl" run "$job" --get "$1"; }
# setting NAME ENV KEY: the environment variable, else the job file's [slurm] key
setting() { local v=${!1:-}; [ -n "$v" ] && echo "$v" || get "slurm.$2"; }

out=$(get output.dir)
mkdir -p "$out/slurm"
out=$(cd "$out" && pwd)
stages=" $(get stages) "
partition=$(setting CORPUSLENS_PARTITION partition)
account=$(setting CORPUSLENS_ACCOUNT account)
mem=$(setting CORPUSLENS_MEM_PER_CPU mem_per_cpu)
light_time=$(setting CORPUSLENS_LIGHT_TIME light_time)

common=(--parsable --export=ALL --kill-on-invalid-dep=yes)
[ -n "$partition" ] && common+=(--partition="$partition")
[ -n "$account" ] && common+=(--account="$account")
[ -n "$mem" ] && common+=(--mem-per-cpu="$mem")

# submit STAGE SCRIPT DEPENDENCY [sbatch options...]: prints the job id
submit() {
    local stage=$1 script=$2 dep=$3
    shift 3
    local args=("${common[@]}" --output="$out/slurm/$stage-%j.out")
    [ "$stage" = alternatives ] && args=("${common[@]}" --output="$out/slurm/$stage-%A_%a.out")
    [ -n "$dep" ] && args+=(--dependency=afterok:"$dep")
    sbatch "${args[@]}" "$@" "${extra[@]}" "$here/$script" | cut -d';' -f1
}
extra=("$@")

ids=()
# chain STAGE NTASKS TIME: submit STAGE.sbatch after the previous stage ($dep),
# print "STAGE ID", record the id
dep=
chain() {
    local opts=(--ntasks="${2:-1}")
    [ -n "$3" ] && opts+=(--time="$3")
    dep=$(submit "$1" "$1.sbatch" "$dep" "${opts[@]}")
    echo "$1 $dep"
    ids+=("$dep")
}
gen=
if [[ $stages == *" train "* ]]; then
    chain train "$(setting CORPUSLENS_TRAIN_RANKS train_ranks)" "$(setting CORPUSLENS_TRAIN_TIME train_time)"
    gen=$dep
fi
chain prepare 1 "$light_time"
[ -z "$gen" ] && gen=$dep
# the alternative seeds: one job array, resources of [train]; it needs the corpus
# first only when the job generates it (the train job, else the prepare job)
n_alt=$(get alternatives)
if [ "$n_alt" -gt 0 ]; then
    adep=
    [[ $stages == *" generate "* ]] && adep=$gen
    ar=$(setting CORPUSLENS_TRAIN_RANKS train_ranks)
    aopts=(--array=1-"$n_alt" --ntasks="${ar:-1}")
    t=$(setting CORPUSLENS_TRAIN_TIME train_time)
    [ -n "$t" ] && aopts+=(--time="$t")
    alt=$(submit alternatives alternatives.sbatch "$adep" "${aopts[@]}")
    echo "alternatives $alt"
    ids+=("$alt")
    dep=$dep:$alt # the scan waits for prepare and the whole array
fi
chain scan "$(setting CORPUSLENS_SCAN_RANKS scan_ranks)" "$(setting CORPUSLENS_SCAN_TIME scan_time)"
chain reduce 1 "$light_time"

echo "submit.sh: ${#ids[@]} jobs (${ids[*]}) for $job; logs in $out/slurm/, report in $out/report/" >&2
echo "submit.sh: follow with: squeue -j $(IFS=,; echo "${ids[*]}")" >&2
