#!/bin/sh
# Build the benchmark kernels three-ish ways:
#   OUT/NAME.native   gcc -O2 -fno-math-errno (host)
#   OUT/NAME.wasm     clang --target=wasm32-wasi -O2, wasm-strip'ed
#                     (run by uqbar and by bench/peers/node_wasi.mjs)
# Usage: bench/kernels/build.sh OUTDIR   (e.g. build/bench)
# Env overrides: CC_NATIVE (gcc), CC_WASM (clang), WASI_SYSROOT (/usr),
#                NATIVE_CFLAGS, WASM_CFLAGS,
#                KERNELS (space-separated list; default: all *.c here).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUT=$1
SRC=$(cd "$(dirname "$0")" && pwd)
CC_NATIVE=${CC_NATIVE:-gcc}
CC_WASM=${CC_WASM:-clang}
WASI_SYSROOT=${WASI_SYSROOT:-/usr}
# -fno-math-errno: wasm's f64.sqrt has no errno and clang's wasm32 target
# defaults to it; gcc's default guards each sqrt with a libm call (nbody 2x).
NATIVE_CFLAGS=${NATIVE_CFLAGS:--O2 -fno-math-errno}
WASM_CFLAGS=${WASM_CFLAGS:--O2}
KERNELS=${KERNELS:-$(cd "$SRC" && ls *.c | sed 's/\.c$//')}

for tool in "$CC_NATIVE" "$CC_WASM" wasm-strip; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: missing tool: $tool" >&2; exit 1; }
done

mkdir -p "$OUT"
for k in $KERNELS; do
    src=$SRC/$k.c
    [ -f "$src" ] || { echo "$0: no such kernel: $src" >&2; exit 1; }
    echo "  CC    $OUT/$k.native"
    $CC_NATIVE $NATIVE_CFLAGS -Wall -o "$OUT/$k.native.tmp" "$src" -lm
    mv -f "$OUT/$k.native.tmp" "$OUT/$k.native"
    echo "  WASM  $OUT/$k.wasm"
    $CC_WASM --target=wasm32-wasi --sysroot="$WASI_SYSROOT" $WASM_CFLAGS -Wall \
        -o "$OUT/$k.wasm.tmp" "$src"
    wasm-strip "$OUT/$k.wasm.tmp"
    mv -f "$OUT/$k.wasm.tmp" "$OUT/$k.wasm"
done
