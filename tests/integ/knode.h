/* Helpers for tests of a node with real wasm processes: boot a node on the
 * test cache, spawn an app, send from a port, call the kernel API. */
#ifndef UQ_KNODE_H
#define UQ_KNODE_H

#include "kernel/kernel.h"
#include "net/netmod.h"
#include "runner.h"

/* A node "test.node" with 2 workers on the shared test cache. */
uqi_node *kn_boot(uint32_t mailbox_cap);
/* A node `name` with the Ed25519 secret key sk (64 bytes) and workers on
 * the shared test cache (for nodes on the network). */
uqi_node *kn_boot_as(const char *name, const uint8_t *sk, int workers);
/* Start a net module configured by c for node n (c's recv, done, down and
 * arg are set to n's); fails the test if it cannot. The caller hands it to
 * the node (uqi_node_set_net). */
uqn_net *kn_net_start(uqi_node *n, uqn_net_cfg c);
/* Spawn <shared>/apps/<app>.wasm as process id (not public). */
void kn_spawn(uqi_node *n, const char *app, const char *id);
/* Spawn <shared>/guests/<guest>.wasm as process id (not public). */
void kn_spawn_guest(uqi_node *n, const char *guest, const char *id);
/* Send a request from a port of node `node` (a target without a node is
 * there); ctx is given to the kernel. The test fails unless the send ends
 * with want (on an error, the message and ctx are freed). */
uint64_t kn_send(uqi_kproc *port, const char *node, const char *target, const char *body, uint32_t expects,
                 const char *ctx, uqi_payload *payload, uq_err want);
/* kn_send on "test.node"; fails the test on error. */
uint64_t kn_request(uqi_kproc *port, const char *target, const char *body, uint32_t expects, const char *ctx,
                    uqi_payload *payload);
/* kn_request to target (30 s) and its response, waited for (30 s; other
 * messages are dropped): its body as a string, and its payload in *data
 * (NUL-terminated; NULL when none) if data is given. The test fails on an
 * error or no answer. */
char *kn_ask(uqi_kproc *port, const char *target, const char *body, uqi_payload *payload, char **data);
/* A NUL-terminated copy of p[0..n). */
char *kn_str(const void *p, size_t n);
/* A kernel command from a port, and its answer. */
uqi_msg *kn_kcall(uqi_kproc *port, const char *json, uqi_payload *payload);
bool kn_body_is(const uqi_msg *r, const char *want);
/* The message's context is want. */
bool kn_ctx_is(const uqi_msg *m, const char *want);
/* The bytes of <shared>/apps/<app>.wasm as a payload. */
uqi_payload *kn_app_payload(const char *app);
/* The bytes of <shared>/guests/<guest>.wasm as a payload. */
uqi_payload *kn_guest_payload(const char *guest);

#endif
