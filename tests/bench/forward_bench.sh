#!/usr/bin/env bash
# Forward throughput of the lecture model (6x384, V=65, block 256) at B=4096,
# T=10: the C forward (bench_forward: cl_forward_run, CL_LOGITS_LAST, random
# tokens) beside PyTorch (forward_bench.py: the lecture's modules, the same
# model file and the same tokens, torch.set_num_threads(2)) in the same run, and
# an sgemm of the feed-forward shape (B*T x 4C x C) for the machine's GFLOPS.
# The two sides alternate, one timed forward each per round, so that a change
# in machine load hits both alike; each figure is the best round. PyTorch's
# logits are checked against the C ones. A benchmark, not a test.
#
# usage: tests/bench/forward_bench.sh [--build DIR] [--B N] [--T N] [--rounds N]
#                                     [--threads N] [--config k=v,...]
# Needs a build (default: build/, or BUILD) with corpuslens and bench_forward.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD:-$src/build}
B=4096 T=10 rounds=3 threads=2 config=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --B) B=$2; shift 2 ;;
    --T) T=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "forward_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
corpuslens=${CORPUSLENS:-$build/corpuslens}
bench=$build/bench_forward
python=/usr/bin/python3
for f in "$corpuslens" "$bench"; do
  [ -x "$f" ] || { echo "forward_bench.sh: $f is missing (build first: cmake --build $build)" >&2; exit 1; }
done
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

shared=${SHARED:-$src/../shared}
corpus=$shared/data/tinyshakespeare.txt
if [ ! -f "$corpus" ]; then  # TinyShakespeare's 65 characters
  corpus=$tmp/corpus.txt
  printf "\n !\$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" > "$corpus"
fi
init_args=(init --vocab-from "$corpus" --seed 1 -o "$tmp/model.h5")
[ -n "$config" ] && init_args+=(--config "$config")
"$corpuslens" "${init_args[@]}" >/dev/null

: > "$tmp/c.txt"
: > "$tmp/py.txt"
for r in $(seq 1 "$rounds"); do
  echo "== round $r/$rounds: C forward (bench_forward, OPENBLAS_NUM_THREADS=$threads)"
  "$bench" --model "$tmp/model.h5" --B "$B" --T "$T" --reps 1 \
    --tokens-out "$tmp/tokens.bin" --logits-out "$tmp/logits.bin" | tee -a "$tmp/c.txt"
  echo "== round $r/$rounds: PyTorch (torch.set_num_threads($threads))"
  "$python" "$here/forward_bench.py" --model "$tmp/model.h5" --tokens "$tmp/tokens.bin" \
    --logits "$tmp/logits.bin" --B "$B" --T "$T" --threads "$threads" --reps 1 | tee -a "$tmp/py.txt"
done

best() { awk -v k="$1" '$1 == k && (!n++ || $2 > m) { m = $2 } END { print m }' "$2"; }
first() { awk -v k="$1" '$1 == k { $1 = ""; print substr($0, 2); exit }' "$2"; }
echo "== summary (model $(first model "$tmp/c.txt"); B=$B T=$T; $threads threads; best of $rounds alternating rounds)"
awk -v c="$(best forward_tokens_per_s "$tmp/c.txt")" -v p="$(best torch_tokens_per_s "$tmp/py.txt")" \
    -v g="$(best forward_gflops "$tmp/c.txt")" -v s="$(best sgemm_gflops "$tmp/c.txt")" \
    -v sh="$(first sgemm_shape "$tmp/c.txt")" -v d="$(best logits_max_abs_diff "$tmp/py.txt")" 'BEGIN {
  printf "C forward         %12.0f token positions/s\n", c
  printf "PyTorch           %12.0f token positions/s\n", p
  printf "ratio C/PyTorch   %12.2f\n", c / p
  printf "C forward         %12.1f GFLOPS (cl_forward_flops, last-position logits)\n", g
  printf "sgemm %-12s%12.1f GFLOPS (cblas_sgemm, same run)\n", sh, s
  printf "C forward / sgemm %12.2f\n", g / s
  printf "logits max|C - PyTorch| %.2e\n", d
}'
