#!/usr/bin/env bash
# Build the libFuzzer harness for the corpus.h5 opener (fuzz_corpus.c) with
# clang (-fsanitize=fuzzer,address,undefined) and run it for a bounded time.
# Its seeds are written here: an input describes a real corpus and the edits made
# to its file (see the harness). Fails on any crash, leak, timeout,
# out-of-memory or sanitizer report.
# Environment: SRC (source root), FUZZ_SECONDS (upper bound, default 60),
# FUZZ_RUNS (inputs, default 20000), FUZZ_SEED (default 1: the same inputs
# every run, so a failure is a regression; 0 lets libFuzzer pick one).
set -euo pipefail
SRC=${SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
CC=$(command -v clang-14 || command -v clang || true)
if [ -z "$CC" ]; then
    echo "run_fuzz_corpus.sh: clang not found" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fno-omit-frame-pointer -I"$SRC/include" -I"$SRC/src")
srcs=("$SRC"/src/corpus/corpus.c "$SRC"/src/corpus/infgram.c "$SRC"/src/model/vocab.c "$SRC"/src/model/bpe.c "$SRC"/src/h5/h5util.c "$SRC"/src/base/{error,fileio,utf8,hash,rng,stats}.c)
read -r -a libs <<<"$(pkg-config --cflags --libs hdf5-openmpi mpi nettle zlib libpcre2-8 jansson) -lm"
"$CC" "${flags[@]}" -o "$work/fuzz_corpus" "$SRC/tests/fuzz/fuzz_corpus.c" "${srcs[@]}" "${libs[@]}"
# seeds: a text of 12 ids (L 3) as is, then one edit each (harness: byte 0
# the field, 0-6 attributes, 7-15 datasets; byte 1 the kind; 2-3 operands):
# every attribute to -1, 2^24, 2^40 and INT64_MAX, dropped and of the wrong
# type; every dataset dropped, re-typed, re-laid-out, resized, given an edge
# value and made huge and unwritten.
mkdir -p "$work/corpus" "$work/seed"
text='\x0b\x02\x04\x00\x01\x02\x03\x04\x05\x00\x01\x02\x00\x01\x02'
printf "$text" >"$work/seed/plain"
edit() { printf "$text$(printf '\\x%02x' "$@")" >"$work/seed/e$(printf '%02x' "$@")"; }
for a in 0 1 2 3 4 5 6; do
    for v in 0 2 3 4; do edit "$a" 5 0 "$v"; done
    edit "$a" 0 0 0
    edit "$a" 1 0 0
done
for d in 7 8 9 10 11 12 13 14 15; do
    edit "$d" 5 0 0                       # dropped
    edit "$d" 3 0 1; edit "$d" 3 0 2      # float64, int16
    edit "$d" 4 0 1; edit "$d" 4 0 2; edit "$d" 4 0 3  # deflate, unwritten, compact
    edit "$d" 2 0 0; edit "$d" 2 0 4      # two rows fewer, two more
    edit "$d" 1 1 0; edit "$d" 1 1 3      # -1, INT32_MAX
    edit "$d" 6 0 10; edit "$d" 6 0 20    # 2^20, 2^30 rows, unwritten
    edit "$d" 7 0 1                       # two elements swapped
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
artifacts=${FUZZ_ARTIFACTS:-${BUILD:-/tmp}/fuzz-artifacts}
mkdir -p "$artifacts"
status=0
(cd "$work" && ./fuzz_corpus -max_total_time="${FUZZ_SECONDS:-60}" -runs="${FUZZ_RUNS:-20000}" \
    -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -max_len=512 -len_control=0 -print_final_stats=1 \
    -artifact_prefix="$artifacts/corpus-" corpus seed) >"$work/log" 2>&1 || status=1
tail -n 12 "$work/log"
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:" "$work/log"; then
    echo "run_fuzz_corpus.sh: sanitizer or fuzzer report:" >&2
    grep -E -A30 "ERROR:|runtime error:" "$work/log" | head -60 >&2
    echo "run_fuzz_corpus.sh: failing inputs in $artifacts" >&2
    status=1
fi
[ $status -eq 0 ] && echo "run_fuzz_corpus.sh: no crash, no leak, no sanitizer report"
exit $status
