/* Engine tests with real modules in one node process: every trap is caught
 * while another process on the same worker keeps running and finishes; the
 * memory cap; preemption of a spinner; the compile cache; output tagging. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tenv.h"

static const struct { const char *guest; int code; } traps[] = {
    {"trap_oob", UQI_TRAP_OOB},
    {"trap_unreachable", UQI_TRAP_UNREACHABLE},
    {"trap_div0", UQI_TRAP_DIV_BY_ZERO},
    {"trap_overflow", UQI_TRAP_INT_OVERFLOW},
    {"trap_conversion", UQI_TRAP_INVALID_CONVERSION},
    {"trap_indirect", UQI_TRAP_CALL_INDIRECT},
    {"trap_stack", UQI_TRAP_EXHAUSTION},
    {"null_call", UQI_TRAP_CALL_INDIRECT},
};

/* Each trap lands in its own process: a worker computing on the same
 * scheduler thread, started before the trap, finishes with the right answer. */
TEST_T(engine_every_trap_is_isolated, 300)
{
    tenv_engine(1);
    for (size_t i = 0; i < sizeof traps / sizeof traps[0]; i++) {
        const char *args[] = {"200000", NULL};
        uqi_proc *w = tenv_spawn("work", args, 0, 0);
        uqi_proc *t = tenv_spawn(traps[i].guest, NULL, 0, 0);
        uqi_proc_wait(t);
        uqi_proc_wait(w);
        char what[300];
        uqi_proc_outcome(t, what, sizeof what);
        test_log("%s: %s", traps[i].guest, what);
        ASSERT_EQ(t->status, UQI_PROC_TRAPPED);
        ASSERT_EQ(t->trap_code, traps[i].code);
        ASSERT_EQ(w->status, UQI_PROC_EXITED);
        ASSERT_EQ(w->exit_code, 0);
        uqi_proc_free(t);
        uqi_proc_free(w);
    }
}

/* Traps on two workers at once, many times: trap state is per fiber. */
TEST_T(engine_concurrent_traps_do_not_cross, 300)
{
    tenv_engine(2);
    enum { N = 64 };
    uqi_proc *ps[N];
    for (int i = 0; i < N; i++) ps[i] = tenv_spawn(traps[i % 7].guest, NULL, 0, i % 2);
    for (int i = 0; i < N; i++) {
        uqi_proc_wait(ps[i]);
        ASSERT_EQ(ps[i]->status, UQI_PROC_TRAPPED);
        ASSERT_EQ(ps[i]->trap_code, traps[i % 7].code);
        uqi_proc_free(ps[i]);
    }
}

/* A C program mallocs past its cap: malloc returns NULL, the process goes on
 * and exits normally, the node lives. */
TEST(engine_memory_cap_malloc_returns_null)
{
    tenv_engine(1);
    uqi_proc *p = tenv_spawn("malloc_cap", NULL, 16u << 20, 0);
    uqi_proc_wait(p);
    ASSERT_EQ(p->status, UQI_PROC_EXITED);
    ASSERT_EQ(p->exit_code, 0);
    ASSERT(p->grow_refused > 0);
    uqi_proc_free(p);
    /* and memory.grow past the cap returns -1 in raw wasm */
    p = tenv_spawn("grow_cap", NULL, 8u << 20, 0);
    uqi_proc_wait(p);
    ASSERT_EQ(p->status, UQI_PROC_EXITED);
    uqi_proc_free(p);
}

/* A module whose initial memory exceeds the cap fails to start, clearly. */
TEST(engine_initial_memory_over_cap_fails)
{
    tenv_engine(1);
    uqi_proc *p = tenv_spawn("huge_memory", NULL, 64u << 20, 0);
    uqi_proc_wait(p);
    ASSERT_EQ(p->status, UQI_PROC_FAILED);
    ASSERT_STR_HAS(p->why, "initial memory of 20000 pages exceeds the limit of 1024 pages");
    uqi_proc_free(p);
}

/* A spinner that never yields shares one worker with a quick process: the
 * quick one still completes (preemption), and so do many after it. */
TEST_T(engine_spinner_is_preempted, 120)
{
    tenv_engine(1);
    uqi_proc *s = tenv_spawn("spin", NULL, 0, 0);
    usleep(20000); /* the spinner is running */
    for (int i = 0; i < 20; i++) {
        const char *args[] = {"1000", NULL};
        uint64_t t0 = uqi_now_ns();
        uqi_proc *q = tenv_spawn("work", args, 0, 0);
        uqi_proc_wait(q);
        uint64_t dt = uqi_now_ns() - t0;
        if (i == 0) test_log("quick process beside a spinner finished in %.2f ms", dt / 1e6);
        ASSERT_EQ(q->status, UQI_PROC_EXITED);
        ASSERT_EQ(q->exit_code, 0);
        uqi_proc_free(q);
    }
    ASSERT(s->task.preemptions > 0);
    test_log("spinner preempted %llu times", (unsigned long long)s->task.preemptions);
    ASSERT(!s->finished);
}

/* Sleeping (poll_oneoff) yields the worker: ten sleepers on one worker
 * sleep concurrently, not one after another. */
TEST(engine_sleep_yields_the_worker)
{
    tenv_engine(1);
    tenv_load("sleeper"); /* compile outside the timing */
    uqi_proc *ps[10];
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < 10; i++) ps[i] = tenv_spawn("sleeper", NULL, 0, 0);
    for (int i = 0; i < 10; i++) {
        uqi_proc_wait(ps[i]);
        ASSERT_EQ(ps[i]->status, UQI_PROC_EXITED);
        ASSERT_EQ(ps[i]->exit_code, 0);
        uqi_proc_free(ps[i]);
    }
    double ms = (double)(uqi_now_ns() - t0) / 1e6;
    test_log("10 sleepers of 50 ms each took %.0f ms together", ms);
    ASSERT(ms < 450); /* sequential would be >= 500 ms */
}

/* On a node, output is tagged with the process and kept in whole lines. */
TEST(engine_output_is_tagged)
{
    tenv_engine(1);
    char path[1100];
    snprintf(path, sizeof path, "%s/out", tb_tmpdir());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    uqi_module *m = tenv_load("hello");
    const char *argv[] = {"hello", "a", "b", NULL};
    char *const envp[] = {NULL};
    uqi_proc *p = uqi_proc_new(m, (char *const *)argv, envp);
    p->tag = uqi_xstrdup("hello-1");
    ASSERT_EQ(uqi_proc_start(p, 0), UQ_OK);
    uqi_proc_wait(p);
    dup2(saved, 1);
    close(fd);
    uint8_t *b;
    size_t n;
    ASSERT_EQ(uqi_read_file(path, &b, &n, NULL), UQ_OK);
    char *s = strndup((char *)b, n);
    ASSERT_STR_HAS(s, "[hello-1] hello from wasm: 2 args: [a] [b]\n");
    free(s);
    free(b);
    uqi_proc_free(p);
}

/* The second load of a module (new engine, same cache) does not compile. */
TEST(engine_cache_second_load_does_not_compile)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/cache", tb_tmpdir());
    uq_errmsg em = {{0}};
    uint8_t *b;
    size_t n;
    ASSERT_EQ(uqi_read_file(tb_guest("exit_code"), &b, &n, &em), UQ_OK);
    uqi_engine e1, e2;
    ASSERT_EQ(uqi_engine_init(&e1, dir, &em), UQ_OK);
    e1.progress = false;
    uqi_module *m1, *m2;
    ASSERT_EQ(uqi_engine_load(&e1, b, n, "exit_code", &m1, &em), UQ_OK);
    ASSERT(m1->compiled);
    ASSERT_EQ(e1.compiles, 1);
    char so[1300];
    snprintf(so, sizeof so, "%s/%s.so", dir, m1->hex);
    struct stat st1, st2;
    ASSERT_EQ(stat(so, &st1), 0);
    ASSERT_EQ(uqi_engine_init(&e2, dir, &em), UQ_OK);
    ASSERT_EQ(uqi_engine_load(&e2, b, n, "exit_code", &m2, &em), UQ_OK);
    ASSERT(!m2->compiled);
    ASSERT_EQ(e2.compiles, 0);
    ASSERT_EQ(e2.cache_hits, 1);
    ASSERT_EQ(stat(so, &st2), 0);
    ASSERT_EQ(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
    /* A different module is another key. */
    uint8_t *b2;
    size_t n2;
    ASSERT_EQ(uqi_read_file(tb_guest("trap_oob"), &b2, &n2, &em), UQ_OK);
    ASSERT_EQ(uqi_engine_load(&e2, b2, n2, "trap_oob", &m2, &em), UQ_OK);
    ASSERT(m2->compiled);
    ASSERT(strcmp(m1->hex, m2->hex) != 0);
    free(b);
    free(b2);
}

/* A corrupt cached object is detected and rebuilt, not trusted. Checked
 * through the CLI: a fresh process, as after a crash or a disk error. */
TEST(engine_cache_corrupt_object_is_rebuilt)
{
    char dir[1100], uq[1100];
    snprintf(dir, sizeof dir, "%s/cache", tb_tmpdir());
    snprintf(uq, sizeof uq, "%s/uqbar", tb_build());
    const char *a[] = {uq, "run", "-v", "--cache", dir, tb_guest("exit_code"), NULL};
    cmd_result r = tb_run(a, NULL, 120);
    ASSERT_EQ(r.status, 42);
    ASSERT_STR_HAS(r.err, "compiled in");
    tb_result_free(&r);
    /* corrupt every cached object */
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "for f in %s/*.so; do printf garbage > $f; done", dir);
    ASSERT_EQ(system(cmd), 0);
    r = tb_run(a, NULL, 120);
    test_log("%s", r.err);
    ASSERT_EQ(r.status, 42);
    ASSERT_STR_HAS(r.err, "is unusable");
    ASSERT_STR_HAS(r.err, "compiling again");
    tb_result_free(&r);
    r = tb_run(a, NULL, 120);
    ASSERT_EQ(r.status, 42);
    ASSERT_STR_HAS(r.err, "found in cache");
    tb_result_free(&r);
}

/* Exit codes pass through proc_exit. */
TEST(engine_proc_exit_code)
{
    tenv_engine(1);
    uqi_proc *p = tenv_spawn("exit_code", NULL, 0, 0);
    uqi_proc_wait(p);
    ASSERT_EQ(p->status, UQI_PROC_EXITED);
    ASSERT_EQ(p->exit_code, 42);
    uqi_proc_free(p);
}

/* Many processes of one module, more than the memory pool holds, in waves:
 * reservations are released whole (no leak of address space). */
TEST_T(engine_many_instances_no_leak, 200)
{
    tenv_engine(2);
    for (int wave = 0; wave < 20; wave++) {
        enum { N = 100 };
        uqi_proc *ps[N];
        for (int i = 0; i < N; i++) ps[i] = tenv_spawn("exit_code", NULL, 0, -1);
        for (int i = 0; i < N; i++) {
            uqi_proc_wait(ps[i]);
            ASSERT_EQ(ps[i]->exit_code, 42);
            uqi_proc_free(ps[i]);
        }
    }
    ASSERT_EQ(uqi_rt_committed_bytes(), 0);
}

/* Pooled memories come back zeroed and no larger than asked: instances
 * dirty their memory and grow it (to 128 KiB: cleaned by a scan; to
 * 256 KiB: by madvise); the next ones find every page zero, and an access
 * past a 1-page memory that reuses a grown reservation still traps. */
TEST_T(engine_reused_memory_is_zero_and_bounded, 120)
{
    tenv_engine(1);
    const char *guests[] = {"dirty_small", "dirty_large", "trap_oob"};
    for (int i = 0; i < 30; i++) {
        const char *g = guests[i % 3];
        uqi_proc *p = tenv_spawn(g, NULL, 0, 0);
        uqi_proc_wait(p);
        if (i % 3 == 2) {
            ASSERT_EQ(p->status, UQI_PROC_TRAPPED);
            ASSERT_EQ(p->trap_code, UQI_TRAP_OOB);
        } else {
            char what[300];
            uqi_proc_outcome(p, what, sizeof what);
            if (p->status != UQI_PROC_EXITED) test_log("%s: %s", g, what);
            ASSERT_EQ(p->status, UQI_PROC_EXITED);
            ASSERT_EQ(p->exit_code, 0);
        }
        uqi_proc_free(p);
    }
    ASSERT_EQ(uqi_rt_committed_bytes(), 0);
}
