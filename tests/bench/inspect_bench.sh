#!/usr/bin/env bash
# `corpuslens inspect FILE` (the tree) on big checkpoints, two binaries side by
# side (issue 21, defect 6: the sibling scan and the alias totals were nested
# loops). The files are those of tests/inspect_scale.py (made with torch):
#   many.pt   20,000 tensors, 19,000 of them siblings in one dict
#   alias.pt  20,000 entries that are the one tensor (a small pickle)
# Runs alternate (before, after) per round, so that a change in load hits
# both alike; each figure is the best of the rounds (wall seconds, and user +
# sys CPU seconds), with the ratio before/after. The two outputs must be equal
# byte for byte. A benchmark, not a test.
#
# usage: tests/bench/inspect_bench.sh --before BIN --after BIN [--rounds N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
before="" after="" rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "inspect_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$before" ] && [ -x "$after" ] || { echo "inspect_bench.sh: give --before BIN and --after BIN" >&2; exit 2; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 "$here/../inspect_scale.py" --make "$T"

# one run: prints "wall cpu" (seconds), output to $3
one() {
  local bin=$1 file=$2 out=$3 t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$T/time" "$bin" inspect "$file" >"$out"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" '{ printf "%.3f %.3f\n", b - a, $1 + $2 }' "$T/time"
}
min() { awk 'NR == 1 || $1 < m { m = $1 } END { printf "%.3f", m }'; }

printf '%-10s %8s %8s %9s   %8s %8s %9s   %s\n' file "before" "after" "ratio" "cpu bef" "cpu aft" "ratio" "same output"
for f in many alias; do
  size=$(stat -c %s "$T/$f.pt")
  : >"$T/b.txt"
  : >"$T/a.txt"
  for ((r = 0; r < rounds; r++)); do
    one "$before" "$T/$f.pt" "$T/out.before" >>"$T/b.txt"
    one "$after" "$T/$f.pt" "$T/out.after" >>"$T/a.txt"
  done
  bw=$(min <"$T/b.txt"); aw=$(min <"$T/a.txt")
  bc=$(awk '{ print $2 }' "$T/b.txt" | min); ac=$(awk '{ print $2 }' "$T/a.txt" | min)
  same=no
  cmp -s "$T/out.before" "$T/out.after" && same=yes
  printf '%-10s %7.2fs %7.2fs %8.1fx   %7.2fs %7.2fs %8.1fx   %s (%s bytes)\n' "$f.pt" "$bw" "$aw" \
    "$(awk -v a="$bw" -v b="$aw" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$bc" "$ac" \
    "$(awk -v a="$bc" -v b="$ac" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$same" "$size"
  [ "$same" = yes ] || { echo "inspect_bench.sh: the outputs of $f.pt differ" >&2; exit 1; }
done
