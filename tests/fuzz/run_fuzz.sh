#!/usr/bin/env bash
# Build the libFuzzer harnesses for the checkpoint readers with clang
# (-fsanitize=fuzzer,address,undefined) and run each for a bounded time on a
# seed corpus of tiny checkpoints written by PyTorch. Fails on any crash,
# leak, timeout, out-of-memory or sanitizer report.
# Environment: SRC (source root), PYTHON (/usr/bin/python3 with torch),
# FUZZ_SECONDS (per harness, upper bound, default 60), FUZZ_RUNS (inputs per
# harness, default 50000), FUZZ_SEED (default 1). A fixed seed and run count
# make a CI run reproducible: the same inputs every time, so a failure is a
# regression, not luck; set FUZZ_SEED=0 (libFuzzer picks one) to explore.
set -euo pipefail
SRC=${SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PYTHON=${PYTHON:-/usr/bin/python3}
SECONDS_EACH=${FUZZ_SECONDS:-60}
CC=$(command -v clang-14 || command -v clang || true)
if [ -z "$CC" ]; then
    echo "run_fuzz.sh: clang not found" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

flags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fno-omit-frame-pointer -I"$SRC/include" -I"$SRC/src")
# fuzz_pickle: the checkpoint layer alone (src/ckpt + the errors and files of
# src/base): no HDF5, no MPI. fuzz_ckpt also imports into a model: src/model
# and the layers below it.
ckpt=("$SRC"/src/ckpt/*.c "$SRC"/src/base/{error,fileio}.c)
model=("$SRC"/src/model/*.c "$SRC"/src/h5/*.c "$SRC"/src/par/*.c "$SRC"/src/base/{rng,utf8,hash}.c)
read -r -a libs <<<"$(pkg-config --cflags --libs hdf5-openmpi mpi nettle jansson libpcre2-8 zlib) -lm"
"$CC" "${flags[@]}" -o "$work/fuzz_ckpt" "$SRC/tests/fuzz/fuzz_ckpt.c" "${ckpt[@]}" "${model[@]}" "${libs[@]}"
"$CC" "${flags[@]}" -o "$work/fuzz_pickle" "$SRC/tests/fuzz/fuzz_pickle.c" "${ckpt[@]}" $(pkg-config --libs jansson)

"$PYTHON" "$SRC/tests/python/make_checkpoints.py" --fuzz-seeds "$work/seed_ckpt" "$work/seed_pickle"
mkdir -p "$work/corpus_ckpt" "$work/corpus_pickle"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# failing inputs are kept (the work dir is removed)
artifacts=${FUZZ_ARTIFACTS:-${BUILD:-/tmp}/fuzz-artifacts}
mkdir -p "$artifacts"
common=(-max_total_time="$SECONDS_EACH" -runs="${FUZZ_RUNS:-50000}" -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -max_len=65536
        -print_final_stats=1 -artifact_prefix="$artifacts/")
status=0
(cd "$work" && ./fuzz_ckpt "${common[@]}" corpus_ckpt seed_ckpt) >"$work/ckpt.log" 2>&1 || status=1
tail -n 12 "$work/ckpt.log"
(cd "$work" && ./fuzz_pickle "${common[@]}" corpus_pickle seed_pickle) >"$work/pickle.log" 2>&1 || status=1
tail -n 12 "$work/pickle.log"
for log in "$work/ckpt.log" "$work/pickle.log"; do
    if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:" "$log"; then
        echo "run_fuzz.sh: sanitizer or fuzzer report in $(basename "$log"):" >&2
        grep -E -A30 "ERROR:|runtime error:" "$log" | head -60 >&2
        echo "run_fuzz.sh: failing inputs in $artifacts" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "run_fuzz.sh: no crash, no leak, no sanitizer report"
exit $status
