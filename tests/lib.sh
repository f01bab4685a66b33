# What the shell tests share; a test sources it first:
#   . "$(dirname "$0")/lib.sh"
# It sets -u, E (the binary, from CORPUSLENS) and PY (a Python with h5py);
# pins the threads and lets mpiexec run as root (each test's own Open MPI
# session directory comes from CTest: tests/CMakeLists.txt); defines ok and
# bad (one line each; bad counts in fails), cl_workdir NAME (a new folder
# /tmp/NAME.XXXXXX in d, removed at exit unless KEEP is set, entered) and
# cl_finish (exit 1 with the count of failures, else "all passed"), and
# cl_tiny_job (a job file of a few seconds' work, below).
set -u
E=${CORPUSLENS:?CORPUSLENS must name the binary}
PY=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
cl_workdir() {
    d=$(mktemp -d "/tmp/$1.XXXXXX") || exit 1
    [ -n "${KEEP:-}" ] || trap 'rm -rf "$d"' EXIT
    cd "$d" || exit 1
}
cl_finish() {
    if [ "$fails" -gt 0 ]; then echo "$fails failed"; exit 1; fi
    echo "all passed"
}
# job.ini of a few seconds' work: 20,000 generated characters, a 1-block model
# of 16, outputs in ${JOBDIR}/out. $1 steps, $2 eval_every, $3
# checkpoint_every ("" leaves it to the default), $4 "scan" to add the [scan]
# and [reduce] stages.
cl_tiny_job() {
    {
        printf '[corpus]\ngenerate = demo\nchars = 20000\nlen = 6\nprompts = 20\nseed = 5\n'
        printf '[train]\nconfig = n_layer=1,n_embd=16,n_head=2,block_size=16\nsteps = %s\nbatch = 4\nctx = 16\n' "$1"
        printf 'eval_every = %s\n' "$2"
        [ -z "$3" ] || printf 'checkpoint_every = %s\n' "$3"
        printf 'seed = 3\n'
        [ "${4:-}" != scan ] || printf '[scan]\nprefilter = 0.5\nbin_width = 0.05\nbatch = 64\n[reduce]\nthresholds = 0.8\nweights = 1\n'
        printf '[output]\ndir = ${JOBDIR}/out\n'
    } >job.ini
}
