#!/usr/bin/env bash
# build.sh DEST_DIR -- build the SQLite test program.
#
#   DEST_DIR/sqlq.wasm    wasm32-wasi command (clang -O2, stripped); imports
#                         only from wasi_snapshot_preview1
#   DEST_DIR/sqlq.native  the same program built natively with gcc -O2,
#                         to compare outputs with
#
# SQLite's amalgamation is fetched into DEST_DIR by fetch.sh (npm registry).
# Outputs are rebuilt only when older than their inputs.
#
# SQLQ_WASM_ONLY=1 skips the native build (the tests need only the wasm).
# Environment: CLANG (default clang), WASI_SYSROOT (default /usr),
#              CC_NATIVE (default gcc), WASM_STRIP (default wasm-strip).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DEST_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
dest=$(cd "$1" && pwd)

CLANG=${CLANG:-clang}
WASI_SYSROOT=${WASI_SYSROOT:-/usr}
CC_NATIVE=${CC_NATIVE:-gcc}
WASM_STRIP=${WASM_STRIP:-wasm-strip}

"$here/fetch.sh" "$dest"

# SQLite configuration: no threads, no OS layer of its own (sqlq.c supplies
# sqlite3_os_init with a files-less VFS), all temporary storage in memory,
# no WAL (needs shared memory), no mmap, no extension loading.
SQLITE_DEFS=(
  -DSQLITE_OS_OTHER=1
  -DSQLITE_THREADSAFE=0
  -DSQLITE_TEMP_STORE=3
  -DSQLITE_OMIT_WAL
  -DSQLITE_OMIT_LOAD_EXTENSION
  -DSQLITE_OMIT_SHARED_CACHE
  -DSQLITE_OMIT_DEPRECATED
  -DSQLITE_MAX_MMAP_SIZE=0
  -DSQLITE_DEFAULT_MEMSTATUS=0
  -DSQLITE_DQS=0
)

srcs=("$dest/sqlite3.c" "$here/sqlq.c")
newer() {  # newer OUT: true when OUT is missing or older than an input
  local f
  [ -f "$1" ] || return 0
  for f in "${srcs[@]}" "$dest/sqlite3.h" "$here/build.sh"; do
    [ "$f" -nt "$1" ] && return 0
  done
  return 1
}

if newer "$dest/sqlq.wasm"; then
  # 1 MiB of stack: wasm has no guard page, so an overflow would silently
  # corrupt static data; SQLite's deepest paths need far less.
  (set -x
   "$CLANG" --target=wasm32-wasi --sysroot="$WASI_SYSROOT" -O2 \
     "${SQLITE_DEFS[@]}" -I"$dest" \
     -Wl,-z,stack-size=1048576 \
     -o "$dest/sqlq.wasm.tmp" "${srcs[@]}"
   "$WASM_STRIP" "$dest/sqlq.wasm.tmp")
  mv -f "$dest/sqlq.wasm.tmp" "$dest/sqlq.wasm"
fi

if [ -z "${SQLQ_WASM_ONLY:-}" ] && newer "$dest/sqlq.native"; then
  (set -x
   "$CC_NATIVE" -O2 "${SQLITE_DEFS[@]}" -I"$dest" \
     -o "$dest/sqlq.native.tmp" "${srcs[@]}" -lm)
  mv -f "$dest/sqlq.native.tmp" "$dest/sqlq.native"
fi
