#!/usr/bin/env bash
# Build the libFuzzer harness of the index opener (tests/fuzz/fuzz_index.c:
# structured, it writes well-formed HDF5 files holding hostile values) with
# clang -fsanitize=fuzzer,address,undefined and run it for a bounded time from
# an empty corpus. Fails on any crash, leak, timeout, out-of-memory or
# sanitizer report. Environment as run_fuzz.sh: SRC, FUZZ_SECONDS (default 60),
# FUZZ_RUNS (default 20000), FUZZ_SEED (default 1: the same inputs every run).
set -euo pipefail
export LC_ALL=C
SRC=${SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
SECONDS_EACH=${FUZZ_SECONDS:-60}
CC=$(command -v clang-14 || command -v clang || true)
if [ -z "$CC" ]; then
    echo "run_fuzz_index.sh: clang not found" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f /tmp/fuzz_index_*.h5' EXIT
flags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -Wno-unknown-pragmas -I"$SRC/include" -I"$SRC/src")
# the index reader and every layer below it (scan needs nn, corpus, model, h5, par, ckpt, base);
# not explain/passage (the readers' clients), compiled two at a time
srcs=()
for f in "$SRC"/src/scan/*.c "$SRC"/src/nn/*.c "$SRC"/src/corpus/*.c "$SRC"/src/model/*.c "$SRC"/src/h5/*.c \
         "$SRC"/src/par/*.c "$SRC"/src/ckpt/*.c "$SRC"/src/base/*.c; do
    case "$f" in */scan/explain.c | */scan/passage.c) continue ;; esac
    srcs+=("$f")
done
read -r -a libs <<<"$(pkg-config --cflags --libs hdf5-openmpi mpi nettle jansson libpcre2-8 zlib openblas) -lgomp -lm"
read -r -a incs <<<"$(pkg-config --cflags hdf5-openmpi mpi)"
mkdir -p "$work/obj"
printf '%s\n' "$SRC/tests/fuzz/fuzz_index.c" "${srcs[@]}" |
    xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'o="$1/obj/$(echo "$2" | tr / _).o"; "$3" "${@:4}" -c "$2" -o "$o" 2>/dev/null || { echo "cannot compile $2" >&2; exit 255; }' \
        _ "$work" {} "$CC" "${flags[@]}" "${incs[@]}"
"$CC" "${flags[@]}" -o "$work/fuzz_index" "$work"/obj/*.o "${libs[@]}"
mkdir -p "$work/corpus"
# seeds: a few deterministic byte strings long enough to reach every field
for i in 1 2 3 4 5 6 7 8; do
    awk -v s="$i" 'BEGIN { srand(s); for (k = 0; k < 700; k++) printf "%c", int(rand() * 256) }' </dev/null >"$work/corpus/seed$i"
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
artifacts=${FUZZ_ARTIFACTS:-${BUILD:-/tmp}/fuzz-artifacts}
mkdir -p "$artifacts"
status=0
(cd "$work" && ./fuzz_index -max_total_time="$SECONDS_EACH" -runs="${FUZZ_RUNS:-20000}" -seed="${FUZZ_SEED:-1}" \
    -timeout=10 -rss_limit_mb=2048 -max_len=4096 -len_control=0 -print_final_stats=1 -artifact_prefix="$artifacts/index-" corpus) \
    >"$work/index.log" 2>&1 || status=1
tail -n 12 "$work/index.log"
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:" "$work/index.log"; then
    echo "run_fuzz_index.sh: sanitizer or fuzzer report:" >&2
    grep -E -A30 "ERROR:|runtime error:" "$work/index.log" | head -60 >&2
    echo "run_fuzz_index.sh: failing inputs in $artifacts" >&2
    status=1
fi
[ $status -eq 0 ] && echo "run_fuzz_index.sh: no crash, no leak, no sanitizer report"
exit $status
