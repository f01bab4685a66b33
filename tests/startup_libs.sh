#!/bin/bash
# The executable's start-up (issue 12): with CORPUSLENS_STATIC_DEPS, HDF5 and
# OpenBLAS are linked in, so the dynamic loader maps neither them nor what the
# shared HDF5 drags along (curl, gnutls, krb5, crypto). Read from the loader
# itself (LD_DEBUG=libs of `corpuslens --version`); fails on the shared layout
# (52 libraries, libhdf5_openmpi.so, libcurl.so among them).
set -u
CL=${CORPUSLENS:?set CORPUSLENS to the binary}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
LD_DEBUG=libs "$CL" --version >"$T/out" 2>"$T/libs" || fail "corpuslens --version failed"
grep -q '^corpuslens ' "$T/out" || fail "corpuslens --version printed no version"
# negative control: the loader's trace is read at all (libc is always there)
loaded=$(grep -o 'calling init: [^ ]*' "$T/libs" | sed 's/.*: //' | sort -u)
echo "$loaded" | grep -q 'libc\.so' || fail "no libc in the loader's trace: LD_DEBUG output not understood"
for lib in libhdf5 libopenblas libcurl libgnutls libkrb5 libcrypto; do
    if echo "$loaded" | grep -q "/$lib"; then fail "$lib is loaded at start-up"; fi
done
n=$(echo "$loaded" | grep -c .)
echo "shared libraries initialised at start-up: $n"
[ "$n" -le 30 ] || fail "$n shared libraries at start-up (want <= 30)"
[ $failures -eq 0 ] && echo "startup_libs: all checks passed" || echo "startup_libs: $failures failure(s)"
[ $failures -eq 0 ]
