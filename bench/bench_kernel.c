/* Kernel benchmarks on a real node: message passing measured from inside a
 * wasm process (bench/apps/bencher.c), spawn-and-exit and idle memory
 * measured from the host. One line per figure: `name value unit`.
 *
 *   bench_kernel CACHE_DIR APPS_DIR BENCH_APPS_DIR EXIT_WASM
 *
 * The node runs one worker thread (UQBAR_BENCH_WORKERS to change): the
 * processes of a round trip then share a core, as Erlang's do with +S 1. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernel/kernel.h"

static const char *cache, *apps, *bapps;
static uqi_node *node;
static uqi_kproc *port;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_kernel: %s: %s\n", what, why);
    exit(1);
}

static uint8_t *slurp(const char *dir, const char *name, size_t *len)
{
    char p[2048];
    snprintf(p, sizeof p, "%s/%s.wasm", dir, name);
    uint8_t *b;
    uq_errmsg em = {{0}};
    if (uqi_read_file(p, &b, len, &em)) die(p, em.text);
    return b;
}

static void spawn_as(const char *dir, const char *app, const char *id, bool public)
{
    size_t len;
    uint8_t *b = slurp(dir, app, &len);
    uq_errmsg em = {{0}};
    if (uqi_node_spawn(node, id, b, len, public, NULL, &em)) die(id, em.text);
    free(b);
}
static void spawn(const char *dir, const char *app, const char *id) { spawn_as(dir, app, id, false); }
static void spawn_public(const char *dir, const char *app) { spawn_as(dir, app, app, true); }

/* Ask process `to`, with a payload of payload_len bytes (data, or 0x5a
 * bytes if data is NULL) if not 0; returns the JSON answer (malloc'ed). */
static char *ask_to(const char *to, const char *body, const uint8_t *data, size_t payload_len)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    if (payload_len) {
        uint8_t *b = uqi_xmalloc(payload_len);
        if (data) memcpy(b, data, payload_len);
        else memset(b, 0x5a, payload_len);
        m->payload = uqi_payload_new(b, payload_len, "application/octet-stream");
        free(b);
    }
    uq_errmsg em = {{0}};
    uqi_addr_parse(to, uqi_node_name(node), &m->target, &em);
    m->expects_response_s = 600;
    if (uqi_kernel_send(port, m, NULL, 0, NULL, &em)) die("send", em.text);
    uqi_msg *r = uqi_port_receive(port, 600000);
    if (!r || r->kind != UQI_MSG_RESPONSE) die(body, "no answer");
    char *s = uqi_xmalloc(r->body_len + 1);
    memcpy(s, r->body, r->body_len);
    s[r->body_len] = '\0';
    uqi_msg_free(r);
    return s;
}

static char *ask_payload(const char *body, size_t payload_len) { return ask_to("bencher", body, NULL, payload_len); }
static char *ask(const char *body) { return ask_payload(body, 0); }

static double field(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(json, k);
    if (!p) die(json, key);
    return atof(p + strlen(k));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A line of /proc/self/status in KiB, e.g. "VmRSS" or "VmPTE" (page tables). */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, k) == 0 && line[k] == ':' && sscanf(line + k + 1, "%ld kB", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_kernel CACHE_DIR APPS_DIR BENCH_APPS_DIR EXIT_WASM_DIR\n");
        return 2;
    }
    cache = argv[1];
    apps = argv[2];
    bapps = argv[3];
    const char *guests = argv[4];
    const char *w = getenv("UQBAR_BENCH_WORKERS");
    uqi_node_config cfg = {.name = "bench.local", .cache_dir = cache, .workers = w ? atoi(w) : 1,
                           .mailbox_cap = 4096};
    uq_errmsg em = {{0}};
    if (uqi_node_start(&cfg, &node, &em)) die("node", em.text);
    if (uqi_node_port(node, "driver", &port, &em)) die("port", em.text);
    spawn(apps, "echo", "echo");
    spawn(apps, "counter", "counter");
    spawn(bapps, "bencher", "bencher");
    char id[32];
    for (int k = 1; k <= 5; k++) {
        snprintf(id, sizeof id, "relay-%d", k);
        spawn(bapps, "relay", id);
    }
    /* capabilities, as an installer grants them: who may message whom */
    const char *grants[][2] = {{"bencher", "echo"},    {"bencher", "counter"}, {"bencher", "relay-5"},
                               {"relay-5", "relay-4"}, {"relay-4", "relay-3"}, {"relay-3", "relay-2"},
                               {"relay-2", "relay-1"}, {"relay-1", "echo"}};
    for (size_t i = 0; i < sizeof grants / sizeof grants[0]; i++)
        if (uqi_node_grant_messaging(node, grants[i][0], grants[i][1], &em)) die("grant", em.text);
    const char *only = getenv("UQBAR_BENCH_ONLY"); /* messages (rt, oneway, chain), spawn (gspawn: from a process only) or idle: one phase */
    /* "messages" is the three parts "rt", "oneway" and "chain" */
#define PHASE(name) (!only || strcmp(only, name) == 0)
#define MSG_PHASE(name) (PHASE("messages") || PHASE(name))
    char *r;
    if (MSG_PHASE("rt")) {
    fprintf(stderr, "bench_kernel: round trips\n");
    r = ask("{\"rt\":200000}");
    printf("kernel_roundtrip_median_ns %.0f ns\n", field(r, "median_ns"));
    printf("kernel_roundtrip_p99_ns %.0f ns\n", field(r, "p99_ns"));
    free(r);
    /* the same round trip with the capability check off, interleaved with
     * it on so that both see the same machine */
    fprintf(stderr, "bench_kernel: round trips, capability checks on and off\n");
    double on[5], off[5];
    for (int i = 0; i < 5; i++) {
        uqi_node_bench_cap_checks(node, false);
        r = ask("{\"rt\":50000}");
        off[i] = field(r, "median_ns");
        free(r);
        uqi_node_bench_cap_checks(node, true);
        r = ask("{\"rt\":50000}");
        on[i] = field(r, "median_ns");
        free(r);
    }
    qsort(on, 5, sizeof on[0], cmp_double);
    qsort(off, 5, sizeof off[0], cmp_double);
    printf("kernel_roundtrip_caps_on_ns %.0f ns\n", on[2]);
    printf("kernel_roundtrip_caps_off_ns %.0f ns\n", off[2]);
    printf("kernel_roundtrip_caps_on_vs_off %.3f x\n", on[2] / off[2]);
    }
    if (MSG_PHASE("oneway")) {
    fprintf(stderr, "bench_kernel: one-way messages\n");
    r = ask("{\"oneway\":3000000}");
    printf("kernel_oneway_msgs_per_s %.0f msg/s\n", field(r, "msgs_per_s"));
    fprintf(stderr, "bench_kernel: one-way: %s\n", r);
    free(r);
    }
    if (MSG_PHASE("chain")) {
    fprintf(stderr, "bench_kernel: chain of 5 middleware, 1 KiB and 1 MiB payloads\n");
    /* The payload is made once, here, and reaches the bencher with its
     * request; the bencher forwards it by reference (inherit) on every round
     * trip, so no figure includes a copy of it out of a guest's memory (that
     * copy, about 50 us for 1 MiB, is not forwarding, and its cache effects
     * were what made the 1 MiB figure grow). forwarding cost = chain round
     * trip - direct round trip with the same payload. */
    double v[4];
    const char *qs[4] = {"{\"chain\":20000,\"kib\":1}", "{\"direct\":20000,\"kib\":1}",
                         "{\"chain\":20000,\"kib\":1024}", "{\"direct\":20000,\"kib\":1024}"};
    for (int i = 0; i < 4; i++) {
        r = ask_payload(qs[i], i < 2 ? 1024 : 1024 * 1024);
        if (!strstr(r, "\"ok\":true")) die(qs[i], r);
        v[i] = field(r, "median_ns") / 1000.0;
        free(r);
    }
    printf("kernel_chain_roundtrip_1kib_us %.2f us\n", v[0]);
    printf("kernel_chain_roundtrip_1mib_us %.2f us\n", v[2]);
    printf("kernel_chain_forward_1kib_us %.2f us\n", v[0] - v[1]);
    printf("kernel_chain_forward_1mib_us %.2f us\n", v[2] - v[3]);
    printf("kernel_chain_forward_1mib_vs_1kib %.2f x\n", (v[2] - v[3]) / (v[0] - v[1]));
    }

    /* spawn and exit from a process, as Erlang's spawn_monitor loop: the
     * spawner (bench/apps/spawner.c) spawns children of a module it hands
     * the guest `spawn` call (bench/guests/spawnee.wat, cached after the
     * first) and waits for each child's one message before the next */
    if (PHASE("spawn") || PHASE("gspawn")) {
    fprintf(stderr, "bench_kernel: spawn and exit from a process\n");
    size_t len;
    uint8_t *child = slurp(guests, "spawnee", &len);
    spawn_public(bapps, "spawner"); /* public: its children may message it */
    r = ask_to("spawner", "{\"spawn\":40000}", child, len);
    if (!strstr(r, "\"ok\":true")) die("spawner", r);
    printf("kernel_spawn_guest_us %.2f us\n", field(r, "ns_per_spawn") / 1000.0);
    fprintf(stderr, "bench_kernel: spawn from a process: %s\n", r);
    free(r);
    free(child);
    }

    /* spawn and exit from a host thread: a module whose _start returns at
     * once; from a loaded module, and from its bytes (parse, hash) */
    if (PHASE("spawn")) {
    fprintf(stderr, "bench_kernel: spawn and exit\n");
    size_t len;
    uint8_t *empty = slurp(guests, "empty", &len);
    uqi_module *mod;
    if (uqi_engine_load(uqi_node_engine(node), empty, len, "empty", &mod, &em)) die("load", em.text);
    enum { NSPAWN = 4000 };
    for (int pass = 0; pass < 2; pass++) {
        uint64_t t0 = uqi_now_ns();
        for (int i = 0; i < NSPAWN; i++) {
            snprintf(id, sizeof id, "s%d-%d", pass, i);
            uq_err e = pass == 0 ? uqi_node_spawn_module(node, id, mod, false, &em)
                                 : uqi_node_spawn(node, id, empty, len, false, NULL, &em);
            if (e) die("spawn", em.text);
        }
        uint64_t t1 = uqi_now_ns();
        for (int i = 0; i < NSPAWN; i++) {
            snprintf(id, sizeof id, "s%d-%d", pass, i);
            while (uqi_node_has(node, id)) usleep(20);
        }
        uint64_t t2 = uqi_now_ns();
        printf("%s %.2f us\n", pass == 0 ? "kernel_spawn_exit_us" : "kernel_spawn_exit_from_bytes_us",
               (double)(t2 - t0) / 1e3 / NSPAWN);
        fprintf(stderr, "bench_kernel: spawn pass %d: %.2f us per spawn call, then %.2f us per process waiting\n",
                pass, (double)(t1 - t0) / 1e3 / NSPAWN, (double)(t2 - t1) / 1e3 / NSPAWN);
    }
    free(empty);
    }

    /* idle processes: echo servers blocked in receive */
    if (PHASE("idle")) {
    fprintf(stderr, "bench_kernel: idle processes\n");
    size_t len;
    uint8_t *echo = slurp(apps, "echo", &len);
    enum { NIDLE = 2000 };
    long before = status_kib("VmRSS"), pte_before = status_kib("VmPTE");
    for (int i = 0; i < NIDLE; i++) {
        snprintf(id, sizeof id, "idle-%d", i);
        if (uqi_node_spawn(node, id, echo, len, false, NULL, &em)) die("spawn", em.text);
    }
    usleep(300000);
    long after = status_kib("VmRSS"), pte_after = status_kib("VmPTE");
    printf("kernel_idle_process_kib %.1f KiB\n", (double)(after - before) / NIDLE);
    /* not in VmRSS: each 8 GiB reservation has page-table pages of its own */
    printf("kernel_idle_process_pagetables_kib %.1f KiB\n", (double)(pte_after - pte_before) / NIDLE);
    free(echo);
    }
    fflush(stdout);
    _exit(0); /* the node's processes run forever: no orderly teardown needed */
}
