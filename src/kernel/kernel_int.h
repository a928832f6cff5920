/* Internal interface between the kernel's files (kernel.c, kcmd.c). */
#ifndef UQ_KERNEL_INT_H
#define UQ_KERNEL_INT_H

#include "kernel/kernel.h"

/* Handle a request addressed to node@kernel; takes ownership of m and ctx. */
void uqi_kcmd_handle(uqi_kproc *from, uqi_msg *m, uint8_t *ctx, size_t ctx_len);
/* Deliver a response from the kernel to `to` for request req, carrying ctx
 * (owned by the callee) and optional metadata. */
void uqi_kernel_reply(uqi_kproc *to, const uqi_msg *req, const char *body, const char *metadata, uint8_t *ctx,
                      size_t ctx_len);

/* OnExit from its JSON (kcmd.c); on failure why says what is wrong and
 * *reqs and *nreqs hold what was parsed (free them). */
bool uqi_parse_on_exit(uqi_node *n, json_t *v, uqi_on_exit *how, uqi_exit_request **reqs, uint32_t *nreqs, char *why,
                       size_t cap);

/* persist.c, called with the node lock held: write kp's record (or forget
 * it), asynchronously; the store's group commit keeps their order. */
void uqi_persist_proc(struct uqs_store *s, uqi_kproc *kp);
void uqi_persist_forget(struct uqs_store *s, const char *id);
/* kp's record and ops[0..nops) in one store request (one transaction: all
 * or nothing); done(arg, ...) once it is durable or failed. An error
 * returned here means it was not queued (done is never called). */
uq_err uqi_persist_proc_with(struct uqs_store *s, uqi_kproc *kp, const struct uqs_op *ops, size_t nops,
                             void (*done)(void *arg, uq_err err, const uq_errmsg *em), void *arg, uq_errmsg *em);
/* The same with the records of kps[0..nkps) (each once). */
uq_err uqi_persist_procs_with(struct uqs_store *s, uqi_kproc *const *kps, size_t nkps, const struct uqs_op *ops,
                              size_t nops, void (*done)(void *arg, uq_err err, const uq_errmsg *em), void *arg,
                              uq_errmsg *em);
/* Store wasm bytes under key (once per module). */
void uqi_persist_wasm(struct uqs_store *s, const char *key, const uint8_t *wasm, size_t len);
/* While frozen (restore, shutdown), the kernel writes no records. */
void uqi_node_freeze(uqi_node *n, bool frozen);

#endif
