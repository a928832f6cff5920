/* Issue 6 over a real (emulated) network: two network namespaces joined by
 * netem or tunem (tnetns.h), with delay, jitter and loss each way, a link
 * cut in the middle of a large transfer, a peer killed (-9) and restarted
 * during traffic, a tampered packet and a wrong key.
 *
 * Node a.node is a real kernel in this test process (its net thread lives
 * in namespace a), so the test sees every response and error its port gets,
 * with the context; node b.node is `uqbar boot` (one OS process, in
 * namespace b) running the public echo and tally apps (tally persists its
 * count before it answers: an answered add is durable). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "knode.h"
#include "net/netmod.h"
#include "tboot.h"
#include "tnet.h"
#include "tnetns.h"

#define A_LISTEN TNS_IP_A ":7101"
#define B_LISTEN TNS_IP_B ":7102"

/* ---- b.node: `uqbar boot` in namespace b, its output kept by a thread ---- */
typedef struct bproc {
    const char *ns;
    char home[1200], manifest[1300];
    pid_t pid;
    int in, out;
    pthread_t reader;
    pthread_mutex_t mu;
    char *log;                  /* everything it printed */
    size_t len, cap, seen;      /* seen: bp_expect has looked up to here */
} bproc;

static void *bp_read(void *arg)
{
    bproc *b = arg;
    char buf[4096];
    ssize_t n;
    while ((n = read(b->out, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        if (n <= 0) continue;
        if (getenv("UQ_NET_DEBUG")) fprintf(stderr, "[b.node] %.*s", (int)n, buf);
        pthread_mutex_lock(&b->mu);
        if (b->len + (size_t)n + 1 > b->cap) {
            b->cap = (b->len + (size_t)n + 1) * 2;
            b->log = realloc(b->log, b->cap);
            ASSERT(b->log != NULL);
        }
        memcpy(b->log + b->len, buf, (size_t)n);
        b->len += (size_t)n;
        b->log[b->len] = '\0';
        pthread_mutex_unlock(&b->mu);
    }
    return NULL;
}

static void bp_boot(bproc *b, bool install)
{
    char exe[1100];
    snprintf(exe, sizeof exe, "%s/uqbar", tb_build());
    const char *argv[20] = {exe, "boot", "--home", b->home, "--name", "b.node", "--listen", B_LISTEN,
                            "--dev-unencrypted-key", "--net-timeout", "3000", "--net-keepalive", "300",
                            "--workers", "1"};
    int k = 15;
    if (install) argv[k++] = "--install", argv[k++] = b->manifest, argv[k++] = "--yes";
    argv[k] = NULL;
    b->pid = tboot_spawn(argv, b->ns, 0, &b->in, &b->out);
    pthread_create(&b->reader, NULL, bp_read, b);
}

/* Wait until b's output (after what earlier calls matched) holds want. */
static bool bp_expect(bproc *b, const char *want, int ms)
{
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        char *hit = b->log ? strstr(b->log + b->seen, want) : NULL;
        if (hit) {
            char *nl = strchr(hit, '\n');
            b->seen = nl ? (size_t)(nl + 1 - b->log) : b->len;
        }
        pthread_mutex_unlock(&b->mu);
        if (hit) return true;
        if (uqi_now_ns() >= end) return false;
        usleep(10000);
    }
}

/* The line of b's output holding want (anywhere), copied to out. */
static bool bp_line(bproc *b, const char *want, char *out, size_t cap)
{
    pthread_mutex_lock(&b->mu);
    char *hit = b->log ? strstr(b->log, want) : NULL;
    if (hit) {
        char *start = hit;
        while (start > b->log && start[-1] != '\n') start--;
        size_t n = strcspn(start, "\n");
        snprintf(out, cap, "%.*s", (int)n, start);
    }
    pthread_mutex_unlock(&b->mu);
    return hit != NULL;
}

/* End it: kill -9 (sig = SIGKILL), or exit from its terminal. */
static void bp_stop(bproc *b, int sig)
{
    if (sig) kill(b->pid, sig);
    else if (write(b->in, "exit\n", 5) != 5) kill(b->pid, SIGTERM);
    int st;
    for (int i = 0; waitpid(b->pid, &st, WNOHANG) == 0; i++) {
        if (i == 1000) { /* 10 s: it hangs; say so, and end it */
            test_log("b.node did not exit within 10 s: killed");
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
            break;
        }
        usleep(10000);
    }
    close(b->in);
    pthread_join(b->reader, NULL);
    close(b->out);
    b->pid = -1;
}

static void bp_start(bproc *b, const char *ns)
{
    memset(b, 0, sizeof *b);
    b->ns = ns;
    b->pid = -1;
    pthread_mutex_init(&b->mu, NULL);
    char shared[1024], text[3000];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(b->home, sizeof b->home, "%s/b.node", tb_tmpdir());
    snprintf(b->manifest, sizeof b->manifest, "%s/b.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":["
             "{\"process_name\":\"echo\",\"process_wasm_path\":\"%s/apps/echo.wasm\",\"on_exit\":\"None\","
             "\"public\":true,\"request_networking\":true},"
             "{\"process_name\":\"tally\",\"process_wasm_path\":\"%s/apps/tally.wasm\",\"on_exit\":\"Restart\","
             "\"public\":true,\"request_networking\":true}]}",
             shared, shared);
    ASSERT_EQ(uqi_write_file_atomic(b->manifest, text, strlen(text), NULL), UQ_OK);
    /* compiled modules from the tests' cache (content-addressed) */
    char cache[1200];
    snprintf(cache, sizeof cache, "%s/cache-test", shared);
    setenv("UQBAR_CACHE", cache, 1);
    uint64_t t0 = uqi_now_ns();
    bp_boot(b, true);
    if (!bp_expect(b, "is up", 60000)) test_fail(__FILE__, __LINE__, "b.node did not come up:\n%s", b->log);
    test_log("b.node (uqbar boot, netns %s) up in %.0f ms", ns, (double)(uqi_now_ns() - t0) / 1e6);
}

static void bp_fini(bproc *b)
{
    if (b->pid > 0) bp_stop(b, 0);
    free(b->log);
    pthread_mutex_destroy(&b->mu);
}

/* ---- a.node: a kernel in this process, its net thread in namespace a ------ */
typedef struct anode {
    const char *ns;
    uqi_node *n;
    uqn_identity id;
    uqn_net *net;
    uqi_kproc *port;
    char dir[1200];
} anode;

static void *an_net_thread(void *arg)
{
    anode *a = arg;
    tns_enter(a->ns); /* this thread only: the net thread it makes is born there */
    a->net = kn_net_start(a->n, (uqn_net_cfg){.id = &a->id, .listen = A_LISTEN, .dir_path = a->dir,
                                              .send_timeout_ms = 3000, .keepalive_ms = 300, .backoff_min_ms = 20,
                                              .backoff_max_ms = 100});
    return NULL;
}

static void an_start(anode *a, const char *ns)
{
    memset(a, 0, sizeof *a);
    a->ns = ns;
    snprintf(a->dir, sizeof a->dir, "%s/a-peers", tb_tmpdir());
    tn_identity("a.node", 0, &a->id);
    a->n = kn_boot_as("a.node", a->id.sk, 1);
    uq_errmsg em = {{0}};
    pthread_t t;
    pthread_create(&t, NULL, an_net_thread, a);
    pthread_join(t, NULL);
    uqi_node_set_net(a->n, a->net);
    ASSERT_EQ(uqi_node_port(a->n, "tester", &a->port, &em), UQ_OK);
}

static void an_stop(anode *a)
{
    uqi_node_set_net(a->n, NULL);
    uqn_net_stop(a->net);
    uqi_node_stop(a->n);
}

/* The directory files of both nodes: a.node's and b.node's records, either
 * true, or with another key under the name (wrong_a: b.node is told a wrong
 * key for a.node; wrong_b: a.node is told a wrong key for b.node). */
static void record_text(const uqn_identity *id, const char *addr, char *out, size_t cap)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/one-record", tb_tmpdir());
    uqn_dir *d = uqn_dir_new();
    tn_dir_add(d, id, addr);
    ASSERT_EQ(uqn_dir_save(d, path, NULL), UQ_OK);
    uqn_dir_free(d);
    uint8_t *t;
    size_t n;
    ASSERT_EQ(uqi_read_file(path, &t, &n, NULL), UQ_OK);
    snprintf(out, cap, "%.*s", (int)n, (char *)t);
    free(t);
}

static void write_dirs(anode *a, bproc *b, bool wrong_a, bool wrong_b)
{
    char ra[1024], rb[1024], rwa[1024], rwb[1024], text[4200], path[1300];
    uqn_identity other;
    record_text(&a->id, A_LISTEN, ra, sizeof ra);
    tn_identity("a.node", 1, &other);
    record_text(&other, A_LISTEN, rwa, sizeof rwa);
    tn_identity("b.node", 1, &other);
    record_text(&other, B_LISTEN, rwb, sizeof rwb);
    snprintf(path, sizeof path, "%s/record", b->home);
    uint8_t *r;
    size_t n;
    ASSERT_EQ(uqi_read_file(path, &r, &n, NULL), UQ_OK);
    snprintf(rb, sizeof rb, "%.*s", (int)n, (char *)r);
    free(r);
    snprintf(text, sizeof text, "%s%s\n", ra, wrong_b ? rwb : rb);
    ASSERT_EQ(uqi_write_file_atomic(a->dir, text, strlen(text), NULL), UQ_OK);
    snprintf(text, sizeof text, "%s%s\n", wrong_a ? rwa : ra, rb);
    snprintf(path, sizeof path, "%s/peers", b->home);
    ASSERT_EQ(uqi_write_file_atomic(path, text, strlen(text), NULL), UQ_OK);
    usleep(20000); /* a later rewrite gets another mtime */
}

/* ---- requests from a.node's port, and what comes back -------------------- */
static uqi_payload *pattern(int i, size_t len)
{
    if (!len) return NULL;
    uint8_t *d = uqi_xmalloc(len);
    for (size_t j = 0; j < len; j++) d[j] = (uint8_t)(j * 31 + (size_t)i * 7);
    uqi_payload *p = uqi_payload_new(d, len, "application/octet-stream");
    free(d);
    return p;
}

static bool pattern_ok(const uqi_payload *p, int i, size_t len)
{
    if (!len) return p == NULL;
    if (!p || p->len != len) return false;
    for (size_t j = 0; j < len; j++)
        if (p->data[j] != (uint8_t)(j * 31 + (size_t)i * 7)) return false;
    return true;
}

static uint64_t a_send(anode *a, const char *target, const char *body, const char *ctx, uqi_payload *pl)
{
    return kn_send(a->port, "a.node", target, body, 30, ctx, pl, UQ_OK);
}

/* The context as text (in a static buffer). */
static const char *ctx_of(const uqi_msg *m)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%.*s", (int)(m->context_len < 127 ? m->context_len : 127), (const char *)m->context);
    return buf;
}

static long long count_of(const uqi_msg *m)
{
    char *b = kn_str(m->body, m->body_len);
    char *c = strstr(b, "\"count\":");
    long long v = c ? strtoll(c + 8, NULL, 10) : -1;
    free(b);
    return v;
}

/* One request, its answer (or error) within ms; NULL if nothing came. */
static uqi_msg *a_call(anode *a, const char *target, const char *body, const char *ctx, int ms)
{
    uint64_t id = a_send(a, target, body, ctx, NULL);
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        uint64_t now = uqi_now_ns();
        uqi_msg *m = now < end ? uqi_port_receive(a->port, (int)((end - now) / 1000000ull) + 1) : NULL;
        if (!m || (m->id == id && strcmp(ctx_of(m), ctx) == 0)) return m;
        test_fail(__FILE__, __LINE__, "unexpected message %llu (context %s) while waiting for %s",
                  (unsigned long long)m->id, ctx_of(m), ctx);
    }
}

/* Call until a response comes (the link set up, a back-off over). */
static uqi_msg *a_call_until_answered(anode *a, const char *target, const char *body, int ms)
{
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    static int k;
    while (uqi_now_ns() < end) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "retry-%d", k++);
        uqi_msg *m = a_call(a, target, body, ctx, 5000);
        if (m && m->kind == UQI_MSG_RESPONSE) return m;
        uqi_msg_free(m);
        usleep(50000);
    }
    test_fail(__FILE__, __LINE__, "%s did not answer within %d ms", target, ms);
}

/* What became of each request of a run: exactly one outcome each. */
typedef struct track {
    int n;
    uint64_t *id;
    int *outcomes;              /* messages seen for it */
    uqi_msg_kind *kind;
    uint32_t *err;
    long long *count;           /* tally: the count in its response */
    size_t *plen;
    bool *tally;                /* to tally (adds) rather than echo */
    char tag;
} track;

static void track_init(track *t, char tag, int cap)
{
    memset(t, 0, sizeof *t);
    t->tag = tag;
    t->id = uqi_xcalloc((size_t)cap, sizeof *t->id);
    t->outcomes = uqi_xcalloc((size_t)cap, sizeof *t->outcomes);
    t->kind = uqi_xcalloc((size_t)cap, sizeof *t->kind);
    t->err = uqi_xcalloc((size_t)cap, sizeof *t->err);
    t->count = uqi_xcalloc((size_t)cap, sizeof *t->count);
    t->plen = uqi_xcalloc((size_t)cap, sizeof *t->plen);
    t->tally = uqi_xcalloc((size_t)cap, sizeof *t->tally);
}

static void track_free(track *t)
{
    free(t->id), free(t->outcomes), free(t->kind), free(t->err), free(t->count), free(t->plen), free(t->tally);
}

/* Send request number t->n: to echo with body {"i":N} and a payload of
 * plen bytes, or (plen < 0) to tally, adding 1. */
static void track_send(anode *a, track *t, long plen)
{
    int i = t->n++;
    char ctx[32], body[64];
    snprintf(ctx, sizeof ctx, "%c%d", t->tag, i);
    if (plen < 0) {
        t->id[i] = a_send(a, "b.node@tally", "{\"add\":1}", ctx, NULL);
        t->plen[i] = 0;
        t->tally[i] = true;
    } else {
        snprintf(body, sizeof body, "{\"i\":%d}", i);
        t->plen[i] = (size_t)plen;
        t->id[i] = a_send(a, "b.node@echo", body, ctx, pattern(i, (size_t)plen));
    }
}

/* Take one message from the port (within ms) and check it against the run:
 * one of ours, for its id, not seen before, with its body, payload and
 * context; an error only Offline or Timeout. Returns its index, or -1 if
 * nothing came. */
static int track_take(anode *a, track *t, int ms)
{
    uqi_msg *m = uqi_port_receive(a->port, ms);
    if (!m) return -1;
    const char *ctx = ctx_of(m);
    int i = ctx[0] == t->tag ? atoi(ctx + 1) : -1;
    if (i < 0 || i >= t->n || m->id != t->id[i])
        test_fail(__FILE__, __LINE__, "a message not of this run: id %llu, context %s, kind %d",
                  (unsigned long long)m->id, ctx, (int)m->kind);
    if (++t->outcomes[i] != 1)
        test_fail(__FILE__, __LINE__, "request %s answered twice (now kind %d error %u; first kind %d error %u)", ctx,
                  (int)m->kind, m->error, (int)t->kind[i], t->err[i]);
    t->kind[i] = m->kind;
    t->err[i] = m->error;
    char body[64];
    if (t->tally[i]) snprintf(body, sizeof body, "{\"add\":1}");
    else snprintf(body, sizeof body, "{\"i\":%d}", i);
    if (m->kind == UQI_MSG_RESPONSE) {
        if (t->tally[i]) {
            t->count[i] = count_of(m);
            ASSERT(t->count[i] > 0);
        } else {
            if (!kn_body_is(m, body)) test_fail(__FILE__, __LINE__, "response %s: wrong body", ctx);
            if (!pattern_ok(m->payload, i, t->plen[i])) test_fail(__FILE__, __LINE__, "response %s: payload altered", ctx);
        }
    } else {
        ASSERT_EQ(m->kind, UQI_MSG_ERROR);
        if (m->error != UQI_SEND_OFFLINE && m->error != UQI_SEND_TIMEOUT)
            test_fail(__FILE__, __LINE__, "request %s: error %u", ctx, m->error);
        /* the original message, payload and context come back */
        if (!kn_body_is(m, body)) test_fail(__FILE__, __LINE__, "error %s: not the original body", ctx);
        if (!pattern_ok(m->payload, i, t->plen[i])) test_fail(__FILE__, __LINE__, "error %s: not the original payload", ctx);
    }
    uqi_msg_free(m);
    return i;
}

/* Wait until every request of the run has its outcome, then make sure
 * nothing more comes (no second answer). */
static void track_drain(anode *a, track *t, int ms)
{
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        int open = 0;
        for (int i = 0; i < t->n; i++) open += t->outcomes[i] == 0;
        if (!open) break;
        if (uqi_now_ns() >= end) test_fail(__FILE__, __LINE__, "%d requests of %d got no answer and no error", open, t->n);
        track_take(a, t, 100);
    }
    if (track_take(a, t, 300) >= 0) test_fail(__FILE__, __LINE__, "a message after every request had its outcome");
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Median round trip of n sequential requests to echo, in ms. */
static double median_rt(anode *a, int n)
{
    double v[64];
    for (int i = 0; i < n; i++) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "rt-%d", i);
        uint64_t t0 = uqi_now_ns();
        uqi_msg *m = a_call(a, "b.node@echo", "{\"rt\":1}", ctx, 5000);
        if (!m || m->kind != UQI_MSG_RESPONSE) test_fail(__FILE__, __LINE__, "round trip %d not answered", i);
        v[i] = (double)(uqi_now_ns() - t0) / 1e6;
        uqi_msg_free(m);
    }
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

/* What this process writes to stderr (a.node's log), copied aside while
 * it still reaches the terminal. */
static struct {
    int saved, pipe_r;
    pthread_t th;
    char buf[65536];
    size_t len;
} errtee;

static void *tee_main(void *arg)
{
    char b[4096];
    ssize_t n;
    while ((n = read(errtee.pipe_r, b, sizeof b)) > 0) {
        if (write(errtee.saved, b, (size_t)n) < 0) { /* the terminal went away: keep the copy */
        }
        size_t k = (size_t)n < sizeof errtee.buf - 1 - errtee.len ? (size_t)n : sizeof errtee.buf - 1 - errtee.len;
        memcpy(errtee.buf + errtee.len, b, k);
        errtee.len += k;
    }
    return NULL;
}

static void tee_start(void)
{
    int p[2];
    ASSERT(pipe2(p, O_CLOEXEC) == 0);
    fflush(stderr);
    errtee.saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
    ASSERT(errtee.saved >= 0);
    dup2(p[1], 2);
    close(p[1]);
    errtee.pipe_r = p[0];
    errtee.len = 0;
    pthread_create(&errtee.th, NULL, tee_main, NULL);
}

/* Stop copying; what was written meanwhile (NUL-terminated, static). */
static char *tee_stop(void)
{
    fflush(stderr);
    dup2(errtee.saved, 2); /* the pipe's last writer gone: the thread sees its end */
    pthread_join(errtee.th, NULL);
    close(errtee.pipe_r);
    close(errtee.saved);
    errtee.buf[errtee.len] = '\0';
    return errtee.buf;
}

typedef struct rig {
    tns t;
    anode a;
    bproc b;
} rig;

static bool rig_up(rig *r, const tns_shape *sh, bool need_tunem)
{
    signal(SIGPIPE, SIG_IGN);
    if (!tns_up(&r->t, sh, need_tunem)) return false;
    bp_start(&r->b, r->t.b);
    an_start(&r->a, r->t.a);
    write_dirs(&r->a, &r->b, false, false);
    return true;
}

static void rig_down(rig *r)
{
    an_stop(&r->a);
    bp_fini(&r->b);
    tns_down(&r->t);
}

/* ---- tests ---------------------------------------------------------------- */

/* 5 ms (+-1 ms) and 1% loss each way: every request is answered once, with
 * its context and intact payload, and the round trip grows by the delay. */
TEST_T(net_netns_delay_loss_every_request_answered_once, 90)
{
    rig r;
    tns_shape none = {0};
    if (!rig_up(&r, &none, false)) return;
    uqi_msg_free(a_call_until_answered(&r.a, "b.node@echo", "{\"warm\":1}", 10000));
    double rt0 = median_rt(&r.a, 15);
    tns_shape sh = {.delay_ms = 5, .jitter_ms = 1, .loss = 1};
    tns_set(&r.t, &sh);
    double rt1 = median_rt(&r.a, 15);

    enum { N = 400, WINDOW = 48 };
    track t;
    track_init(&t, 'r', N);
    uint64_t t0 = uqi_now_ns();
    int inflight = 0;
    while (t.n < N || inflight > 0) {
        while (t.n < N && inflight < WINDOW) {
            /* mostly small; every 50th 256 KiB (loss recovery in bulk) */
            track_send(&r.a, &t, t.n % 50 == 25 ? 256 * 1024 : (t.n * 37) % 1500);
            inflight++;
        }
        int i = track_take(&r.a, &t, 20000);
        if (i < 0) test_fail(__FILE__, __LINE__, "nothing came back for 20 s (%d in flight)", inflight);
        if (t.kind[i] != UQI_MSG_RESPONSE) test_fail(__FILE__, __LINE__, "request r%d failed with error %u", i, t.err[i]);
        inflight--;
    }
    double ms = (double)(uqi_now_ns() - t0) / 1e6;
    track_drain(&r.a, &t, 1000);
    unsigned long long ab = tns_stat(&r.t, "a2b", "bytes"), ba = tns_stat(&r.t, "b2a", "bytes");
    if (!r.t.netem) { /* the emulation is what it says: about 1% of the packets lost each way */
        for (int d = 0; d < 2; d++) {
            const char *dir = d ? "b2a" : "a2b";
            unsigned long long rd = tns_stat(&r.t, dir, "read"), lost = tns_stat(&r.t, dir, "loss");
            test_log("tunem %s: %llu of %llu packets lost (%.2f%%)", dir, lost, rd, 100.0 * (double)lost / (double)rd);
            ASSERT(rd > 2000 && lost * 1000 >= rd * 3 && lost * 1000 <= rd * 25); /* 0.3%% .. 2.5%% */
        }
    }
    test_log("%d requests (%d in flight; every 50th with 256 KiB) over %s at 5+-1 ms and 1%% loss each way: "
             "all answered once in %.0f ms; round trip median %.2f ms without delay, %.2f ms with (+%.2f); "
             "%llu bytes a->b, %llu b->a",
             N, WINDOW, r.t.netem ? "netem" : "tunem", ms, rt0, rt1, rt1 - rt0, ab, ba);
    /* two crossings of 5 +- 1 ms each */
    ASSERT(rt1 - rt0 >= 8.0);
    ASSERT(rt1 - rt0 <= 40.0);
    track_free(&t);
    rig_down(&r);
}

/* The link cut in the middle of an 8 MiB transfer: the requester gets its
 * message back (Offline, or Timeout) with payload and context; what tally
 * acknowledged is still counted after the link comes back; nothing is
 * answered twice; the link then carries a large transfer again. */
TEST_T(net_netns_link_cut_mid_transfer_then_recovery, 90)
{
    rig r;
    tns_shape sh = {.delay_ms = 2, .rate_mbit = 80}; /* 10 MB/s: 8 MiB take about 0.8 s */
    if (!rig_up(&r, &sh, false)) return;
    uqi_msg_free(a_call_until_answered(&r.a, "b.node@echo", "{\"warm\":1}", 10000));
    track t;
    track_init(&t, 'c', 64);
    long long acked = 0;
    for (int k = 0; k < 10; k++) { /* acknowledged adds */
        track_send(&r.a, &t, -1);
        int i = track_take(&r.a, &t, 5000);
        ASSERT(i >= 0 && t.kind[i] == UQI_MSG_RESPONSE);
        acked = t.count[i];
    }
    unsigned long long before = tns_stat(&r.t, "a2b", "bytes");
    enum { BIG = 8 << 20 };
    int big = t.n;
    track_send(&r.a, &t, BIG);
    for (int k = 0; k < 10; k++) track_send(&r.a, &t, -1); /* behind it, or beside it in chunks */
    uint64_t t0 = uqi_now_ns();
    unsigned long long moved = 0;
    while ((moved = tns_stat(&r.t, "a2b", "bytes") - before) < (2u << 20) && uqi_now_ns() - t0 < 10000000000ull)
        usleep(20000);
    tns_cut(&r.t, true);
    test_log("link cut after %.0f ms, %.2f MiB of the %d MiB message through", (double)(uqi_now_ns() - t0) / 1e6,
             (double)moved / 1048576.0, BIG >> 20);
    ASSERT(moved >= (2u << 20) && moved < (unsigned long long)BIG);
    /* while it is cut, a new request fails too, with its context */
    track_send(&r.a, &t, 100);
    track_drain(&r.a, &t, 15000);
    int offline = 0, timeout = 0, answered = 0;
    for (int i = big + 1; i < t.n; i++) {
        offline += t.kind[i] == UQI_MSG_ERROR && t.err[i] == UQI_SEND_OFFLINE;
        timeout += t.kind[i] == UQI_MSG_ERROR && t.err[i] == UQI_SEND_TIMEOUT;
        if (t.kind[i] == UQI_MSG_RESPONSE) {
            answered++;
            if (t.count[i] > acked) acked = t.count[i];
        }
    }
    test_log("after the cut: the %d MiB request came back %s with its payload and context; of the %d after it: "
             "%d Offline, %d Timeout, %d answered", BIG >> 20,
             t.kind[big] != UQI_MSG_ERROR ? "ANSWERED" : t.err[big] == UQI_SEND_OFFLINE ? "Offline" : "Timeout",
             t.n - big - 1, offline, timeout, answered);
    ASSERT_EQ(t.kind[big], UQI_MSG_ERROR); /* checked in track_take: with its 8 MiB and context */
    ASSERT_EQ(t.kind[t.n - 1], UQI_MSG_ERROR);

    /* the link back: what tally acknowledged is there */
    tns_cut(&r.t, false);
    uint64_t t1 = uqi_now_ns();
    uqi_msg *m = a_call_until_answered(&r.a, "b.node@tally", "{\"get\":1}", 15000);
    long long count = count_of(m);
    uqi_msg_free(m);
    test_log("link back: answered again after %.0f ms; tally counts %lld (acknowledged: %lld, sent: 20)",
             (double)(uqi_now_ns() - t1) / 1e6, count, acked);
    ASSERT(count >= acked && count <= 20);
    /* and a large transfer crosses it whole */
    track_send(&r.a, &t, 4 << 20);
    track_drain(&r.a, &t, 15000);
    ASSERT_EQ(t.kind[t.n - 1], UQI_MSG_RESPONSE);
    track_free(&t);
    rig_down(&r);
}

/* b.node killed (-9) in the middle of traffic at 5 ms and 1% loss, then
 * restarted: every request ends once (answered, or Offline/Timeout with its
 * context), and no add tally acknowledged before the kill is lost. */
TEST_T(net_netns_peer_killed_and_restarted_during_traffic, 90)
{
    rig r;
    tns_shape sh = {.delay_ms = 5, .jitter_ms = 1, .loss = 1};
    if (!rig_up(&r, &sh, false)) return;
    uqi_msg_free(a_call_until_answered(&r.a, "b.node@tally", "{\"get\":1}", 10000));
    enum { CAP = 20000, WINDOW = 16 };
    track t;
    track_init(&t, 'k', CAP);
    int inflight = 0, phase = 0, acked_after = 0, errors = 0;
    long long acked_before = 0, first_after = -1;
    uint64_t killed_at = 0, t0 = uqi_now_ns();
    while (phase < 3 || inflight > 0) {
        while (phase < 3 && inflight < WINDOW && t.n < CAP) {
            track_send(&r.a, &t, -1);
            inflight++;
        }
        int i = track_take(&r.a, &t, 200);
        if (i >= 0) {
            inflight--;
            if (t.kind[i] == UQI_MSG_RESPONSE) {
                if (phase <= 1) { /* phase 1: written by b.node before it died */
                    if (t.count[i] > acked_before) acked_before = t.count[i];
                } else {
                    if (first_after < 0) first_after = t.count[i];
                    acked_after++;
                }
            } else {
                errors++;
                usleep(20000); /* do not spin on a peer in back-off */
            }
        }
        if (phase == 0 && acked_before >= 80) {
            kill(r.b.pid, SIGKILL);
            killed_at = uqi_now_ns();
            phase = 1;
        } else if (phase == 1 && uqi_now_ns() - killed_at > 300000000ull) {
            bp_stop(&r.b, SIGKILL); /* reaped */
            bp_boot(&r.b, false);   /* the same home: its store brings tally back with its count */
            phase = 2;
        } else if (phase == 2 && acked_after >= 80) {
            phase = 3;
        }
        if (uqi_now_ns() - t0 > 60000000000ull) test_fail(__FILE__, __LINE__, "stuck in phase %d", phase);
    }
    track_drain(&r.a, &t, 10000);
    ASSERT(bp_expect(&r.b, "restored 2 processes", 1000));
    uqi_msg *m = a_call_until_answered(&r.a, "b.node@tally", "{\"get\":1}", 10000);
    long long count = count_of(m);
    uqi_msg_free(m);
    test_log("%d adds in %.0f ms: acknowledged up to count %lld before the kill -9; %d errors (Offline/Timeout, each "
             "with its context) while down; first count after the restart %lld; tally ends at %lld",
             t.n, (double)(uqi_now_ns() - t0) / 1e6, acked_before, errors, first_after, count);
    /* an acknowledged add survived the kill; nothing counted that was not sent */
    ASSERT(first_after > acked_before);
    ASSERT(count >= acked_before + acked_after && count <= t.n);
    ASSERT(errors > 0);
    track_free(&t);
    rig_down(&r);
}

/* A wrong key, either side: the handshake is refused and the request comes
 * back Offline with its context. A packet with one byte altered (the TCP
 * checksum fixed, so only the Noise tag can tell), either way: the receiver
 * refuses the frame and closes the link with a clear error; no altered
 * message is delivered; the requester gets Offline with its message. */
TEST_T(net_netns_wrong_key_and_tampered_frame_refused, 90)
{
    rig r;
    tns_shape sh = {.delay_ms = 1};
    if (!rig_up(&r, &sh, true)) return;
    char line[1024];

    /* a.node is told another key for b.node */
    write_dirs(&r.a, &r.b, false, true);
    uqi_msg *m = a_call(&r.a, "b.node@echo", "{\"k\":1}", "wrong-key-of-b", 10000);
    ASSERT(m && m->kind == UQI_MSG_ERROR && m->error == UQI_SEND_OFFLINE && kn_body_is(m, "{\"k\":1}"));
    uqi_msg_free(m);
    /* b.node is told another key for a.node */
    write_dirs(&r.a, &r.b, true, false);
    usleep(150000); /* a.node's back-off after the failed dial */
    m = a_call(&r.a, "b.node@echo", "{\"k\":2}", "wrong-key-of-a", 10000);
    ASSERT(m && m->kind == UQI_MSG_ERROR && m->error == UQI_SEND_OFFLINE && kn_body_is(m, "{\"k\":2}"));
    uqi_msg_free(m);
    ASSERT(bp_expect(&r.b, "refused", 3000));
    ASSERT(bp_line(&r.b, "has key", line, sizeof line));
    test_log("wrong key: a.node -> Offline both ways; b.node logged: %s", line);
    /* the true keys: the next handshake passes */
    write_dirs(&r.a, &r.b, false, false);
    uqi_msg_free(a_call_until_answered(&r.a, "b.node@echo", "{\"k\":3}", 10000));

    /* a byte altered a -> b in a 1 MiB request */
    track t;
    track_init(&t, 'x', 16);
    tns_tamper(&r.t, "a2b", 1000);
    int i = t.n;
    track_send(&r.a, &t, 1 << 20);
    track_drain(&r.a, &t, 10000);
    tns_stat(&r.t, "a2b", "bytes"); /* reads tunem's report */
    ASSERT_EQ(r.t.tampered, 1);
    ASSERT(t.kind[i] == UQI_MSG_ERROR && t.err[i] == UQI_SEND_OFFLINE); /* its payload and context: track_take */
    ASSERT(bp_expect(&r.b, "link from a.node refused", 3000));
    ASSERT(bp_line(&r.b, "link from a.node refused", line, sizeof line));
    test_log("tampered a->b: request came back Offline; b.node logged: %s", line);
    ASSERT_STR_HAS(line, "failed authentication");

    /* a byte altered b -> a in echo's 1 MiB answer; a.node's log is caught */
    uqi_msg_free(a_call_until_answered(&r.a, "b.node@echo", "{\"k\":4}", 10000));
    tee_start();
    tns_tamper(&r.t, "b2a", 1000);
    i = t.n;
    track_send(&r.a, &t, 1 << 20);
    track_drain(&r.a, &t, 10000); /* no altered answer: track_take checks every byte */
    char *text = tee_stop(), *hit = strstr(text, "link to b.node refused");
    tns_stat(&r.t, "b2a", "bytes");
    ASSERT_EQ(r.t.tampered, 2);
    ASSERT(t.kind[i] == UQI_MSG_ERROR && t.err[i] == UQI_SEND_OFFLINE);
    if (!hit) test_fail(__FILE__, __LINE__, "a.node did not log the refusal");
    test_log("tampered b->a: the answer was refused, the request came back Offline; a.node logged: %.*s",
             (int)strcspn(hit, "\n"), hit);
    ASSERT(strstr(hit, "failed authentication") != NULL);
    /* and the link comes back */
    uqi_msg_free(a_call_until_answered(&r.a, "b.node@echo", "{\"k\":5}", 10000));
    track_free(&t);
    rig_down(&r);
}
