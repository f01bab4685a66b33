#!/usr/bin/env bash
# Start-up cost of a single-process command: the wall time of
#   corpuslens predict --model MODEL.h5 "And only l"
# for two binaries side by side (e.g. one that starts MPI for every command
# and one that starts it only where needed), alternating one run each per
# round so that a change in machine load hits both alike; each figure is the
# best of the rounds (wall time, and CPU time: perf's task-clock, else user +
# sys; a busy machine inflates it less), and the ratio is printed. The two must print the same
# distribution. The same for `corpuslens predict --help` (start-up alone: no
# model read, no forward pass), and the number of shared libraries each loads.
# OPENBLAS_CORETYPE is passed on as it is set (the same for both). A benchmark,
# not a test.
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
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
# one timed run: wall (ns clock) and CPU in microseconds: perf's task-clock
# where perf runs (to the microsecond), else user + sys from /usr/bin/time (to
# 10 ms only: too coarse for --help)
# (and then the wall time from perf's duration_time, which leaves out perf's own start)
if perf stat -x, -e task-clock,duration_time -o "$T/cpu" -- true 2>/dev/null; then use_perf=1; else use_perf=0; fi
timed() { # out-file args...
  local out=$1 t0 t1
  shift
  t0=$(date +%s%N)
  if [ $use_perf = 1 ]; then
    perf stat -x, -e task-clock,duration_time -o "$T/cpu" -- "$@" >"$out"
  else
    /usr/bin/time -f "%U %S" -o "$T/cpu" "$@" >"$out"
  fi
  t1=$(date +%s%N)
  wall=$(((t1 - t0) / 1000))
  if [ $use_perf = 1 ]; then # "12.34,msec,task-clock,..." and "12345678,ns,duration_time,..."
    cpu=$(awk -F, '$3 ~ /task-clock/ {printf "%d", $1 * 1000}' "$T/cpu")
    wall=$(awk -F, '$3 ~ /duration_time/ {printf "%d", $1 / 1000}' "$T/cpu")
  else
    cpu=$(awk '{printf "%d", ($1 + $2) * 1e6}' "$T/cpu")
  fi
}
declare -A best
keep() { # key value
  [ -z "${best[$1]:-}" ] || [ "$2" -lt "${best[$1]}" ] && best[$1]=$2
  return 0
}
for ((r = 0; r < rounds; r++)); do
  timed "$T/b.out" "$before" predict --model "$model" "And only l"; keep pb_w $wall; keep pb_c $cpu
  timed "$T/a.out" "$after" predict --model "$model" "And only l"; keep pa_w $wall; keep pa_c $cpu
  timed /dev/null "$before" predict --help; keep hb_w $wall; keep hb_c $cpu
  timed /dev/null "$after" predict --help; keep ha_w $wall; keep ha_c $cpu
  cmp -s "$T/b.out" "$T/a.out" || { echo "startup_bench.sh: the two binaries print different distributions" >&2; exit 1; }
done
row() { # label before after
  awk -v l="$1" -v b="$2" -v a="$3" 'BEGIN { printf "  %-34s %9.1f %9.1f %7.1fx\n", l, b / 1000, a / 1000, b / a }'
}
echo "best of $rounds runs each, in ms (load average: $(cut -d' ' -f1 /proc/loadavg);" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, the same for both):"
printf "  %-34s %9s %9s %8s\n" "" before after ratio
row "predict, wall" "${best[pb_w]}" "${best[pa_w]}"
row "predict, CPU" "${best[pb_c]}" "${best[pa_c]}"
row "predict --help (start-up), wall" "${best[hb_w]}" "${best[ha_w]}"
row "predict --help (start-up), CPU" "${best[hb_c]}" "${best[ha_c]}"
# what the dynamic loader maps at every start
libs() { ldd "$1" 2>/dev/null | grep -c '=>\|ld-linux' || true; }
printf "  %-34s %9s %9s\n" "shared libraries loaded" "$(libs "$before")" "$(libs "$after")"
