#!/bin/sh
# Prefix-sharing forward vs the plain forward (tests/scan_trie_check.c) on a
# small corpus and a tiny random model.
set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
head -c 3000 "${TESTDATA:-$(dirname "$0")/data}/tinyshakespeare.txt" > "$d/small.txt"
"$CORPUSLENS" init --config n_layer=3,n_embd=32,n_head=4,block_size=16 --vocab-from "$d/small.txt" --seed 5 -o "$d/m.h5" > /dev/null
"$CORPUSLENS" prepare "$d/small.txt" --len 8 --prompts 5 --vocab-from "$d/m.h5" -o "$d/c.h5" > /dev/null
"$BUILD/scan_trie_check" "$d/m.h5" "$d/c.h5"
