/* Benchmarks of the node store (src/store/): durable state writes, alone
 * and with many concurrent writers sharing commits (group commit), and file
 * throughput. Prints one line per figure on stdout, `name value unit`;
 * progress goes to stderr.
 *
 *   bench_store DIR      (DIR: scratch space, emptied first; on the disk
 *                         the node's home would be on)
 * Figures:
 *   store_state_write_1w_per_s        durable 100-byte state writes/s, one writer
 *   store_state_write_1w_p50_us/p99   latency of one write (to the ack)
 *   store_state_write_16w_per_s       the same with 16 writer threads
 *   store_state_write_16w_p50_us/p99  latency of one write under that load
 *   store_state_write_16w_per_commit  writes sharing one commit (fsync)
 *   store_state_write_async_per_s     uqs_state_set_async from one thread
 *   store_state_read_p50_us           uqs_state_get of a 100-byte value
 *   store_file_write_1mib_mb_s        replace a 1 MiB file, durably
 *   store_file_read_1mib_mb_s         read a 1 MiB file (page cache warm)
 *   store_file_append_4kib_per_s      durable 4 KiB appends/s, one writer */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/files.h"
#include "util/util.h"

#define BENCH_NAME "bench_store"
#include "bench_out.h"

#define N_1W 2000
#define THREADS 16
#define N_PER_THREAD 400
#define N_ASYNC 50000
#define N_READ 20000
#define FILE_MIB 1
#define N_FILE_W 64
#define N_FILE_R 512
#define N_APPEND 1000

static void die(const char *what, const uq_errmsg *em)
{
    fprintf(stderr, "bench_store: FAILED: %s: %s\n", what, em ? em->text : "");
    _exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

/* ---- state writes ----------------------------------------------------------------- */
typedef struct {
    uqs_store *s;
    int t, n;
    uint64_t *lat;
} warg;

static void *writer(void *p)
{
    warg *a = p;
    char key[32];
    uint8_t val[100];
    memset(val, 'v', sizeof val);
    snprintf(key, sizeof key, "proc-%d", a->t);
    for (int i = 0; i < a->n; i++) {
        uq_errmsg em;
        memcpy(val, &i, sizeof i);
        uint64_t t0 = uqi_now_ns();
        if (uqs_state_set(a->s, key, val, sizeof val, &em)) die("state_set", &em);
        a->lat[i] = uqi_now_ns() - t0;
    }
    return NULL;
}

static void bench_writers(uqs_store *s, int threads, int per, const char *label)
{
    uint64_t *lat = uqi_xmalloc((size_t)threads * (size_t)per * sizeof *lat);
    pthread_t th[THREADS];
    warg a[THREADS];
    uqs_stats st0, st1;
    uqs_get_stats(s, &st0);
    uint64_t t0 = uqi_now_ns();
    for (int t = 0; t < threads; t++) {
        a[t] = (warg){s, t, per, lat + (size_t)t * (size_t)per};
        pthread_create(&th[t], NULL, writer, &a[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double secs = (double)(uqi_now_ns() - t0) / 1e9;
    uqs_get_stats(s, &st1);
    size_t n = (size_t)threads * (size_t)per;
    char name[96];
    snprintf(name, sizeof name, "store_state_write_%s_per_s", label);
    figure(name, (double)n / secs, "writes/s");
    snprintf(name, sizeof name, "store_state_write_%s_p50_us", label);
    figure(name, pct_us(lat, n, 0.50), "us");
    snprintf(name, sizeof name, "store_state_write_%s_p99_us", label);
    figure(name, pct_us(lat, n, 0.99), "us");
    if (threads > 1) {
        snprintf(name, sizeof name, "store_state_write_%s_per_commit", label);
        figure(name, (double)(st1.writes - st0.writes) / (double)(st1.commits - st0.commits), "writes");
    }
    free(lat);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} async_wait;

static void on_done(void *arg, uq_err err, const uq_errmsg *em)
{
    async_wait *w = arg;
    if (err) die("state_set_async", em);
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void bench_async(uqs_store *s)
{
    async_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    uint8_t val[100];
    memset(val, 'a', sizeof val);
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < N_ASYNC; i++) {
        char key[32];
        snprintf(key, sizeof key, "async-%d", i % 256);
        uq_errmsg em;
        if (uqs_state_set_async(s, key, val, sizeof val, on_done, &w, &em)) die("state_set_async", &em);
    }
    pthread_mutex_lock(&w.mu);
    while (w.done < N_ASYNC) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    figure("store_state_write_async_per_s", N_ASYNC / ((double)(uqi_now_ns() - t0) / 1e9), "writes/s");
}

static void bench_read(uqs_store *s)
{
    uint64_t *lat = uqi_xmalloc(N_READ * sizeof *lat);
    for (int i = 0; i < N_READ; i++) {
        uint8_t *v;
        size_t n;
        uq_errmsg em;
        uint64_t t0 = uqi_now_ns();
        if (uqs_state_get(s, "proc-0", &v, &n, &em)) die("state_get", &em);
        lat[i] = uqi_now_ns() - t0;
        free(v);
    }
    figure("store_state_read_p50_us", pct_us(lat, N_READ, 0.5), "us");
    free(lat);
}

/* ---- files ------------------------------------------------------------------------ */
static void bench_files(uqs_files *fs)
{
    size_t len = (size_t)FILE_MIB << 20;
    uint8_t *buf = uqi_xmalloc(len);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 31);
    uqs_handle h;
    uq_errmsg em;
    if (uqs_file_create(fs, "bench", "blob", buf, len, &h, &em)) die("create", &em);
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < N_FILE_W; i++)
        if (uqs_file_write(fs, h, buf, len, &em)) die("write", &em);
    double secs = (double)(uqi_now_ns() - t0) / 1e9;
    figure("store_file_write_1mib_mb_s", N_FILE_W * (double)FILE_MIB / secs, "MiB/s");
    t0 = uqi_now_ns();
    for (int i = 0; i < N_FILE_R; i++) {
        uint8_t *b;
        size_t n;
        if (uqs_file_read(fs, h, &b, &n, &em) || n != len) die("read", &em);
        free(b);
    }
    secs = (double)(uqi_now_ns() - t0) / 1e9;
    figure("store_file_read_1mib_mb_s", N_FILE_R * (double)FILE_MIB / secs, "MiB/s");
    uqs_handle lg;
    if (uqs_file_create(fs, "bench", "log", NULL, 0, &lg, &em)) die("create log", &em);
    t0 = uqi_now_ns();
    for (int i = 0; i < N_APPEND; i++)
        if (uqs_file_append(fs, lg, buf, 4096, &em)) die("append", &em);
    secs = (double)(uqi_now_ns() - t0) / 1e9;
    figure("store_file_append_4kib_per_s", N_APPEND / secs, "appends/s");
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_store DIR\n");
        return 2;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", argv[1]);
    if (system(cmd) != 0) die("cannot empty the scratch directory", NULL);
    uqs_store *s;
    uqs_files *fs;
    uq_errmsg em;
    if (uqs_open(argv[1], NULL, &s, &em)) die("open", &em);
    if (uqs_files_open(s, argv[1], &fs, &em)) die("files_open", &em);
    progress("state writes: 1 writer x %d, %d writers x %d, %d async", N_1W, THREADS, N_PER_THREAD, N_ASYNC);
    bench_writers(s, 1, N_1W, "1w");
    bench_writers(s, THREADS, N_PER_THREAD, "16w");
    bench_async(s);
    bench_read(s);
    progress("files: %d x %d MiB writes, %d reads, %d 4 KiB appends", N_FILE_W, FILE_MIB, N_FILE_R, N_APPEND);
    bench_files(fs);
    uqs_files_close(fs);
    uqs_close(s);
    if (system(cmd) != 0) progress("could not remove %s", argv[1]);
    return 0;
}
