/* The round trip's racy corners (docs/PERFORMANCE.md, "Sixth round"): a
 * consumer that arms its mailbox without the lock while producers on other
 * threads put, wakes from the consumer's own worker without the worker lock,
 * a response racing with its request's timeout, a target killed while
 * requests to it are outstanding, and the error a request comes back as,
 * which is rebuilt from its outstanding record (no copy of the request is
 * kept any more). Each asserts that every request is answered exactly once,
 * with its own context. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "kernel/kernel.h"
#include "runner.h"
#include "knode.h"

/* A request from port to target with a metadata string, as a process would
 * send it; returns its id. */
static uint64_t request_md(uqi_kproc *port, const char *target, const char *body, uint32_t expects, const char *ctx,
                           const char *metadata, uqi_payload *pl)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_addr_parse(target, "test.node", &m->target, &em), UQ_OK);
    m->expects_response_s = expects;
    m->metadata = metadata ? uqi_xstrdup(metadata) : NULL;
    m->payload = pl;
    uint64_t id = 0;
    ASSERT_EQ(uqi_kernel_send(port, m, (uint8_t *)uqi_xstrdup(ctx), strlen(ctx), &id, &em), UQ_OK);
    return id;
}

/* ---- many clients on other threads, processes on two workers ------------- */
typedef struct client {
    uqi_node *n;
    int idx, rounds;
    const char *to;
    int ok, bad; /* answers with the right id and context; anything else */
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    char name[32];
    snprintf(name, sizeof name, "client-%d", c->idx);
    uqi_kproc *port;
    if (uqi_node_port(c->n, name, &port, NULL) != UQ_OK) {
        c->bad++;
        return NULL;
    }
    for (int i = 0; i < c->rounds; i++) {
        char ctx[48], body[48];
        snprintf(ctx, sizeof ctx, "ctx-%d-%d", c->idx, i);
        snprintf(body, sizeof body, "{\"c\":%d,\"i\":%d}", c->idx, i);
        uint64_t id = kn_request(port, c->to, body, 30, ctx, NULL);
        uqi_msg *r = uqi_port_receive(port, 20000); /* a lost wake-up shows as no answer */
        if (r && r->kind == UQI_MSG_RESPONSE && r->id == id && kn_ctx_is(r, ctx) && kn_body_is(r, body)) c->ok++;
        else c->bad++;
        uqi_msg_free(r);
        if (!r) break;
    }
    return NULL;
}

/* Round trips from four threads, straight to echo and through middleware
 * (which forwards with inherit; spawned from the host, the two land on
 * different workers): each put from another thread races with a consumer
 * that arms its mailbox without the lock, and echo's answers wake mw's
 * clients from echo's worker. Nothing may be lost or answered twice. */
TEST(kernel_rt_cross_worker_wakeups_lose_nothing)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    kn_spawn(n, "middleware", "mw");
    ASSERT_EQ(uqi_node_grant_messaging(n, "mw", "echo", NULL), UQ_OK);
    uqi_log_level = UQ_LOG_WARN; /* middleware logs every request */
    enum { NC = 4 };
    client c[NC];
    pthread_t th[NC];
    for (int i = 0; i < NC; i++) {
        c[i] = (client){.n = n, .idx = i, .rounds = i % 2 ? 300 : 1500, .to = i % 2 ? "mw" : "echo"};
        ASSERT_EQ(pthread_create(&th[i], NULL, client_main, &c[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < NC; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(c[i].bad, 0);
        ASSERT_EQ(c[i].ok, c[i].rounds);
        ok += c[i].ok;
    }
    test_log("%d round trips from %d threads, each answered once with its context", ok, NC);
    uqi_node_stop(n);
}

/* Wasm to wasm on one worker (the local paths: the requester's record, the
 * local queue, the wake without the worker lock, the lock handed to the
 * loop by a blocking task): fanout's 31 sub-requests to echo, many times,
 * each gathered once by its context. */
TEST(kernel_rt_one_worker_wasm_round_trips)
{
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    uqi_node_config cfg = {.name = "test.node", .cache_dir = cache, .workers = 1};
    uqi_node *n;
    ASSERT_EQ(uqi_node_start(&cfg, &n, NULL), UQ_OK);
    uqi_node_engine(n)->progress = false;
    kn_spawn(n, "echo", "echo");
    kn_spawn(n, "fanout", "fanout");
    ASSERT_EQ(uqi_node_grant_messaging(n, "fanout", "echo", NULL), UQ_OK);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    for (int round = 0; round < 200; round++) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "outer-%d", round);
        kn_request(port, "fanout", "{\"fanout\":31,\"to\":\"echo\"}", 30, ctx, NULL);
        uqi_msg *r = uqi_port_receive(port, 20000);
        ASSERT(r != NULL);
        ASSERT_EQ(r->kind, UQI_MSG_RESPONSE);
        ASSERT(kn_body_is(r, "{\"gathered\":31,\"failed\":0,\"index_sum\":465}"));
        ASSERT(kn_ctx_is(r, ctx));
        uqi_msg_free(r);
    }
    char *dbg = uqi_node_debug_json(n, "fanout");
    ASSERT_STR_HAS(dbg, "\"awaiting_responses\":0"); /* every record was taken by its response */
    free(dbg);
    uqi_node_stop(n);
}

/* ---- a response racing with the timeout of its request ------------------- */
/* 300 requests with a 1 s deadline to a port that answers them one by one
 * around that deadline: each must come back exactly once, either as the
 * response with its context or as a Timeout carrying the request's body,
 * metadata, payload and context, and a late response is counted, not
 * delivered. */
TEST(kernel_rt_response_racing_timeout_answers_once)
{
    uqi_node *n = kn_boot(0);
    uqi_kproc *req, *srv;
    ASSERT_EQ(uqi_node_port(n, "requester", &req, NULL), UQ_OK);
    ASSERT_EQ(uqi_node_port(n, "server", &srv, NULL), UQ_OK);
    enum { N = 300 };
    uqi_payload *pl = uqi_payload_new("PAYLOAD-BYTES", 13, "text/plain");
    uint64_t ids[N];
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < N; i++) {
        char ctx[32], body[32];
        snprintf(ctx, sizeof ctx, "ctx-%d", i);
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        ids[i] = request_md(req, "server", body, 1, ctx, "md-race", uqi_payload_hold(pl));
    }
    uqi_msg *got[N];
    for (int i = 0; i < N; i++) {
        got[i] = uqi_port_receive(srv, 10000);
        ASSERT(got[i] != NULL);
        ASSERT_EQ(got[i]->id, ids[i]);
    }
    /* answer from 40 ms before the deadline to 40 ms after it */
    uint64_t start = t0 + 960000000ull, step = 80000000ull / N;
    for (int i = 0; i < N; i++) {
        uint64_t at = start + (uint64_t)i * step, now = uqi_now_ns();
        if (at > now) usleep((useconds_t)((at - now) / 1000));
        uqi_msg *r = uqi_msg_new(UQI_MSG_RESPONSE, "\"pong\"", 6);
        r->id = got[i]->id;
        r->target = got[i]->rsvp;
        uq_errmsg em = {{0}};
        ASSERT_EQ(uqi_kernel_send(srv, r, NULL, 0, NULL, &em), UQ_OK); /* late or not, the send succeeds */
        uqi_msg_free(got[i]);
    }
    int seen[N] = {0}, responses = 0, timeouts = 0;
    for (int k = 0; k < N; k++) {
        uqi_msg *r = uqi_port_receive(req, 10000);
        ASSERT(r != NULL);
        int i = -1;
        for (int j = 0; j < N; j++)
            if (ids[j] == r->id) i = j;
        ASSERT(i >= 0);
        ASSERT_EQ(seen[i], 0);
        seen[i] = 1;
        char ctx[32], body[32];
        snprintf(ctx, sizeof ctx, "ctx-%d", i);
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        ASSERT(kn_ctx_is(r, ctx));
        if (r->kind == UQI_MSG_RESPONSE) {
            ASSERT(kn_body_is(r, "\"pong\""));
            responses++;
        } else {
            ASSERT_EQ(r->kind, UQI_MSG_ERROR);
            ASSERT_EQ(r->error, UQI_SEND_TIMEOUT);
            ASSERT(kn_body_is(r, body));
            ASSERT(r->metadata && strcmp(r->metadata, "md-race") == 0);
            ASSERT(r->payload == pl); /* the request's own payload, by reference */
            ASSERT_EQ(r->expects_response_s, 1);
            ASSERT(strcmp(r->source.process, "server") == 0);
            ASSERT(strcmp(r->target.process, "requester") == 0);
            timeouts++;
        }
        uqi_msg_free(r);
    }
    uqi_msg *extra = uqi_port_receive(req, 300);
    ASSERT(extra == NULL); /* nothing twice */
    ASSERT_EQ(req->dangling, 0);
    test_log("%d responses in time, %d timeouts (each with body, metadata, payload, context)", responses, timeouts);
    uqi_payload_rele(pl);
    uqi_node_stop(n);
}

/* ---- a target killed while requests to it are outstanding ---------------- */
typedef struct killer_client {
    uqi_node *n;
    int idx, sent, responses, failed, bad;
} killer_client;

static void *kill_client_main(void *arg)
{
    killer_client *c = arg;
    char name[32];
    snprintf(name, sizeof name, "kc-%d", c->idx);
    uqi_kproc *port;
    if (uqi_node_port(c->n, name, &port, NULL) != UQ_OK) {
        c->bad++;
        return NULL;
    }
    /* keep up to 8 requests in flight until echo has gone and 50 more failed */
    int inflight = 0, after = 0;
    while (after < 50 && c->sent < 100000) {
        while (inflight < 8) {
            char ctx[48];
            snprintf(ctx, sizeof ctx, "k-%d-%d", c->idx, c->sent);
            kn_request(port, "echo", "{\"k\":1}", 30, ctx, NULL);
            c->sent++;
            inflight++;
        }
        uqi_msg *r = uqi_port_receive(port, 20000);
        if (!r) {
            c->bad++;
            return NULL;
        }
        inflight--;
        if (r->context_len < 2 || memcmp(r->context, "k-", 2) != 0) c->bad++;
        if (r->kind == UQI_MSG_RESPONSE) c->responses++;
        else if (r->kind == UQI_MSG_ERROR && r->error == UQI_SEND_NO_PROCESS && kn_body_is(r, "{\"k\":1}")) {
            c->failed++;
            after++;
        } else c->bad++;
        uqi_msg_free(r);
    }
    while (inflight > 0) { /* what is still out comes back too */
        uqi_msg *r = uqi_port_receive(port, 20000);
        if (!r) {
            c->bad++;
            return NULL;
        }
        inflight--;
        if (r->kind == UQI_MSG_RESPONSE) c->responses++;
        else if (r->kind == UQI_MSG_ERROR && r->error == UQI_SEND_NO_PROCESS) c->failed++;
        else c->bad++;
        uqi_msg_free(r);
    }
    uqi_msg *extra = uqi_port_receive(port, 200); /* nothing answered twice */
    if (extra) c->bad++;
    uqi_msg_free(extra);
    return NULL;
}

/* Three threads keep requests to echo in flight while echo is killed: every
 * one is answered once, by echo or by NO_PROCESS with its body and context
 * (a request recorded just before the kill is failed by it; one sent after
 * bounces at once); none waits for its 30 s timeout. */
TEST(kernel_rt_target_killed_with_requests_outstanding)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    enum { NC = 3 };
    killer_client c[NC];
    pthread_t th[NC];
    for (int i = 0; i < NC; i++) {
        c[i] = (killer_client){.n = n, .idx = i};
        ASSERT_EQ(pthread_create(&th[i], NULL, kill_client_main, &c[i]), 0);
    }
    usleep(150000);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_node_kill(n, "echo", &em), UQ_OK);
    int sent = 0, resp = 0, failed = 0;
    for (int i = 0; i < NC; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(c[i].bad, 0);
        ASSERT_EQ(c[i].responses + c[i].failed, c[i].sent);
        ASSERT(c[i].failed >= 50);
        sent += c[i].sent;
        resp += c[i].responses;
        failed += c[i].failed;
    }
    test_log("%d requests: %d answered by echo, %d failed NO_PROCESS when it was killed", sent, resp, failed);
    uqi_node_stop(n);
}
