# What the shell tests share; a test sources it first:
#   . "$(dirname "$0")/lib.sh"
# It sets -u, E (the binary, from CORPUSLENS) and PY (a Python with h5py);
# pins the threads and lets mpiexec run as root (each test's own Open MPI
# session directory comes from CTest: tests/CMakeLists.txt); defines ok and
# bad (one line each; bad counts in fails), cl_workdir NAME (a new folder
# /tmp/NAME.XXXXXX in d, removed at exit unless KEEP is set, entered) and
# cl_finish (exit 1 with the count of failures, else "all passed").
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
