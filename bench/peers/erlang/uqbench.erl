%% Erlang/OTP peer for uqbar's `make bench`: the same message-passing work as
%% the uqbar figures, done by BEAM processes. Prints one figure per line on
%% stdout, `name value unit`, and nothing else; progress goes to stderr.
%%
%% Run (after `erlc -o DIR uqbench.erl`):
%%   erl -noshell -pa DIR -s uqbench main -s init stop            (all but 1sched)
%%   erl +S 1:1 -noshell -pa DIR -s uqbench main oneway1 -s init stop
%% Args (atoms via -s, strings via -run, or none = all): roundtrip oneway
%% oneway1 spawn idle chain all. `oneway1` is the one-way test reported under
%% the erlang_oneway_1sched_* name; it is meant for a VM started with +S 1:1.
%% On any failure the VM halts with status 1.
-module(uqbench).
-export([main/0, main/1]).

-define(RT_WARM, 20000).
-define(RT_N, 200000).
-define(ONEWAY_N, 5000000).
-define(ONEWAY_REPS, 3).
-define(SPAWN_WARM, 20000).
-define(SPAWN_N, 200000).
-define(SPAWN_BATCHES, 10).
-define(IDLE_N, 100000).
-define(CHAIN_LEN, 5).
-define(CHAIN_WARM, 200).
-define(CHAIN_N_SMALL, 20000).
-define(CHAIN_N_LARGE, 2000).
-define(BODY, <<"{\"ping\":1}">>).

main() -> main([all]).

main(Args) ->
    Tests = case [to_atom(A) || A <- Args] of
                [] -> [all];
                Ts -> Ts
            end,
    try
        lists:foreach(fun run/1, Tests)
    catch
        C:R:St ->
            progress("FAILED: ~p:~p~n~p", [C, R, St]),
            erlang:halt(1)
    end.

to_atom(A) when is_atom(A) -> A;
to_atom(A) when is_list(A) -> list_to_atom(A).

run(all) -> lists:foreach(fun run/1, [roundtrip, oneway, spawn, idle, chain]);
run(roundtrip) -> roundtrip();
run(oneway) -> oneway("erlang_oneway_msgs_per_s");
run(oneway1) -> oneway("erlang_oneway_1sched_msgs_per_s");
run(spawn) -> spawn_exit();
run(idle) -> idle();
run(chain) -> chain();
run(Other) -> error({unknown_test, Other}).

%% ---- output ----------------------------------------------------------------

figure(Name, Value, Unit) when is_integer(Value) ->
    io:format("~s ~b ~s~n", [Name, Value, Unit]);
figure(Name, Value, Unit) ->
    io:format("~s ~s ~s~n", [Name, fmt(Value), Unit]).

fmt(V) when V >= 100 -> integer_to_list(round(V));
fmt(V) -> float_to_list(V, [{decimals, 2}]).

progress(Fmt, Args) -> io:format(standard_error, "uqbench: " ++ Fmt ++ "~n", Args).

now_ns() -> erlang:monotonic_time(nanosecond).

%% Nearest-rank percentile of a sorted list (P in 0..100).
percentile(Sorted, Len, P) ->
    Rank = max(1, min(Len, ceil(P * Len / 100))),
    lists:nth(Rank, Sorted).

median(Sorted, Len) when Len rem 2 =:= 1 -> lists:nth((Len + 1) div 2, Sorted);
median(Sorted, Len) ->
    [A, B] = lists:sublist(Sorted, Len div 2, 2),
    (A + B) / 2.

%% Run Fun in a fresh process (fresh heap, nothing left in the caller's
%% mailbox) and return its result; errors propagate.
isolated(Fun) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({ok, Fun()}) end),
    receive
        {'DOWN', Ref, process, Pid, {ok, Result}} -> Result;
        {'DOWN', Ref, process, Pid, Reason} -> error({bench_process_failed, Reason})
    end.

%% ---- request/response round trip -------------------------------------------
%% A sends {req, Self, Ref, Body} to B, B replies {resp, Ref, Body}; every
%% round trip timed on its own with the monotonic clock.

roundtrip() ->
    Times = isolated(fun() ->
        B = spawn_link(fun echo_loop/0),
        Body = ?BODY,
        _ = rt_loop(B, Body, ?RT_WARM, []),
        T = rt_loop(B, Body, ?RT_N, []),
        B ! stop,
        T
    end),
    Sorted = lists:sort(Times),
    progress("roundtrip: ~b round trips, min ~b ns, max ~b ns",
             [?RT_N, hd(Sorted), lists:last(Sorted)]),
    figure("erlang_roundtrip_median_ns", median(Sorted, ?RT_N), "ns"),
    figure("erlang_roundtrip_p99_ns", percentile(Sorted, ?RT_N, 99), "ns").

echo_loop() ->
    receive
        {req, From, Ref, Body} ->
            From ! {resp, Ref, Body},
            echo_loop();
        stop -> ok
    end.

rt_loop(_B, _Body, 0, Acc) -> Acc;
rt_loop(B, Body, N, Acc) ->
    T0 = now_ns(),
    Ref = make_ref(),
    B ! {req, self(), Ref, Body},
    receive
        {resp, Ref, _} -> ok
    end,
    T1 = now_ns(),
    rt_loop(B, Body, N - 1, [T1 - T0 | Acc]).

%% ---- one-way throughput -----------------------------------------------------
%% One producer sends N small messages to a consumer that counts them and
%% reports when it has seen all; time from the first send to that report.
%% Median rate over a few runs.

oneway(Name) ->
    progress("oneway: ~b x ~b messages, ~b schedulers online",
             [?ONEWAY_REPS, ?ONEWAY_N, erlang:system_info(schedulers_online)]),
    Rates = lists:sort([?ONEWAY_N * 1.0e9 / isolated(fun oneway_once/0)
                        || _ <- lists:seq(1, ?ONEWAY_REPS)]),
    progress("oneway: ~s msg/s", [lists:join(" ", [fmt(R) || R <- Rates])]),
    figure(Name, median(Rates, ?ONEWAY_REPS), "msg/s").

oneway_once() ->
    Self = self(),
    C = spawn_link(fun() -> count_loop(Self, ?ONEWAY_N) end),
    Body = ?BODY,
    T0 = now_ns(),
    send_loop(C, Body, ?ONEWAY_N),
    receive {counted, C} -> ok end,
    now_ns() - T0.

send_loop(_C, _Body, 0) -> ok;
send_loop(C, Body, N) ->
    C ! {msg, Body},
    send_loop(C, Body, N - 1).

count_loop(Parent, 0) -> Parent ! {counted, self()};
count_loop(Parent, N) ->
    receive
        {msg, _} -> count_loop(Parent, N - 1)
    end.

%% ---- spawn and exit ---------------------------------------------------------
%% spawn_monitor a process that returns at once; wait for its 'DOWN'. One at
%% a time, so the figure is the full cost of a process's life. Median over
%% batches.

spawn_exit() ->
    Batch = ?SPAWN_N div ?SPAWN_BATCHES,
    PerSpawn = isolated(fun() ->
        spawn_loop(?SPAWN_WARM),
        [begin
             T0 = now_ns(),
             spawn_loop(Batch),
             (now_ns() - T0) / Batch
         end || _ <- lists:seq(1, ?SPAWN_BATCHES)]
    end),
    Sorted = lists:sort(PerSpawn),
    progress("spawn: ~b batches of ~b, ns/spawn ~s",
             [?SPAWN_BATCHES, Batch, lists:join(" ", [fmt(X) || X <- Sorted])]),
    figure("erlang_spawn_ns", median(Sorted, ?SPAWN_BATCHES), "ns").

spawn_loop(0) -> ok;
spawn_loop(N) ->
    {Pid, Ref} = spawn_monitor(fun() -> ok end),
    receive
        {'DOWN', Ref, process, Pid, normal} -> spawn_loop(N - 1)
    end.

%% ---- idle processes -----------------------------------------------------------
%% N processes blocked in receive. erlang:memory(total) delta per process
%% (what the VM has allocated, minus the list of pids the spawner holds), and
%% VmRSS delta per process (what the kernel has made resident, comparable to
%% uqbar's idle_instance_rss_kib).

idle() ->
    {MemBytes, RssBytes} = isolated(fun() ->
        %% Warm the allocators with one round first, so the measured round
        %% does not pay for carriers the VM would keep anyway.
        kill_all(spawn_idle(?IDLE_N div 10, [])),
        settle(),
        M0 = erlang:memory(total),
        R0 = rss_bytes(),
        Pids = spawn_idle(?IDLE_N, []),
        settle(),
        M1 = erlang:memory(total),
        R1 = rss_bytes(),
        ListBytes = erts_debug:flat_size(Pids) * erlang:system_info(wordsize),
        P1 = lists:sum([M || P <- Pids, {memory, M} <- [process_info(P, memory)]]),
        progress("idle: ~b processes, memory(total) +~b KiB (pid list ~b KiB), "
                 "process_info memory ~b B each, VmRSS +~b KiB",
                 [?IDLE_N, (M1 - M0) div 1024, ListBytes div 1024,
                  P1 div ?IDLE_N, (R1 - R0) div 1024]),
        kill_all(Pids),
        {(M1 - M0 - ListBytes) / ?IDLE_N, (R1 - R0) / ?IDLE_N}
    end),
    figure("erlang_idle_process_bytes", MemBytes, "B"),
    figure("erlang_idle_process_rss_bytes", RssBytes, "B").

spawn_idle(0, Acc) -> Acc;
spawn_idle(N, Acc) ->
    spawn_idle(N - 1, [spawn(fun idle_wait/0) | Acc]).

idle_wait() ->
    receive stop -> ok end.

kill_all(Pids) ->
    Refs = [begin R = monitor(process, P), P ! stop, R end || P <- Pids],
    [receive {'DOWN', R, process, _, _} -> ok end || R <- Refs],
    ok.

%% Let every spawned process reach its receive and the caller's heap settle.
settle() ->
    garbage_collect(),
    timer:sleep(200),
    garbage_collect().

rss_bytes() ->
    {ok, Bin} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(Bin, <<"\n">>, [global]),
                   binary:match(L, <<"VmRSS:">>) =/= nomatch],
    [_, Kb, <<"kB">>] = binary:split(Line, [<<" ">>, <<"\t">>], [global, trim_all]),
    binary_to_integer(Kb) * 1024.

%% ---- middleware chain -----------------------------------------------------------
%% Origin sends {fwd, Origin, Ref, Payload} to the head of a chain of 5
%% middleware processes; each passes it on to the next; the tail replies
%% {resp, Ref, Payload} to the origin. Payloads above 64 bytes are refc
%% binaries, so every hop moves a reference, not the bytes. Median round trip.

chain() ->
    chain("erlang_chain_forward_1kib_us", 1024, ?CHAIN_N_SMALL),
    chain("erlang_chain_forward_1mib_us", 1024 * 1024, ?CHAIN_N_LARGE).

chain(Name, Size, N) ->
    Times = isolated(fun() ->
        Payload = binary:copy(<<16#5a>>, Size),
        Head = build_chain(?CHAIN_LEN),
        _ = chain_loop(Head, Payload, ?CHAIN_WARM, []),
        T = chain_loop(Head, Payload, N, []),
        Head ! stop,
        T
    end),
    Sorted = lists:sort(Times),
    progress("chain ~b B: ~b round trips through ~b processes, median ~b ns, p99 ~b ns",
             [Size, N, ?CHAIN_LEN, round(median(Sorted, N)), percentile(Sorted, N, 99)]),
    figure(Name, median(Sorted, N) / 1000, "us").

%% Returns the head; the last process built is the tail (Next = none).
build_chain(Len) ->
    lists:foldl(fun(_, Next) -> spawn_link(fun() -> hop_loop(Next) end) end,
                none, lists:seq(1, Len)).

hop_loop(Next) ->
    receive
        {fwd, Origin, Ref, Payload} when Next =:= none ->
            Origin ! {resp, Ref, Payload},
            hop_loop(Next);
        {fwd, _, _, _} = Msg ->
            Next ! Msg,
            hop_loop(Next);
        stop when Next =:= none -> ok;
        stop ->
            Next ! stop,
            ok
    end.

chain_loop(_Head, _Payload, 0, Acc) -> Acc;
chain_loop(Head, Payload, N, Acc) ->
    T0 = now_ns(),
    Ref = make_ref(),
    Head ! {fwd, self(), Ref, Payload},
    receive
        {resp, Ref, _} -> ok
    end,
    T1 = now_ns(),
    chain_loop(Head, Payload, N - 1, [T1 - T0 | Acc]).
