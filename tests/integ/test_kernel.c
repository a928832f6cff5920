/* The kernel with real wasm processes on a real node: requests, responses,
 * contexts, inherit, timeouts, missing targets, bounded mailboxes. Each test
 * quotes the sentence of ../shared/seeds/processes.md it checks. */
#include <stdio.h>
#include <unistd.h>

#include "kernel/kernel.h"
#include "runner.h"
#include "knode.h"

/* "This request will be considered outstanding until the kernel receives a
 * matching response from any process, at which point that response will be
 * delivered to the requester alongside the optional context." */
TEST(kernel_request_response_carries_context)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    uint64_t id = kn_request(port, "echo", "{\"ping\":1}", 5, "my-context-42", NULL);
    uqi_msg *r = uqi_port_receive(port, 10000);
    ASSERT(r != NULL);
    ASSERT_EQ(r->kind, UQI_MSG_RESPONSE);
    ASSERT_EQ(r->id, id);
    char *b = kn_str(r->body, r->body_len), *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(b, "{\"ping\":1}") == 0);
    ASSERT(strcmp(c, "my-context-42") == 0);
    ASSERT(strcmp(r->source.process, "echo") == 0);
    free(b);
    free(c);
    uqi_msg_free(r);
    /* many in a row, each with its own context */
    for (int i = 0; i < 1000; i++) {
        char ctx[32], body[32];
        snprintf(ctx, sizeof ctx, "ctx-%d", i);
        snprintf(body, sizeof body, "%d", i);
        kn_request(port, "echo", body, 5, ctx, NULL);
        r = uqi_port_receive(port, 10000);
        ASSERT(r != NULL);
        c = kn_str(r->context, r->context_len);
        ASSERT(strcmp(c, ctx) == 0);
        free(c);
        uqi_msg_free(r);
    }
    uqi_node_stop(n);
}

/* "It can issue kn_request(s) that can inherit the context of the incipient
 * request." and "a message's payload is *not* automatically loaded into the
 * WASM process" / forwarding with inherit passes the payload by reference. */
TEST(kernel_inherit_through_middleware)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    kn_spawn(n, "middleware", "mw");
    ASSERT_EQ(uqi_node_grant_messaging(n, "mw", "echo", NULL), UQ_OK); /* as an installer would */
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    enum { BIG = 1 << 20 };
    uint8_t *blob = uqi_xmalloc(BIG);
    for (int i = 0; i < BIG; i++) blob[i] = (uint8_t)(i * 7);
    uqi_payload *pl = uqi_payload_new(blob, BIG, "application/octet-stream");
    uqi_payload_hold(pl); /* keep one reference to compare */
    kn_request(port, "mw", "{\"hello\":\"through\"}", 5, "origin-ctx", pl);
    uqi_msg *r = uqi_port_receive(port, 10000);
    ASSERT(r != NULL);
    ASSERT_EQ(r->kind, UQI_MSG_RESPONSE);
    char *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(c, "origin-ctx") == 0); /* the original context, back at the origin */
    ASSERT(strcmp(r->source.process, "echo") == 0); /* answered by the end of the chain */
    ASSERT(r->payload == pl); /* the very same bytes: forwarded by reference, never copied */
    free(c);
    uqi_msg_free(r);
    uqi_payload_rele(pl);
    free(blob);
    uqi_node_stop(n);
}

/* "If no response comes in time, the requester receives a Timeout error
 * that carries the original message, payload and context." */
TEST(kernel_timeout_returns_message_payload_and_context)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "sink", "sink");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    uqi_payload *pl = uqi_payload_new("PAYLOAD", 7, "text/plain");
    uint64_t t0 = uqi_now_ns();
    uint64_t id = kn_request(port, "sink", "{\"never\":\"answered\"}", 1, "ctx-timeout", pl);
    uqi_msg *r = uqi_port_receive(port, 10000);
    double s = (double)(uqi_now_ns() - t0) / 1e9;
    ASSERT(r != NULL);
    ASSERT_EQ(r->kind, UQI_MSG_ERROR);
    ASSERT_EQ(r->error, UQI_SEND_TIMEOUT);
    ASSERT_EQ(r->id, id);
    ASSERT(s >= 0.9);
    char *b = kn_str(r->body, r->body_len), *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(b, "{\"never\":\"answered\"}") == 0);
    ASSERT(strcmp(c, "ctx-timeout") == 0);
    ASSERT(r->payload && r->payload->len == 7 && memcmp(r->payload->data, "PAYLOAD", 7) == 0);
    test_log("timeout after %.2f s with body, payload and context", s);
    free(b);
    free(c);
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "A message to a process that does not exist fails at once, back to the
 * sender, when the sender expects a response." (issue 3) */
TEST(kernel_missing_target_fails_at_once)
{
    uqi_node *n = kn_boot(0);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    uint64_t t0 = uqi_now_ns();
    kn_request(port, "nobody-here", "{}", 30, "ctx-missing", NULL);
    uqi_msg *r = uqi_port_receive(port, 5000);
    ASSERT(r != NULL);
    ASSERT((uqi_now_ns() - t0) < 1000000000ull);
    ASSERT_EQ(r->kind, UQI_MSG_ERROR);
    ASSERT_EQ(r->error, UQI_SEND_NO_PROCESS);
    char *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(c, "ctx-missing") == 0);
    free(c);
    uqi_msg_free(r);
    /* without expecting a response, the sender is told synchronously */
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, "{}", 2);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_addr_parse("nobody-here", "test.node", &m->target, &em), UQ_OK);
    ASSERT_EQ(uqi_kernel_send(port, m, NULL, 0, NULL, &em), UQ_ENOENT);
    ASSERT_STR_HAS(em.text, "no process nobody-here");
    uqi_msg_free(m);
    /* another node: Offline (until networking, no other node is reachable) */
    kn_request(port, "far.away@echo", "{}", 5, "ctx-offline", NULL);
    r = uqi_port_receive(port, 5000);
    ASSERT(r != NULL);
    ASSERT_EQ(r->error, UQI_SEND_OFFLINE);
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "Every mailbox and queue is bounded; a full one gives backpressure to the
 * sender or an error, never a crash and never a silent drop." (issue 3) */
TEST(kernel_full_mailbox_pushes_back)
{
    uqi_node *n = kn_boot(4);
    uqi_kproc *a, *b;
    ASSERT_EQ(uqi_node_port(n, "a", &a, NULL), UQ_OK);
    ASSERT_EQ(uqi_node_port(n, "b", &b, NULL), UQ_OK);
    uq_errmsg em = {{0}};
    int ok = 0, full = 0;
    for (int i = 0; i < 10; i++) {
        uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, "x", 1);
        uqi_addr_parse("b", "test.node", &m->target, &em);
        uq_err e = uqi_kernel_send(a, m, NULL, 0, NULL, &em);
        if (e == UQ_OK) ok++;
        else {
            ASSERT_EQ(e, UQ_ELIMIT);
            ASSERT_STR_HAS(em.text, "mailbox of b is full (4 messages)");
            full++;
            uqi_msg_free(m); /* the sender still owns what was refused */
        }
    }
    ASSERT_EQ(ok, 4);
    ASSERT_EQ(full, 6);
    uqi_node_stop(n);
}

/* "Dangling requests and their contexts will be thrown away by the kernel if
 * enough of them build up from a single process." */
TEST(kernel_dangling_requests_are_bounded)
{
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    uqi_node_config cfg = {.name = "test.node", .cache_dir = cache, .max_dangling = 8, .workers = 1};
    uqi_node *n;
    ASSERT_EQ(uqi_node_start(&cfg, &n, NULL), UQ_OK);
    kn_spawn(n, "sink", "sink");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    for (int i = 0; i < 20; i++) kn_request(port, "sink", "{}", 60, "ctx", NULL);
    ASSERT_EQ(port->dangling, 8); /* the oldest 12 were dropped (and logged) */
    uqi_node_stop(n);
}

/* Killing a process: requests waiting on it fail at once. */
TEST(kernel_kill_fails_waiting_requests)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "sink", "sink");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    kn_request(port, "sink", "{\"q\":1}", 60, "ctx-kill", NULL);
    usleep(50000);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_node_kill(n, "sink", &em), UQ_OK);
    uqi_msg *r = uqi_port_receive(port, 5000);
    ASSERT(r != NULL);
    ASSERT_EQ(r->kind, UQI_MSG_ERROR);
    ASSERT_EQ(r->error, UQI_SEND_NO_PROCESS);
    uqi_msg_free(r);
    for (int i = 0; i < 100 && uqi_node_has(n, "sink"); i++) usleep(10000);
    ASSERT(!uqi_node_has(n, "sink"));
    ASSERT_EQ(uqi_node_kill(n, "sink", &em), UQ_ENOENT);
    uqi_node_stop(n);
}

/* ---- the kernel API (../shared/seeds/kernel-api.md) -------------------- */

/* "The process will not begin execution until the kernel receives a
 * RunProcess command with the same id." and "InitializeProcess must be sent
 * with a lazy_load_blob." */
TEST(kapi_initialize_then_run)
{
    uqi_node *n = kn_boot(0);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    uqi_msg *r = kn_kcall(port, "{\"InitializeProcess\":{\"id\":\"echo\",\"wasm_bytes_handle\":\"echo.wasm\","
                             "\"wit_version\":null,\"on_exit\":\"None\",\"initial_capabilities\":[],\"public\":false}}",
                       kn_app_payload("echo"));
    ASSERT(kn_body_is(r, "\"InitializedProcess\""));
    char *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(c, "kctx") == 0); /* the kernel answers like any process, with the context */
    free(c);
    uqi_msg_free(r);
    /* a request to it waits: it is not running yet */
    kn_request(port, "echo", "\"early\"", 5, "early-ctx", NULL);
    ASSERT(uqi_port_receive(port, 200) == NULL);
    /* Two answers, in either order: the kernel's, and echo's to the early
     * request (echo runs once started, while the kernel waits for its
     * record to be durable before it answers). */
    kn_request(port, "kernel", "{\"RunProcess\":\"echo\"}", 5, "kctx", NULL);
    bool started = false, early = false;
    for (int i = 0; i < 2; i++) {
        r = uqi_port_receive(port, 10000);
        ASSERT(r != NULL);
        if (kn_body_is(r, "\"StartedProcess\"")) started = true;
        else if (kn_body_is(r, "\"early\"")) early = true;
        else test_fail(__FILE__, __LINE__, "unexpected answer %.*s", (int)r->body_len, (const char *)r->body);
        uqi_msg_free(r);
    }
    ASSERT(started && early);
    r = kn_kcall(port, "{\"RunProcess\":\"echo\"}", NULL);
    ASSERT(kn_body_is(r, "\"RunProcessError\""));
    ASSERT_STR_HAS(r->metadata, "already running");
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "All capabilities passed into initial_capabilities must be held by the
 * source of this message, or the kernel will discard them (silently for
 * now)." We do better: every refusal says why in the response. */
TEST(kapi_refusals_say_why)
{
    uqi_node *n = kn_boot(0);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    uqi_msg *r = kn_kcall(port, "{\"InitializeProcess\":{\"id\":\"x\",\"wasm_bytes_handle\":\"\",\"on_exit\":\"None\","
                             "\"initial_capabilities\":[],\"public\":false}}", NULL);
    ASSERT(kn_body_is(r, "\"InitializeProcessError\""));
    ASSERT_STR_HAS(r->metadata, "must carry the .wasm bytes in its payload");
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"InitializeProcess\":{\"id\":\"Bad Name\",\"public\":false}}", kn_app_payload("echo"));
    ASSERT(kn_body_is(r, "\"InitializeProcessError\""));
    ASSERT_STR_HAS(r->metadata, "bad process id");
    uqi_msg_free(r);
    uqi_payload *junk = uqi_payload_new("not wasm", 8, "application/wasm");
    r = kn_kcall(port, "{\"InitializeProcess\":{\"id\":\"junk\",\"public\":false}}", junk);
    ASSERT(kn_body_is(r, "\"InitializeProcessError\""));
    ASSERT_STR_HAS(r->metadata, "not a WebAssembly module");
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"RunProcess\":\"nobody\"}", NULL);
    ASSERT(kn_body_is(r, "\"RunProcessError\""));
    ASSERT_STR_HAS(r->metadata, "no process nobody");
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"Frobnicate\":1}", NULL);
    ASSERT_STR_HAS(r->metadata, "unknown kernel command");
    uqi_msg_free(r);
    r = kn_kcall(port, "{not json", NULL);
    ASSERT_STR_HAS(r->metadata, "the body is not JSON");
    uqi_msg_free(r);
    r = kn_kcall(port, "\"Booted\"", NULL);
    ASSERT_STR_HAS(r->metadata, "runtime only");
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "KillProcess: Takes a process ID and kills it ... The process will be
 * removed from the kernel's process table and will no longer be able to
 * receive messages." and Debug(ProcessMap | Process). */
TEST(kapi_kill_and_debug)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    uqi_msg *r = kn_kcall(port, "{\"Debug\":\"ProcessMap\"}", NULL);
    char *b = kn_str(r->body, r->body_len);
    ASSERT_STR_HAS(b, "{\"Debug\":{\"ProcessMap\":{");
    ASSERT_STR_HAS(b, "\"echo\":{\"public\":false,\"running\":true");
    ASSERT_STR_HAS(b, "\"installer\":{");
    free(b);
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"Debug\":{\"Process\":\"echo\"}}", NULL);
    b = kn_str(r->body, r->body_len);
    ASSERT_STR_HAS(b, "{\"Debug\":{\"Process\":{\"public\":false,\"running\":true");
    free(b);
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"Debug\":{\"Process\":\"nobody\"}}", NULL);
    ASSERT(kn_body_is(r, "{\"Debug\":{\"Process\":null}}"));
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"KillProcess\":\"echo\"}", NULL);
    ASSERT(kn_body_is(r, "{\"KilledProcess\":\"echo\"}"));
    ASSERT(r->metadata == NULL);
    uqi_msg_free(r);
    kn_request(port, "echo", "{}", 5, "after-kill", NULL);
    r = uqi_port_receive(port, 5000);
    ASSERT(r != NULL);
    ASSERT_EQ(r->kind, UQI_MSG_ERROR);
    ASSERT_EQ(r->error, UQI_SEND_NO_PROCESS);
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"KillProcess\":\"echo\"}", NULL);
    ASSERT_STR_HAS(r->metadata, "no process echo");
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "Shutdown: Send to the kernel in order to gracefully shut down the system." */
TEST(kapi_shutdown)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    ASSERT(!uqi_node_wait_shutdown(n, 10));
    uqi_msg *r = kn_kcall(port, "\"Shutdown\"", NULL);
    uqi_msg_free(r);
    ASSERT(uqi_node_wait_shutdown(n, 1000));
    uqi_node_stop(n);
}

/* "Contexts saved by the kernel enable very straightforward, async-style
 * code": a fan-out gathers several responses through contexts. */
TEST(kernel_fanout_gathers_through_contexts)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "echo", "echo");
    kn_spawn(n, "fanout", "fanout");
    kn_spawn(n, "counter", "counter");
    ASSERT_EQ(uqi_node_grant_messaging(n, "fanout", "echo", NULL), UQ_OK);
    ASSERT_EQ(uqi_node_grant_messaging(n, "fanout", "counter", NULL), UQ_OK);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    kn_request(port, "fanout", "{\"fanout\":20,\"to\":\"echo\"}", 10, "outer", NULL);
    uqi_msg *r = uqi_port_receive(port, 10000);
    ASSERT(r != NULL);
    char *b = kn_str(r->body, r->body_len), *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(b, "{\"gathered\":20,\"failed\":0,\"index_sum\":190}") == 0);
    ASSERT(strcmp(c, "outer") == 0);
    free(b);
    free(c);
    uqi_msg_free(r);
    /* to a process that does not exist: every part fails at once, and says so */
    kn_request(port, "fanout", "{\"fanout\":3,\"to\":\"ghost\"}", 10, "outer2", NULL);
    r = uqi_port_receive(port, 10000);
    ASSERT(r != NULL);
    b = kn_str(r->body, r->body_len);
    ASSERT(strcmp(b, "{\"gathered\":0,\"failed\":3,\"index_sum\":0}") == 0);
    free(b);
    uqi_msg_free(r);
    /* counter: state in memory across messages */
    for (int i = 1; i <= 10; i++) kn_request(port, "counter", "{\"add\":5}", 0, NULL, NULL);
    kn_request(port, "counter", "{\"get\":null}", 5, NULL, NULL);
    r = uqi_port_receive(port, 10000);
    ASSERT(r != NULL);
    b = kn_str(r->body, r->body_len);
    ASSERT(strcmp(b, "{\"count\":50,\"requests\":11}") == 0);
    free(b);
    uqi_msg_free(r);
    uqi_node_stop(n);
}

static uqi_node *boot_fast_restart(void)
{
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    uqi_node_config c = {.name = "test.node", .cache_dir = cache, .workers = 2, .restart_base_ms = 100};
    uqi_node *n;
    uq_errmsg em = {{0}};
    if (uqi_node_start(&c, &n, &em)) test_fail(__FILE__, __LINE__, "node: %s", em.text);
    return n;
}

static void install(uqi_kproc *port, const char *id, const char *app, const char *on_exit)
{
    char body[2048];
    snprintf(body, sizeof body, "{\"InitializeProcess\":{\"id\":\"%s\",\"wasm_bytes_handle\":\"%s.wasm\",\"on_exit\":%s,"
                                "\"initial_capabilities\":[],\"public\":false}}", id, app, on_exit);
    uqi_msg *r = kn_kcall(port, body, kn_app_payload(app));
    if (!kn_body_is(r, "\"InitializedProcess\"")) test_fail(__FILE__, __LINE__, "install %s: %s", id, r->metadata);
    uqi_msg_free(r);
    snprintf(body, sizeof body, "{\"RunProcess\":\"%s\"}", id);
    r = kn_kcall(port, body, NULL);
    ASSERT(kn_body_is(r, "\"StartedProcess\""));
    uqi_msg_free(r);
}

static char *ask_body(uqi_kproc *port, const char *to, const char *body)
{
    kn_request(port, to, body, 10, NULL, NULL);
    uqi_msg *r = uqi_port_receive(port, 15000);
    if (!r) test_fail(__FILE__, __LINE__, "no answer from %s", to);
    char *s = r->kind == UQI_MSG_RESPONSE ? kn_str(r->body, r->body_len) : uqi_xstrdup("ERROR");
    uqi_msg_free(r);
    return s;
}

/* on_exit Restart: a trapped process comes back (after a back-off), with a
 * fresh instance; messages sent while it was down wait for it. */
TEST(kapi_on_exit_restart)
{
    uqi_node *n = boot_fast_restart();
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    install(port, "crashy", "crashy", "\"Restart\"");
    char *b = ask_body(port, "crashy", "{\"hi\":1}");
    ASSERT(strcmp(b, "{\"seen\":1}") == 0);
    free(b);
    for (int round = 1; round <= 3; round++) {
        kn_request(port, "crashy", "{\"crash\":1}", 0, NULL, NULL); /* traps */
        b = ask_body(port, "crashy", "{\"after\":1}");       /* waits for the restart */
        ASSERT(strcmp(b, "{\"seen\":1}") == 0);              /* a fresh instance */
        free(b);
    }
    uqi_msg *r = kn_kcall(port, "{\"Debug\":{\"Process\":\"crashy\"}}", NULL);
    b = kn_str(r->body, r->body_len);
    ASSERT_STR_HAS(b, "\"on_exit\":\"Restart\",\"restarts\":3");
    free(b);
    uqi_msg_free(r);
    /* a kill is final, Restart or not */
    r = kn_kcall(port, "{\"KillProcess\":\"crashy\"}", NULL);
    uqi_msg_free(r);
    ASSERT(!uqi_node_has(n, "crashy")); /* gone from the table at once */
    usleep(300000);                     /* and no restart brings it back */
    ASSERT(!uqi_node_has(n, "crashy"));
    uqi_node_stop(n);
}

/* on_exit Requests: sent when the process exits. */
TEST(kapi_on_exit_requests)
{
    uqi_node *n = boot_fast_restart();
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    kn_spawn(n, "counter", "counter");
    install(port, "crashy", "crashy",
            "{\"Requests\":[[\"test.node@counter\",{\"inherit\":false,\"expects_response\":null,"
            "\"body\":[123,34,97,100,100,34,58,55,125],\"metadata\":null,\"capabilities\":[]},null],"
            "[\"counter\",{\"body\":\"{\\\"add\\\":1}\"},null]]}");
    kn_request(port, "crashy", "{\"crash\":1}", 0, NULL, NULL);
    /* it leaves the table only after its exit requests are queued (same lock) */
    for (int i = 0; i < 1000 && uqi_node_has(n, "crashy"); i++) usleep(10000);
    ASSERT(!uqi_node_has(n, "crashy"));
    char *b = ask_body(port, "counter", "{\"get\":null}");
    ASSERT(strcmp(b, "{\"count\":8,\"requests\":3}") == 0); /* 7 + 1, and our get */
    free(b);
    /* a malformed on_exit is refused with a reason */
    uqi_msg *r = kn_kcall(port, "{\"InitializeProcess\":{\"id\":\"x\",\"on_exit\":{\"Requests\":[[1,2,3]]},\"public\":false}}",
                       kn_app_payload("crashy"));
    ASSERT(kn_body_is(r, "\"InitializeProcessError\""));
    ASSERT_STR_HAS(r->metadata, "on_exit request 0 must be");
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "Processes are compiled to WASM": from any language. A Rust process
 * speaks the same ABI as the C ones. */
TEST(kernel_rust_process_answers)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "rust_echo", "recho");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    uqi_payload *pl = uqi_payload_new("rusty bytes", 11, "text/plain");
    uqi_payload_hold(pl);
    kn_request(port, "recho", "{\"lang\":\"rust\"}", 10, "rust-ctx", pl);
    uqi_msg *r = uqi_port_receive(port, 20000);
    ASSERT(r != NULL);
    ASSERT_EQ(r->kind, UQI_MSG_RESPONSE);
    char *b = kn_str(r->body, r->body_len), *c = kn_str(r->context, r->context_len);
    ASSERT(strcmp(b, "{\"lang\":\"rust\"}") == 0);
    ASSERT(strcmp(c, "rust-ctx") == 0);
    ASSERT(r->payload == pl); /* inherited by reference */
    free(b);
    free(c);
    uqi_msg_free(r);
    uqi_payload_rele(pl);
    uqi_node_stop(n);
}
