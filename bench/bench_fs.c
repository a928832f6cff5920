/* Benchmark of the file module `fs` (src/kernel/fsmod.c) as an app uses
 * it: a node with its store, the filesystem and fs, as `uqbar boot` makes
 * them, and the app tests/guests/filer.c (persisted: its process record is
 * rewritten by each grant) asked by a host port to Create and Open files
 * through fs, one request at a time. Prints `name value unit` lines on
 * stdout; progress goes to stderr.
 *
 *   bench_fs GUESTS DIR [N]   GUESTS: the directory of filer.wasm; DIR:
 *                             scratch space for the node's home (emptied
 *                             first); N: requests of each kind (200)
 * Figures (each for Create, then for Open):
 *   fs_create_p50_us        one request's round trip, tester -> filer ->
 *                           fs -> filer -> tester (median)
 *   fs_create_cpu_us        CPU time of the whole process per request
 *                           (every thread: workers, fs, the committer)
 *   fs_create_commits       store transactions committed per request
 *                           (counted once everything queued is durable) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel/fsmod.h"
#include "kernel/kernel.h"
#include "store/files.h"
#include "store/store.h"
#include "util/util.h"

#define BENCH_NAME "bench_fs"
#include "bench_out.h"

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_fs: FAILED: %s: %s\n", what, why);
    _exit(1);
}

static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* body to filer; its answer must be {"Ok":...}. */
static void ask(uqi_kproc *port, const char *body)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    uq_errmsg em = {{0}};
    if (uqi_addr_parse("filer", port->addr.node, &m->target, &em)) die("address", em.text);
    m->expects_response_s = 30;
    uint64_t id = 0;
    if (uqi_kernel_send(port, m, NULL, 0, &id, &em)) die("send", em.text);
    for (;;) {
        uqi_msg *r = uqi_port_receive(port, 30000);
        if (!r) die(body, "no answer");
        bool mine = r->id == id;
        if (mine && (r->kind != UQI_MSG_RESPONSE || !memmem(r->body, r->body_len, "{\"Ok\"", 5))) {
            char why[300];
            snprintf(why, sizeof why, "%.*s", r->kind == UQI_MSG_RESPONSE ? (int)(r->body_len < 299 ? r->body_len : 299) : 5,
                     r->kind == UQI_MSG_RESPONSE ? (const char *)r->body : "error");
            die(body, why);
        }
        uqi_msg_free(r);
        if (mine) return;
    }
}

static void run(uqs_store *s, uqi_kproc *port, const char *what, int n)
{
    uint64_t *lat = uqi_xmalloc((size_t)n * sizeof *lat);
    uqs_stats s0, s1;
    uqs_flush(s, NULL);
    uqs_get_stats(s, &s0);
    uint64_t c0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        char body[200];
        if (strcmp(what, "create") == 0) snprintf(body, sizeof body, "fs\n{\"Create\":{\"name\":\"f%d\"}}", i);
        else snprintf(body, sizeof body, "fs\n{\"Open\":{\"name\":\"f%d\"}}", i);
        uint64_t t0 = uqi_now_ns();
        ask(port, body);
        lat[i] = uqi_now_ns() - t0;
    }
    uqs_flush(s, NULL); /* what was queued and not waited for counts too */
    uint64_t c1 = cpu_ns();
    uqs_get_stats(s, &s1);
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    char name[64];
    snprintf(name, sizeof name, "fs_%s_p50_us", what);
    figure(name, (double)lat[n / 2] / 1000.0, "us");
    snprintf(name, sizeof name, "fs_%s_cpu_us", what);
    figure(name, (double)(c1 - c0) / 1000.0 / n, "us");
    snprintf(name, sizeof name, "fs_%s_commits", what);
    figure(name, (double)(s1.commits - s0.commits) / n, "commits");
    free(lat);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_fs GUESTS DIR [N]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 200;
    if (n < 1) n = 1;
    char home[4200], cmd[8600], path[4200], cache[4200];
    snprintf(home, sizeof home, "%s/fs-home", argv[2]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0) die("rm", home);
    snprintf(cache, sizeof cache, "%s/fs-cache", argv[2]);
    uq_errmsg em = {{0}};
    uqs_store *s;
    uqs_files *files;
    uqi_node *node;
    uqi_fsmod *fs;
    uqi_kproc *port;
    if (uqs_open(home, NULL, &s, &em)) die("store", em.text);
    uqi_node_config c = {.name = "bench.node", .cache_dir = cache, .workers = 2, .store = s};
    if (uqi_node_start(&c, &node, &em)) die("node", em.text);
    uqi_node_engine(node)->progress = false;
    if (uqs_files_open(s, home, &files, &em)) die("files", em.text);
    if (uqi_fsmod_start(node, files, &fs, &em)) die("fs", em.text);
    snprintf(path, sizeof path, "%s/filer.wasm", argv[1]);
    uint8_t *wasm;
    size_t len;
    if (uqi_read_file(path, &wasm, &len, &em)) die(path, em.text);
    if (uqi_node_spawn(node, "filer", wasm, len, false, NULL, &em)) die("spawn", em.text);
    free(wasm);
    if (uqi_node_grant_messaging(node, "filer", "fs", &em)) die("grant", em.text);
    if (uqi_node_port(node, "tester", &port, &em)) die("port", em.text);
    progress("%d Creates, then %d Opens, one at a time", n, n);
    run(s, port, "create", n);
    run(s, port, "open", n);
    uqi_fsmod_stop(fs);
    uqi_node_stop(node);
    uqs_files_close(files);
    uqs_close(s);
    return 0;
}
