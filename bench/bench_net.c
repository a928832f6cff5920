/* Network benchmarks (issue 6): node a (a real kernel with its net module)
 * and node b (a bare net module that answers in its receive callback), over
 * loopback TCP, Noise-encrypted. Prints `name value unit` lines:
 *   net_remote_roundtrip_median_us / _p99_us   request from a host port on a to b and
 *                                               the response back, one at a time
 *   net_remote_roundtrip_kernels_median_us / _p99_us
 *                                               the same to a wasm echo process on node c, a
 *                                               real kernel too (with APPS_DIR): what a process sees
 *   net_small_msgs_per_s                        one-way requests (16-byte body) a -> b
 *   net_bulk_mb_per_s                           8 MiB payloads a -> b (MB = 10^6 bytes)
 *   net_link_setup_us                           first contact: TCP connect + Noise XX + first message (median)
 *   net_link_resume_us                          a reconnect with a ticket: TCP + Noise NNpsk0 + first message
 *   net_link_setup_keys_on_path, net_link_resume_keys_on_path
 *                                               ephemeral key pairs made on a handshake's path (the
 *                                               pool was empty) in those 200 setups, of 400 taken
 *   net_small_in_msgs_per_s                     one-way requests b -> a: a real kernel receives (into a
 *                                               host port drained by a thread), b a bare net module sends
 *   net_bulk_in_mb_per_s                        8 MiB payloads b -> a, the same way
 * and, to explain them, the parts:
 *   libsodium_chacha20_poly1305_64k_mb_per_s   libsodium's AEAD alone on 64 KiB (a frame)
 *   net_cipher_64k_mb_per_s                     the link's cipher (uqn_cipher_encrypt) on a frame
 *   net_setup_tcp_connect_us                    loopback TCP connect + accept, no bytes (median)
 *   net_setup_handshake_us                      two links doing Noise XX + hellos in memory (median)
 *   net_setup_resume_handshake_us               the same resuming with a ticket (NNpsk0)
 *   net_setup_x25519_us, net_setup_ed25519_sign_us, net_setup_ed25519_verify_us
 * (with _cpu_ figures: CPU time of the whole process per message / per KB).
 * UQBAR_BENCH_ONLY=rt|rt_kernels|small|bulk|small_in|bulk_in|setup|crypto runs one phase.
 * Usage: bench_net CACHE_DIR [APPS_DIR] */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/kernel.h"
#include "kernel/remote.h"
#include "net/netmod.h"

static uqn_net *bnet;
static _Atomic uint64_t got_msgs, got_bytes;
/* the link-setup phase sleeps until b has a message (no polling thread
 * competing with the two net threads for the cores) */
static _Atomic bool waiter;
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wcv = PTHREAD_COND_INITIALIZER;

static void b_recv(void *arg, const char *peer, const uint8_t *msg, size_t len)
{
    got_bytes += len;
    uqi_msg *m;
    if (uqi_wire_decode(msg, len, peer, "b.bench", &m, NULL) == UQ_OK) {
        if (m->kind == UQI_MSG_REQUEST && m->expects_response_s) {
            uqi_msg *r = uqi_msg_new(UQI_MSG_RESPONSE, m->body, m->body_len);
            r->id = m->id;
            r->source = m->target;
            r->target = m->source;
            uint8_t *b;
            size_t bl;
            if (uqi_wire_encode(r, false, &b, &bl, NULL) == UQ_OK && uqn_net_send(bnet, peer, b, bl, NULL, NULL))
                free(b);
            uqi_msg_free(r);
        }
        uqi_msg_free(m);
    }
    got_msgs++;
    if (waiter) {
        pthread_mutex_lock(&wmu);
        pthread_cond_broadcast(&wcv);
        pthread_mutex_unlock(&wmu);
    }
}

static void seed_id(const char *name, uint8_t tag, uqn_identity *id)
{
    uint8_t seed[32];
    memset(seed, tag, sizeof seed);
    if (uqn_identity_from_seed(name, seed, id, NULL)) abort();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uqi_msg *req(const char *body, uint32_t expects)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    uqi_addr_parse("b.bench@echo", "a.bench", &m->target, NULL);
    m->expects_response_s = expects;
    return m;
}

/* A one-way "hi" from cn to b, timed from the send until b's callback has
 * it (a link set up on the way, if cn has none). */
static uint64_t hi_to_b(uqn_net *cn)
{
    uqi_msg *m = req("\"hi\"", 0);
    snprintf(m->source.process, sizeof m->source.process, "x");
    uint8_t *b;
    size_t bl;
    uqi_wire_encode(m, false, &b, &bl, NULL);
    uqi_msg_free(m);
    pthread_mutex_lock(&wmu);
    waiter = true;
    uint64_t base = got_msgs, t0 = uqi_now_ns();
    uqn_net_send(cn, "b.bench", b, bl, NULL, NULL);
    while (got_msgs == base) pthread_cond_wait(&wcv, &wmu);
    uint64_t t = uqi_now_ns() - t0;
    waiter = false;
    pthread_mutex_unlock(&wmu);
    return t;
}

/* send, retrying while the queue is full (backpressure) */
static void send_retry(uqi_kproc *port, uqi_msg *m)
{
    uq_errmsg em;
    uq_err e;
    while ((e = uqi_kernel_send(port, m, NULL, 0, NULL, &em)) == UQ_ELIMIT) usleep(50);
    if (e) {
        fprintf(stderr, "bench_net: %s\n", em.text);
        exit(1);
    }
}

/* ---- a real kernel receiving: b sends, a's port "sink" takes ------------------------- */
static _Atomic uint64_t sink_msgs, sink_bytes;
static _Atomic bool sink_stop;

static void *sink_main(void *arg)
{
    uqi_kproc *port = arg;
    while (!sink_stop) {
        uqi_msg *m = uqi_port_receive(port, 100);
        if (!m) continue;
        sink_bytes += m->body_len + (m->payload ? m->payload->len : 0);
        sink_msgs++;
        uqi_msg_free(m);
    }
    return NULL;
}

/* b's wire encoding of a one-way request b.bench@x -> a.bench@sink, without
 * its payload's bytes if it has one (sent from where they are) */
static void in_encode(const char *body, uqi_payload *pl, uint8_t **out, size_t *len)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    snprintf(m->source.process, sizeof m->source.process, "x");
    snprintf(m->target.process, sizeof m->target.process, "sink");
    m->payload = uqi_payload_hold(pl);
    if (uqi_wire_encode_head(m, false, out, len, NULL)) abort();
    uqi_msg_free(m);
}

/* b sends count messages to a (retrying while its queue is full), keeping
 * at most window of them in flight, not yet taken from the sink (a's
 * mailbox refuses past its bound, and a refused one-way message is lost) */
static void in_send(const uint8_t *head, size_t hl, const uint8_t *tail, size_t tl, int count, uint64_t window)
{
    uint64_t base = sink_msgs;
    for (int i = 0; i < count; i++) {
        while ((uint64_t)i - (sink_msgs - base) >= window) usleep(50);
        uint8_t *b = malloc(hl);
        memcpy(b, head, hl);
        while (uqn_net_send_tail(bnet, "a.bench", b, hl, tail, tl, NULL, NULL) == UQ_ELIMIT) usleep(50);
    }
    while (sink_msgs - base < (uint64_t)count) usleep(100);
}

static const char *only;
static bool phase(const char *name) { return !only || !*only || strcmp(only, name) == 0; }

/* CPU time of the whole process (both nodes), seconds: steadier than wall
 * time on a shared machine. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double now_s(void) { return (double)uqi_now_ns() / 1e9; }

/* ---- the parts, alone ------------------------------------------------------------- */
static void bench_crypto(void)
{
    static uint8_t buf[65536 + 16];
    uint8_t k[32] = {1}, nonce[12] = {0};
    size_t sz = 65536 - 16;
    double t0 = now_s(), t;
    uint64_t bytes = 0;
    while ((t = now_s()) - t0 < 0.5) {
        for (int i = 0; i < 16; i++)
            crypto_aead_chacha20poly1305_ietf_encrypt(buf, NULL, buf, sz, NULL, 0, NULL, nonce, k);
        bytes += 16 * sz;
    }
    printf("libsodium_chacha20_poly1305_64k_mb_per_s %.0f MB/s\n", (double)bytes / (t - t0) / 1e6);
    uqn_cipher cs = {{1}, 0, true};
    bytes = 0;
    t0 = now_s();
    while ((t = now_s()) - t0 < 0.5) {
        for (int i = 0; i < 16; i++) uqn_cipher_encrypt(&cs, NULL, 0, buf, sz, buf);
        bytes += 16 * sz;
    }
    printf("net_cipher_64k_mb_per_s %.0f MB/s\n", (double)bytes / (t - t0) / 1e6);
    fflush(stdout);
}

static uq_err hs_lookup(void *arg, const char *name, uint8_t pk[32], uq_errmsg *em)
{
    const uqn_identity *const *ids = arg;
    for (int i = 0; i < 2; i++)
        if (strcmp(ids[i]->name, name) == 0) {
            memcpy(pk, ids[i]->pk, 32);
            return UQ_OK;
        }
    return uqi_errf(em, UQ_ENOENT, "unknown");
}

/* Move bytes from one link's output to the other's input until neither has any. */
static void pump(uqn_link *x, uqn_link *y)
{
    for (bool moved = true; moved;) {
        moved = false;
        uqn_link *pair[2][2] = {{x, y}, {y, x}};
        for (int i = 0; i < 2; i++) {
            const uint8_t *p;
            size_t n;
            while ((n = uqn_link_output(pair[i][0], &p)) > 0) {
                uq_errmsg em;
                if (uqn_link_input(pair[i][1], p, n, &em)) {
                    fprintf(stderr, "bench_net: handshake: %s\n", em.text);
                    exit(1);
                }
                uqn_link_output_done(pair[i][0], n);
                moved = true;
            }
        }
    }
}

static void bench_setup_parts(const uqn_identity *ida, const uqn_identity *idb)
{
    enum { N = 200 };
    static uint64_t t[N];
    /* TCP connect + accept on loopback */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 16) || getsockname(lfd, (struct sockaddr *)&sa, &sl))
        exit(1);
    for (int i = 0; i < N; i++) {
        uint64_t t0 = uqi_now_ns();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) exit(1);
        int afd = accept(lfd, NULL, NULL);
        t[i] = uqi_now_ns() - t0;
        close(fd);
        close(afd);
    }
    close(lfd);
    qsort(t, N, sizeof t[0], cmp_u64);
    printf("net_setup_tcp_connect_us %.1f us\n", (double)t[N / 2] / 1e3);
    /* the handshake alone, both sides on this thread */
    const uqn_identity *ids[2] = {ida, idb};
    for (int i = 0; i < N; i++) {
        uint64_t t0 = uqi_now_ns();
        uqn_link_cfg ca = {.id = ida, .initiator = true, .expect_name = idb->name, .lookup = hs_lookup, .lookup_arg = ids};
        uqn_link_cfg cb = {.id = idb, .lookup = hs_lookup, .lookup_arg = ids};
        uqn_link *la, *lb;
        if (uqn_link_new(&ca, &la, NULL) || uqn_link_new(&cb, &lb, NULL)) exit(1);
        pump(la, lb);
        if (!uqn_link_established(la) || !uqn_link_established(lb)) exit(1);
        t[i] = uqi_now_ns() - t0;
        uqn_link_free(la);
        uqn_link_free(lb);
    }
    qsort(t, N, sizeof t[0], cmp_u64);
    printf("net_setup_handshake_us %.1f us\n", (double)t[N / 2] / 1e3);
    /* a resumption alone (NNpsk0 with the ticket the last link left), both sides on this thread */
    uqn_tickets *ta = uqn_tickets_new(0, 0), *tb = uqn_tickets_new(0, 0);
    for (int i = -1; i < N; i++) {
        uint64_t t0 = uqi_now_ns();
        uqn_link_cfg ca = {.id = ida, .initiator = true, .expect_name = idb->name, .lookup = hs_lookup,
                           .lookup_arg = ids, .tickets = ta};
        uqn_link_cfg cb = {.id = idb, .lookup = hs_lookup, .lookup_arg = ids, .tickets = tb};
        uqn_link *la, *lb;
        if (uqn_link_new(&ca, &la, NULL) || uqn_link_new(&cb, &lb, NULL)) exit(1);
        pump(la, lb);
        if (!uqn_link_established(la) || !uqn_link_established(lb) || uqn_link_resumed(la) != (i >= 0)) exit(1);
        if (i >= 0) t[i] = uqi_now_ns() - t0;
        uqn_link_free(la);
        uqn_link_free(lb);
    }
    uqn_tickets_free(ta);
    uqn_tickets_free(tb);
    qsort(t, N, sizeof t[0], cmp_u64);
    printf("net_setup_resume_handshake_us %.1f us\n", (double)t[N / 2] / 1e3);
    /* the primitives */
    uint8_t sk[32], pk[32], q[32], sig[64], m[100] = {0};
    randombytes_buf(sk, sizeof sk);
    crypto_scalarmult_base(pk, sk);
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < N; i++)
        if (crypto_scalarmult(q, sk, pk)) exit(1);
    printf("net_setup_x25519_us %.1f us\n", (double)(uqi_now_ns() - t0) / N / 1e3);
    t0 = uqi_now_ns();
    for (int i = 0; i < N; i++) uqn_identity_sign(ida, m, sizeof m, sig);
    printf("net_setup_ed25519_sign_us %.1f us\n", (double)(uqi_now_ns() - t0) / N / 1e3);
    t0 = uqi_now_ns();
    for (int i = 0; i < N; i++)
        if (uqn_sig_verify(ida->pk, m, sizeof m, sig)) exit(1);
    printf("net_setup_ed25519_verify_us %.1f us\n", (double)(uqi_now_ns() - t0) / N / 1e3);
    fflush(stdout);
}

/* Node c in a child process: a kernel, its net module, a public echo
 * holding the network capability. Writes its listen address to *addr; it
 * runs until *ctl (the write end of a pipe it reads) is closed. */
static pid_t node_c_start(const uqn_identity *idc, const char *cache, const char *peers, const char *apps,
                          char addr[UQN_ADDR_MAX + 1], int *ctl)
{
    int up[2], down[2];
    if (pipe(up) || pipe(down)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        uqi_node_config cc = {.name = "c.bench", .cache_dir = cache, .workers = 1, .identity_sk = idc->sk};
        uqi_node *cn;
        uqn_net *cnet;
        uq_errmsg em;
        if (uqi_node_start(&cc, &cn, &em)) {
            fprintf(stderr, "bench_net: node c: %s\n", em.text);
            _exit(1);
        }
        uqn_net_cfg ccfg = {.id = idc, .listen = "127.0.0.1:0", .dir_path = peers};
        uqi_node_net_hooks(cn, &ccfg);
        if (uqn_net_start(&ccfg, &cnet, NULL)) _exit(1);
        uqi_node_set_net(cn, cnet);
        char path[4200];
        snprintf(path, sizeof path, "%s/echo.wasm", apps);
        uint8_t *wasm;
        size_t wl;
        uqi_capref nc = {.params = (char *)"\"network\""};
        snprintf(nc.issuer.node, sizeof nc.issuer.node, "c.bench");
        snprintf(nc.issuer.process, sizeof nc.issuer.process, "kernel");
        if (uqi_read_file(path, &wasm, &wl, &em) || uqi_node_spawn(cn, "echo", wasm, wl, true, NULL, &em) ||
            uqi_node_grant(cn, NULL, "echo", &nc, 1, &em)) {
            fprintf(stderr, "bench_net: echo on node c: %s\n", em.text);
            _exit(1);
        }
        free(wasm);
        const char *a = uqn_net_listen_addr(cnet);
        if (write(up[1], a, strlen(a) + 1) < 0) _exit(1);
        close(up[1]);
        char x;
        while (read(down[0], &x, 1) > 0) {
        }
        uqi_node_set_net(cn, NULL);
        uqn_net_stop(cnet);
        uqi_node_stop(cn);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    size_t got = 0;
    ssize_t r;
    while (got < UQN_ADDR_MAX && (r = read(up[0], addr + got, UQN_ADDR_MAX - got)) > 0) got += (size_t)r;
    close(up[0]);
    addr[got < UQN_ADDR_MAX ? got : UQN_ADDR_MAX] = '\0';
    if (!addr[0]) {
        fprintf(stderr, "bench_net: node c did not start\n");
        waitpid(pid, NULL, 0);
        return -1;
    }
    *ctl = down[1];
    return pid;
}

int main(int argc, char **argv)
{
    only = getenv("UQBAR_BENCH_ONLY");
    if (sodium_init() < 0) return 1;
    const char *cache = argc > 1 ? argv[1] : "/tmp/uqbar-bench-cache";
    char dir[] = "/tmp/uqbar-bench-net-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char peers[256];
    snprintf(peers, sizeof peers, "%s/peers", dir);
    uqn_identity ida, idb;
    seed_id("a.bench", 1, &ida);
    seed_id("b.bench", 2, &idb);
    if (phase("crypto")) bench_crypto();
    /* node c, a kernel with a wasm echo, in a process of its own (one
     * scheduler per process): for the kernel-to-kernel round trip */
    const char *apps = argc > 2 ? argv[2] : NULL;
    uqn_identity idc;
    seed_id("c.bench", 3, &idc);
    char c_addr[UQN_ADDR_MAX + 1] = "";
    pid_t c_pid = 0;
    int c_ctl = -1;
    if (apps && phase("rt_kernels")) {
        c_pid = node_c_start(&idc, cache, peers, apps, c_addr, &c_ctl);
        if (c_pid < 0) return 1;
    }
    uqn_net_cfg bc = {.id = &idb, .listen = "127.0.0.1:0", .dir_path = peers, .recv = b_recv};
    if (uqn_net_start(&bc, &bnet, NULL)) return 1;
    uqi_node_config c = {.name = "a.bench", .cache_dir = cache, .workers = 1, .identity_sk = ida.sk,
                         .mailbox_cap = 1u << 18 /* the sink's, for the _in phases */};
    uqi_node *n;
    uq_errmsg em;
    if (uqi_node_start(&c, &n, &em)) {
        fprintf(stderr, "bench_net: %s\n", em.text);
        return 1;
    }
    uqn_net *anet;
    uqn_net_cfg ac = {.id = &ida, .listen = "127.0.0.1:0", .dir_path = peers};
    uqi_node_net_hooks(n, &ac);
    if (uqn_net_start(&ac, &anet, NULL)) return 1;
    uqi_node_set_net(n, anet);
    uqn_dir *d = uqn_dir_new();
    uqn_record r;
    const char *aa[1] = {uqn_net_listen_addr(anet)}, *ba[1] = {uqn_net_listen_addr(bnet)};
    uqn_record_make(&ida, aa, 1, 1, &r, NULL);
    uqn_dir_put(d, &r, UQN_SRC_FILE, NULL);
    uqn_record_make(&idb, ba, 1, 1, &r, NULL);
    uqn_dir_put(d, &r, UQN_SRC_FILE, NULL);
    if (c_addr[0]) {
        const char *ca[1] = {c_addr};
        uqn_record_make(&idc, ca, 1, 1, &r, NULL);
        uqn_dir_put(d, &r, UQN_SRC_FILE, NULL);
    }
    uqn_dir_save(d, peers, NULL);
    uqn_dir_free(d);
    uqi_kproc *port, *sink;
    uqi_node_port(n, "bench", &port, NULL);
    uqi_node_port(n, "sink", &sink, NULL);
    uqi_kproc_set_public(sink, true); /* takes requests from other nodes */
    pthread_t sink_th;
    pthread_create(&sink_th, NULL, sink_main, sink);

    /* round trip */
    enum { RT = 20000, WARM = 2000 };
    static uint64_t lat[RT];
    for (int i = 0; i < WARM; i++) { /* the link comes up here, whatever the phase */
        send_retry(port, req("{\"ping\":1}", 5));
        uqi_msg *resp = uqi_port_receive(port, 5000);
        if (!resp) return 1;
        uqi_msg_free(resp);
        if (!phase("rt")) break;
    }
    for (int i = 0; phase("rt") && i < RT; i++) {
        uint64_t t0 = uqi_now_ns();
        send_retry(port, req("{\"ping\":1}", 5));
        uqi_msg *resp = uqi_port_receive(port, 5000);
        if (!resp || resp->kind != UQI_MSG_RESPONSE) {
            fprintf(stderr, "bench_net: round trip %d failed\n", i);
            return 1;
        }
        uqi_msg_free(resp);
        lat[i] = uqi_now_ns() - t0;
    }
    if (phase("rt")) {
        qsort(lat, RT, sizeof lat[0], cmp_u64);
        printf("net_remote_roundtrip_median_us %.1f us\n", (double)lat[RT / 2] / 1e3);
        printf("net_remote_roundtrip_p99_us %.1f us\n", (double)lat[RT * 99 / 100] / 1e3);
        uqn_net_stats st;
        usleep(30000); /* the stats are copied each tick */
        uqn_net_get_stats(anet, &st);
        fprintf(stderr, "bench_net: %llu of the %d round trips' requests written by the caller's thread\n",
                (unsigned long long)st.pushed, RT + WARM);
        fflush(stdout);
    }
    /* the same to c's wasm echo: c's net thread, a worker, the process, and
     * the response pushed from the worker */
    if (c_pid > 0) {
        enum { RK = 10000 };
        for (int i = -WARM / 4; i < RK; i++) {
            uint64_t t0 = uqi_now_ns();
            uqi_msg *m = req("{\"ping\":1}", 5);
            uqi_addr_parse("c.bench@echo", "a.bench", &m->target, NULL);
            send_retry(port, m);
            uqi_msg *resp = uqi_port_receive(port, 5000);
            if (!resp || resp->kind != UQI_MSG_RESPONSE) {
                fprintf(stderr, "bench_net: round trip to c's echo %d failed\n", i);
                return 1;
            }
            uqi_msg_free(resp);
            if (i >= 0) lat[i] = uqi_now_ns() - t0;
        }
        qsort(lat, RK, sizeof lat[0], cmp_u64);
        printf("net_remote_roundtrip_kernels_median_us %.1f us\n", (double)lat[RK / 2] / 1e3);
        printf("net_remote_roundtrip_kernels_p99_us %.1f us\n", (double)lat[RK * 99 / 100] / 1e3);
        fflush(stdout);
        close(c_ctl); /* c ends */
        waitpid(c_pid, NULL, 0);
        c_pid = 0;
    }

    /* small-message throughput */
    enum { SMALL = 1000000 };
    uint64_t base, t0;
    double s;
    if (phase("small")) {
        base = got_msgs;
        t0 = uqi_now_ns();
        double c0 = cpu_s();
        for (int i = 0; i < SMALL; i++) send_retry(port, req("{\"n\":1234567890}", 0));
        while (got_msgs - base < SMALL) usleep(100);
        s = (double)(uqi_now_ns() - t0) / 1e9;
        printf("net_small_msgs_per_s %.0f msg/s\n", SMALL / s);
        printf("net_small_cpu_ns_per_msg %.0f ns\n", (cpu_s() - c0) / SMALL * 1e9);
        fflush(stdout);
    }

    /* bulk */
    enum { BULK = 64 };
    if (!phase("bulk")) goto in;
    size_t sz = 8u << 20;
    uint8_t *data = calloc(1, sz);
    uqi_payload *pl = uqi_payload_new(data, sz, "application/octet-stream");
    free(data);
    uint64_t bytes0 = got_bytes;
    base = got_msgs;
    t0 = uqi_now_ns();
    double c0 = cpu_s();
    for (int i = 0; i < BULK; i++) {
        uqi_msg *m = req("\"bulk\"", 0);
        m->payload = uqi_payload_hold(pl);
        send_retry(port, m);
    }
    while (got_msgs - base < BULK) usleep(100);
    s = (double)(uqi_now_ns() - t0) / 1e9;
    printf("net_bulk_mb_per_s %.0f MB/s\n", (double)(got_bytes - bytes0) / s / 1e6);
    printf("net_bulk_cpu_ns_per_kb %.0f ns\n", (cpu_s() - c0) / (double)(got_bytes - bytes0) * 1e12);
    uqi_payload_rele(pl);
    fflush(stdout);

in:
    /* a real kernel receiving (b -> a): the link is up already, the round
     * trips made it */
    if (phase("small_in")) {
        uint8_t *b;
        size_t bl;
        in_encode("{\"n\":1234567890}", NULL, &b, &bl);
        t0 = uqi_now_ns();
        double ci = cpu_s();
        in_send(b, bl, NULL, 0, SMALL, 1u << 17);
        s = (double)(uqi_now_ns() - t0) / 1e9;
        printf("net_small_in_msgs_per_s %.0f msg/s\n", SMALL / s);
        printf("net_small_in_cpu_ns_per_msg %.0f ns\n", (cpu_s() - ci) / SMALL * 1e9);
        free(b);
        fflush(stdout);
    }
    if (phase("bulk_in")) {
        size_t bsz = 8u << 20;
        uint8_t *zero = calloc(1, bsz);
        uqi_payload *bpl = uqi_payload_new(zero, bsz, "application/octet-stream");
        free(zero);
        uint8_t *b;
        size_t bl;
        in_encode("\"bulk\"", bpl, &b, &bl);
        uint64_t in0 = sink_bytes;
        t0 = uqi_now_ns();
        double ci = cpu_s();
        in_send(b, bl, bpl->data, bpl->len, BULK, 8);
        s = (double)(uqi_now_ns() - t0) / 1e9;
        printf("net_bulk_in_mb_per_s %.0f MB/s\n", (double)(sink_bytes - in0) / s / 1e6);
        printf("net_bulk_in_cpu_ns_per_kb %.0f ns\n", (cpu_s() - ci) / (double)(sink_bytes - in0) * 1e12);
        free(b);
        uqi_payload_rele(bpl);
        fflush(stdout);
    }

    /* link setup: a fresh client node each time dials b */
    if (!phase("setup")) goto end;
    bench_setup_parts(&ida, &idb);
    enum { LS = 200 };
    static uint64_t ls[LS];
    uint64_t miss0 = uqn_noise_pool_misses();
    for (int i = 0; i < LS; i++) {
        uqn_net *cn;
        uqn_net_cfg cc = {.id = &ida, .dir_path = peers};
        if (uqn_net_start(&cc, &cn, NULL)) return 1;
        ls[i] = hi_to_b(cn);
        uqn_net_stop(cn);
    }
    qsort(ls, LS, sizeof ls[0], cmp_u64);
    printf("net_link_setup_us %.0f us\n", (double)ls[LS / 2] / 1e3);
    printf("net_link_setup_keys_on_path %llu of %d\n", (unsigned long long)(uqn_noise_pool_misses() - miss0), 2 * LS);
    fflush(stdout);

    /* link resumption: one client node keeps its tickets; its link to b is
     * closed (uqn_net_drop) and the next message dials again, TCP + NNpsk0 +
     * first message. 5 ms between setups (the first-contact loop has the
     * stop and start of a node, about 1 ms): reconnects are not back to
     * back, and the net threads refill the ephemeral-key pool when quiet. */
    {
        uqn_net *cn;
        uqn_net_cfg cc = {.id = &ida, .dir_path = peers};
        if (uqn_net_start(&cc, &cn, NULL)) return 1;
        for (int i = -1; i < LS; i++) {
            if (i == 0) miss0 = uqn_noise_pool_misses();
            if (i >= 0) uqn_net_drop(cn, "b.bench");
            usleep(5000);
            uint64_t t = hi_to_b(cn);
            if (i >= 0) ls[i] = t;
        }
        usleep(50000);
        uqn_net_stats st;
        uqn_net_get_stats(cn, &st);
        uqn_net_stop(cn);
        qsort(ls, LS, sizeof ls[0], cmp_u64);
        printf("net_link_resume_us %.0f us\n", (double)ls[LS / 2] / 1e3);
        printf("net_link_resume_links %llu of %d resumed\n", (unsigned long long)st.links_resumed, LS);
        printf("net_link_resume_keys_on_path %llu of %d\n", (unsigned long long)(uqn_noise_pool_misses() - miss0), 2 * LS);
        fflush(stdout);
    }
end:

    sink_stop = true;
    pthread_join(sink_th, NULL);
    uqi_node_set_net(n, NULL);
    uqn_net_stop(anet);
    uqi_node_stop(n);
    uqn_net_stop(bnet);
    unlink(peers);
    rmdir(dir);
    return 0;
}
