#!/usr/bin/env bash
# fetch.sh DEST_DIR -- place SQLite's amalgamation (sqlite3.c, sqlite3.h) in DEST_DIR.
#
# SQLite's source is not kept in this repository.  It is taken from the npm
# registry: the better-sqlite3 package ships the plain amalgamation under
# package/deps/sqlite3/.  Version and checksums are pinned below; the script
# does nothing if DEST_DIR already holds files with the pinned checksums.
set -euo pipefail

PKG=better-sqlite3
PKG_VERSION=12.4.1              # ships SQLite 3.50.4
SQLITE_C_SHA256=90b7189566ea710ee18361b25d893f5cda3fcf43033223a16384762f53e99a85
SQLITE_H_SHA256=abd1514e0351f79393d1be882830afdb40a8099e8257f311f0bfdf8486f11bea

if [ $# -ne 1 ]; then
  echo "usage: $0 DEST_DIR" >&2
  exit 2
fi
dest=$1
mkdir -p "$dest"

ok() {  # ok FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if ok "$dest/sqlite3.c" "$SQLITE_C_SHA256" && ok "$dest/sqlite3.h" "$SQLITE_H_SHA256"; then
  exit 0
fi

command -v npm >/dev/null || { echo "fetch.sh: npm is required" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch.sh: npm pack $PKG@$PKG_VERSION" >&2
( cd "$tmp" && npm pack --silent --loglevel=error "$PKG@$PKG_VERSION" >/dev/null )
tgz=$(ls "$tmp"/*.tgz)
tar -xzf "$tgz" -C "$tmp" package/deps/sqlite3/sqlite3.c package/deps/sqlite3/sqlite3.h

src=$tmp/package/deps/sqlite3
if ! ok "$src/sqlite3.c" "$SQLITE_C_SHA256"; then
  echo "fetch.sh: sha256 mismatch for sqlite3.c from $PKG@$PKG_VERSION" >&2
  exit 1
fi
if ! ok "$src/sqlite3.h" "$SQLITE_H_SHA256"; then
  echo "fetch.sh: sha256 mismatch for sqlite3.h from $PKG@$PKG_VERSION" >&2
  exit 1
fi

# Copy under temporary names, then rename, so an interrupted run never
# leaves a truncated file behind.
cp "$src/sqlite3.h" "$dest/.sqlite3.h.tmp" && mv -f "$dest/.sqlite3.h.tmp" "$dest/sqlite3.h"
cp "$src/sqlite3.c" "$dest/.sqlite3.c.tmp" && mv -f "$dest/.sqlite3.c.tmp" "$dest/sqlite3.c"
echo "fetch.sh: SQLite amalgamation placed in $dest" >&2
