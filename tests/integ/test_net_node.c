/* Nodes talking (issue 6), in one test process: node a.node is a real
 * kernel with its net module; b.node and c.node are bare net modules driven
 * by the test (they see the wire messages and answer, or lie, as the test
 * wants), so every failure can be made on purpose. Multi-process nodes
 * (uqbar boot) are in test_net_boot.c. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <unistd.h>

#include "kernel/remote.h"
#include "knode.h"
#include "net/netmod.h"
#include "tboot.h"
#include "tpeer.h"

static uqi_msg *mk(uqi_msg_kind kind, uint64_t id, const char *src, const char *dst, const char *body)
{
    uqi_msg *m = uqi_msg_new(kind, body, strlen(body));
    m->id = id;
    snprintf(m->source.process, sizeof m->source.process, "%s", src);
    snprintf(m->target.process, sizeof m->target.process, "%s", dst);
    return m;
}

/* ---- the rig: a.node (kernel + net), b.node and c.node (bare) ------------ */
typedef struct rig {
    uqi_node *n;
    uqn_identity ida;
    uqn_net *net;
    uqi_kproc *port;
    rawpeer b, c;
    char dir[1200];
    int blackhole;
} rig;

static void rig_dir(rig *r, bool wrong_key_for_c)
{
    uqn_dir *d = uqn_dir_new();
    char a[64];
    tn_dir_add(d, &r->ida, uqn_net_listen_addr(r->net));
    tn_dir_add(d, &r->b.id, r->b.listen);
    if (wrong_key_for_c) {
        uqn_identity other;
        tn_identity("c.node", 1, &other); /* the directory says c.node has another key */
        tn_dir_add(d, &other, r->c.listen);
    } else {
        tn_dir_add(d, &r->c.id, r->c.listen);
    }
    uqn_identity x;
    tn_identity("dead.node", 0, &x); /* nothing listens there */
    snprintf(a, sizeof a, "127.0.0.1:%d", tboot_free_port());
    tn_dir_add(d, &x, a);
    tn_identity("hole.node", 0, &x); /* accepts TCP, never answers the handshake */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (r->blackhole < 0) {
        r->blackhole = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT(bind(r->blackhole, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(r->blackhole, 16) == 0);
    }
    getsockname(r->blackhole, (struct sockaddr *)&sa, &sl);
    snprintf(a, sizeof a, "127.0.0.1:%d", ntohs(sa.sin_port));
    tn_dir_add(d, &x, a);
    ASSERT_EQ(uqn_dir_save(d, r->dir, NULL), UQ_OK);
    uqn_dir_free(d);
}

static void rig_start(rig *r)
{
    memset(r, 0, sizeof *r);
    r->blackhole = -1;
    snprintf(r->dir, sizeof r->dir, "%s/peers", tb_tmpdir());
    tn_identity("a.node", 0, &r->ida);
    r->n = kn_boot_as("a.node", r->ida.sk, 2);
    uqi_node_engine(r->n)->progress = false;
    r->net = kn_net_start(r->n, (uqn_net_cfg){.id = &r->ida, .listen = "127.0.0.1:0", .dir_path = r->dir,
                                              .send_timeout_ms = 400, .backoff_min_ms = 20, .backoff_max_ms = 100});
    uqi_node_set_net(r->n, r->net);
    uq_errmsg em = {{0}};
    rp_init(&r->b, "b.node", 0);
    rp_init(&r->c, "c.node", 0);
    rp_start(&r->b, "127.0.0.1:0", r->dir);
    rp_start(&r->c, "127.0.0.1:0", r->dir);
    rig_dir(r, false);
    ASSERT_EQ(uqi_node_port(r->n, "tester", &r->port, &em), UQ_OK);
}

static void rig_stop(rig *r)
{
    uqi_node_set_net(r->n, NULL);
    uqn_net_stop(r->net);
    rp_fini(&r->b);
    rp_fini(&r->c);
    uqi_node_stop(r->n);
    if (r->blackhole >= 0) close(r->blackhole);
}

/* Spawn echo on a.node: public or not, with the network capability or not. */
static void rig_echo(rig *r, const char *id, bool public, bool network)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/apps/echo.wasm", tb_shared());
    uint8_t *b;
    size_t len;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_read_file(path, &b, &len, &em), UQ_OK);
    if (uqi_node_spawn(r->n, id, b, len, public, NULL, &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    free(b);
    if (network) {
        uqi_capref nc = {.params = (char *)"\"network\""};
        snprintf(nc.issuer.node, sizeof nc.issuer.node, "a.node");
        snprintf(nc.issuer.process, sizeof nc.issuer.process, "kernel");
        ASSERT_EQ(uqi_node_grant(r->n, NULL, id, &nc, 1, NULL), UQ_OK);
    }
}

static uint64_t send_req(uqi_kproc *port, const char *target, const char *body, uint32_t expects, const char *ctx,
                         uqi_payload *pl, uq_err want)
{
    return kn_send(port, "a.node", target, body, expects, ctx, pl, want);
}

static uqi_msg *numbered(uint64_t id, size_t payload);
static bool intact(const uqi_msg *m);

/* ---- tests ---------------------------------------------------------------- */

/* Request and response across nodes: the request arrives with the source
 * node the link authenticated; the response finds the outstanding request
 * and its context, once, also when sent again, from another node, or
 * after the link was cut and set up again. */
TEST(net_node_request_response_with_context_at_most_once)
{
    rig r;
    rig_start(&r);
    uqi_payload *pl = uqi_payload_new("PAYLOAD", 7, "text/plain");
    uint64_t id = send_req(r.port, "b.node@srv", "{\"q\":1}", 5, "ctx-one", pl, UQ_OK);
    uqi_msg *in = rp_wait(&r.b, 5000);
    ASSERT(in != NULL);
    ASSERT_EQ(in->kind, UQI_MSG_REQUEST);
    ASSERT_EQ(in->id, id);
    ASSERT(strcmp(in->source.node, "a.node") == 0 && strcmp(in->source.process, "tester") == 0);
    ASSERT(strcmp(in->target.process, "srv") == 0);
    ASSERT_EQ(in->expects_response_s, 5);
    ASSERT(in->has_rsvp && strcmp(in->rsvp.process, "tester") == 0);
    ASSERT(kn_body_is(in, "{\"q\":1}"));
    ASSERT(in->payload && in->payload->len == 7 && memcmp(in->payload->data, "PAYLOAD", 7) == 0);
    ASSERT(strcmp(in->payload->mime, "text/plain") == 0);
    ASSERT(in->context == NULL); /* contexts never leave the node */
    uqi_msg_free(in);

    /* c.node answers first: it was not asked, so it is not believed */
    uqi_msg *forged = mk(UQI_MSG_RESPONSE, id, "srv", "tester", "\"forged\"");
    rp_send(&r.c, "a.node", forged, false, 0);
    ASSERT(uqi_port_receive(r.port, 300) == NULL);

    uqi_msg *resp = mk(UQI_MSG_RESPONSE, id, "srv", "tester", "\"answer\"");
    resp->payload = uqi_payload_new("BACK", 4, "");
    rp_send(&r.b, "a.node", resp, false, 0);
    uqi_msg *got = uqi_port_receive(r.port, 5000);
    ASSERT(got != NULL);
    ASSERT_EQ(got->kind, UQI_MSG_RESPONSE);
    ASSERT_EQ(got->id, id);
    ASSERT(kn_body_is(got, "\"answer\""));
    ASSERT(kn_ctx_is(got, "ctx-one"));
    ASSERT(strcmp(got->source.node, "b.node") == 0 && strcmp(got->source.process, "srv") == 0);
    ASSERT(got->payload && got->payload->len == 4);
    uqi_msg_free(got);
    /* the same response again: not delivered twice */
    rp_send(&r.b, "a.node", resp, false, 0);
    ASSERT(uqi_port_receive(r.port, 300) == NULL);
    /* nor after the link is cut and b.node comes back on the same port */
    char addr[128];
    snprintf(addr, sizeof addr, "%s", r.b.listen);
    rp_stop(&r.b);
    rp_start(&r.b, addr, r.dir);
    rp_send(&r.b, "a.node", resp, false, 0);
    ASSERT(uqi_port_receive(r.port, 400) == NULL);
    uqi_msg_free(resp);
    uqi_msg_free(forged);
    /* and the reconnected link carries a new request and its answer */
    id = send_req(r.port, "b.node@srv", "2", 5, "ctx-two", NULL, UQ_OK);
    in = rp_wait(&r.b, 5000);
    ASSERT(in && in->id == id);
    uqi_msg_free(in);
    resp = mk(UQI_MSG_RESPONSE, id, "srv", "tester", "\"two\"");
    rp_send(&r.b, "a.node", resp, false, 0);
    uqi_msg_free(resp);
    got = uqi_port_receive(r.port, 5000);
    ASSERT(got && got->id == id && kn_ctx_is(got, "ctx-two"));
    uqi_msg_free(got);
    rig_stop(&r);
}

/* A remote sender reaches a process that is public and holds the network
 * capability; otherwise it is told Refused (or NoSuchProcess). A process
 * without the network capability cannot send to other nodes. */
TEST(net_node_network_capability_both_ways)
{
    rig r;
    rig_start(&r);
    rig_echo(&r, "echo", true, true);
    rig_echo(&r, "nonet", true, false);
    rig_echo(&r, "private", false, true);
    uqi_msg *q = mk(UQI_MSG_REQUEST, 77, "client", "echo", "{\"hello\":\"a\"}");
    q->expects_response_s = 5;
    rp_send(&r.b, "a.node", q, false, 0);
    uqi_msg *in = rp_wait(&r.b, 10000);
    ASSERT(in != NULL);
    ASSERT_EQ(in->kind, UQI_MSG_RESPONSE);
    ASSERT_EQ(in->id, 77);
    ASSERT(strcmp(in->target.process, "client") == 0 && strcmp(in->source.process, "echo") == 0);
    ASSERT(kn_body_is(in, "{\"hello\":\"a\"}"));
    uqi_msg_free(in);
    const char *refused[] = {"nonet", "private"};
    for (int i = 0; i < 2; i++) {
        snprintf(q->target.process, sizeof q->target.process, "%s", refused[i]);
        q->id = 78 + (uint64_t)i;
        rp_send(&r.b, "a.node", q, false, 0);
        in = rp_wait(&r.b, 5000);
        ASSERT(in != NULL);
        ASSERT_EQ(in->kind, UQI_MSG_ERROR);
        ASSERT_EQ(in->error, UQI_SEND_REFUSED);
        ASSERT_EQ(in->id, q->id);
        uqi_msg_free(in);
    }
    snprintf(q->target.process, sizeof q->target.process, "nobody");
    q->id = 90;
    rp_send(&r.b, "a.node", q, false, 0);
    in = rp_wait(&r.b, 5000);
    ASSERT(in && in->kind == UQI_MSG_ERROR && in->error == UQI_SEND_NO_PROCESS);
    uqi_msg_free(in);
    uqi_msg_free(q);
    /* outgoing: a process without the network capability is refused at send */
    uqi_kproc *plain;
    ASSERT_EQ(uqi_node_port_plain(r.n, "plain", &plain, NULL), UQ_OK);
    send_req(plain, "b.node@srv", "1", 5, "c", NULL, UQ_EPERM);
    ASSERT(rp_wait(&r.b, 200) == NULL);
    rig_stop(&r);
}

/* Offline: unknown name, nothing listening, a peer whose key is not the
 * directory's, a peer that went away. Timeout: reachable (TCP accepts) but
 * the message is not out within the send timeout. Each error comes back to
 * the sender with the message, its payload and its context. */
TEST(net_node_offline_and_timeout_carry_message_and_context)
{
    rig r;
    rig_start(&r);
    struct {
        const char *target, *ctx;
        uint32_t want;
    } cases[] = {
        {"zz.node@x", "unknown-name", UQI_SEND_OFFLINE},
        {"dead.node@x", "nothing-listens", UQI_SEND_OFFLINE},
        {"hole.node@x", "no-handshake", UQI_SEND_TIMEOUT},
    };
    for (size_t i = 0; i < 3; i++) {
        uqi_payload *pl = uqi_payload_new("xyz", 3, "a/b");
        uint64_t id = send_req(r.port, cases[i].target, "{\"n\":1}", 30, cases[i].ctx, pl, UQ_OK);
        uqi_msg *e = uqi_port_receive(r.port, 5000);
        ASSERT(e != NULL);
        ASSERT_EQ(e->kind, UQI_MSG_ERROR);
        if (e->error != cases[i].want)
            test_fail(__FILE__, __LINE__, "%s: error %u, want %u", cases[i].target, e->error, cases[i].want);
        ASSERT_EQ(e->id, id);
        ASSERT(kn_ctx_is(e, cases[i].ctx));
        ASSERT(kn_body_is(e, "{\"n\":1}"));
        ASSERT(e->payload && e->payload->len == 3 && strcmp(e->payload->mime, "a/b") == 0);
        uqi_msg_free(e);
    }
    /* a request that expects no response comes back too (no context) */
    send_req(r.port, "dead.node@x", "\"fire\"", 0, NULL, NULL, UQ_OK);
    uqi_msg *e = uqi_port_receive(r.port, 5000);
    ASSERT(e && e->kind == UQI_MSG_ERROR && e->error == UQI_SEND_OFFLINE && kn_body_is(e, "\"fire\""));
    uqi_msg_free(e);
    /* wrong key: the directory says c.node has another key */
    rig_dir(&r, true);
    usleep(300000); /* reread within 200 ms: a link to c.node made under the old key ends */
    send_req(r.port, "c.node@x", "1", 30, "wrong-key", NULL, UQ_OK);
    e = uqi_port_receive(r.port, 5000);
    ASSERT(e && e->kind == UQI_MSG_ERROR && e->error == UQI_SEND_OFFLINE && kn_ctx_is(e, "wrong-key"));
    uqi_msg_free(e);
    ASSERT(rp_wait(&r.c, 100) == NULL); /* nothing reached it */
    /* a peer killed: Offline; restarted: it comes back */
    uint64_t id = send_req(r.port, "b.node@srv", "1", 5, "up", NULL, UQ_OK);
    uqi_msg *in = rp_wait(&r.b, 5000);
    ASSERT(in && in->id == id);
    uqi_msg_free(in);
    char addr[128];
    snprintf(addr, sizeof addr, "%s", r.b.listen);
    rp_stop(&r.b);
    /* "Offline: the target node cannot be reached (... connection refused or
     * cut)": the request written before the peer died fails Offline when its
     * link is cut, with its context, without waiting for its 5 s timeout */
    e = uqi_port_receive(r.port, 3000);
    ASSERT(e && e->kind == UQI_MSG_ERROR && e->error == UQI_SEND_OFFLINE && e->id == id && kn_ctx_is(e, "up"));
    uqi_msg_free(e);
    send_req(r.port, "b.node@srv", "2", 30, "down", NULL, UQ_OK);
    for (;;) {
        e = uqi_port_receive(r.port, 5000);
        ASSERT(e != NULL);
        if (kn_ctx_is(e, "down")) break;
        uqi_msg_free(e);
    }
    ASSERT(e->kind == UQI_MSG_ERROR && e->error == UQI_SEND_OFFLINE);
    uqi_msg_free(e);
    rp_start(&r.b, addr, r.dir);
    bool back = false;
    for (int tries = 0; tries < 50 && !back; tries++) {
        id = send_req(r.port, "b.node@srv", "3", 30, "again", NULL, UQ_OK);
        in = rp_wait(&r.b, 200);
        back = in && in->id == id;
        uqi_msg_free(in);
        while ((e = uqi_port_receive(r.port, 0))) uqi_msg_free(e); /* Offline during back-off */
    }
    ASSERT(back);
    rig_stop(&r);
}

/* The send side's three kinds of queue entry (docs/PERFORMANCE.md, "Network,
 * sixth round"): a message alone in its entry, short messages packed into
 * one entry while the queue is behind, and two-part entries whose large
 * payload is sent from the sender's uqi_payload (the sender gave its own
 * reference away at once). Queued to a node that never answers, each comes
 * back once, Offline or Timeout, with its body, its payload byte for byte,
 * and, for a request that expects a response, its id and context. */
static uint8_t pat(int i, size_t k) { return (uint8_t)(k * 131 + (size_t)i * 7 + 1); }

/* Message i's payload: len bytes of pat(i, .), "x/y"; NULL for len 0. */
static uqi_payload *pat_payload(int i, size_t len)
{
    if (!len) return NULL;
    uint8_t *d = uqi_xmalloc(len);
    for (size_t k = 0; k < len; k++) d[k] = pat(i, k);
    uqi_payload *pl = uqi_payload_new(d, len, "x/y");
    free(d); /* the message holds the payload's only reference */
    return pl;
}

/* e came back with message i's payload whole (or none, for len 0). */
static void pat_payload_check(const uqi_msg *e, int i, size_t len)
{
    if (!len) {
        ASSERT(e->payload == NULL);
        return;
    }
    ASSERT(e->payload && e->payload->len == len && strcmp(e->payload->mime, "x/y") == 0);
    for (size_t k = 0; k < len; k++)
        if (e->payload->data[k] != pat(i, k)) test_fail(__FILE__, __LINE__, "message %d: payload byte %zu differs", i, k);
}

/* every 7th with a payload past the two-part threshold, every 5th with a
 * short one */
static size_t fail_back_len(int i) { return i % 7 == 0 ? 70000 + (size_t)i : i % 5 == 0 ? 40 + (size_t)i % 50 : 0; }

TEST(net_node_queued_entries_fail_back_whole)
{
    rig r;
    rig_start(&r);
    const char *targets[] = {"dead.node@x", "hole.node@x"};
    const uint32_t wants[] = {UQI_SEND_OFFLINE, UQI_SEND_TIMEOUT};
    enum { N = 600 };
    static uint64_t ids[N];
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < N; i++) {
            char body[32], ctx[32];
            snprintf(body, sizeof body, "{\"i\":%d}", i);
            snprintf(ctx, sizeof ctx, "ctx-%d", i);
            /* payloads: fail_back_len; every 3rd expects a response */
            uqi_payload *pl = pat_payload(i, fail_back_len(i));
            bool expects = i % 3 == 0;
            ids[i] = send_req(r.port, targets[t], body, expects ? 30 : 0, expects ? ctx : NULL, pl, UQ_OK);
        }
        static bool seen[N];
        memset(seen, 0, sizeof seen);
        for (int got = 0; got < N; got++) {
            uqi_msg *e = uqi_port_receive(r.port, 10000);
            if (!e) test_fail(__FILE__, __LINE__, "%s: %d of %d errors came back", targets[t], got, N);
            ASSERT_EQ(e->kind, UQI_MSG_ERROR);
            ASSERT_EQ(e->error, wants[t]);
            int i = -1;
            ASSERT(e->body_len > 5 && sscanf((const char *)e->body, "{\"i\":%d}", &i) == 1 && i >= 0 && i < N);
            ASSERT(!seen[i]);
            seen[i] = true;
            char body[32], ctx[32];
            snprintf(body, sizeof body, "{\"i\":%d}", i);
            snprintf(ctx, sizeof ctx, "ctx-%d", i);
            ASSERT(kn_body_is(e, body));
            ASSERT_EQ(e->id, ids[i]);
            if (i % 3 == 0) ASSERT(kn_ctx_is(e, ctx));
            else ASSERT(e->context == NULL);
            ASSERT_EQ(strcmp(e->source.node, targets[t][0] == 'd' ? "dead.node" : "hole.node"), 0);
            ASSERT_EQ(strcmp(e->source.process, "x"), 0);
            pat_payload_check(e, i, fail_back_len(i));
            uqi_msg_free(e);
        }
        ASSERT(uqi_port_receive(r.port, 200) == NULL); /* each once */
        uqn_net_stats st;
        uqn_net_get_stats(r.net, &st);
        test_log("%s: %llu messages packed so far", targets[t], (unsigned long long)st.packed);
        ASSERT(st.packed > 0);
        usleep(150000); /* past the back-off: the next target's queue is its own anyway */
    }
    rig_stop(&r);
}

/* A link cut with entries of every kind queued and in flight (two-part
 * ones whose payload the message alone holds, packed ones, ones alone):
 * each request comes back Offline exactly once (written ones when the link
 * goes down, the rest when they fail), with its id, its context and its
 * payload byte for byte. */
static size_t cut_len(int i) { return i % 4 == 0 ? 100000 + (size_t)i : i % 4 == 1 ? 30 + (size_t)i % 90 : 0; }

TEST(net_node_link_cut_with_entries_queued)
{
    rig r;
    rig_start(&r);
    uint64_t id = send_req(r.port, "b.node@srv", "\"warm\"", 30, "warm", NULL, UQ_OK);
    uqi_msg *in = rp_wait(&r.b, 5000); /* the link is up */
    ASSERT(in && in->id == id);
    uqi_msg_free(in);
    enum { N = 400 };
    static uint64_t ids[N];
    static bool seen[N];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        char body[32], ctx[32];
        snprintf(body, sizeof body, "{\"i\":%d}", i);
        snprintf(ctx, sizeof ctx, "ctx-%d", i);
        uqi_payload *pl = pat_payload(i, cut_len(i));
        ids[i] = send_req(r.port, "b.node@srv", body, 30, ctx, pl, UQ_OK);
    }
    rp_stop(&r.b); /* b.node goes away with most of them queued or in flight */
    int got = 0;
    uqi_msg *e;
    while (got < N + 1 && (e = uqi_port_receive(r.port, 10000))) {
        ASSERT_EQ(e->kind, UQI_MSG_ERROR);
        ASSERT_EQ(e->error, UQI_SEND_OFFLINE);
        got++;
        if (e->id == id) { /* the warm-up request, written and unanswered */
            ASSERT(kn_ctx_is(e, "warm"));
            uqi_msg_free(e);
            continue;
        }
        int i = -1;
        ASSERT(sscanf((const char *)e->body, "{\"i\":%d}", &i) == 1 && i >= 0 && i < N);
        ASSERT(!seen[i]);
        seen[i] = true;
        char ctx[32];
        snprintf(ctx, sizeof ctx, "ctx-%d", i);
        ASSERT(e->id == ids[i] && kn_ctx_is(e, ctx));
        pat_payload_check(e, i, cut_len(i));
        uqi_msg_free(e);
    }
    if (got != N + 1) test_fail(__FILE__, __LINE__, "%d of %d requests came back", got, N + 1);
    ASSERT(uqi_port_receive(r.port, 300) == NULL); /* each once */
    int reached = 0;
    while ((in = rp_wait(&r.b, 0))) {
        reached++;
        uqi_msg_free(in);
    }
    uqn_net_stats st;
    uqn_net_get_stats(r.net, &st);
    test_log("%d of %d reached b.node before it went; %llu packed", reached, N, (unsigned long long)st.packed);
    rig_stop(&r);
}

/* Many short one-way messages sent faster than the link takes them are
 * packed: they arrive all, in order, intact, and then a request expecting
 * a response still finds its way back. */
TEST(net_node_packed_messages_arrive_in_order)
{
    rig r;
    rig_start(&r);
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        char body[64];
        snprintf(body, sizeof body, "[%d,\"%.*s\"]", i, i % 40, "0123456789012345678901234567890123456789");
        uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
        ASSERT_EQ(uqi_addr_parse("b.node@sink", "a.node", &m->target, NULL), UQ_OK);
        uq_errmsg em;
        uq_err e;
        while ((e = uqi_kernel_send(r.port, m, NULL, 0, NULL, &em)) == UQ_ELIMIT) usleep(100);
        ASSERT_EQ(e, UQ_OK);
    }
    for (int i = 0; i < N; i++) {
        uqi_msg *m = rp_wait(&r.b, 10000);
        if (!m) test_fail(__FILE__, __LINE__, "%d of %d arrived", i, N);
        char body[64];
        snprintf(body, sizeof body, "[%d,\"%.*s\"]", i, i % 40, "0123456789012345678901234567890123456789");
        if (!kn_body_is(m, body)) test_fail(__FILE__, __LINE__, "message %d out of order or altered", i);
        ASSERT(strcmp(m->source.node, "a.node") == 0 && strcmp(m->target.process, "sink") == 0);
        uqi_msg_free(m);
    }
    uqn_net_stats st;
    uqn_net_get_stats(r.net, &st);
    test_log("sent %llu messages, %llu bytes; %llu of them packed", (unsigned long long)st.msgs_sent,
             (unsigned long long)st.bytes_sent, (unsigned long long)st.packed);
    ASSERT(st.packed > 0);
    uint64_t id = send_req(r.port, "b.node@srv", "\"last\"", 30, "last", NULL, UQ_OK);
    uqi_msg *in = rp_wait(&r.b, 5000);
    ASSERT(in && in->id == id && kn_body_is(in, "\"last\""));
    uqi_msg *resp = mk(UQI_MSG_RESPONSE, id, "srv", "tester", "\"ok\"");
    rp_send(&r.b, "a.node", resp, false, 0);
    uqi_msg_free(resp);
    uqi_msg_free(in);
    uqi_msg *got = uqi_port_receive(r.port, 5000);
    ASSERT(got && got->kind == UQI_MSG_RESPONSE && got->id == id && kn_ctx_is(got, "last"));
    uqi_msg_free(got);
    rig_stop(&r);
}

/* Messages somebody waits for (a request that expects a response, a
 * response) may be written by their sender's thread while the net thread
 * sleeps (uqn_net_push); the others are queued for the thread. Mixed, from
 * two senders at once, with pauses that let the thread sleep: every
 * message arrives, each sender's in order, and each response finds its
 * request and context once. */
typedef struct pusher {
    uqi_kproc *port;
    int who, n;
} pusher;

static void *push_mixed(void *arg)
{
    pusher *ps = arg;
    for (int i = 0; i < ps->n; i++) {
        char body[64], ctx[32];
        snprintf(body, sizeof body, "[%d,%d]", ps->who, i);
        snprintf(ctx, sizeof ctx, "c%d.%d", ps->who, i);
        uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
        ASSERT_EQ(uqi_addr_parse("b.node@srv", "a.node", &m->target, NULL), UQ_OK);
        m->expects_response_s = i % 2 ? 30 : 0;
        uq_errmsg em;
        uq_err e;
        while ((e = uqi_kernel_send(ps->port, m, i % 2 ? (uint8_t *)strdup(ctx) : NULL, i % 2 ? strlen(ctx) : 0,
                                    NULL, &em)) == UQ_ELIMIT)
            usleep(100);
        ASSERT_EQ(e, UQ_OK);
        /* the net thread goes to sleep; the next message expects a
         * response, so its sender may write it (a one-way one would wake
         * the thread instead, and the chance would pass) */
        if (i % 16 == 14) usleep(300);
    }
    return NULL;
}

TEST(net_node_pushed_and_queued_messages_keep_order)
{
    rig r;
    rig_start(&r);
    enum { N = 2000 };
    uqi_kproc *port2;
    ASSERT_EQ(uqi_node_port(r.n, "tester2", &port2, NULL), UQ_OK);
    pusher ps[2] = {{r.port, 0, N}, {port2, 1, N}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, push_mixed, &ps[k]);
    int next[2] = {0, 0};
    for (int got = 0; got < 2 * N; got++) {
        uqi_msg *m = rp_wait(&r.b, 10000);
        if (!m) test_fail(__FILE__, __LINE__, "%d of %d arrived", got, 2 * N);
        int who = -1, i = -1;
        char body[64];
        snprintf(body, sizeof body, "%.*s", (int)m->body_len, (const char *)m->body);
        ASSERT(sscanf(body, "[%d,%d]", &who, &i) == 2 && (who == 0 || who == 1));
        if (i != next[who]) test_fail(__FILE__, __LINE__, "sender %d: message %d came where %d was due", who, i, next[who]);
        next[who]++;
        ASSERT_EQ(m->expects_response_s != 0, i % 2 == 1);
        if (m->expects_response_s) { /* answered at once */
            uqi_msg *resp = mk(UQI_MSG_RESPONSE, m->id, "srv", who ? "tester2" : "tester", body);
            rp_send(&r.b, "a.node", resp, false, 0);
            uqi_msg_free(resp);
        }
        uqi_msg_free(m);
    }
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        uqi_kproc *port = k ? port2 : r.port;
        for (int i = 1; i < N; i += 2) {
            uqi_msg *got = uqi_port_receive(port, 5000);
            char body[64], ctx[32];
            snprintf(body, sizeof body, "[%d,%d]", k, i);
            snprintf(ctx, sizeof ctx, "c%d.%d", k, i);
            if (!got || got->kind != UQI_MSG_RESPONSE || !kn_body_is(got, body) || !kn_ctx_is(got, ctx))
                test_fail(__FILE__, __LINE__, "sender %d: response to %d missing, late or without its context", k, i);
            uqi_msg_free(got);
        }
        ASSERT(uqi_port_receive(port, 50) == NULL); /* none twice */
    }
    uqn_net_stats st;
    uqn_net_get_stats(r.net, &st);
    test_log("%d messages, %d expecting a response; written by their sender's thread %llu times", 2 * N, N,
             (unsigned long long)st.pushed);
    ASSERT(st.pushed > 0);
    rig_stop(&r);
}

/* A response that cannot be sent comes back to the responder, and answering
 * that error resends the response to the original outstanding request. */
TEST(net_node_failed_response_resends_to_original_request)
{
    rig r;
    rig_start(&r);
    r.port->public = true; /* reachable by b.node (the port is root: it holds the network capability) */
    uqi_msg *q = mk(UQI_MSG_REQUEST, 4242, "client", "tester", "\"ask\"");
    q->expects_response_s = 30;
    rp_send(&r.b, "a.node", q, false, 0);
    uqi_msg_free(q);
    uqi_msg *req = uqi_port_receive(r.port, 5000);
    ASSERT(req && req->kind == UQI_MSG_REQUEST && req->id == 4242);
    ASSERT(strcmp(req->source.node, "b.node") == 0 && req->has_rsvp && strcmp(req->rsvp.node, "b.node") == 0);
    char addr[128];
    snprintf(addr, sizeof addr, "%s", r.b.listen);
    rp_stop(&r.b);
    usleep(50000);
    uqi_msg *resp = uqi_msg_new(UQI_MSG_RESPONSE, "\"reply\"", 7);
    resp->id = req->id;
    resp->target = req->rsvp;
    ASSERT_EQ(uqi_kernel_send(r.port, resp, NULL, 0, NULL, NULL), UQ_OK);
    uqi_msg *e = uqi_port_receive(r.port, 5000);
    ASSERT(e && e->kind == UQI_MSG_ERROR && e->error == UQI_SEND_OFFLINE);
    ASSERT(kn_body_is(e, "\"reply\"") && e->id == 4242);
    ASSERT(e->has_rsvp && strcmp(e->rsvp.node, "b.node") == 0 && strcmp(e->rsvp.process, "client") == 0);
    rp_start(&r.b, addr, r.dir);
    usleep(150000); /* past the back-off */
    /* resend: a response to the error goes where the failed response went */
    resp = uqi_msg_new(UQI_MSG_RESPONSE, e->body, e->body_len);
    resp->id = e->id;
    resp->target = e->rsvp;
    ASSERT_EQ(uqi_kernel_send(r.port, resp, NULL, 0, NULL, NULL), UQ_OK);
    uqi_msg *in = rp_wait(&r.b, 5000);
    ASSERT(in && in->kind == UQI_MSG_RESPONSE && in->id == 4242 && strcmp(in->target.process, "client") == 0);
    ASSERT(kn_body_is(in, "\"reply\""));
    uqi_msg_free(in);
    uqi_msg_free(e);
    uqi_msg_free(req);
    rig_stop(&r);
}

/* Many messages both ways at once, a large payload chunked across frames,
 * and the size limit. */
TEST(net_node_bulk_and_many_both_ways)
{
    rig r;
    rig_start(&r);
    rig_echo(&r, "echo", true, true);
    /* b.node floods a.node's echo while a.node's port floods b.node */
    enum { N = 2000 };
    for (int i = 0; i < N; i++) {
        uqi_msg *q = mk(UQI_MSG_REQUEST, 100000 + (uint64_t)i, "client", "echo", "{\"i\":1}");
        q->expects_response_s = 30;
        rp_send(&r.b, "a.node", q, false, 0);
        uqi_msg_free(q);
        send_req(r.port, "b.node@sink", "\"x\"", 0, NULL, NULL, UQ_OK);
    }
    /* every message is accounted for: delivered, or an error came back (the
     * echo's mailbox holds 1024: the rest are refused, never dropped) */
    int responses = 0, refusals = 0, requests = 0, errors = 0;
    uint64_t t0 = uqi_now_ns();
    while (responses + refusals < N || requests + errors < N) {
        uqi_msg *m = rp_wait(&r.b, 50);
        if (m) {
            if (m->kind == UQI_MSG_RESPONSE) responses++;
            else if (m->kind == UQI_MSG_ERROR) refusals++;
            else requests++;
            uqi_msg_free(m);
        }
        while ((m = uqi_port_receive(r.port, 0))) {
            errors++;
            uqi_msg_free(m);
        }
        if (uqi_now_ns() - t0 > 20000000000ull)
            test_fail(__FILE__, __LINE__, "%d responses + %d refusals, %d requests + %d errors, of %d each", responses,
                      refusals, requests, errors, N);
    }
    test_log("b.node -> echo: %d responses, %d refused (mailbox full); a.node -> b.node: %d delivered, %d errors",
             responses, refusals, requests, errors);
    ASSERT(responses >= 1000 && requests >= N / 2);
    /* 8 MB payload to b.node, and b.node sends it back as the response */
    size_t big = 8u << 20;
    uint8_t *data = uqi_xmalloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (uint8_t)(i * 131 + 7);
    uint64_t id = send_req(r.port, "b.node@srv", "\"big\"", 30, "big", uqi_payload_new(data, big, "application/octet-stream"), UQ_OK);
    uqi_msg *in = rp_wait(&r.b, 20000);
    ASSERT(in && in->id == id && in->payload && in->payload->len == big && memcmp(in->payload->data, data, big) == 0);
    uqi_msg *resp = mk(UQI_MSG_RESPONSE, id, "srv", "tester", "\"big back\"");
    resp->payload = uqi_payload_hold(in->payload);
    rp_send(&r.b, "a.node", resp, false, 0);
    uqi_msg_free(resp);
    uqi_msg_free(in);
    uqi_msg *got = uqi_port_receive(r.port, 20000);
    ASSERT(got && got->id == id && kn_ctx_is(got, "big") && got->payload && got->payload->len == big);
    ASSERT(memcmp(got->payload->data, data, big) == 0);
    uqi_msg_free(got);
    /* over the limit between nodes (10,485,800 bytes): refused at send */
    free(data);
    data = uqi_xcalloc(1, UQN_NET_MSG_MAX);
    send_req(r.port, "b.node@srv", "\"too big\"", 30, "x", uqi_payload_new(data, UQN_NET_MSG_MAX, ""), UQ_ELIMIT);
    free(data);
    rig_stop(&r);
}

/* The receiving side delivers in batches (uqi_node_net_recv_batch): every
 * message of a stream of small ones, with large ones in between (their
 * payloads keep the reassembly buffer), reaches the port in the order sent;
 * a response that arrived just before the link was cut is delivered, not
 * failed Offline by the cut. */
TEST(net_node_batched_receive_in_order_and_answer_before_cut)
{
    rig r;
    rig_start(&r);
    uqi_kproc *inbox;
    ASSERT_EQ(uqi_node_port(r.n, "inbox", &inbox, NULL), UQ_OK);
    uqi_kproc_set_public(inbox, true);
    enum { BURST = 600, BURSTS = 5, BIG = 3 << 20 };
    uint64_t want = 1;
    for (int b = 0; b < BURSTS; b++) {
        for (int i = 0; i < BURST; i++) {
            uint64_t id = (uint64_t)b * BURST + (uint64_t)i + 1;
            uqi_msg *q = numbered(id, i == BURST / 2 ? BIG : 0);
            snprintf(q->target.process, sizeof q->target.process, "inbox");
            rp_send(&r.b, "a.node", q, false, 0);
            uqi_msg_free(q);
        }
        for (int i = 0; i < BURST; i++) { /* the mailbox holds 1024: a burst at a time */
            uqi_msg *m = uqi_port_receive(inbox, 20000);
            if (!m) test_fail(__FILE__, __LINE__, "message %llu not received", (unsigned long long)want);
            if (m->id != want)
                test_fail(__FILE__, __LINE__, "got %llu, expected %llu", (unsigned long long)m->id, (unsigned long long)want);
            ASSERT(m->kind == UQI_MSG_REQUEST && strcmp(m->source.node, "b.node") == 0 && intact(m));
            ASSERT((i == BURST / 2) == (m->payload != NULL));
            if (m->payload) ASSERT(m->payload->len == BIG && m->payload->release != NULL);
            want++;
            uqi_msg_free(m);
        }
    }
    /* a's port asks b; b answers, the answer is written, then b is gone */
    for (int k = 0; k < 3; k++) {
        uint64_t id = send_req(r.port, "b.node@srv", "\"q\"", 30, "ctx", NULL, UQ_OK);
        uqi_msg *in = rp_wait(&r.b, 20000);
        ASSERT(in && in->id == id);
        uqi_msg_free(in);
        uqi_msg *resp = mk(UQI_MSG_RESPONSE, id, "srv", "tester", "\"a\"");
        rp_send(&r.b, "a.node", resp, false, 7);
        uqi_msg_free(resp);
        int why = 0;
        for (int t = 0; t < 2000 && !why; t++) {
            pthread_mutex_lock(&r.b.mu); /* rp_done writes it on b's net thread */
            why = r.b.whys[7];
            r.b.whys[7] = 0;
            pthread_mutex_unlock(&r.b.mu);
            if (!why) usleep(1000);
        }
        ASSERT_EQ(why, 1 + UQN_DONE_SENT);
        rp_stop(&r.b);
        uqi_msg *got = uqi_port_receive(r.port, 20000);
        ASSERT(got);
        if (got->kind != UQI_MSG_RESPONSE)
            test_fail(__FILE__, __LINE__, "round %d: kind %d (error %u, id %llu, ours %llu) instead of the response", k,
                      got->kind, got->error, (unsigned long long)got->id, (unsigned long long)id);
        ASSERT(got->id == id && kn_ctx_is(got, "ctx"));
        uqi_msg_free(got);
        /* the next round starts once a closed what it had with the old b */
        uqn_net_stats st;
        for (int t = 0; t < 5000; t++) {
            uqn_net_get_stats(r.net, &st);
            if (st.conns == 0) break;
            usleep(1000);
        }
        ASSERT_EQ(st.conns, 0);
        rp_start(&r.b, r.b.listen, r.dir);
    }
    rig_stop(&r);
}

/* ---- network namespaces: delay, loss, a link cut mid-transfer ------------ */
#include <fcntl.h>
#include <sched.h>

#include "tnetns.h"

typedef struct ns_start {
    rawpeer *rp;
    const char *ns, *listen, *dir;
} ns_start;

/* Start rp's net module from a thread inside network namespace ns: its
 * sockets and its thread (which inherits the namespace) live there. */
static void *ns_thread(void *arg)
{
    ns_start *s = arg;
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s", s->ns);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) return (void *)1;
    close(fd);
    rp_start(s->rp, s->listen, s->dir);
    return NULL;
}

static void rp_start_in(rawpeer *rp, const char *ns, const char *listen, const char *dir)
{
    ns_start s = {rp, ns, listen, dir};
    pthread_t t;
    void *rc;
    pthread_create(&t, NULL, ns_thread, &s);
    pthread_join(t, &rc);
    ASSERT(rc == NULL);
}

static uqi_msg *numbered(uint64_t id, size_t payload)
{
    uqi_msg *m = mk(UQI_MSG_REQUEST, id, "x", "y", "\"n\"");
    if (payload) {
        uint8_t *d = uqi_xmalloc(payload);
        for (size_t i = 0; i < payload; i++) d[i] = (uint8_t)(i * 31 + id);
        m->payload = uqi_payload_new(d, payload, "");
        free(d);
    }
    return m;
}

static bool intact(const uqi_msg *m)
{
    if (!m->payload) return true;
    for (size_t i = 0; i < m->payload->len; i++)
        if (m->payload->data[i] != (uint8_t)(i * 31 + m->id)) return false;
    return true;
}

TEST_T(net_netns_delay_loss_and_cut_link, 120)
{
    /* 5 ms each way, 1% loss, 200 Mbit/s, so that a 10 MB transfer lasts
     * long enough to be cut in the middle: tc netem on a veth pair, or tunem
     * where the kernel has no sch_netem (tnetns.h; the log says which) */
    tns t;
    tns_shape shape = {.delay_ms = 5, .loss = 1, .rate_mbit = 200};
    if (!tns_up(&t, &shape, false)) return;
    const char *na = t.a, *nb = t.b;
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/peers", tb_tmpdir());
    rawpeer x, y;
    rp_init(&x, "x.node", 0);
    rp_init(&y, "y.node", 0);
    x.opt.keepalive_ms = y.opt.keepalive_ms = 300; /* a dead link is noticed after 0.9 s */
    x.opt.send_timeout_ms = y.opt.send_timeout_ms = 3000;
    rp_start_in(&x, na, "10.231.0.1:7101", dir);
    rp_start_in(&y, nb, "10.231.0.2:7102", dir);
    uqn_dir *d = uqn_dir_new();
    tn_dir_add(d, &x.id, x.listen);
    tn_dir_add(d, &y.id, y.listen);
    ASSERT_EQ(uqn_dir_save(d, dir, NULL), UQ_OK);
    uqn_dir_free(d);

    /* 1. delay and loss: everything arrives, intact, in order */
    uint64_t t0 = uqi_now_ns();
    enum { SMALL = 300 };
    for (int i = 1; i <= SMALL; i++) {
        uqi_msg *m = numbered((uint64_t)i, i == 150 ? (4u << 20) : (size_t)(i % 7) * 100);
        rp_send(&x, "y.node", m, false, (uintptr_t)i);
        uqi_msg_free(m);
    }
    for (int i = 1; i <= SMALL; i++) {
        uqi_msg *m = rp_wait(&y, 30000);
        if (!m) test_fail(__FILE__, __LINE__, "message %d of %d did not arrive", i, SMALL);
        ASSERT_EQ(m->id, i);
        ASSERT(intact(m));
        uqi_msg_free(m);
    }
    test_log("%d messages (one of 4 MB) over %s at 5 ms delay, 1%% loss, 200 Mbit/s: %.0f ms", SMALL,
             t.netem ? "netem" : "tunem", (double)(uqi_now_ns() - t0) / 1e6);

    /* 2. the link cut in the middle of a large transfer: every message gets
     * its verdict; what arrived is intact; nothing that timed out arrived */
    pthread_mutex_lock(&x.mu);
    memset(x.whys, 0, sizeof x.whys);
    pthread_mutex_unlock(&x.mu);
    enum { CUT = 60 };
    for (int i = 1; i <= CUT; i++) {
        uqi_msg *m = numbered(1000 + (uint64_t)i, i == 1 ? (10u << 20) - 4096 : 500);
        rp_send(&x, "y.node", m, false, (uintptr_t)i);
        uqi_msg_free(m);
    }
    usleep(150000);
    tns_cut(&t, true);
    uint64_t end = uqi_now_ns() + 20000000000ull;
    int done = 0;
    while (uqi_now_ns() < end) {
        done = 0;
        pthread_mutex_lock(&x.mu);
        for (int i = 1; i <= CUT; i++) done += x.whys[i] != 0;
        pthread_mutex_unlock(&x.mu);
        if (done == CUT) break;
        usleep(20000);
    }
    ASSERT_EQ(done, CUT);
    bool got[CUT + 1] = {0};
    uqi_msg *m;
    while ((m = rp_wait(&y, 200))) {
        ASSERT(m->id > 1000 && m->id <= 1000 + CUT);
        ASSERT(intact(m));
        got[m->id - 1000] = true;
        uqi_msg_free(m);
    }
    int sent = 0, offline = 0, timeout = 0, arrived = 0;
    pthread_mutex_lock(&x.mu); /* every verdict is in (checked above) */
    int whys[CUT + 1];
    memcpy(whys, x.whys, sizeof whys);
    pthread_mutex_unlock(&x.mu);
    for (int i = 1; i <= CUT; i++) {
        int w = whys[i] - 1;
        sent += w == UQN_DONE_SENT;
        offline += w == UQN_DONE_OFFLINE;
        timeout += w == UQN_DONE_TIMEOUT;
        arrived += got[i];
        if (got[i] && w == UQN_DONE_TIMEOUT) test_fail(__FILE__, __LINE__, "message %d timed out but arrived", i);
    }
    test_log("cut mid-transfer: %d written, %d Offline, %d Timeout; %d arrived (intact)", sent, offline, timeout, arrived);
    ASSERT(offline + timeout > 0);

    /* 3. the link back: the peers reconnect */
    tns_cut(&t, false);
    bool back = false;
    for (int tries = 0; tries < 100 && !back; tries++) {
        m = numbered(5000 + (uint64_t)tries, 100);
        rp_send(&x, "y.node", m, false, 0);
        uqi_msg_free(m);
        uqi_msg *r = rp_wait(&y, 200);
        back = r != NULL;
        uqi_msg_free(r);
    }
    ASSERT(back);
    rp_fini(&x);
    rp_fini(&y);
    tns_down(&t);
}
