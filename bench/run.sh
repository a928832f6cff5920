#!/bin/sh
# Run the benchmarks and print one figure per line on stdout, `name value
# unit`; everything else (progress, diagnostics, the target summary) goes to
# stderr. Called by `make bench` once everything is built:
#
#   BUILD=build sh bench/run.sh
#
# 1. Compute: every kernel of bench/kernels, REPS runs each of native, uqbar
#    (`run_ms` from UQBAR_TIME=1: instantiate + run, the compile cache warmed
#    by one run first) and V8 (node --no-liftoff, `run_ms` from
#    NODE_WASI_TIME=1: instantiate + run, compile excluded); medians, ratios
#    and geometric means. Outputs must be byte-identical across runtimes.
# 2. Engine: $BUILD/bench/bench_engine (see bench/bench_engine.c).
#    Kernel: $BUILD/bench/bench_kernel (beside Erlang/OTP); store:
#    bench_store; fs: bench_fs; a boot restoring 100 processes; network:
#    bench_net (beside `openssl speed` and `iperf3`).
# 3. Summary of the targets on stderr, with the share of CPU the host took
#    (host_steal_*_pct).
#
# Env: BUILD (build), KERNELS (all of bench/kernels), BENCH_REPS (3), NODE (node).
# Exit status 1 if any run failed or outputs differ.
set -u

BUILD=${BUILD:-build}
B=$BUILD/bench
OUT=$B/out
CACHE=$B/cache
UQBAR=$BUILD/uqbar
NODE=${NODE:-node}
REPS=${BENCH_REPS:-3}
KERNELS=${KERNELS:-$(cd bench/kernels && ls *.c | sed 's/\.c$//')}
RESULTS=$OUT/results.txt

mkdir -p "$OUT" "$CACHE"
: > "$RESULTS"
failures=""

say() { echo "bench: $*" >&2; }
fail() {
    say "FAILED: $*"
    failures="$failures
  $*"
}
emit() { # name value unit
    echo "$1 $2 $3"
    echo "$1 $2 $3" >> "$RESULTS"
}
now_ns() { date +%s%N; }
# CPU the host took from this (virtual) machine: /proc/stat's steal, all CPUs.
# cpu_mark prints "steal total" in jiffies; steal_pct NAME MARK emits the share
# stolen since MARK as host_steal_NAME_pct. A host that steals CPU slows the
# figures that need the machine's CPUs (the network's above all) by more
# than that share: the wake-up of a descheduled virtual CPU waits for the host.
cpu_mark() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i; print (NF >= 9 ? $9 : 0), t; exit }' /proc/stat 2>/dev/null; }
steal_pct() {
    set -- "$1" $2 $(cpu_mark)
    [ $# -eq 5 ] && emit "host_steal_$1_pct" "$(awk -v s="$4" -v s0="$2" -v t="$5" -v t0="$3" 'BEGIN { printf "%.1f", (t > t0 ? 100 * (s - s0) / (t - t0) : 0) }')" %
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
fmt_ms() { awk -v v="$1" 'BEGIN { printf (v >= 100 ? "%.0f" : "%.1f"), v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# run_timed RUNTIME KERNEL REP: one run, output in $OUT/KERNEL.RUNTIME.REP,
# its time in ms appended to $OUT/KERNEL.RUNTIME.ms. Non-zero on failure.
run_timed() {
    rt=$1 k=$2 rep=$3
    out=$OUT/$k.$rt.$rep err=$OUT/$k.$rt.$rep.err
    case $rt in
    native)
        t0=$(now_ns)
        "$B/$k.native" > "$out" 2> "$err"
        st=$?
        t1=$(now_ns)
        ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
        ;;
    uqbar)
        UQBAR_TIME=1 "$UQBAR" run --cache "$CACHE" "$B/$k.wasm" > "$out" 2> "$err"
        st=$?
        ms=$(awk '$1 == "run_ms" { print $2 }' "$err")
        ;;
    v8)
        NODE_WASI_TIME=1 "$NODE" --no-liftoff --no-warnings bench/peers/node_wasi.mjs "$B/$k.wasm" > "$out" 2> "$err"
        st=$?
        ms=$(awk '$1 == "run_ms" { print $2 }' "$err")
        ;;
    esac
    # Anything else the runtime said on stderr is worth seeing.
    grep -v -e '^run_ms ' -e '^compile_ms ' "$err" >&2
    if [ $st -ne 0 ] || [ -z "$ms" ]; then
        fail "$k under $rt: exit status $st$( [ -z "$ms" ] && echo ', no timing')"
        return 1
    fi
    echo "$ms" >> "$OUT/$k.$rt.ms"
}

# run_bench NAME PROGRAM ARGS...: $B/PROGRAM's figures into $OUT/NAME.txt, on
# stdout and into the results; a failure is recorded.
run_bench() {
    name=$1 prog=$2
    shift 2
    "$B/$prog" "$@" > "$OUT/$name.txt"
    st=$?
    [ $st -eq 0 ] || fail "$prog: exit status $st"
    cat "$OUT/$name.txt"
    cat "$OUT/$name.txt" >> "$RESULTS"
}

# ---- compute ---------------------------------------------------------------
mark_run=$(cpu_mark)
mark=$mark_run
ok_kernels=""
nk=$(echo $KERNELS | wc -w)
nok=0
for k in $KERNELS; do
    rm -f "$OUT/$k".*
    [ -x "$B/$k.native" ] && [ -f "$B/$k.wasm" ] || { fail "$k: not built ($B/$k.native, $B/$k.wasm)"; continue; }
    say "compute $k: warming uqbar's cache, then $REPS x (native, uqbar, v8)"
    # Warm-up: compiles on the first `make bench`, a cache hit afterwards.
    "$UQBAR" run --cache "$CACHE" "$B/$k.wasm" > "$OUT/$k.uqbar.0"
    st=$?
    if [ $st -ne 0 ]; then
        fail "$k under uqbar: the warm-up run failed (exit status $st)"
        continue
    fi
    good=1
    rep=1
    while [ $rep -le "$REPS" ]; do
        for rt in native uqbar v8; do
            run_timed $rt "$k" $rep || good=0
        done
        [ $good -eq 1 ] || break
        rep=$((rep + 1))
    done
    [ $good -eq 1 ] || continue
    # Identical output everywhere, and some output at all.
    ref=$OUT/$k.native.1
    if [ ! -s "$ref" ]; then
        fail "$k: native run printed nothing"
        continue
    fi
    for f in "$OUT/$k".uqbar.0 "$OUT/$k".*.[0-9]; do
        if ! cmp -s "$ref" "$f"; then
            fail "$k: OUTPUT MISMATCH: $(basename "$f") differs from native:"
            diff "$ref" "$f" | sed 's/^/bench:     /' >&2
            good=0
        fi
    done
    [ $good -eq 1 ] || continue
    n=$(median < "$OUT/$k.native.ms")
    u=$(median < "$OUT/$k.uqbar.ms")
    v=$(median < "$OUT/$k.v8.ms")
    emit "compute_${k}_native_ms" "$(fmt_ms "$n")" ms
    emit "compute_${k}_uqbar_ms" "$(fmt_ms "$u")" ms
    emit "compute_${k}_v8_ms" "$(fmt_ms "$v")" ms
    emit "compute_${k}_uqbar_vs_native" "$(ratio "$u" "$n")" x
    emit "compute_${k}_uqbar_vs_v8" "$(ratio "$u" "$v")" x
    ok_kernels="$ok_kernels $k"
done

geomean() { # SUFFIX: geometric mean of compute_<k>_SUFFIX over the kernels that ran
    for k in $ok_kernels; do awk -v n="compute_${k}_$1" '$1 == n { print $2 }' "$RESULTS"; done |
        awk '{ s += log($1); n++ } END { if (n) printf "%.2f", exp(s / n) }'
}
if [ -n "$ok_kernels" ]; then
    emit compute_geomean_uqbar_vs_native "$(geomean uqbar_vs_native)" x
    emit compute_geomean_uqbar_vs_v8 "$(geomean uqbar_vs_v8)" x
    nok=$(echo $ok_kernels | wc -w)
    [ "$nok" -eq "$nk" ] || say "NOTE: the geometric means cover only$ok_kernels ($nok of $nk kernels)"
fi

steal_pct compute "$mark"

# ---- engine ----------------------------------------------------------------
mark=$(cpu_mark)
say "engine micro-benchmarks ($B/bench_engine)"
run_bench engine bench_engine "$CACHE" "$B/guests"

steal_pct engine "$mark"

# ---- kernel, beside Erlang/OTP ------------------------------------------------
mark=$(cpu_mark)
say "kernel benchmarks ($B/bench_kernel) and Erlang/OTP doing the same work"
run_bench kernel bench_kernel "$CACHE" "$BUILD/apps" "$B/apps" "$B/guests"
if command -v erl >/dev/null 2>&1 || { UQBAR_EXTRA_PKGS=erlang-base sh scripts/deps.sh >&2 && command -v erl >/dev/null 2>&1; }; then
    if sh bench/peers/erlang/run.sh "$B/erlang" > "$OUT/erlang.txt"; then
        cat "$OUT/erlang.txt"
        cat "$OUT/erlang.txt" >> "$RESULTS"
        ratio() { # name uqbar_figure erlang_figure: uqbar / erlang
            a=$(awk -v n="$2" '$1 == n { print $2 }' "$RESULTS")
            b=$(awk -v n="$3" '$1 == n { print $2 }' "$RESULTS")
            [ -n "$a" ] && [ -n "$b" ] && awk -v n="$1" -v a="$a" -v b="$b" 'BEGIN { printf "%s %.2f x\n", n, a / b }' | tee -a "$RESULTS"
        }
        ratio kernel_roundtrip_median_vs_erlang kernel_roundtrip_median_ns erlang_roundtrip_median_ns
        ratio kernel_roundtrip_p99_vs_erlang kernel_roundtrip_p99_ns erlang_roundtrip_p99_ns
        ratio kernel_oneway_vs_erlang_1sched kernel_oneway_msgs_per_s erlang_oneway_1sched_msgs_per_s
        ratio kernel_chain_1kib_vs_erlang kernel_chain_roundtrip_1kib_us erlang_chain_forward_1kib_us
        # a spawn from a host thread through the kernel API, beside Erlang's spawn
        # from a process: not the same work (the like-for-like is the next one)
        awk '$1 == "kernel_spawn_exit_us" { k = $2 } $1 == "erlang_spawn_ns" { e = $2 }
             END { if (k && e) printf "kernel_host_spawn_vs_erlang %.2f x\n", k * 1000 / e }' "$RESULTS" | tee -a "$RESULTS"
        awk '$1 == "kernel_spawn_guest_us" { k = $2 } $1 == "erlang_spawn_ns" { e = $2 }
             END { if (k && e) printf "kernel_spawn_guest_vs_erlang %.2f x\n", k * 1000 / e }' "$RESULTS" | tee -a "$RESULTS"
        awk '$1 == "kernel_idle_process_kib" { k = $2 } $1 == "erlang_idle_process_rss_bytes" { e = $2 }
             END { if (k && e) printf "kernel_idle_process_vs_erlang %.2f x\n", k * 1024 / e }' "$RESULTS" | tee -a "$RESULTS"
    else
        failures="$failures erlang"
    fi
else
    say "Erlang/OTP (erlang-base) is not available: no side-by-side figures"
fi

steal_pct kernel "$mark"

# ---- store -----------------------------------------------------------------
say "store benchmarks ($B/bench_store, scratch in $B/store-scratch)"
run_bench store bench_store "$B/store-scratch"
say "fs: an app's Create and Open through the file module (bench_fs, scratch in $B/fs-scratch)"
run_bench fs bench_fs "$BUILD/guests" "$B/fs-scratch" 100

# ---- boot with 100 persisted processes ---------------------------------------
say "boot: a node whose store holds 100 processes (compiled code cached)"
BH=$B/boot-scratch
rm -rf "$BH"
for i in $(seq 1 100); do echo "start t$i $BUILD/apps/tally.wasm"; done | "$BUILD/uqbar" boot --home "$BH" > "$OUT/boot1.txt" 2>&1
st=$?
[ $st -eq 0 ] || fail "boot with 100 starts: exit status $st"
t0=$(date +%s%N)
echo exit | "$BUILD/uqbar" boot --home "$BH" > "$OUT/boot2.txt" 2>&1
t1=$(date +%s%N)
awk '/^restored 100 processes in/ { printf "node_boot_restore_100_ms %s ms\n", $5 }' "$OUT/boot2.txt" | tee -a "$RESULTS"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "node_boot_100_whole_run_ms %.1f ms\n", (b - a) / 1e6 }' | tee -a "$RESULTS"
grep -q '^restored 100 processes' "$OUT/boot2.txt" || fail "the second boot did not restore 100 processes"

# ---- network (issue 6) ---------------------------------------------------------
mark=$(cpu_mark)
say "network benchmarks ($B/bench_net: node a with its kernel, node b bare, loopback TCP + Noise; _in: a receives; _kernels: node c, a kernel in its own process, answers from a wasm echo)"
run_bench net bench_net "$CACHE" "$BUILD/apps"
steal_pct net "$mark"
# side by side: the cipher alone, and TCP alone on loopback
if command -v openssl >/dev/null 2>&1; then
    openssl speed -evp chacha20-poly1305 -seconds 1 2>/dev/null |
        awk '/^ChaCha20-Poly1305/ { v = $NF; sub(/k$/, "", v); printf "openssl_chacha20_poly1305_16k_mb_per_s %.0f MB/s\n", v * 1000 / 1e6 }' |
        tee -a "$RESULTS"
fi
if command -v iperf3 >/dev/null 2>&1 || { UQBAR_EXTRA_PKGS=iperf3 sh scripts/deps.sh >&2 && command -v iperf3 >/dev/null 2>&1; }; then
    iperf3 -s -1 -p 52011 >/dev/null 2>&1 &
    sleep 0.3
    iperf3 -c 127.0.0.1 -p 52011 -t 2 -J 2>/dev/null |
        awk -F: '/"bits_per_second"/ { v = $2 } END { gsub(/[ ,]/, "", v); if (v) printf "iperf3_loopback_tcp_mb_per_s %.0f MB/s\n", v / 8 / 1e6 }' |
        tee -a "$RESULTS"
    wait
else
    say "iperf3 is not available: no TCP side-by-side figure"
fi

steal_pct run "$mark_run"

# ---- targets ---------------------------------------------------------------
get() { awk -v n="$1" '$1 == n { print $2 }' "$RESULTS"; }
{
    echo
    echo "bench: targets"
    printf '  %-34s %10s   %-10s %s\n' figure measured target verdict
    while read -r label name op goal unit; do
        v=$(get "$name")
        if [ -z "$v" ]; then
            verdict="n/a (not measured)"
        elif awk -v v="$v" -v g="$goal" -v op="$op" 'BEGIN { exit !(op == "<" ? v < g : op == ">=" ? v >= g : v <= g) }'; then
            verdict=PASS
        else
            verdict=MISS
        fi
        case $name in compute_geomean_*) [ "$nok" -eq "$nk" ] || verdict="$verdict (over $nok of $nk kernels)";; esac
        printf '  %-34s %10s   %-10s %s\n' "$label" "${v:--} $unit" "$op $goal $unit" "$verdict"
    done <<EOF
compute_geomean_vs_native compute_geomean_uqbar_vs_native <= 1.5 x
compute_geomean_vs_v8 compute_geomean_uqbar_vs_v8 < 1 x
host_call host_call_ns <= 5 ns
fiber_switch fiber_switch_ns <= 20 ns
instantiate_cached instantiate_cached_us <= 20 us
idle_instance_rss idle_instance_rss_kib <= 32 KiB
kernel_roundtrip_median kernel_roundtrip_median_ns <= 1000 ns
kernel_roundtrip_p99 kernel_roundtrip_p99_ns <= 5000 ns
kernel_roundtrip_vs_erlang kernel_roundtrip_median_vs_erlang < 1 x
kernel_roundtrip_p99_vs_erlang kernel_roundtrip_p99_vs_erlang < 1 x
kernel_oneway kernel_oneway_msgs_per_s >= 5000000 msg/s
kernel_oneway_vs_erlang_1sched kernel_oneway_vs_erlang_1sched >= 1 x
kernel_chain_vs_erlang kernel_chain_1kib_vs_erlang < 1 x
kernel_spawn_exit kernel_spawn_exit_us <= 10 us
kernel_spawn_from_process kernel_spawn_guest_us <= 10 us
kernel_spawn_from_process_vs_erlang kernel_spawn_guest_vs_erlang < 1 x
kernel_idle_process kernel_idle_process_kib <= 32 KiB
kernel_chain_forward_1mib_vs_1kib kernel_chain_forward_1mib_vs_1kib <= 1.5 x
kernel_roundtrip_caps_on_vs_off kernel_roundtrip_caps_on_vs_off <= 1.05 x
node_boot_restore_100 node_boot_restore_100_ms <= 100 ms
net_remote_roundtrip net_remote_roundtrip_median_us <= 50 us
net_remote_roundtrip_kernels net_remote_roundtrip_kernels_median_us <= 50 us
net_small_msgs net_small_msgs_per_s >= 1000000 msg/s
net_bulk net_bulk_mb_per_s >= 1000 MB/s
net_small_msgs_kernel_receives net_small_in_msgs_per_s >= 1000000 msg/s
net_bulk_kernel_receives net_bulk_in_mb_per_s >= 1000 MB/s
net_link_setup net_link_setup_us <= 1000 us
EOF
    st=$(get host_steal_run_pct)
    if [ -n "$st" ]; then
        echo
        printf '  the host took %s %% of the CPU during this run (compute %s, engine %s, kernel %s, network %s %%)\n' \
            "$st" "$(get host_steal_compute_pct)" "$(get host_steal_engine_pct)" "$(get host_steal_kernel_pct)" "$(get host_steal_net_pct)"
        if awk -v s="$st" 'BEGIN { exit !(s >= 2) }'; then
            echo "  NOTE: a host stealing CPU slows what waits on a woken CPU (round trips, link setup) and"
            echo "  what needs both CPUs (bulk) more than in proportion; a MISS then may be the host's."
            echo "  docs/PERFORMANCE.md, \"Where things stand\", has runs on a quiet and on a contended host."
        fi
    fi
} >&2

if [ -n "$failures" ]; then
    say "FAILED:$failures"
    exit 1
fi
exit 0
