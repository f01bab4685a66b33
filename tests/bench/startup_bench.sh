#!/usr/bin/env bash
# Start-up cost of a single-process command: the wall time of
#   corpuslens predict --model MODEL.h5 "And only l"
# for two binaries side by side (e.g. one that starts MPI for every command
# and one that starts it only where needed), alternating one run each per
# round so that a change in machine load hits both alike; each figure is the
# best of the rounds, and the ratio is printed. The two must print the same
# distribution. The same for `corpuslens predict --help` (start-up alone: no
# model read, no forward pass). A benchmark, not a test.
#
# usage: tests/bench/startup_bench.sh --before BIN --after BIN [--model M.h5] [--rounds N]
# Default model: the shared lecture model imported into a temporary file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED:-$here/../../../shared}
before="" after="" model="" rounds=10
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "startup_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$before" ] && [ -x "$after" ] || { echo "startup_bench.sh: give --before BIN and --after BIN" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ -z "$model" ]; then
  model=$T/model.h5
  "$after" import "$shared/models/lecture-tinyshakespeare-s1337.pt" --corpus "$shared/data/tinyshakespeare.txt" \
      -o "$model" >/dev/null
fi
ns() { date +%s%N; }
best_b="" best_a="" help_b="" help_a=""
for ((r = 0; r < rounds; r++)); do
  t0=$(ns); "$before" predict --model "$model" "And only l" >"$T/b.out"; t1=$(ns)
  "$after" predict --model "$model" "And only l" >"$T/a.out"; t2=$(ns)
  "$before" predict --help >/dev/null; t3=$(ns)
  "$after" predict --help >/dev/null; t4=$(ns)
  b=$(((t1 - t0) / 1000)) a=$(((t2 - t1) / 1000)) hb=$(((t3 - t2) / 1000)) ha=$(((t4 - t3) / 1000))
  [ -z "$best_b" ] || [ "$b" -lt "$best_b" ] && best_b=$b
  [ -z "$best_a" ] || [ "$a" -lt "$best_a" ] && best_a=$a
  [ -z "$help_b" ] || [ "$hb" -lt "$help_b" ] && help_b=$hb
  [ -z "$help_a" ] || [ "$ha" -lt "$help_a" ] && help_a=$ha
  cmp -s "$T/b.out" "$T/a.out" || { echo "startup_bench.sh: the two binaries print different distributions" >&2; exit 1; }
done
awk -v b="$best_b" -v a="$best_a" -v hb="$help_b" -v ha="$help_a" -v r="$rounds" 'BEGIN {
  printf "best of %d runs each, wall time in ms:      before      after  before/after\n", r
  printf "  predict --model <lecture model> \"And only l\" %8.1f   %8.1f   %5.1fx\n", b / 1000, a / 1000, b / a
  printf "  predict --help (start-up alone)             %8.1f   %8.1f   %5.1fx\n", hb / 1000, ha / 1000, hb / ha }'
