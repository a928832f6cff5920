/* Micro-benchmarks of the engine through its internal API. Prints one line
 * per figure on stdout, `name value unit`; progress goes to stderr.
 *
 *   bench_engine CACHE_DIR GUEST_DIR [WHICH...]
 *
 * WHICH picks some of: fiber instantiate hostcall idle (default: all).
 * GUEST_DIR holds the modules built from bench/guests: hostcall.wasm,
 * hostcall_base.wasm, hostcall_nop.wasm, empty.wasm, idle.wasm. Figures (medians):
 *   fiber_switch_ns                 one uqi_fiber_switch (one direction)
 *   instantiate_cached_first_us     first process of a loaded module
 *   instantiate_cached_us           uqi_proc_new+start+wait+free from a host
 *                                   thread (includes two cross-thread wakeups)
 *   instantiate_cached_inworker_us  the same, driven by a task on the worker
 *                                   (no thread wakeups): the engine's own cost
 *   host_call_ns                    a guest->host call (args_sizes_get) minus
 *                                   the same loop calling a local function
 *   host_call_nop_ns                the same for proc_raise (returns ENOSYS at
 *                                   once): the bare call, without WASI work
 *   idle_instance_rss_kib           resident memory per sleeping instance
 *   idle_instance_pte_kib           page tables per sleeping instance
 * The program ends with _exit while the idle instances still sleep. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/module.h"
#include "engine/proc.h"
#include "engine/rt.h"
#include "sched/fiber.h"
#include "sched/sched.h"

#define BENCH_NAME "bench_engine"
#include "bench_out.h"

#define HOSTCALL_N 10000000.0  /* loop count hard-coded in hostcall*.wat */
#define SWITCH_N 10000000      /* fiber switches per repetition */
#define REPS 7
#define INST_N 2000            /* instantiations for the median */
#define IDLE_N 2000            /* idle instances for RSS */

static void die(const char *what)
{
    fprintf(stderr, "bench_engine: FAILED: %s\n", what);
    fflush(stdout);
    _exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- fiber switch --------------------------------------------------------- */
static uqi_fiber main_fiber, ping_fiber;

static void ping_fn(void *arg)
{
    UQ_UNUSED(arg);
    for (;;) uqi_fiber_switch(&ping_fiber, &main_fiber);
}

static void bench_fiber_switch(void)
{
    if (uqi_fiber_init(&ping_fiber, 64 * 1024, ping_fn, NULL)) die("uqi_fiber_init");
    double r[REPS];
    for (int k = 0; k < REPS; k++) {
        uint64_t t0 = uqi_now_ns();
        for (int i = 0; i < SWITCH_N / 2; i++) uqi_fiber_switch(&main_fiber, &ping_fiber);
        uint64_t t1 = uqi_now_ns();
        r[k] = (double)(t1 - t0) / SWITCH_N;
    }
    figure("fiber_switch_ns", median(r, REPS), "ns");
    /* ping_fiber is parked inside its loop; leave it be. */
}

/* ---- modules and processes -------------------------------------------------- */
static uqi_engine eng;
static const char *guest_dir;
static char *const no_env[] = {NULL};

static uqi_module *load_guest(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.wasm", guest_dir, name);
    uint8_t *wasm;
    size_t len;
    uq_errmsg em = {{0}};
    if (uqi_read_file(path, &wasm, &len, &em)) die(em.text);
    uqi_module *m;
    uq_err err = uqi_engine_load(&eng, wasm, len, path, &m, &em);
    free(wasm);
    if (err) {
        fprintf(stderr, "bench_engine: %s: %s\n", path, em.text);
        die("cannot load a guest module");
    }
    if (m->compiled) progress("compiled %s (%.1f s, cached from now on)", name, m->compile_seconds);
    return m;
}

static void check_exited(uqi_proc *p, const char *what)
{
    if (p->status != UQI_PROC_EXITED || p->exit_code != 0) {
        char o[300];
        uqi_proc_outcome(p, o, sizeof o);
        fprintf(stderr, "bench_engine: %s: %s\n", what, o);
        die("guest did not exit cleanly");
    }
}

/* Run one process to completion from this (host) thread; ns taken. */
static uint64_t run_once(uqi_module *m, char *const *argv)
{
    uint64_t t0 = uqi_now_ns();
    uqi_proc *p = uqi_proc_new(m, argv, no_env);
    if (uqi_proc_start(p, 0)) die("uqi_proc_start");
    uqi_proc_wait(p);
    uint64_t t1 = uqi_now_ns();
    check_exited(p, argv[0]);
    uqi_proc_free(p);
    return t1 - t0;
}

/* ---- instantiation driven from a task on the worker ------------------------- */
typedef struct driver {
    uqi_task task;             /* first member */
    uqi_module *mod;
    double *samples;
    int n;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} driver;

static void driver_wake(uqi_proc *p)
{
    uqi_task_wake(&((driver *)p->user)->task);
}

static void driver_entry(uqi_task *t)
{
    driver *d = (driver *)t;
    char *argv[] = {(char *)"empty", NULL};
    for (int i = 0; i < d->n; i++) {
        uint64_t t0 = uqi_now_ns();
        uqi_proc *p = uqi_proc_new(d->mod, argv, no_env);
        p->on_finish = driver_wake;
        p->user = d;
        if (uqi_proc_start(p, 0)) die("uqi_proc_start (in worker)");
        uqi_task_block();
        uint64_t t1 = uqi_now_ns();
        check_exited(p, "empty (in worker)");
        uqi_proc_free(p);
        d->samples[i] = (double)(t1 - t0) / 1e3;
    }
}

static void driver_done(uqi_task *t)
{
    driver *d = (driver *)t;
    pthread_mutex_lock(&d->lock);
    d->done = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void bench_instantiate(void)
{
    uqi_module *m = load_guest("empty");
    char *argv[] = {(char *)"empty", NULL};
    /* The very first instance: fresh memory reservation and fiber stack. */
    figure("instantiate_cached_first_us", (double)run_once(m, argv) / 1e3, "us");
    static double s[INST_N];
    for (int i = 0; i < 50; i++) run_once(m, argv); /* warm up */
    for (int i = 0; i < INST_N; i++) s[i] = (double)run_once(m, argv) / 1e3;
    figure("instantiate_cached_us", median(s, INST_N), "us");

    driver *d = uqi_xcalloc(1, sizeof *d);
    d->mod = m;
    d->samples = s;
    d->n = INST_N;
    d->task.entry = driver_entry;
    d->task.on_done = driver_done;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    if (uqi_sched_spawn(&d->task, 0)) die("uqi_sched_spawn");
    pthread_mutex_lock(&d->lock);
    while (!d->done) pthread_cond_wait(&d->cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
    figure("instantiate_cached_inworker_us", median(s, INST_N), "us");
    /* d stays allocated: the worker may still touch the task's record. */
}

/* ---- host call ------------------------------------------------------------ */
static void bench_host_call(void)
{
    uqi_module *mc = load_guest("hostcall");
    uqi_module *mb = load_guest("hostcall_base");
    uqi_module *mn = load_guest("hostcall_nop");
    char *argv[] = {(char *)"hostcall", NULL};
    run_once(mc, argv);
    run_once(mb, argv);
    run_once(mn, argv);
    double c[REPS], b[REPS], n[REPS];
    for (int k = 0; k < REPS; k++) {
        c[k] = (double)run_once(mc, argv);
        b[k] = (double)run_once(mb, argv);
        n[k] = (double)run_once(mn, argv);
    }
    double mc_ns = median(c, REPS), mb_ns = median(b, REPS), mn_ns = median(n, REPS);
    progress("loops of %.0f: args_sizes_get %.1f ms, proc_raise %.1f ms, local function %.1f ms", HOSTCALL_N,
             mc_ns / 1e6, mn_ns / 1e6, mb_ns / 1e6);
    figure("host_call_ns", (mc_ns - mb_ns) / HOSTCALL_N, "ns");
    figure("host_call_nop_ns", (mn_ns - mb_ns) / HOSTCALL_N, "ns");
}

/* ---- idle instances -------------------------------------------------------- */
static long rss_kib(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) die("/proc/self/statm");
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static long pte_kib(void)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) die("/proc/self/status");
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmPTE: %ld kB", &v) == 1) break;
    fclose(f);
    if (v < 0) die("no VmPTE in /proc/self/status");
    return v;
}

static int task_state(uqi_proc *p)
{
    return __atomic_load_n((int *)&p->task.state, __ATOMIC_ACQUIRE);
}

static void wait_sleeping(uqi_proc **ps, int n)
{
    uint64_t deadline = uqi_now_ns() + 60000000000ull;
    for (int i = 0; i < n; i++) {
        while (task_state(ps[i]) != UQI_TASK_SLEEPING) {
            if (__atomic_load_n(&ps[i]->finished, __ATOMIC_ACQUIRE)) {
                char o[300];
                uqi_proc_outcome(ps[i], o, sizeof o);
                fprintf(stderr, "bench_engine: idle instance %d ended: %s\n", i, o);
                die("an idle instance did not stay asleep");
            }
            if (uqi_now_ns() > deadline) die("idle instances did not fall asleep within 60 s");
            usleep(1000);
        }
    }
}

static void bench_idle(void)
{
    uqi_module *m = load_guest("idle");
    char *argv[] = {(char *)"idle", NULL};
    /* Two warm-up sleepers: code pages, malloc arenas, worker heaps. */
    uqi_proc *warm[2];
    for (int i = 0; i < 2; i++) {
        warm[i] = uqi_proc_new(m, argv, no_env);
        if (uqi_proc_start(warm[i], -1)) die("uqi_proc_start (idle)");
    }
    wait_sleeping(warm, 2);
    usleep(20000);
    long rss0 = rss_kib(), pte0 = pte_kib();
    static uqi_proc *ps[IDLE_N];
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < IDLE_N; i++) {
        ps[i] = uqi_proc_new(m, argv, no_env);
        if (uqi_proc_start(ps[i], -1)) die("uqi_proc_start (idle)");
    }
    wait_sleeping(ps, IDLE_N);
    uint64_t t1 = uqi_now_ns();
    usleep(20000);
    long rss1 = rss_kib(), pte1 = pte_kib();
    progress("%d idle instances asleep after %.0f ms: RSS %ld -> %ld KiB, page tables %ld -> %ld KiB", IDLE_N,
             (double)(t1 - t0) / 1e6, rss0, rss1, pte0, pte1);
    figure("idle_instance_rss_kib", (double)(rss1 - rss0) / IDLE_N, "KiB");
    figure("idle_instance_pte_kib", (double)(pte1 - pte0) / IDLE_N, "KiB");
}

static int which_n;
static char **which_v;

static bool wanted(const char *name)
{
    if (which_n == 0) return true;
    for (int i = 0; i < which_n; i++)
        if (strcmp(which_v[i], name) == 0) return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_engine CACHE_DIR GUEST_DIR [fiber|instantiate|hostcall|idle ...]\n");
        return 2;
    }
    which_n = argc - 3;
    which_v = argv + 3;
    guest_dir = argv[2];
    uq_errmsg em = {{0}};
    if (uqi_engine_init(&eng, argv[1], &em)) die(em.text);

    if (wanted("fiber")) {
        progress("fiber switch (%d switches x %d)", SWITCH_N, REPS);
        bench_fiber_switch();
    }
    uqi_sched_config sc = {.workers = 1, .slice_ns = 0};
    if (uqi_sched_start(&sc)) die("uqi_sched_start");
    if (wanted("instantiate")) {
        progress("instantiation (%d instances from a host thread, %d from a task)", INST_N, INST_N);
        bench_instantiate();
    }
    if (wanted("hostcall")) {
        progress("host calls (%.0f calls x %d)", HOSTCALL_N, REPS);
        bench_host_call();
    }
    if (wanted("idle")) {
        progress("idle instances (%d)", IDLE_N);
        bench_idle();
    }

    fflush(stdout);
    fflush(stderr);
    _exit(0); /* the idle instances sleep on */
}
