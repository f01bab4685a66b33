#!/bin/bash
# generate's cost against the number of characters (issue 23: 2,000 characters
# in less than 15x the time of 200): CPU seconds of generate -n 200 and -n 2000
# with the shared model imported with its trained context (64), with the
# key/value cache and with --no-cache, side by side in one run, best of R.
# Usage: tests/bench/generate_bench.sh [BUILD] [R]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build} R=${2:-3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
M=$(mktemp -d)/ts.h5
"$B/corpuslens" import ../shared/models/lecture-tinyshakespeare-s1337.pt --corpus ../shared/data/tinyshakespeare.txt \
    --ctx 64 -o "$M" > /dev/null
cpu() { # best user+sys seconds of R runs
  local best=
  for _ in $(seq "$R"); do
    local t
    t=$( { /usr/bin/time -f '%U %S' "$B/corpuslens" generate --model "$M" --prompt "ROMEO:" --seed 1 "$@" > /dev/null 2>/dev/null; } 2>&1 | tail -1 | awk '{print $1 + $2}')
    best=$(awk -v a="${best:-1e9}" -v b="$t" 'BEGIN{print (b < a) ? b : a}')
  done
  echo "$best"
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in cache no-cache; do
  extra=(); [ $mode = no-cache ] && extra=(--no-cache)
  a=$(cpu -n 200 "${extra[@]}") b=$(cpu -n 2000 "${extra[@]}")
  printf '%-9s  200 chars %6.2f s CPU   2000 chars %7.2f s CPU   ratio %5.1f\n' $mode "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
done
rm -rf "$(dirname "$M")"
