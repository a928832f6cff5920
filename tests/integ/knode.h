/* Helpers for tests of a node with real wasm processes: boot a node on the
 * test cache, spawn an app, send from a port, call the kernel API. */
#ifndef UQ_KNODE_H
#define UQ_KNODE_H

#include "kernel/kernel.h"
#include "runner.h"

/* A node "test.node" with 2 workers on the shared test cache. */
uqi_node *kn_boot(uint32_t mailbox_cap);
/* Spawn <shared>/apps/<app>.wasm as process id (not public). */
void kn_spawn(uqi_node *n, const char *app, const char *id);
/* Spawn <shared>/guests/<guest>.wasm as process id (not public). */
void kn_spawn_guest(uqi_node *n, const char *guest, const char *id);
/* Send a request from a port; ctx is given to the kernel. Fails the test on error. */
uint64_t kn_request(uqi_kproc *port, const char *target, const char *body, uint32_t expects, const char *ctx,
                    uqi_payload *payload);
/* A NUL-terminated copy of p[0..n). */
char *kn_str(const void *p, size_t n);
/* A kernel command from a port, and its answer. */
uqi_msg *kn_kcall(uqi_kproc *port, const char *json, uqi_payload *payload);
bool kn_body_is(const uqi_msg *r, const char *want);
/* The bytes of <shared>/apps/<app>.wasm as a payload. */
uqi_payload *kn_app_payload(const char *app);

#endif
