/* Helpers for tests of a node with real wasm processes (knode.h). */
#include <stdio.h>

#include "knode.h"

static uqi_node *boot(uqi_node_config *c)
{
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    c->cache_dir = cache;
    uqi_node *n;
    uq_errmsg em = {{0}};
    if (uqi_node_start(c, &n, &em)) test_fail(__FILE__, __LINE__, "%s: %s", c->name, em.text);
    return n;
}

uqi_node *kn_boot(uint32_t mailbox_cap)
{
    uqi_node *n = boot(&(uqi_node_config){.name = "test.node", .mailbox_cap = mailbox_cap, .workers = 2});
    uqi_node_engine(n)->progress = false;
    return n;
}

uqi_node *kn_boot_as(const char *name, const uint8_t *sk, int workers)
{
    return boot(&(uqi_node_config){.name = name, .workers = workers, .identity_sk = sk});
}

uqn_net *kn_net_start(uqi_node *n, uqn_net_cfg c)
{
    uqi_node_net_hooks(n, &c);
    uqn_net *net;
    uq_errmsg em = {{0}};
    if (uqn_net_start(&c, &net, &em)) test_fail(__FILE__, __LINE__, "%s net: %s", c.id->name, em.text);
    return net;
}

static void spawn_from(uqi_node *n, const char *dir, const char *name, const char *id)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s/%s.wasm", tb_shared(), dir, name);
    uint8_t *b;
    size_t len;
    uq_errmsg em = {{0}};
    if (uqi_read_file(path, &b, &len, &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    if (uqi_node_spawn(n, id, b, len, false, NULL, &em)) test_fail(__FILE__, __LINE__, "spawn %s: %s", name, em.text);
    free(b);
}

void kn_spawn(uqi_node *n, const char *app, const char *id) { spawn_from(n, "apps", app, id); }
void kn_spawn_guest(uqi_node *n, const char *guest, const char *id) { spawn_from(n, "guests", guest, id); }

uint64_t kn_send(uqi_kproc *port, const char *node, const char *target, const char *body, uint32_t expects,
                 const char *ctx, uqi_payload *payload, uq_err want)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_addr_parse(target, node, &m->target, &em), UQ_OK);
    m->expects_response_s = expects;
    m->payload = payload;
    uint8_t *c = ctx ? (uint8_t *)uqi_xstrdup(ctx) : NULL;
    uint64_t id = 0;
    uq_err e = uqi_kernel_send(port, m, c, ctx ? strlen(ctx) : 0, &id, &em);
    if (e != want)
        test_fail(__FILE__, __LINE__, "send to %s: %s (want %s)", target, e ? em.text : "OK", uq_strerror(want));
    if (e) {
        free(c);
        uqi_msg_free(m);
    }
    return id;
}

uint64_t kn_request(uqi_kproc *port, const char *target, const char *body, uint32_t expects, const char *ctx,
                    uqi_payload *payload)
{
    return kn_send(port, "test.node", target, body, expects, ctx, payload, UQ_OK);
}

char *kn_ask(uqi_kproc *port, const char *target, const char *body, uqi_payload *payload, char **data)
{
    uint64_t id = kn_request(port, target, body, 30, NULL, payload);
    for (;;) {
        uqi_msg *r = uqi_port_receive(port, 30000);
        if (!r) test_fail(__FILE__, __LINE__, "no answer from %s to %s", target, body);
        if (r->id != id) {
            uqi_msg_free(r);
            continue;
        }
        if (r->kind != UQI_MSG_RESPONSE) test_fail(__FILE__, __LINE__, "%s: error %u for %s", target, r->error, body);
        char *s = kn_str(r->body, r->body_len);
        if (data) *data = r->payload ? kn_str(r->payload->data, r->payload->len) : NULL;
        uqi_msg_free(r);
        return s;
    }
}

char *kn_str(const void *p, size_t n)
{
    char *s = uqi_xmalloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

uqi_msg *kn_kcall(uqi_kproc *port, const char *json, uqi_payload *payload)
{
    kn_request(port, "kernel", json, 5, "kctx", payload);
    uqi_msg *r = uqi_port_receive(port, 30000);
    if (!r) test_fail(__FILE__, __LINE__, "no answer to %s", json);
    return r;
}

bool kn_body_is(const uqi_msg *r, const char *want)
{
    return r->body_len == strlen(want) && memcmp(r->body, want, r->body_len) == 0;
}

bool kn_ctx_is(const uqi_msg *m, const char *want)
{
    return m->context_len == strlen(want) && memcmp(m->context, want, m->context_len) == 0;
}

static uqi_payload *wasm_payload(const char *dir, const char *name)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s/%s.wasm", tb_shared(), dir, name);
    uint8_t *b;
    size_t len;
    ASSERT_EQ(uqi_read_file(path, &b, &len, NULL), UQ_OK);
    uqi_payload *p = uqi_payload_new(b, len, "application/wasm");
    free(b);
    return p;
}

uqi_payload *kn_app_payload(const char *app)
{
    return wasm_payload("apps", app);
}

uqi_payload *kn_guest_payload(const char *guest)
{
    return wasm_payload("guests", guest);
}

