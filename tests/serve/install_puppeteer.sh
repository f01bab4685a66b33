#!/usr/bin/env bash
# Install the browser test's driver, the npm package puppeteer-core (a pinned
# version; it downloads no browser: the test drives Debian's chromium), into
# DIR (default $BUILD/npm-serve). Idempotent.
# Exit 0: installed; 77 (CTest's skip code): node or npm missing, or the
# registry unreachable, with the reason on stderr.
set -u
DIR=${1:-${BUILD:-build}/npm-serve}
VERSION=22.15.0
pkg="$DIR/node_modules/puppeteer-core"
if [ -f "$pkg/package.json" ] && grep -q "\"version\": \"$VERSION\"" "$pkg/package.json" 2>/dev/null; then
    exit 0
fi
NODE=$(command -v node || command -v nodejs || true)
if [ -z "$NODE" ] || ! command -v npm >/dev/null; then
    echo "install_puppeteer.sh: node/npm not installed (Debian: nodejs npm): skipping the browser test" >&2
    exit 77
fi
mkdir -p "$DIR"
if ! timeout 300 npm install --prefix "$DIR" --no-audit --no-fund --no-save "puppeteer-core@$VERSION" \
        >"$DIR/npm-install.log" 2>&1; then
    echo "install_puppeteer.sh: npm install puppeteer-core@$VERSION failed (see $DIR/npm-install.log):" \
         "skipping the browser test" >&2
    exit 77
fi
[ -f "$pkg/package.json" ] || { echo "install_puppeteer.sh: $pkg missing after npm install" >&2; exit 77; }
exit 0
