#!/bin/sh
# Erlang/OTP peer of uqbar's message-passing benchmarks (see uqbench.erl).
# Compiles uqbench.erl into BUILD_DIR and runs it twice: once with the default
# schedulers (every figure) and once pinned to one scheduler (+S 1:1, the
# one-way test only, reported as erlang_oneway_1sched_msgs_per_s).
#
#   sh bench/peers/erlang/run.sh [BUILD_DIR]      (default /tmp/uqbench-erl)
#
# stdout: only `name value unit` lines; compiler and progress noise on stderr.
# Env: ERL (erl), ERLC (erlc). Exit status non-zero on any failure.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${1:-/tmp/uqbench-erl}
ERL=${ERL:-erl}
ERLC=${ERLC:-erlc}

command -v "$ERL" >/dev/null 2>&1 || { echo "erlang peer: $ERL not found (apt-get install erlang-base)" >&2; exit 1; }
mkdir -p "$DIR"
"$ERLC" -o "$DIR" "$HERE/uqbench.erl" >&2

run() { # ERL_FLAGS... -- TESTS...
    flags=""
    while [ "$1" != "--" ]; do flags="$flags $1"; shift; done
    shift
    # shellcheck disable=SC2086
    timeout 300 "$ERL" $flags -noshell -pa "$DIR" -s uqbench main "$@" -s init stop
}

run -- roundtrip oneway spawn idle chain
run +S 1:1 -- oneway1
