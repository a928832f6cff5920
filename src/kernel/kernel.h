/* The kernel of a node: the process table, message routing with requests,
 * responses and contexts, timeouts, and the host side of the guest ABI
 * (import module "uqbar", see docs/ABI.md). */
#ifndef UQ_KERNEL_H
#define UQ_KERNEL_H

#include "engine/module.h"
#include "engine/proc.h"
#include "kernel/caps.h"
#include "kernel/msg.h"

#define UQI_MAX_HELD 64          /* messages a process may hold by handle at once */

typedef struct uqi_node uqi_node;
struct uqs_store;
struct uqs_files;
typedef struct uqi_outstanding uqi_outstanding;

/* A process as the kernel knows it: a wasm process, or a host port (the
 * terminal, a test) that receives through a condition variable. */
typedef enum uqi_on_exit { UQI_ON_EXIT_NONE = 0, UQI_ON_EXIT_RESTART, UQI_ON_EXIT_REQUESTS } uqi_on_exit;

/* One request of OnExit::Requests: sent, from the process, when it exits. */
typedef struct uqi_exit_request {
    uqi_addr target;
    uint8_t *body;
    size_t body_len;
    char *metadata;
    uqi_payload *payload;
} uqi_exit_request;

typedef struct uqi_kproc {
    struct uqi_kproc *next;      /* table chain */
    uqi_node *node;
    uqi_addr addr;
    uqi_proc *proc;              /* NULL for a host port */
    uqi_mailbox mbox;
    pthread_cond_t port_cond;    /* host ports wait here (with node->lock); initialized for ports only */
    _Atomic uint32_t port_puts;  /* a port: messages put, for a receiver that spins before it waits */
    uint64_t port_took_ns;       /* a port: when its receiver last took a message (node lock) */
    uint64_t held_mask;          /* bit h-1 set: handle h is in use (held[h-1] valid) */
    uqi_msg *held[UQI_MAX_HELD]; /* handle h is held[h-1]; owned by the process; read only where
                                    held_mask says (not zeroed: 8 cache lines per spawn) */
    bool public;
    bool running;                /* started (RunProcess); before that, messages wait */
    bool dead;
    uint32_t dangling;           /* outstanding requests it made */
    uint32_t awaited;            /* outstanding requests addressed to it */
    _Atomic uint64_t sent;       /* one writer at a time (the sender's thread; ports: node lock); received
                                    is mbox.pushed */
    /* life cycle */
    uqi_module *mod;             /* to restart it */
    uqi_on_exit on_exit;
    uqi_exit_request *exit_reqs; /* UQI_ON_EXIT_REQUESTS */
    uint32_t n_exit_reqs;
    uint32_t restarts;           /* times restarted */
    uint64_t backoff_ms;         /* next restart delay */
    uint64_t started_ns;         /* when the current instance started */
    uint64_t restart_at_ns;      /* pending restart, or 0 */
    /* capabilities (docs/CAPABILITIES.md), node lock held */
    uqi_capset caps;             /* what it holds */
    uqi_cap *issued;             /* what it issued, held by anyone (revoked when it goes) */
    uint32_t msg_cap_hash;       /* hash of its own messaging capability, for the send check; made on
                                    first use (kernel.c, msg_hash; node lock held) */
    bool msg_cap_hashed;
    /* A parent's messaging capability over a child it spawned is implicit
     * (no record) until something needs the record: listing, granting or
     * checking it, a drop, a revocation, persistence (kernel.c,
     * caps_materialize). The child is on its parent's implicit_kids list. */
    struct uqi_kproc *implicit_holder;   /* the parent holding it implicitly, or NULL */
    struct uqi_kproc *implicit_next, **implicit_prev;
    struct uqi_kproc *implicit_kids;     /* children it holds messaging over implicitly */
    uqi_module *spawn_hint;      /* the module it last spawned (its own task only; uqi_module_same) */
    bool port;                   /* a host port (port_cond is initialized) */
    bool root;                   /* a host port of the node's owner (terminal, installer):
                                    holds every capability */
    bool keep_issued;            /* killed with "no-revoke": what it issued survives it */
    char wasm_key[68];           /* persisted: "w/" + BLAKE2b-256 hex of its wasm; "" if not */
    bool records_due;            /* its last send or cap_drop queued process records (a grant, a drop):
                                    set under the node lock by uqi_kernel_send and uqi_kproc_cap_drop,
                                    called by its own task; abi.c waits until they are durable and
                                    clears it (its own task only) */
    struct uqi_kproc *msg_ok_to; /* the last target the messaging check passed for ... */
    uint64_t msg_ok_gen;         /* ... at this capability generation of the node */
    struct uqi_last_target *last_target; /* abi.c, made by the first request sent; freed with the process */
    /* the send without the node lock (kernel.c, send_fast) */
    _Atomic uint32_t refs;       /* the table's, and each last_target naming it: the record outlives
                                    them (its mailbox stays valid; closed once the process went) */
    uint16_t addr_len;           /* strlen of "node@process" */
    uint64_t id_next, id_end;    /* a block of request ids, used by its own task */
} uqi_kproc;

/* The last target text a process sent a request to, parsed: most processes
 * talk to few targets, and this skips the parse and its checks. */
typedef struct uqi_last_target {
    uint32_t len;
    char text[2 * UQI_NAME_MAX + 2];
    uqi_addr addr;
    struct uqi_kproc *to;        /* kernel.c: the local process it named, while gen is the node's cap_gen;
                                    holds a reference (uqi_last_target_clear drops it) */
    uint64_t gen;
    bool fast;                   /* to is a wasm process this one may message (at gen): one-way
                                    requests go without the node lock */
} uqi_last_target;

/* Forget lt's process (drops its reference); lt may be NULL. */
void uqi_last_target_clear(uqi_last_target *lt);

typedef struct uqi_node_config {
    const char *name;            /* node name */
    const char *cache_dir;       /* compiled modules */
    uint32_t mailbox_cap;        /* per process; 0 = 1024 */
    uint32_t max_dangling;       /* outstanding requests per process; 0 = 4096 */
    int workers;                 /* scheduler threads; 0 = CPUs */
    uint32_t restart_base_ms;    /* first Restart back-off; 0 = 1000 (doubles to 600 s) */
    uint32_t max_processes;      /* 0 = 65536: a bound on the process table */
    const uint8_t *identity_sk;  /* the node's Ed25519 secret key (64 bytes); NULL: a fresh one */
    struct uqs_store *store;     /* persistence (docs/PERSISTENCE.md); NULL: none. Not owned. */
    bool no_cap_checks;          /* benchmarks only: measure the cost of the checks */
} uqi_node_config;

uq_err uqi_node_start(const uqi_node_config *cfg, uqi_node **out, uq_errmsg *em);
/* Stop: kill every process, stop the scheduler, free everything. */
void uqi_node_stop(uqi_node *n);
const char *uqi_node_name(const uqi_node *n);
uqi_engine *uqi_node_engine(uqi_node *n);

/* Install and start a wasm process named id (or a fresh UUID when id is
 * NULL or empty). */
uq_err uqi_node_spawn(uqi_node *n, const char *id, const uint8_t *wasm, size_t len, bool public,
                      char out_id[UQI_NAME_MAX + 1], uq_errmsg *em);
/* InitializeProcess: install a process (compiled, instance not yet created);
 * messages to it wait in its mailbox until RunProcess. */
uq_err uqi_node_init_process(uqi_node *n, const char *id, const uint8_t *wasm, size_t len, bool public,
                             char out_id[UQI_NAME_MAX + 1], uq_errmsg *em);
uq_err uqi_node_run_process(uqi_node *n, const char *id, uq_errmsg *em);
void uqi_exit_requests_free(uqi_exit_request *r, uint32_t n);
/* Set what happens when the process exits; takes ownership of reqs[0..n). */
uq_err uqi_node_set_on_exit(uqi_node *n, const char *id, uqi_on_exit how, uqi_exit_request *reqs, uint32_t nreqs,
                            uq_errmsg *em);
/* Install and run a process of a module the node's engine already loaded. */
uq_err uqi_node_spawn_module(uqi_node *n, const char *id, uqi_module *mod, bool public, uq_errmsg *em);
/* Ask the node to shut down (the Shutdown command); uqi_node_wait_shutdown returns then. */
void uqi_node_request_shutdown(uqi_node *n);
bool uqi_node_wait_shutdown(uqi_node *n, int timeout_ms);
/* The process map as a JSON object {"id":{...},...} (malloc'ed), for Debug;
 * with only_id, that process's object alone, or NULL if there is none. */
char *uqi_node_debug_json(uqi_node *n, const char *only_id);

/* A host port: a process without wasm, for the terminal and tests. It is
 * the node owner's agent: it holds every capability (root). */
uq_err uqi_node_port(uqi_node *n, const char *id, uqi_kproc **out, uq_errmsg *em);
/* A port that holds nothing until granted (tests of refusals). */
uq_err uqi_node_port_plain(uqi_node *n, const char *id, uqi_kproc **out, uq_errmsg *em);
/* Make a process public (any process may send it requests without its
 * messaging capability), or not. Used by the fs module (fsmod.c). */
void uqi_kproc_set_public(uqi_kproc *kp, bool public);

/* ---- capabilities (docs/CAPABILITIES.md) ---- */
/* The node's Ed25519 public key, which verifies every capability it signs. */
void uqi_node_public_key(const uqi_node *n, uint8_t pk[32]);
/* Grant caps to process `to`. With `by`, each must be held or issued by `by`
 * (all or nothing: em names the refused ones); by = NULL is the node itself
 * (trusted host code: boot, installer). */
uq_err uqi_node_grant(uqi_node *n, uqi_kproc *by, const char *to, const uqi_capref *caps, uint32_t ncaps,
                      uq_errmsg *em);
/* Grant caps to process `to` (trusted, as by = NULL) and write ops[0..nops)
 * to store s in the same transaction as `to`'s process record, which lists
 * them: on return both are durable, or (an error) neither was written and
 * the grant is taken back. One commit; the caller waits for it (not under
 * the node lock). Used by fs (fsmod.c): a handle's record and the grant of
 * its capability. When s is not the node's store or `to` has no record,
 * ops are written alone (and the record, if any, as uqi_node_grant does). */
struct uqs_store;
struct uqs_op;
uq_err uqi_node_grant_with(uqi_node *n, const char *to, const uqi_capref *caps, uint32_t ncaps, struct uqs_store *s,
                           const struct uqs_op *ops, size_t nops, uq_errmsg *em);
/* The mirror of uqi_node_grant_with: revoke from every holder the
 * capabilities issued by `issuer` (a process of this node: fs's port) with
 * params[0..nparams) (canonical JSON), and write ops[0..nops) to store s in
 * the same transaction as the holders' rewritten process records: on return
 * both are durable (*revoked: how many capabilities were taken), or (an
 * error) nothing was written and each capability is back with its holder,
 * as it was. One commit; the caller waits for it (not under the node lock).
 * Used by fs (fsmod.c): Revoke and Remove, the deletion of the handles'
 * records. Holders not in s (or without a record) are rewritten as by a drop. */
uq_err uqi_node_revoke_with(uqi_node *n, uqi_kproc *issuer, const char *const *params, size_t nparams,
                            struct uqs_store *s, const struct uqs_op *ops, size_t nops, uint32_t *revoked,
                            uq_errmsg *em);
/* Only the check of uqi_node_grant: UQ_EPERM naming what `by` does not hold. */
uq_err uqi_node_check_held(uqi_node *n, uqi_kproc *by, const uqi_capref *caps, uint32_t ncaps, uq_errmsg *em);
/* Trusted: let `holder` message `target` (its messaging capability). */
uq_err uqi_node_grant_messaging(uqi_node *n, const char *holder, const char *target, uq_errmsg *em);
/* Remove caps from holder; *dropped counts those it held. */
uq_err uqi_node_drop_caps(uqi_node *n, const char *holder, const uqi_capref *caps, uint32_t ncaps,
                          uint32_t *dropped, uq_errmsg *em);
/* 1 if holder holds c, 0 if not, -1 if there is no such process. */
int uqi_node_has_cap(uqi_node *n, const char *holder, const uqi_capref *c);
/* The tokens of what kp holds, as a JSON array (malloc'ed). */
char *uqi_node_caps_json(uqi_node *n, uqi_kproc *kp);
/* Check a token: signed by this node (else UQ_ECRYPTO), issued to holder
 * (else UQ_EPERM), and still held (else UQ_ENOENT: dropped or revoked). */
uq_err uqi_node_cap_verify(uqi_node *n, const char *token, size_t len, const uqi_addr *holder, uq_errmsg *em);
/* A process gives up c: if it issued c, c is revoked from every holder;
 * otherwise it drops its own. Returns how many were removed; sets
 * kp->records_due if a record rewrite was queued. */
uint32_t uqi_kproc_cap_drop(uqi_kproc *kp, const uqi_capref *c);
/* A process spawns a child (the guest call spawn): initial caps must be
 * held or issued by parent (else UQ_EPERM, nothing started); the parent gets
 * the child's messaging capability; the child runs at once. */
uq_err uqi_node_spawn_child(uqi_node *n, uqi_kproc *parent, const char *id, const uint8_t *wasm, size_t len,
                            bool public, bool restart, const uqi_capref *caps, uint32_t ncaps,
                            char out_id[UQI_NAME_MAX + 1], uq_errmsg *em);
/* ---- persistence (docs/PERSISTENCE.md; src/kernel/persist.c) ---- */
struct uqs_store *uqi_node_store(uqi_node *n);
/* The node's files (src/store/files.h), for wasm_bytes_handle; NULL: none. */
void uqi_node_set_files(uqi_node *n, struct uqs_files *files);
struct uqs_files *uqi_node_files(uqi_node *n);
/* Bring back the processes of the node's store: install each, with its
 * capabilities and on_exit, and run those that were running (each gets its
 * persisted state as its first message). A process that cannot come back is
 * logged and counted in *failed; its record is kept. */
uq_err uqi_node_restore(uqi_node *n, uint32_t *restored, uint32_t *failed, uq_errmsg *em);
/* The same, and fn(arg, id, why) for each process that cannot come back
 * (or comes back without a capability), so a boot can say which and why. */
typedef void (*uqi_restore_fn)(void *arg, const char *id, const char *why);
uq_err uqi_node_restore_ex(uqi_node *n, uint32_t *restored, uint32_t *failed, uqi_restore_fn fn, void *arg,
                           uq_errmsg *em);
/* Wait until every process record written so far is durable (the process
 * table's writes are asynchronous: uqs_flush). UQ_OK without a store. An
 * installer calls it before it says a process is installed or running, so
 * that a kill -9 right after cannot lose it. Blocks about one fsync; call it
 * without the node lock. */
uq_err uqi_node_sync(uqi_node *n, uq_errmsg *em);
/* Benchmarks only: turn the capability checks off (false) and on again. */
void uqi_node_bench_cap_checks(uqi_node *n, bool on);
/* Kill, keeping (keep_issued) or revoking what the process issued. */
uq_err uqi_node_kill_ex(uqi_node *n, const char *id, bool keep_issued, uq_errmsg *em);
/* Send from a process (wasm or port). On success the kernel owns m and
 * context (malloc'ed, may be NULL) and *out_id (if given) is the message id;
 * on failure the caller still owns both. m->source is set by the kernel.
 * Sets from->records_due if the send queued process records (capabilities
 * attached to it were granted to a persisted receiver). */
uq_err uqi_kernel_send(uqi_kproc *from, uqi_msg *m, uint8_t *context, size_t context_len, uint64_t *out_id,
                       uq_errmsg *em);
/* Receive on a host port, waiting up to timeout_ms; NULL on timeout. */
uqi_msg *uqi_port_receive(uqi_kproc *port, int timeout_ms);
/* Kill a process: its queued messages are dropped (counted and logged),
 * requests waiting on it fail at once with NO_PROCESS. */
uq_err uqi_node_kill(uqi_node *n, const char *id, uq_errmsg *em);
/* Find a process (the node lock is not held on return: for tests/terminal). */
bool uqi_node_has(uqi_node *n, const char *id);

/* ---- network (issue 6; docs/PROTOCOL.md §6-7) ---- */
struct uqn_net;
struct uqn_net_cfg;
/* Attach the net module (src/net/netmod.h) that carries messages for other
 * nodes; NULL detaches it (then they bounce Offline). Detach, then
 * uqn_net_stop, before uqi_node_stop. */
void uqi_node_set_net(uqi_node *n, struct uqn_net *net);
/* The net module's callbacks, arg = the node: uqn_net_cfg.recv and
 * .recv_flush (both set together; net thread only), .done and .lost (all
 * four must be set: uqi_node_net_hooks below sets them, and .down). Decoded messages wait until uqi_node_net_flush (which
 * the net module calls after each read) or until 256 wait, then are
 * delivered under one node lock, each target woken once. */
void uqi_node_net_recv_batch(void *arg, const char *peer, const uint8_t *msg, size_t len);
void uqi_node_net_flush(void *arg);
void uqi_node_net_done(void *arg, void *cookie, int why);
void uqi_node_net_lost(void *arg, const char *peer, const uint8_t *msg, size_t len, int why);
/* The link to peer was cut: requests written to it that await an answer
 * fail Offline now ("connection refused or cut"), with their context. */
void uqi_node_net_down(void *arg, const char *peer);
/* Set all of them in cfg (recv, recv_flush, done, lost, down), arg = n:
 * what a node's net module is started with. */
void uqi_node_net_hooks(uqi_node *n, struct uqn_net_cfg *cfg);
/* One line per process for the terminal: id, mailbox depth, counters. */
void uqi_node_list(uqi_node *n, char *buf, size_t cap);

#endif
