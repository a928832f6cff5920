#!/bin/sh
# Install the Debian packages uqbar needs, if any is missing. Runs as root
# (or with sudo when available). Quiet when everything is there.
set -e
PKGS="make gcc clang lld wabt wasi-libc libclang-rt-14-dev-wasm32 libsodium-dev libssl-dev libjansson-dev liblmdb-dev rustc libstd-rust-dev-wasm32 pkg-config nodejs npm"
[ -n "$UQBAR_EXTRA_PKGS" ] && PKGS="$PKGS $UQBAR_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node and npm may come from outside Debian's packages: accept any working ones.
case "$missing" in *nodejs*|*npm*)
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        missing=$(echo "$missing" | sed 's/ nodejs//; s/ npm//')
    fi;;
esac
[ -z "$missing" ] && exit 0
echo "uqbar: installing Debian packages:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
