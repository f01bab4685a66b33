#!/usr/bin/env bash
# cl_sgemm_nt (src/nn/gemm.c) of git revision REV beside the working tree's,
# in one process (tests/bench/gemm_ab.c: thread CPU time, alternating, best of
# ROUNDS), on the scan's shapes (bench_gemm's) and a few-row ones. Compiled
# with the Release flags; one thread. A benchmark, not a test.
# usage: tests/bench/gemm_ab.sh REV [ROUNDS] [MxNxK ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rev=${1:?usage: gemm_ab.sh REV [ROUNDS] [MxNxK ...]}
rounds=${2:-7}
shift $(( $# >= 2 ? 2 : 1 ))
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(7680x1152x384 7680x384x384 2048x1536x384 2048x384x1536 1024x2048x384
                                   1x65x384 10x1152x384 10x384x1536 31x1152x384 32x1152x384 64x1152x384 65x1152x384)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/old/include/corpuslens/nn"
git -C "$root" show "$rev:src/nn/gemm.c" > "$T/old/gemm.c"
git -C "$root" show "$rev:include/corpuslens/nn/gemm.h" > "$T/old/include/corpuslens/nn/gemm.h"
F="-O2 -march=x86-64-v2 -DNDEBUG -fopenmp"
gcc $F -I"$T/old/include" -Dcl_sgemm_nt=old_sgemm_nt -Dcl_gemm_kernel_name=old_gemm_kernel_name \
    -Dcl_sgemm_nt_f16=old_sgemm_nt_f16 -Dcl_gemm_use=old_gemm_use -c "$T/old/gemm.c" -o "$T/old.o"
gcc $F -I"$root/include" -c "$root/src/nn/gemm.c" -o "$T/new.o"
gcc $F "$here/gemm_ab.c" "$T/old.o" "$T/new.o" -o "$T/gemm_ab" -lopenblas -lm
echo "cl_sgemm_nt at $rev (old) vs the working tree (new), load $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$T/gemm_ab" "$rounds" "${shapes[@]}"
