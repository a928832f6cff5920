/* The kernel: process table, routing, requests with contexts, timeouts.
 *
 * One node lock guards the process table and the outstanding requests;
 * mailboxes have their own. Routing a message takes the node lock, finds
 * the target, appends to its bounded mailbox and wakes it. A request that
 * expects a response leaves an outstanding record {id, requester, context,
 * the request's body, metadata and payload, deadline}; the matching response
 * (same id, addressed to the requester) takes the record and carries its
 * context. A timer thread turns records past their deadline into Timeout
 * errors, made from the record, that carry the original message, payload and
 * context back to the requester. */
#include "kernel/kernel.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/rt.h"
#include "kernel/kernel_int.h"
#include "kernel/remote.h"
#include "net/netmod.h"
#include "store/store.h"

#define PTAB 1024
#define OTAB 4096

struct uqi_outstanding {
    uqi_outstanding *hnext;          /* hash chain by id */
    uqi_outstanding *older, *newer;  /* requester's list, oldest first */
    uint64_t id;
    uqi_kproc *requester;
    uqi_kproc *target_kp;            /* the local target while it lives, else NULL */
    uqi_addr target;
    uint64_t deadline_ns;
    uint8_t *ctx;
    size_t ctx_len;
    /* What an error return (Timeout, Offline, NO_PROCESS) carries back of
     * the request: its body (inline, below), metadata and payload. The
     * error message itself is made only when it is needed (err_of): a full
     * copy of every request, kept for an error that rarely comes, was a
     * message allocation and 256 bytes of addresses per round trip. */
    char *metadata;                  /* owned or NULL */
    uqi_payload *payload;            /* held or NULL */
    uint32_t expects_response_s;
    bool small;                      /* from the per-thread cache (orec_get) */
    char fwd_node[UQI_NAME_MAX + 1]; /* networking: another node a local process forwarded it to */
    size_t body_len;
    uint8_t body[];
};

struct uqi_node {
    char name[UQI_NAME_MAX + 1];
    uqi_engine eng;
    pthread_mutex_t lock;
    uqi_kproc *ptab[PTAB];
    uqi_outstanding *otab[OTAB];
    uint32_t mailbox_cap, max_dangling, restart_base_ms, max_processes, nprocs;
    _Atomic uint64_t next_id;        /* request ids: new_id(), or a block of them (send_fast) */
    pthread_t timer;
    pthread_cond_t timer_cond;
    bool stopping;
    bool shutdown_requested;
    pthread_cond_t shutdown_cond;
    uint64_t unexpected_responses, dropped_dangling, dropped_on_kill;
    /* capabilities */
    uint8_t pk[32], sk[64];          /* the node's Ed25519 identity */
    uqi_addr kernel_addr;
    uint32_t kernel_cap_hash, network_cap_hash;
    uqi_cap *kernel_issued;          /* issued by node@kernel */
    uqi_cap *orphans;                /* issued by processes killed with "no-revoke" */
    bool no_cap_checks;
    _Atomic uint64_t cap_gen;        /* advanced by every drop, revocation and exit (under the lock;
                                        read without it by send_fast) */
    /* persistence */
    struct uqs_store *store;
    struct uqs_files *files;
    bool frozen;                     /* restore or shutdown: write no records */
    uint64_t records_queued;         /* process records queued so far (under the lock): a caller that
                                        compares it before and after a locked step knows whether that
                                        step wrote any (uqi_kproc.records_due) */
    /* networking (the section "network" at the end of this file) */
    struct uqn_net *net;             /* NULL: every other node is unreachable */
    uint64_t remote_refused, remote_dropped;
    uqi_msg *rx_head, *rx_tail;      /* received, decoded, not yet delivered (net thread: uqi_node_net_recv_batch) */
    uint32_t rx_n;
};

/* Write kp's record (node lock held). Ports and processes without a stored
 * module (spawned from a loaded module by host code) are not persisted. */
static void caps_materialize(uqi_node *n, uqi_kproc *holder);
static bool persisted(const uqi_node *n, const uqi_kproc *kp)
{
    return n->store && !n->frozen && kp->wasm_key[0] && !kp->dead;
}

static void persist(uqi_node *n, uqi_kproc *kp)
{
    if (persisted(n, kp)) {
        if (UQ_UNLIKELY(kp->implicit_kids != NULL)) caps_materialize(n, kp); /* its record lists them */
        uqi_persist_proc(n->store, kp);
        n->records_queued++;
    }
}

#define MESSAGING "\"messaging\""
#define NETWORK "\"network\""

static void on_proc_finish(uqi_proc *p);
static uqi_proc *new_instance(uqi_kproc *kp);
static uint64_t restart_due(uqi_node *n, uint64_t now, uint64_t next);

static inline uint64_t new_id(uqi_node *n) { return atomic_fetch_add_explicit(&n->next_id, 1, memory_order_relaxed); }
static inline uint64_t gen_of(uqi_node *n) { return atomic_load_explicit(&n->cap_gen, memory_order_acquire); }
/* Node lock held: no remembered check or lookup survives this. */
static inline void gen_bump(uqi_node *n) { atomic_fetch_add_explicit(&n->cap_gen, 1, memory_order_release); }
/* kp->sent has one writer at a time (see kernel.h): no read-modify-write. */
static inline void count_sent(uqi_kproc *kp)
{
    atomic_store_explicit(&kp->sent, atomic_load_explicit(&kp->sent, memory_order_relaxed) + 1, memory_order_relaxed);
}
static inline unsigned long long received_of(uqi_kproc *kp)
{
    return (unsigned long long)uqi_mailbox_delivered(&kp->mbox);
}

/* per-kproc outstanding list heads (kept outside the public struct) */
typedef struct kp_ext { uqi_outstanding *oldest, *newest; } kp_ext;
static kp_ext *ext_of(uqi_kproc *kp);

/* ---- tables (node lock held) --------------------------------------------- */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Copy a checked name (at most UQI_NAME_MAX) into dst[UQI_NAME_MAX + 1]:
 * cheaper than snprintf on the spawn path. */
static inline void name_copy(char *dst, const char *src)
{
    size_t l = strnlen(src, UQI_NAME_MAX);
    memcpy(dst, src, l);
    dst[l] = '\0';
}

static uqi_kproc *find(uqi_node *n, const char *id)
{
    for (uqi_kproc *k = n->ptab[hash_str(id) % PTAB]; k; k = k->next)
        if (strcmp(k->addr.process, id) == 0) return k;
    return NULL;
}

static void unlink_proc(uqi_node *n, uqi_kproc *kp)
{
    n->nprocs--;
    uqi_kproc **pp = &n->ptab[hash_str(kp->addr.process) % PTAB];
    while (*pp && *pp != kp) pp = &(*pp)->next;
    if (*pp) *pp = kp->next;
}

typedef struct kproc_full { uqi_kproc kp; kp_ext ext; } kproc_full;
static kp_ext *ext_of(uqi_kproc *kp) { return &((kproc_full *)kp)->ext; }

_Static_assert(UQI_MAX_HELD == 64, "held_mask has a bit per handle");
_Static_assert(offsetof(uqi_kproc, public) == offsetof(uqi_kproc, held) + sizeof(((uqi_kproc *)0)->held),
               "kproc_new zeroes all but held[]");

static uqi_kproc *kproc_new(uqi_node *n, const char *id)
{
    kproc_full *f = uqi_block_get(sizeof *f);
    /* all zero but held[] (read only where held_mask says) */
    memset(f, 0, offsetof(uqi_kproc, held));
    memset((char *)f + offsetof(uqi_kproc, public), 0, sizeof *f - offsetof(uqi_kproc, public));
    uqi_kproc *kp = &f->kp;
    kp->node = n;
    memcpy(kp->addr.node, n->name, strnlen(n->name, UQI_NAME_MAX)); /* both checked: at most UQI_NAME_MAX */
    memcpy(kp->addr.process, id, strnlen(id, UQI_NAME_MAX));
    uqi_mailbox_init(&kp->mbox, n->mailbox_cap);
    kp->addr_len = (uint16_t)(strlen(kp->addr.node) + 1 + strlen(kp->addr.process));
    atomic_init(&kp->refs, 1); /* the table's */
    return kp;
}

/* The hash of kp's messaging capability (node lock held): most processes
 * are never checked against it, so it is made on first use. */
static uint32_t msg_hash(uqi_kproc *kp)
{
    if (UQ_UNLIKELY(!kp->msg_cap_hashed)) {
        kp->msg_cap_hash = uqi_cap_hash(&kp->addr, MESSAGING);
        kp->msg_cap_hashed = true;
    }
    return kp->msg_cap_hash;
}

static void kproc_hold(uqi_kproc *kp) { atomic_fetch_add_explicit(&kp->refs, 1, memory_order_relaxed); }
/* Does a sender's cache (send_fast) reach kp? New references are taken
 * only under the node lock, from the table. */
static bool kproc_shared(uqi_kproc *kp) { return atomic_load_explicit(&kp->refs, memory_order_acquire) > 1; }

/* The last reference: only the mailbox (closed and drained) is left. */
static void kproc_unref(uqi_kproc *kp)
{
    if (atomic_fetch_sub_explicit(&kp->refs, 1, memory_order_acq_rel) != 1) return;
    uqi_mailbox_fini(&kp->mbox);
    uqi_block_put(kp, sizeof(kproc_full));
}

void uqi_last_target_clear(uqi_last_target *lt)
{
    if (!lt || !lt->to) return;
    kproc_unref(lt->to);
    lt->to = NULL;
    lt->fast = false;
}

/* Remember `to` as lt's process at the current generation (node lock held). */
static void last_target_set(uqi_node *n, uqi_last_target *lt, uqi_kproc *to)
{
    if (lt->to != to) {
        kproc_hold(to);
        uqi_last_target_clear(lt);
        lt->to = to;
    }
    lt->gen = atomic_load_explicit(&n->cap_gen, memory_order_relaxed);
    lt->fast = false; /* until the messaging check passes at this generation */
}

void uqi_exit_requests_free(uqi_exit_request *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(r[i].body);
        free(r[i].metadata);
        uqi_payload_rele(r[i].payload);
    }
    free(r);
}

/* The process is gone and its task ended: free all but what a sender's
 * cached reference may still reach (the closed mailbox). */
static void kproc_free(uqi_kproc *kp)
{
    uqi_exit_requests_free(kp->exit_reqs, kp->n_exit_reqs);
    for (uint64_t m = kp->held_mask; m; m &= m - 1) uqi_msg_free(kp->held[__builtin_ctzll(m)]);
    bool shared = kproc_shared(kp); /* out of the table: can only drop to 1 */
    if (shared) {
        uqi_mailbox_disarm(&kp->mbox, true, true);
        uqi_mailbox_drain(&kp->mbox);
    }
    if (kp->port) pthread_cond_destroy(&kp->port_cond);
    UQ_ASSERT(kp->caps.n == 0 && !kp->issued && !kp->implicit_kids && !kp->implicit_holder); /* retire() gave them up */
    free(kp->caps.b);
    uqi_last_target_clear(kp->last_target);
    uqi_block_put(kp->last_target, sizeof(uqi_last_target));
    kproc_unref(kp);
}

/* ---- outstanding requests (node lock held) ---------------------------------- */
static void out_unlink(uqi_node *n, uqi_outstanding *o)
{
    uqi_outstanding **pp = &n->otab[o->id % OTAB];
    while (*pp && *pp != o) pp = &(*pp)->hnext;
    if (*pp) *pp = o->hnext;
    kp_ext *x = ext_of(o->requester);
    if (o->older) o->older->newer = o->newer;
    else x->oldest = o->newer;
    if (o->newer) o->newer->older = o->older;
    else x->newest = o->older;
    o->requester->dangling--;
    if (o->target_kp) o->target_kp->awaited--;
}

/* Records of requests with small bodies come from a per-thread free list:
 * one is made per request that expects a response and freed by its
 * response, usually on the same worker (calloc and free were a tenth of a
 * local round trip). Bounded; off under AddressSanitizer. */
#define OREC_SMALL_BODY 200
#define OREC_SMALL_SIZE (sizeof(uqi_outstanding) + OREC_SMALL_BODY)
#if defined(__SANITIZE_ADDRESS__)
#define OREC_CACHE_MAX 0
#else
#define OREC_CACHE_MAX 256
#endif
typedef struct orec_cache {
    uqi_outstanding *head; /* linked through hnext */
    int n;
    bool keyed;
} orec_cache;
static _Thread_local orec_cache ocache;
static pthread_key_t ocache_key; /* its destructor frees a thread's list when the thread ends */
static pthread_once_t ocache_once = PTHREAD_ONCE_INIT;

static void ocache_drain(void *arg)
{
    orec_cache *c = arg;
    for (uqi_outstanding *o = c->head, *nx; o; o = nx) {
        nx = o->hnext;
        free(o);
    }
    c->head = NULL;
    c->n = 0;
    c->keyed = false;
}

static void ocache_key_make(void) { UQ_VERIFY(pthread_key_create(&ocache_key, ocache_drain) == 0); }

static uqi_outstanding *orec_get(size_t body_len)
{
    uqi_outstanding *o;
    bool small = body_len <= OREC_SMALL_BODY;
    if (small && ocache.head) {
        o = ocache.head;
        ocache.head = o->hnext;
        ocache.n--;
    } else {
        o = uqi_xmalloc(small ? OREC_SMALL_SIZE : sizeof *o + body_len);
    }
    o->small = small;
    return o;
}

static void orec_put(uqi_outstanding *o)
{
    if (o->small && ocache.n < OREC_CACHE_MAX) {
        if (UQ_UNLIKELY(!ocache.keyed)) {
            pthread_once(&ocache_once, ocache_key_make);
            pthread_setspecific(ocache_key, &ocache);
            ocache.keyed = true;
        }
        o->hnext = ocache.head;
        ocache.head = o;
        ocache.n++;
        return;
    }
    free(o);
}

static void out_free(uqi_outstanding *o)
{
    free(o->ctx);
    free(o->metadata);
    uqi_payload_rele(o->payload);
    orec_put(o);
}

/* The error message that goes back for o's request: the request as it was
 * sent (body, metadata, payload, id, expects_response_s), its context,
 * from the target to the requester. Takes o's context, metadata and payload. */
static uqi_msg *err_of(uqi_outstanding *o, uqi_send_error why)
{
    uqi_msg *e = uqi_msg_new(UQI_MSG_ERROR, o->body, o->body_len);
    e->id = o->id;
    e->error = why;
    e->expects_response_s = o->expects_response_s;
    e->metadata = o->metadata;
    e->payload = o->payload;
    e->context = o->ctx;
    e->context_len = o->ctx_len;
    o->metadata = NULL;
    o->payload = NULL;
    o->ctx = NULL;
    e->source = o->target;
    e->target = o->requester->addr;
    return e;
}

/* After a put: wake kp if it waits (node lock held). A wasm process marks
 * its mailbox before it blocks in receive, so a sender wakes it only then;
 * a host port waits on its condition variable. */
static void wake(uqi_kproc *kp, bool waits)
{
    if (kp->port) {
        atomic_fetch_add_explicit(&kp->port_puts, 1, memory_order_release);
        pthread_cond_broadcast(&kp->port_cond);
    } else if (kp->proc) {
        if (waits && kp->running) uqi_task_wake(&kp->proc->task); /* else it reads its mailbox when run */
    }
}

/* Deliver to kp; the kernel's own messages (errors) bypass the mailbox
 * bound so that an error is never lost: they are bounded by the requests
 * outstanding, which are bounded per process. */
static void deliver_forced(uqi_kproc *kp, uqi_msg *m)
{
    bool waits;
    uqi_mailbox_put(&kp->mbox, m, true, &waits);
    wake(kp, waits);
}

/* A process about to start whose state was persisted gets it first: a
 * request from node@kernel, body "RestoredState", the state as payload
 * (node lock held; the process is not running, so nothing consumes yet). */
static void deliver_state(uqi_node *n, uqi_kproc *kp)
{
    uint8_t *st;
    size_t len;
    uq_errmsg em;
    if (!n->store || !kp->wasm_key[0]) return;
    uq_err e = uqs_state_get(n->store, kp->addr.process, &st, &len, &em);
    if (e == UQ_ENOENT) return;
    if (e) {
        uq_log(UQ_LOG_ERROR, "kernel", "%s: its persisted state cannot be read: %s", kp->addr.process, em.text);
        return;
    }
    static const char body[] = "\"RestoredState\"";
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, sizeof body - 1);
    m->id = new_id(n);
    m->source = n->kernel_addr;
    m->target = kp->addr;
    m->payload = uqi_payload_new(st, len, "application/octet-stream");
    free(st);
    uqi_mailbox_put_front(&kp->mbox, m);
}

/* Turn an outstanding record into an error message for its requester. */
static void fail_outstanding(uqi_node *n, uqi_outstanding *o, uqi_send_error why)
{
    UQ_UNUSED(n);
    deliver_forced(o->requester, err_of(o, why));
    out_free(o);
}

/* A record for m (not taken: the record copies what an error return needs). */
static void record_outstanding(uqi_node *n, uqi_kproc *from, uqi_kproc *to, const uqi_msg *m, uint8_t *ctx,
                               size_t ctx_len)
{
    if (from->dangling >= n->max_dangling) {
        /* The bound: throw away the oldest, and say so. */
        uqi_outstanding *old = ext_of(from)->oldest;
        out_unlink(n, old);
        n->dropped_dangling++;
        uq_log(UQ_LOG_WARN, "kernel", "%s has %u outstanding requests: dropping the oldest (id %llu) and its context",
               from->addr.process, n->max_dangling, (unsigned long long)old->id);
        out_free(old);
    }
    uqi_outstanding *o = orec_get(m->body_len);
    o->id = m->id;
    o->requester = from;
    o->target_kp = to;
    if (to) to->awaited++;
    o->target = m->target;
    o->deadline_ns = uqi_now_coarse_ns() + (uint64_t)m->expects_response_s * 1000000000ull;
    o->ctx = ctx;
    o->ctx_len = ctx_len;
    o->metadata = m->metadata ? uqi_xstrdup(m->metadata) : NULL;
    o->payload = uqi_payload_hold(m->payload);
    o->expects_response_s = m->expects_response_s;
    o->fwd_node[0] = '\0';
    o->body_len = m->body_len;
    if (m->body_len) memcpy(o->body, m->body, m->body_len);
    o->hnext = n->otab[o->id % OTAB];
    n->otab[o->id % OTAB] = o;
    kp_ext *x = ext_of(from);
    o->older = x->newest;
    o->newer = NULL;
    if (x->newest) x->newest->newer = o;
    else x->oldest = o;
    x->newest = o;
    from->dangling++;
}

static uqi_outstanding *take_outstanding(uqi_node *n, uint64_t id, const uqi_addr *requester)
{
    for (uqi_outstanding *o = n->otab[id % OTAB]; o; o = o->hnext) {
        if (o->id == id && uqi_addr_eq(&o->requester->addr, requester)) {
            out_unlink(n, o);
            return o;
        }
    }
    return NULL;
}

/* ---- capabilities (node lock held) --------------------------------------------- */
static void issued_push(uqi_cap **head, uqi_cap *c)
{
    c->inext = *head;
    if (*head) (*head)->iprev = &c->inext;
    c->iprev = head;
    *head = c;
}

static void issued_unlink(uqi_cap *c)
{
    if (!c->iprev) return;
    *c->iprev = c->inext;
    if (c->inext) c->inext->iprev = c->iprev;
    c->inext = NULL;
    c->iprev = NULL;
}

/* Where the record of a cap goes so that its issuer can revoke it. */
static uqi_cap **issuer_list(uqi_node *n, const uqi_addr *issuer)
{
    if (uqi_addr_eq(issuer, &n->kernel_addr)) return &n->kernel_issued;
    uqi_kproc *kp = strcmp(issuer->node, n->name) == 0 ? find(n, issuer->process) : NULL;
    return kp && !kp->dead ? &kp->issued : &n->orphans;
}

/* Does kp hold (or issue) the capability? Root ports hold everything. */
static bool holds(uqi_node *n, uqi_kproc *kp, const uqi_addr *issuer, const char *params)
{
    if (kp->root || uqi_addr_eq(issuer, &kp->addr)) return true;
    caps_materialize(n, kp);
    return uqi_capset_find(&kp->caps, issuer, params, uqi_cap_hash(issuer, params)) != NULL;
}

/* The check on every request: may `from` message `to`? The last target
 * that passed is remembered with the node's capability generation, which
 * any drop, revocation or process exit advances (so a remembered pointer
 * is never trusted after its process went, or its capability did). */
static inline bool may_message(uqi_node *n, uqi_kproc *from, uqi_kproc *to)
{
    if (to->public || from->root || from == to || n->no_cap_checks) return true;
    uint64_t gen = atomic_load_explicit(&n->cap_gen, memory_order_relaxed);
    if (from->msg_ok_to == to && from->msg_ok_gen == gen) return true;
    if (to->implicit_holder != from && !uqi_capset_find(&from->caps, &to->addr, MESSAGING, msg_hash(to)))
        return false;
    from->msg_ok_to = to;
    from->msg_ok_gen = gen;
    return true;
}

/* The new capability in memory only (its holder's record is not written). */
static uqi_cap *grant_add(uqi_node *n, uqi_kproc *holder, const uqi_addr *issuer, const char *params, uint32_t h)
{
    uqi_cap *c = uqi_cap_new_h(issuer, params, h, &holder->addr, n->sk);
    c->holder_kp = holder;
    uqi_capset_add(&holder->caps, c);
    issued_push(issuer_list(n, issuer), c);
    return c;
}

static uqi_cap *grant_one_h(uqi_node *n, uqi_kproc *holder, const uqi_addr *issuer, const char *params, uint32_t h)
{
    uqi_cap *c = uqi_capset_find(&holder->caps, issuer, params, h);
    if (c) return c;
    c = grant_add(n, holder, issuer, params, h);
    persist(n, holder);
    return c;
}

static uqi_cap *grant_one(uqi_node *n, uqi_kproc *holder, const uqi_addr *issuer, const char *params)
{
    return grant_one_h(n, holder, issuer, params, uqi_cap_hash(issuer, params));
}

/* ---- the parent's implicit messaging capability over its child ---------------
 * Spawning a child from a process used to make a capability record for the
 * parent (allocated, hashed into its set, linked to the child's issued list)
 * and drop it when the child ended: most parents never look at it. Now the
 * child names its parent (implicit_holder) and may_message accepts that; the
 * record is made (caps_materialize) before anything else reads the parent's
 * set or the child's issued list: holds(), listing, drops, revocation, a
 * kill with "no-revoke", persistence. Node lock held. */
static void implicit_add(uqi_kproc *holder, uqi_kproc *kid)
{
    kid->implicit_holder = holder;
    kid->implicit_next = holder->implicit_kids;
    if (holder->implicit_kids) holder->implicit_kids->implicit_prev = &kid->implicit_next;
    kid->implicit_prev = &holder->implicit_kids;
    holder->implicit_kids = kid;
}

static void implicit_unlink(uqi_kproc *kid)
{
    if (!kid->implicit_holder) return;
    *kid->implicit_prev = kid->implicit_next;
    if (kid->implicit_next) kid->implicit_next->implicit_prev = kid->implicit_prev;
    kid->implicit_holder = NULL;
    kid->implicit_next = NULL;
    kid->implicit_prev = NULL;
}

/* kid's parent gets the record of its implicit capability (if any). */
static void implicit_make_real(uqi_node *n, uqi_kproc *kid)
{
    uqi_kproc *h = kid->implicit_holder;
    if (!h) return;
    implicit_unlink(kid);
    grant_one_h(n, h, &kid->addr, MESSAGING, msg_hash(kid));
}

/* Every implicit capability of holder becomes a record. The list is taken
 * whole first: grant_one_h persists the holder, which comes back here. */
static void caps_materialize(uqi_node *n, uqi_kproc *holder)
{
    uqi_kproc *kid = holder->implicit_kids;
    holder->implicit_kids = NULL;
    while (kid) {
        uqi_kproc *nx = kid->implicit_next;
        kid->implicit_holder = NULL;
        kid->implicit_next = NULL;
        kid->implicit_prev = NULL;
        grant_one_h(n, holder, &kid->addr, MESSAGING, msg_hash(kid));
        kid = nx;
    }
}

/* The capability gone from memory (its holder's record is not written). */
static void drop_quiet(uqi_kproc *holder, uqi_cap *c)
{
    gen_bump(holder->node);
    uqi_capset_remove(&holder->caps, c);
    issued_unlink(c);
    free(c);
}

static void drop_one(uqi_kproc *holder, uqi_cap *c)
{
    drop_quiet(holder, c);
    if (!holder->dead) persist(holder->node, holder);
}

/* Revoke every cap on the list from its holder. */
static uint32_t revoke_list(uqi_cap **head)
{
    uint32_t k = 0;
    while (*head) {
        uqi_cap *c = *head;
        drop_one(c->holder_kp, c);
        k++;
    }
    return k;
}

/* A process leaves: it gives up what it holds, and what it issued is
 * revoked (or kept for a successor of the same name, after "no-revoke"). */
static void caps_retire(uqi_node *n, uqi_kproc *kp)
{
    while (kp->implicit_kids) implicit_unlink(kp->implicit_kids); /* what it held implicitly goes too */
    /* its parent's implicit capability over it: kept for a successor (a
     * record on the orphans: kp is dead, see issuer_list) or revoked */
    if (kp->keep_issued) implicit_make_real(n, kp);
    else implicit_unlink(kp);
    for (uint32_t i = 0; i < kp->caps.nb; i++)
        while (kp->caps.b[i]) drop_one(kp, kp->caps.b[i]);
    if (kp->keep_issued) {
        while (kp->issued) {
            uqi_cap *c = kp->issued;
            issued_unlink(c);
            issued_push(&n->orphans, c);
        }
    } else {
        uint32_t k = revoke_list(&kp->issued);
        if (k) uq_log(UQ_LOG_INFO, "kernel", "%s ended: %u capabilities it issued are revoked", kp->addr.process, k);
    }
}

/* A new process takes back what a predecessor of its name issued before a
 * "no-revoke" kill. */
static void caps_adopt(uqi_node *n, uqi_kproc *kp)
{
    for (uqi_cap *c = n->orphans, *nx; c; c = nx) {
        nx = c->inext;
        if (uqi_addr_eq(&c->issuer, &kp->addr)) {
            issued_unlink(c);
            issued_push(&kp->issued, c);
        }
    }
}

static size_t refused_list(uqi_node *n, uqi_kproc *by, const uqi_capref *caps, uint32_t ncaps, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < ncaps; i++) {
        if (!by || holds(n, by, &caps[i].issuer, caps[i].params)) continue;
        char d[300];
        uqi_capref_describe(&caps[i].issuer, caps[i].params, d, sizeof d);
        if (k < cap) k += (size_t)snprintf(buf + k, cap - k, "%s%s", k ? "; " : "", d);
    }
    return k;
}

/* Attach the capabilities m carries to `to` and list their tokens in m->caps
 * (checked by the caller). */
static void attach_caps(uqi_node *n, uqi_kproc *to, uqi_msg *m)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; i < m->n_attach; i++)
        json_array_append_new(arr, uqi_cap_token(grant_one(n, to, &m->attach[i].issuer, m->attach[i].params)));
    m->caps = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
}

/* ---- routing ------------------------------------------------------------------ */
/* A request that expects a response and cannot be delivered comes back at
 * once, as an error carrying the message and its context (node lock held;
 * takes m and ctx). */
static void bounce(uqi_node *n, uqi_kproc *from, uqi_msg *m, uint8_t *ctx, size_t ctx_len, uqi_send_error why)
{
    m->rsvp = from->addr;
    m->has_rsvp = true;
    record_outstanding(n, from, NULL, m, ctx, ctx_len);
    fail_outstanding(n, take_outstanding(n, m->id, &from->addr), why);
    uqi_msg_free(m);
    count_sent(from);
}

static uq_err net_send(uqi_node *n, uqi_kproc *from, uqi_msg *m, uint8_t *ctx, size_t ctx_len, uq_errmsg *em);

/* A one-way request to the sender's last target, without the node lock.
 * The target's record outlives the reference the sender's cache holds
 * (kproc_unref); its mailbox refuses once the process went (retire closes
 * it under the node lock); the messaging check made at generation lt->gen
 * holds while the generation has not moved (a drop or revocation racing with
 * the send is ordered after it). Request ids come from a block of the
 * sender's (ID_BLOCK at a time from the node's counter). Only a process's
 * own task sends with target_cached, so lt and the id block have one user.
 * Returns false when the locked path must decide (nothing changed then but
 * m's source and id). */
#define ID_BLOCK 256
static bool send_fast(uqi_node *n, uqi_kproc *from, uqi_msg *m, uint64_t *out_id, uq_err *err, uq_errmsg *em)
{
    uqi_last_target *lt = from->last_target;
    if (!lt || !lt->fast || lt->gen != gen_of(n)) return false;
    uqi_kproc *to = lt->to;
    m->source = from->addr;
    m->source_len = from->addr_len;
    if (!m->id) {
        if (UQ_UNLIKELY(from->id_next == from->id_end)) {
            from->id_next = atomic_fetch_add_explicit(&n->next_id, ID_BLOCK, memory_order_relaxed);
            from->id_end = from->id_next + ID_BLOCK;
        }
        m->id = from->id_next++;
    }
    uint64_t id = m->id; /* once in the mailbox, m is the receiver's (it may be freed at once) */
    uq_err e = uqi_mailbox_put_wake(&to->mbox, m);
    if (e == UQ_ENOENT) return false; /* it went: the locked path says so */
    if (out_id) *out_id = id;
    if (e == UQ_ELIMIT) {
        *err = uqi_errf(em, UQ_ELIMIT, "mailbox of %s is full (%u messages): try again", to->addr.process, to->mbox.cap);
        return true;
    }
    count_sent(from);
    *err = UQ_OK;
    return true;
}

uq_err uqi_kernel_send(uqi_kproc *from, uqi_msg *m, uint8_t *context, size_t context_len, uint64_t *out_id,
                       uq_errmsg *em)
{
    uqi_node *n = from->node;
    uq_err err = UQ_OK;
    if (m->target_cached && m->kind == UQI_MSG_REQUEST && !m->expects_response_s && !m->n_attach && !context &&
        send_fast(n, from, m, out_id, &err, em))
        return err;
    pthread_mutex_lock(&n->lock);
    uint64_t queued0 = n->records_queued; /* a grant to the receiver writes its record */
    m->source = from->addr;
    m->source_len = from->addr_len;
    if (m->kind == UQI_MSG_REQUEST && !m->id) m->id = new_id(n);
    if (out_id) *out_id = m->id;
    if (m->n_attach) {
        char refused[600];
        if (refused_list(n, from, m->attach, m->n_attach, refused, sizeof refused)) {
            err = uqi_errf(em, UQ_EPERM, "%s may not attach capabilities it neither holds nor issued: %s",
                           from->addr.process, refused);
            goto out;
        }
    }
    /* a request to the sender's last target, whose lookup still holds: a
     * local process (never the kernel, which is not in the table) */
    bool known = m->target_cached && m->kind == UQI_MSG_REQUEST && from->last_target && from->last_target->to &&
                 from->last_target->gen == gen_of(n);
    bool local = known || strcmp(m->target.node, n->name) == 0;
    if (!known && m->kind == UQI_MSG_REQUEST && local && strcmp(m->target.process, "kernel") == 0) {
        /* The kernel is a process too: its commands run outside the lock
         * (initializing a process may compile it). */
        if (!n->no_cap_checks && !holds(n, from, &n->kernel_addr, MESSAGING)) {
            err = uqi_errf(em, UQ_EPERM, "%s may not send kernel commands: it does not hold the kernel capability",
                           from->addr.process);
            goto out;
        }
        count_sent(from);
        pthread_mutex_unlock(&n->lock);
        uqi_kcmd_handle(from, m, context, context_len);
        return UQ_OK;
    }
    if (!local) {
        if (!n->no_cap_checks && !holds(n, from, &n->kernel_addr, NETWORK)) {
            err = uqi_errf(em, UQ_EPERM, "%s may not reach other nodes: it does not hold the network capability",
                           from->addr.process);
            goto out;
        }
        err = net_send(n, from, m, context, context_len, em); /* the section "network" below */
        pthread_mutex_unlock(&n->lock);
        uqn_net_push(); /* no lock held: a callback may take the node lock */
        return err;
    }
    if (m->kind == UQI_MSG_REQUEST) {
        /* The sender's last target, looked up before: valid while the
         * capability generation has not moved (every exit advances it, so
         * the pointer is never followed after its process went). */
        uqi_last_target *lt = m->target_cached ? from->last_target : NULL;
        uqi_kproc *to;
        uint64_t gen = atomic_load_explicit(&n->cap_gen, memory_order_relaxed);
        if (lt && lt->to && lt->gen == gen) {
            to = lt->to;
        } else {
            to = find(n, m->target.process);
            if (lt && to && !to->dead) last_target_set(n, lt, to);
        }
        if (m->expects_response_s) {
            m->rsvp = from->addr;
            m->has_rsvp = true;
        }
        if (!to || to->dead) {
            if (m->expects_response_s) {
                bounce(n, from, m, context, context_len, UQI_SEND_NO_PROCESS);
                goto out;
            }
            err = uqi_errf(em, UQ_ENOENT, "no process %s on this node", m->target.process);
            goto out;
        }
        if (!may_message(n, from, to)) {
            err = uqi_errf(em, UQ_EPERM,
                           "%s may not message %s: it holds no messaging capability issued by %s, and %s is not public",
                           from->addr.process, to->addr.process, to->addr.process, to->addr.process);
            goto out;
        }
        /* a wasm process (a host port waits on its condition variable, which
         * only the locked path signals) that may be messaged at gen */
        if (lt && lt->to == to && lt->gen == gen && to->mod) lt->fast = true;
        if (m->n_attach) {
            if (uqi_mailbox_depth(&to->mbox) >= to->mbox.cap) {
                err = uqi_errf(em, UQ_ELIMIT, "mailbox of %s is full (%u messages): try again", to->addr.process,
                               to->mbox.cap);
                goto out;
            }
            attach_caps(n, to, m); /* the push below cannot fail: pushes hold the node lock */
        }
        uint64_t id = m->id;
        bool expects = m->expects_response_s != 0;
        if (expects) record_outstanding(n, from, to, m, context, context_len);
        bool waits;
        if (uqi_mailbox_put(&to->mbox, m, false, &waits) != UQ_OK) {
            if (expects) {
                uqi_outstanding *o = take_outstanding(n, id, &from->addr);
                o->ctx = NULL; /* the caller keeps its context on failure */
                out_free(o);
            }
            err = uqi_errf(em, UQ_ELIMIT, "mailbox of %s is full (%u messages): try again", to->addr.process, to->mbox.cap);
            goto out;
        }
        count_sent(from);
        wake(to, waits);
        if (!expects) free(context);
        goto out;
    }
    if (m->kind == UQI_MSG_RESPONSE) {
        /* The record names its requester, which is alive while the record
         * is (retire drops the records of a process that goes): no table
         * lookup. */
        uqi_outstanding *o = take_outstanding(n, m->id, &m->target);
        uqi_kproc *to = o ? o->requester : NULL;
        free(context);
        if (!to) {
            /* The requester is gone, or gave up (timeout, bound): nothing waits. */
            n->unexpected_responses++;
            uq_log(UQ_LOG_INFO, "kernel", "response %llu from %s to %s: nobody is waiting for it any more",
                   (unsigned long long)m->id, from->addr.process, m->target.process);
            uqi_msg_free(m);
            count_sent(from);
            goto out;
        }
        m->context = o->ctx;
        m->context_len = o->ctx_len;
        o->ctx = NULL;
        out_free(o);
        count_sent(from);
        if (m->n_attach) attach_caps(n, to, m);
        deliver_forced(to, m); /* a response always has room: its request was counted */
        goto out;
    }
    err = uqi_errf(em, UQ_EINVAL, "a process may send only requests and responses");
out:
    if (UQ_UNLIKELY(n->records_queued != queued0)) from->records_due = true;
    pthread_mutex_unlock(&n->lock);
    return err;
}

void uqi_kernel_reply(uqi_kproc *to, const uqi_msg *req, const char *body, const char *metadata, uint8_t *ctx,
                      size_t ctx_len)
{
    uqi_node *n = to->node;
    uqi_msg *r = uqi_msg_new(UQI_MSG_RESPONSE, body, strlen(body));
    r->id = req->id;
    snprintf(r->source.node, sizeof r->source.node, "%s", n->name);
    snprintf(r->source.process, sizeof r->source.process, "kernel");
    r->target = to->addr;
    r->context = ctx;
    r->context_len = ctx_len;
    if (metadata) r->metadata = uqi_xstrdup(metadata);
    pthread_mutex_lock(&n->lock);
    if (to->dead) uqi_msg_free(r);
    else deliver_forced(to, r);
    pthread_mutex_unlock(&n->lock);
}

/* ---- timer ------------------------------------------------------------------ */
static void *timer_main(void *arg)
{
    uqi_node *n = arg;
    pthread_mutex_lock(&n->lock);
    while (!n->stopping) {
        uint64_t now = uqi_now_ns(), next = now + 100000000ull;
        next = restart_due(n, now, next);
        for (int b = 0; b < OTAB; b++) {
            for (uqi_outstanding *o = n->otab[b], *nx; o; o = nx) {
                nx = o->hnext;
                if (o->deadline_ns <= now) {
                    out_unlink(n, o);
                    fail_outstanding(n, o, UQI_SEND_TIMEOUT);
                } else if (o->deadline_ns < next) {
                    next = o->deadline_ns;
                }
            }
        }
        uint64_t wait = next - now;
        if (wait < 1000000ull) wait = 1000000ull;
        struct timespec ts = uqi_ns_to_timespec(uqi_now_ns() + wait);
        pthread_cond_timedwait(&n->timer_cond, &n->lock, &ts);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

/* ---- processes -------------------------------------------------------------- */
/* Drop everything of kp (node lock held): it leaves the table; requests it
 * made are forgotten; requests waiting on it fail now. */
static void retire(uqi_node *n, uqi_kproc *kp)
{
    if (kp->dead) return;
    kp->dead = true;
    gen_bump(n); /* no remembered check may point at kp any more */
    /* nor may a send without the node lock (send_fast) reach it: only a
     * sender's cache can, and none is made once it left the table */
    if (kproc_shared(kp)) uqi_mailbox_disarm(&kp->mbox, true, true);
    if (n->store && !n->frozen && kp->wasm_key[0]) {
        uqi_persist_forget(n->store, kp->addr.process);
        n->records_queued++;
    }
    caps_retire(n, kp);
    unlink_proc(n, kp);
    while (ext_of(kp)->oldest) {
        uqi_outstanding *o = ext_of(kp)->oldest;
        out_unlink(n, o);
        out_free(o);
    }
    for (int b = 0; b < OTAB && kp->awaited; b++) { /* only when requests await it */
        for (uqi_outstanding *o = n->otab[b], *nx; o; o = nx) {
            nx = o->hnext;
            if (o->target_kp == kp) {
                out_unlink(n, o);
                fail_outstanding(n, o, UQI_SEND_NO_PROCESS);
            }
        }
    }
    uint32_t q = uqi_mailbox_depth(&kp->mbox);
    if (q) {
        n->dropped_on_kill += q;
        uq_log(UQ_LOG_INFO, "kernel", "%s ended with %u messages queued: they are dropped", kp->addr.process, q);
    }
}

/* Send the OnExit::Requests of kp, from kp (node lock held). They expect no
 * response; a target that is missing or full is logged, never silent. */
static void send_exit_requests(uqi_node *n, uqi_kproc *kp)
{
    for (uint32_t i = 0; i < kp->n_exit_reqs; i++) {
        uqi_exit_request *r = &kp->exit_reqs[i];
        uqi_kproc *to = strcmp(r->target.node, n->name) == 0 ? find(n, r->target.process) : NULL;
        if (!to || to->dead) {
            uq_log(UQ_LOG_WARN, "kernel", "%s exited: its on_exit request to %s@%s cannot be delivered (no such process)",
                   kp->addr.process, r->target.node, r->target.process);
            continue;
        }
        uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, r->body, r->body_len);
        m->id = new_id(n);
        m->source = kp->addr;
        m->target = r->target;
        if (r->metadata) m->metadata = uqi_xstrdup(r->metadata);
        m->payload = uqi_payload_hold(r->payload);
        bool waits;
        if (uqi_mailbox_put(&to->mbox, m, false, &waits) != UQ_OK) {
            uq_log(UQ_LOG_WARN, "kernel", "%s exited: the mailbox of %s is full, its on_exit request is not delivered",
                   kp->addr.process, to->addr.process);
            uqi_msg_free(m);
            continue;
        }
        count_sent(kp);
        wake(to, waits);
    }
}

static void on_proc_finish(uqi_proc *p)
{
    uqi_kproc *kp = p->user;
    uqi_node *n = kp->node;
    char what[300];
    if (p->status == UQI_PROC_KILLED || p->status != UQI_PROC_EXITED || p->exit_code != 0) {
        uqi_proc_outcome(p, what, sizeof what);
        uq_log(p->status == UQI_PROC_KILLED ? UQ_LOG_INFO : UQ_LOG_WARN, "kernel", "process %s %s", kp->addr.process, what);
    }
    pthread_mutex_lock(&n->lock);
    /* its task is about to be freed: no sender may wake it (nor reach the
     * mailbox, if it leaves: retire closes it) */
    uqi_mailbox_disarm(&kp->mbox, false, kproc_shared(kp));
    uqi_mailbox_unown(&kp->mbox); /* on its worker: the local queue joins the shared one */
    kp->proc = NULL;
    kp->running = false;
    bool ended_by_kernel = p->status == UQI_PROC_KILLED || kp->dead || n->stopping;
    if (!ended_by_kernel && kp->on_exit == UQI_ON_EXIT_REQUESTS) send_exit_requests(n, kp);
    if (!ended_by_kernel && kp->on_exit == UQI_ON_EXIT_RESTART) {
        /* Back-off grows (x2, up to 600 s) and resets after a healthy run of
         * 5x the current back-off (at most 3000 s). Queued messages wait. */
        uint64_t ran_ms = (uqi_now_ns() - kp->started_ns) / 1000000ull;
        uint64_t healthy = kp->backoff_ms * 5 < 3000000 ? kp->backoff_ms * 5 : 3000000;
        if (ran_ms >= healthy) kp->backoff_ms = n->restart_base_ms;
        kp->restart_at_ns = uqi_now_ns() + kp->backoff_ms * 1000000ull;
        uq_log(UQ_LOG_WARN, "kernel", "restarting %s in %llu ms", kp->addr.process, (unsigned long long)kp->backoff_ms);
        kp->backoff_ms = kp->backoff_ms * 2 < 600000 ? kp->backoff_ms * 2 : 600000;
        pthread_cond_signal(&n->timer_cond);
        pthread_mutex_unlock(&n->lock);
        return; /* stays in the table */
    }
    retire(n, kp);
    pthread_mutex_unlock(&n->lock);
    kproc_free(kp);
}

/* Timer thread, node lock held: restart what is due. */
static uint64_t restart_due(uqi_node *n, uint64_t now, uint64_t next)
{
    for (int b = 0; b < PTAB; b++) {
        for (uqi_kproc *kp = n->ptab[b]; kp; kp = kp->next) {
            if (!kp->restart_at_ns || kp->dead) continue;
            if (kp->restart_at_ns > now) {
                if (kp->restart_at_ns < next) next = kp->restart_at_ns;
                continue;
            }
            kp->restart_at_ns = 0;
            kp->proc = new_instance(kp);
            deliver_state(n, kp);
            if (uqi_proc_start(kp->proc, -1) != UQ_OK) {
                uq_log(UQ_LOG_ERROR, "kernel", "cannot restart %s", kp->addr.process);
                kp->proc->free_on_finish = false;
                uqi_proc_free(kp->proc);
                kp->proc = NULL;
                continue;
            }
            kp->running = true;
            kp->restarts++;
            kp->started_ns = now;
        }
    }
    return next;
}

uq_err uqi_node_set_on_exit(uqi_node *n, const char *id, uqi_on_exit how, uqi_exit_request *reqs, uint32_t nreqs,
                            uq_errmsg *em)
{
    pthread_mutex_lock(&n->lock);
    uqi_kproc *kp = find(n, id);
    if (!kp || !kp->mod) {
        pthread_mutex_unlock(&n->lock);
        uqi_exit_requests_free(reqs, nreqs);
        return uqi_errf(em, UQ_ENOENT, "no process %s", id);
    }
    uqi_exit_requests_free(kp->exit_reqs, kp->n_exit_reqs);
    kp->on_exit = how;
    kp->exit_reqs = reqs;
    kp->n_exit_reqs = nreqs;
    persist(n, kp);
    pthread_mutex_unlock(&n->lock);
    return UQ_OK;
}

static uqi_kproc *install_locked(uqi_node *n, const char *id, uqi_module *mod, bool public, uq_errmsg *em,
                                 uq_err *err);

/* The id (a fresh UUID if none), checked, and its module loaded (no node
 * lock: loading may compile). id points to uuid when one is made. */
static uq_err load_for(uqi_node *n, const char **id, char uuid[37], const uint8_t *wasm, size_t len,
                       uqi_module **mod, uq_errmsg *em)
{
    if (!*id || !**id) {
        uqi_uuid_new(uuid);
        *id = uuid;
    }
    if (!uqi_process_name_valid(*id))
        return uqi_errf(em, UQ_EINVAL, "bad process id \"%s\": use 1-%d characters of a-z, 0-9 and '-'", *id, UQI_NAME_MAX);
    if (strcmp(*id, "kernel") == 0) return uqi_errf(em, UQ_EEXIST, "the process id \"kernel\" is reserved");
    return uqi_engine_load(&n->eng, wasm, len, *id, mod, em);
}

/* The store key of a module's bytes: "w/" + BLAKE2b-256 hex. */
static void wasm_key_of(const uint8_t *wasm, size_t len, char key[68])
{
    uint8_t h[32];
    memcpy(key, "w/", 3);
    crypto_generichash(h, sizeof h, wasm, len, NULL, 0);
    sodium_bin2hex(key + 2, 66, h, sizeof h);
}

/* Persisted: the module's bytes once (by content), then kp's record
 * (node lock held). */
static void persist_new(uqi_node *n, uqi_kproc *kp, const char key[68], const uint8_t *wasm, size_t len)
{
    if (!kp->mod->persisted && !n->frozen) {
        uqi_persist_wasm(n->store, key, wasm, len);
        kp->mod->persisted = true;
    }
    memcpy(kp->wasm_key, key, 68);
    persist(n, kp);
}

uq_err uqi_node_init_process(uqi_node *n, const char *id, const uint8_t *wasm, size_t len, bool public,
                             char out_id[UQI_NAME_MAX + 1], uq_errmsg *em)
{
    char uuid[37], key[68];
    uqi_module *mod;
    uq_err err = load_for(n, &id, uuid, wasm, len, &mod, em);
    if (err) return err;
    if (n->store) wasm_key_of(wasm, len, key);
    pthread_mutex_lock(&n->lock);
    uqi_kproc *kp = install_locked(n, id, mod, public, em, &err);
    if (kp && n->store) persist_new(n, kp, key, wasm, len);
    pthread_mutex_unlock(&n->lock);
    if (kp && out_id) name_copy(out_id, id);
    return err;
}

/* A fresh instance record for kp (node lock held). */
static uqi_proc *new_instance(uqi_kproc *kp)
{
    char *argv[] = {kp->addr.process, NULL};
    char *envp[] = {NULL};
    uqi_proc *p = uqi_proc_new_tagged(kp->mod, argv, envp, kp->addr.process); /* one allocation */
    p->user = kp;
    p->on_finish = on_proc_finish;
    p->free_on_finish = true;     /* the kernel forgets it when it ends */
    return p;
}

/* Install a process of an already loaded module (node lock held); NULL
 * with *err set if it cannot be. */
static uqi_kproc *install_locked(uqi_node *n, const char *id, uqi_module *mod, bool public, uq_errmsg *em,
                                 uq_err *err)
{
    if (find(n, id)) {
        *err = uqi_errf(em, UQ_EEXIST, "a process named %s already exists", id);
        return NULL;
    }
    if (n->nprocs >= n->max_processes) {
        *err = uqi_errf(em, UQ_ELIMIT, "the node runs %u processes, its limit", n->max_processes);
        return NULL;
    }
    n->nprocs++;
    uqi_kproc *kp = kproc_new(n, id);
    kp->public = public;
    kp->mod = mod;
    kp->backoff_ms = n->restart_base_ms;
    kp->proc = new_instance(kp);
    kp->next = n->ptab[hash_str(id) % PTAB];
    n->ptab[hash_str(id) % PTAB] = kp;
    if (n->orphans) caps_adopt(n, kp);
    *err = UQ_OK;
    return kp;
}

static uq_err init_loaded(uqi_node *n, const char *id, uqi_module *mod, bool public, uq_errmsg *em)
{
    uq_err err;
    pthread_mutex_lock(&n->lock);
    install_locked(n, id, mod, public, em, &err);
    pthread_mutex_unlock(&n->lock);
    return err;
}

/* Start kp (node lock held). */
static uq_err run_locked(uqi_node *n, uqi_kproc *kp, const char *id, uq_errmsg *em)
{
    uq_err err = UQ_OK;
    if (!kp || !kp->proc) return uqi_errf(em, UQ_ENOENT, "no process %s to run (initialize it first)", id);
    if (kp->running) return uqi_errf(em, UQ_EBUSY, "%s is already running", id);
    deliver_state(n, kp);
    if ((err = uqi_proc_start(kp->proc, -1)) != UQ_OK) return uqi_errf(em, err, "cannot start %s", id);
    kp->running = true;
    kp->started_ns = uqi_now_coarse_ns(); /* ms precision is enough: restart back-off */
    persist(n, kp);
    return UQ_OK;
}

uq_err uqi_node_run_process(uqi_node *n, const char *id, uq_errmsg *em)
{
    pthread_mutex_lock(&n->lock);
    uq_err err = run_locked(n, find(n, id), id, em);
    pthread_mutex_unlock(&n->lock);
    return err;
}

uq_err uqi_node_spawn_module(uqi_node *n, const char *id, uqi_module *mod, bool public, uq_errmsg *em)
{
    if (!uqi_process_name_valid(id) || strcmp(id, "kernel") == 0)
        return uqi_errf(em, UQ_EINVAL, "bad process id \"%s\"", id);
    uq_err err = init_loaded(n, id, mod, public, em);
    if (!err) err = uqi_node_run_process(n, id, em);
    return err;
}

uq_err uqi_node_spawn(uqi_node *n, const char *id, const uint8_t *wasm, size_t len, bool public,
                      char out_id[UQI_NAME_MAX + 1], uq_errmsg *em)
{
    char got[UQI_NAME_MAX + 1];
    uq_err err = uqi_node_init_process(n, id, wasm, len, public, got, em);
    if (err) return err;
    err = uqi_node_run_process(n, got, em);
    if (err) {
        uqi_node_kill(n, got, NULL);
        return err;
    }
    if (out_id) snprintf(out_id, UQI_NAME_MAX + 1, "%s", got);
    return UQ_OK;
}

static uq_err port_new(uqi_node *n, const char *id, bool root, uqi_kproc **out, uq_errmsg *em);
uq_err uqi_node_port(uqi_node *n, const char *id, uqi_kproc **out, uq_errmsg *em)
{
    return port_new(n, id, true, out, em);
}

uq_err uqi_node_port_plain(uqi_node *n, const char *id, uqi_kproc **out, uq_errmsg *em)
{
    return port_new(n, id, false, out, em);
}

static uq_err port_new(uqi_node *n, const char *id, bool root, uqi_kproc **out, uq_errmsg *em)
{
    if (!uqi_process_name_valid(id)) return uqi_errf(em, UQ_EINVAL, "bad port id \"%s\"", id);
    pthread_mutex_lock(&n->lock);
    if (find(n, id)) {
        pthread_mutex_unlock(&n->lock);
        return uqi_errf(em, UQ_EEXIST, "a process named %s already exists", id);
    }
    n->nprocs++;
    uqi_kproc *kp = kproc_new(n, id);
    kp->port = true;
    uqi_cond_init_monotonic(&kp->port_cond);
    kp->root = root;
    kp->next = n->ptab[hash_str(id) % PTAB];
    n->ptab[hash_str(id) % PTAB] = kp;
    if (n->orphans) caps_adopt(n, kp);
    pthread_mutex_unlock(&n->lock);
    *out = kp;
    return UQ_OK;
}

#define PORT_BUSY_NS 1000000ull
uqi_msg *uqi_port_receive(uqi_kproc *port, int timeout_ms)
{
    uqi_node *n = port->node;
    uint64_t now = uqi_now_ns();
    struct timespec ts = uqi_ns_to_timespec(now + (uint64_t)timeout_ms * 1000000ull);
    pthread_mutex_lock(&n->lock);
    uqi_msg *m;
    /* Spin a little first, as workers do, if the port is in a conversation
     * (it took a message within PORT_BUSY_NS): an answer that comes within
     * UQI_SPIN_NS (a remote round trip: 30-50 us) then costs no wake-up of
     * this thread (-30 % on the round trip). A port that waits in a loop
     * with nothing coming (the terminal, fs, backups) does not spin. */
    bool spin = timeout_ms > 0 && now - port->port_took_ns <= PORT_BUSY_NS;
    while (!(m = uqi_mailbox_pop(&port->mbox))) {
        if (spin) {
            spin = false;
            uint32_t seen = atomic_load_explicit(&port->port_puts, memory_order_relaxed);
            pthread_mutex_unlock(&n->lock);
            uqi_spin_while(atomic_load_explicit(&port->port_puts, memory_order_acquire) == seen);
            pthread_mutex_lock(&n->lock);
            continue;
        }
        if (pthread_cond_timedwait(&port->port_cond, &n->lock, &ts) != 0) {
            m = uqi_mailbox_pop(&port->mbox);
            break;
        }
    }
    if (m) port->port_took_ns = uqi_now_ns();
    pthread_mutex_unlock(&n->lock);
    return m;
}

uq_err uqi_node_kill(uqi_node *n, const char *id, uq_errmsg *em)
{
    return uqi_node_kill_ex(n, id, false, em);
}

uq_err uqi_node_kill_ex(uqi_node *n, const char *id, bool keep_issued, uq_errmsg *em)
{
    pthread_mutex_lock(&n->lock);
    uqi_kproc *kp = find(n, id);
    if (!kp) {
        pthread_mutex_unlock(&n->lock);
        return uqi_errf(em, UQ_ENOENT, "no process %s", id);
    }
    kp->keep_issued = keep_issued;
    retire(n, kp);
    bool free_now = !kp->proc || !kp->running;
    if (kp->proc && kp->running) {
        /* It ends at its next receive, or at the next preemption tick. */
        uqi_task_request_kill(&kp->proc->task);
    }
    pthread_mutex_unlock(&n->lock);
    if (free_now) {
        if (kp->proc) {
            kp->proc->free_on_finish = false;
            uqi_proc_free(kp->proc);
        }
        kproc_free(kp);
    }
    return UQ_OK;
}

bool uqi_node_has(uqi_node *n, const char *id)
{
    pthread_mutex_lock(&n->lock);
    bool r = find(n, id) != NULL;
    pthread_mutex_unlock(&n->lock);
    return r;
}

void uqi_node_list(uqi_node *n, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&n->lock);
    k += (size_t)snprintf(buf + k, cap - k, "%-40s %8s %10s %10s %9s\n", "process", "mailbox", "received", "sent",
                          "waiting");
    for (int b = 0; b < PTAB && k < cap; b++)
        for (uqi_kproc *kp = n->ptab[b]; kp && k < cap; kp = kp->next)
            k += (size_t)snprintf(buf + k, cap - k, "%-40s %8u %10llu %10llu %9u\n", kp->addr.process,
                                  uqi_mailbox_depth(&kp->mbox), received_of(kp),
                                  (unsigned long long)atomic_load_explicit(&kp->sent, memory_order_relaxed), kp->dangling);
    pthread_mutex_unlock(&n->lock);
}

/* ---- node ------------------------------------------------------------------- */
uq_err uqi_node_start(const uqi_node_config *cfg, uqi_node **out, uq_errmsg *em)
{
    if (!uqi_node_name_valid(cfg->name))
        return uqi_errf(em, UQ_EINVAL, "bad node name \"%s\": 1-%d characters of a-z, 0-9, '.' and '-'", cfg->name, UQI_NAME_MAX);
    uqi_node *n = uqi_xcalloc(1, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", cfg->name);
    uq_err err = uqi_engine_init(&n->eng, cfg->cache_dir, em);
    if (err) {
        free(n);
        return err;
    }
    n->mailbox_cap = cfg->mailbox_cap ? cfg->mailbox_cap : 1024;
    n->max_dangling = cfg->max_dangling ? cfg->max_dangling : 4096;
    n->restart_base_ms = cfg->restart_base_ms ? cfg->restart_base_ms : 1000;
    n->max_processes = cfg->max_processes ? cfg->max_processes : 65536;
    if (cfg->identity_sk) {
        memcpy(n->sk, cfg->identity_sk, sizeof n->sk);
        crypto_sign_ed25519_sk_to_pk(n->pk, n->sk);
    } else {
        crypto_sign_keypair(n->pk, n->sk);
    }
    snprintf(n->kernel_addr.node, sizeof n->kernel_addr.node, "%s", n->name);
    snprintf(n->kernel_addr.process, sizeof n->kernel_addr.process, "kernel");
    n->kernel_cap_hash = uqi_cap_hash(&n->kernel_addr, MESSAGING);
    n->network_cap_hash = uqi_cap_hash(&n->kernel_addr, NETWORK);
    n->no_cap_checks = cfg->no_cap_checks;
    n->store = cfg->store;
    uint64_t id0;
    randombytes_buf(&id0, sizeof id0);
    atomic_init(&n->next_id, (id0 >> 2) | 1); /* room below 2^63 for the blocks */
    /* Adaptive: a thread that finds the node lock taken spins briefly before
     * it sleeps. The lock is held for microseconds at most, and a futex sleep
     * and wake-up cost 5-13 us on a VM (spawning from a host thread while a
     * worker ends processes: the worker slept on this lock once per process). */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&n->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    uqi_cond_init_monotonic(&n->timer_cond);
    uqi_cond_init_monotonic(&n->shutdown_cond);
    uqi_sched_config sc = {.workers = cfg->workers, .slice_ns = 0};
    err = uqi_sched_start(&sc);
    if (err) {
        uqi_engine_fini(&n->eng);
        free(n);
        return uqi_errf(em, err, "cannot start the scheduler");
    }
    pthread_create(&n->timer, NULL, timer_main, n);
    *out = n;
    return UQ_OK;
}

void uqi_node_stop(uqi_node *n)
{
    /* Kill every wasm process, then wait for the workers to finish them.
     * Their records stay as they are: the next boot brings them back. */
    pthread_mutex_lock(&n->lock);
    n->frozen = true;
    for (int b = 0; b < PTAB; b++) {
        for (uqi_kproc *kp = n->ptab[b], *nx; kp; kp = nx) {
            nx = kp->next;
            if (kp->proc && kp->running) {
                retire(n, kp);
                uqi_task_request_kill(&kp->proc->task);
            }
        }
    }
    n->stopping = true;
    pthread_cond_signal(&n->timer_cond);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->timer, NULL);
    uqi_sched_stop();
    /* ports and never-run processes left in the table */
    for (int b = 0; b < PTAB; b++) {
        for (uqi_kproc *kp = n->ptab[b], *nx; kp; kp = nx) {
            nx = kp->next;
            retire(n, kp);
            if (kp->proc) {
                kp->proc->free_on_finish = false;
                uqi_proc_free(kp->proc);
            }
            kproc_free(kp);
        }
    }
    for (int b = 0; b < OTAB; b++)
        for (uqi_outstanding *o = n->otab[b], *nx; o; o = nx) {
            nx = o->hnext;
            out_free(o);
        }
    for (uqi_msg *m = n->rx_head, *nx; m; m = nx) { /* a net module stopped without its last flush */
        nx = m->next;
        uqi_msg_free(m);
    }
    UQ_ASSERT(!n->kernel_issued);
    while (n->orphans) { /* their holders are gone too, so only records without holders remain */
        uqi_cap *c = n->orphans;
        issued_unlink(c);
        free(c);
    }
    sodium_memzero(n->sk, sizeof n->sk);
    uqi_engine_fini(&n->eng);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->timer_cond);
    pthread_cond_destroy(&n->shutdown_cond);
    free(n);
}

void uqi_node_request_shutdown(uqi_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->shutdown_requested = true;
    pthread_cond_broadcast(&n->shutdown_cond);
    pthread_mutex_unlock(&n->lock);
}

bool uqi_node_wait_shutdown(uqi_node *n, int timeout_ms)
{
    struct timespec ts = uqi_ns_to_timespec(uqi_now_ns() + (uint64_t)timeout_ms * 1000000ull);
    pthread_mutex_lock(&n->lock);
    while (!n->shutdown_requested)
        if (pthread_cond_timedwait(&n->shutdown_cond, &n->lock, &ts) != 0) break;
    bool r = n->shutdown_requested;
    pthread_mutex_unlock(&n->lock);
    return r;
}

/* One process as a JSON object (node lock held); returns the length. */
static int proc_json(uqi_kproc *kp, char *buf, size_t cap)
{
    caps_materialize(kp->node, kp); /* counted as records */
    static const char *on_exit[] = {"None", "Restart", "Requests"};
    return snprintf(buf, cap,
                    "{\"public\":%s,\"running\":%s,\"wasm\":%s,\"mailbox\":%u,\"received\":%llu,\"sent\":%llu,"
                    "\"awaiting_responses\":%u,\"on_exit\":\"%s\",\"restarts\":%u,\"capabilities\":%u}",
                    kp->public ? "true" : "false", kp->running ? "true" : "false", kp->proc ? "true" : "false",
                    uqi_mailbox_depth(&kp->mbox), received_of(kp), (unsigned long long)atomic_load_explicit(&kp->sent, memory_order_relaxed),
                    kp->dangling, on_exit[kp->on_exit], kp->restarts, kp->caps.n);
}

char *uqi_node_debug_json(uqi_node *n, const char *only_id)
{
    char row[UQI_NAME_MAX + 512];
    pthread_mutex_lock(&n->lock);
    if (only_id) {
        uqi_kproc *kp = find(n, only_id);
        char *one = kp && proc_json(kp, row, sizeof row) > 0 ? uqi_xstrdup(row) : NULL;
        pthread_mutex_unlock(&n->lock);
        return one;
    }
    size_t cap = 4096, k = 0;
    char *b = uqi_xmalloc(cap);
    b[k++] = '{';
    for (int i = 0; i < PTAB; i++) {
        for (uqi_kproc *kp = n->ptab[i]; kp; kp = kp->next) {
            int w = snprintf(row, sizeof row, "%s\"%s\":", k > 1 ? "," : "", kp->addr.process);
            w += proc_json(kp, row + w, sizeof row - (size_t)w);
            while (k + (size_t)w + 2 >= cap) {
                char *nb = realloc(b, cap *= 2);
                UQ_VERIFY(nb != NULL);
                b = nb;
            }
            memcpy(b + k, row, (size_t)w);
            k += (size_t)w;
        }
    }
    pthread_mutex_unlock(&n->lock);
    b[k++] = '}';
    b[k] = '\0';
    return b;
}

const char *uqi_node_name(const uqi_node *n) { return n->name; }
uqi_engine *uqi_node_engine(uqi_node *n) { return &n->eng; }

/* ---- capabilities: the kernel's interface ---------------------------------- */
void uqi_node_public_key(const uqi_node *n, uint8_t pk[32]) { memcpy(pk, n->pk, 32); }

uq_err uqi_node_check_held(uqi_node *n, uqi_kproc *by, const uqi_capref *caps, uint32_t ncaps, uq_errmsg *em)
{
    char refused[600];
    pthread_mutex_lock(&n->lock);
    size_t k = refused_list(n, by, caps, ncaps, refused, sizeof refused);
    pthread_mutex_unlock(&n->lock);
    if (k) return uqi_errf(em, UQ_EPERM, "%s does not hold: %s", by->addr.process, refused);
    return UQ_OK;
}

uq_err uqi_node_grant(uqi_node *n, uqi_kproc *by, const char *to, const uqi_capref *caps, uint32_t ncaps,
                      uq_errmsg *em)
{
    char refused[600];
    pthread_mutex_lock(&n->lock);
    uqi_kproc *t = find(n, to);
    uq_err err = UQ_OK;
    if (!t || t->dead) err = uqi_errf(em, UQ_ENOENT, "no process %s", to);
    else if (refused_list(n, by, caps, ncaps, refused, sizeof refused))
        err = uqi_errf(em, UQ_EPERM, "%s may grant only capabilities it holds or issued; refused: %s", by->addr.process,
                       refused);
    else
        for (uint32_t i = 0; i < ncaps; i++) grant_one(n, t, &caps[i].issuer, caps[i].params);
    pthread_mutex_unlock(&n->lock);
    return err;
}

/* A sync wait on an async store request. */
typedef struct store_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    uq_err err;
    uq_errmsg em;
} store_wait;

static void store_wait_done(void *arg, uq_err err, const uq_errmsg *em)
{
    store_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->err = err;
    if (err && em) w->em = *em;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The end of a store_wait whose request was queued (e: the queueing's
 * outcome): wait for the commit, outside the node lock; the request's
 * outcome, *em set if it failed. */
static uq_err store_wait_end(store_wait *w, uq_err e, uq_errmsg *em)
{
    if (!e) {
        pthread_mutex_lock(&w->mu);
        while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
        if ((e = w->err) && em) *em = w->em;
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return e;
}

uq_err uqi_node_grant_with(uqi_node *n, const char *to, const uqi_capref *caps, uint32_t ncaps, struct uqs_store *s,
                           const struct uqs_op *ops, size_t nops, uq_errmsg *em)
{
    UQ_ASSERT(ncaps <= 64 && s && nops > 0);
    store_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    uint64_t fresh = 0; /* which of caps the grant added (undone on failure) */
    uq_err e;
    pthread_mutex_lock(&n->lock);
    uqi_kproc *t = find(n, to);
    if (!t || t->dead) {
        pthread_mutex_unlock(&n->lock);
        return uqi_errf(em, UQ_ENOENT, "no process %s", to);
    }
    for (uint32_t i = 0; i < ncaps; i++) {
        uint32_t h = uqi_cap_hash(&caps[i].issuer, caps[i].params);
        if (uqi_capset_find(&t->caps, &caps[i].issuer, caps[i].params, h)) continue;
        grant_add(n, t, &caps[i].issuer, caps[i].params, h);
        fresh |= 1ull << i;
    }
    if (fresh && s == n->store && persisted(n, t)) {
        /* Queued under the lock, as every record is: no later record of t
         * can be committed before this one. */
        if (UQ_UNLIKELY(t->implicit_kids != NULL)) caps_materialize(n, t);
        e = uqi_persist_proc_with(s, t, ops, nops, store_wait_done, &w, em);
        if (!e) n->records_queued++;
    } else {
        if (fresh) persist(n, t); /* not in this store (or not persisted): as uqi_node_grant */
        e = uqs_write_async(s, ops, nops, store_wait_done, &w, em);
    }
    uint64_t queued = n->records_queued;
    pthread_mutex_unlock(&n->lock);
    e = store_wait_end(&w, e, em);
    if (e && fresh) { /* nothing was written: take the grant back */
        pthread_mutex_lock(&n->lock);
        /* No record queued since ours: the stored one never listed the
         * grant, nothing to write. Else one of them may have been committed
         * with it: t's record is written again, as it now is. */
        bool rewrite = n->records_queued != queued;
        t = find(n, to);
        bool dropped = false;
        for (uint32_t i = 0; t && !t->dead && i < ncaps; i++) {
            if (!(fresh & (1ull << i))) continue;
            uqi_cap *c = uqi_capset_find(&t->caps, &caps[i].issuer, caps[i].params,
                                         uqi_cap_hash(&caps[i].issuer, caps[i].params));
            if (c) {
                drop_quiet(t, c);
                dropped = true;
            }
        }
        if (dropped && rewrite) persist(n, t);
        pthread_mutex_unlock(&n->lock);
    }
    return e;
}

/* kp added to arr[0..*n) unless it is there already (arr has room). */
static void kp_add_once(uqi_kproc **arr, size_t *n, uqi_kproc *kp)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == kp) return;
    arr[(*n)++] = kp;
}

static bool params_in(const char *p, const char *const *params, size_t nparams)
{
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(p, params[i]) == 0) return true;
    return false;
}

uq_err uqi_node_revoke_with(uqi_node *n, uqi_kproc *issuer, const char *const *params, size_t nparams,
                            struct uqs_store *s, const struct uqs_op *ops, size_t nops, uint32_t *revoked,
                            uq_errmsg *em)
{
    UQ_ASSERT(issuer && s && nops > 0);
    store_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    size_t nt = 0, nr = 0;
    uq_err e;
    *revoked = 0;
    pthread_mutex_lock(&n->lock);
    implicit_make_real(n, issuer);
    for (uqi_cap *c = issuer->issued; c; c = c->inext) nt += params_in(c->params, params, nparams);
    /* taken from their holders (freed once the write is durable), and the
     * holders whose records go with ops */
    uqi_cap **taken = uqi_xmalloc((nt ? nt : 1) * sizeof *taken);
    uqi_kproc **recs = uqi_xmalloc((nt ? nt : 1) * sizeof *recs);
    nt = 0;
    for (uqi_cap *c = issuer->issued, *nx; c; c = nx) {
        nx = c->inext;
        if (!params_in(c->params, params, nparams)) continue;
        uqi_kproc *h = c->holder_kp;
        gen_bump(n);
        uqi_capset_remove(&h->caps, c);
        issued_unlink(c);
        taken[nt++] = c;
        if (s == n->store && persisted(n, h)) kp_add_once(recs, &nr, h);
        else if (!h->dead) persist(n, h); /* not in this store (or not persisted): as a drop */
    }
    if (nr) {
        /* Queued under the lock, as every record is: no later record of a
         * holder can be committed before this one. */
        for (size_t i = 0; i < nr; i++)
            if (UQ_UNLIKELY(recs[i]->implicit_kids != NULL)) caps_materialize(n, recs[i]);
        e = uqi_persist_procs_with(s, recs, nr, ops, nops, store_wait_done, &w, em);
        if (!e) n->records_queued += nr;
    } else {
        e = uqs_write_async(s, ops, nops, store_wait_done, &w, em);
    }
    uint64_t queued = n->records_queued;
    pthread_mutex_unlock(&n->lock);
    e = store_wait_end(&w, e, em);
    pthread_mutex_lock(&n->lock);
    if (e) {
        /* Nothing was written: each capability back to its holder, as it
         * was (same serial: its tokens stay valid), if the holder is still
         * the same live process. Its stored record still lists it, unless
         * some record was queued meanwhile (it may have carried the drop
         * into the store): then the holder's record is queued again. */
        size_t nb = 0;
        uqi_kproc **back = uqi_xmalloc((nt ? nt : 1) * sizeof *back);
        for (size_t i = 0; i < nt; i++) {
            uqi_cap *c = taken[i];
            uqi_kproc *h = find(n, c->holder.process);
            if (h && h == c->holder_kp && !h->dead && !uqi_capset_find(&h->caps, &c->issuer, c->params, c->hash)) {
                uqi_capset_add(&h->caps, c);
                issued_push(issuer_list(n, &c->issuer), c);
                kp_add_once(back, &nb, h);
            } else {
                free(c);
            }
        }
        if (n->records_queued != queued || s != n->store) /* (not in s: rewritten as drops above) */
            for (size_t i = 0; i < nb; i++) persist(n, back[i]);
        free(back);
    } else {
        for (size_t i = 0; i < nt; i++) free(taken[i]);
        *revoked = (uint32_t)nt;
    }
    pthread_mutex_unlock(&n->lock);
    free(taken);
    free(recs);
    return e;
}

uq_err uqi_node_grant_messaging(uqi_node *n, const char *holder, const char *target, uq_errmsg *em)
{
    uqi_capref c = {.params = (char *)MESSAGING};
    name_copy(c.issuer.node, n->name);
    name_copy(c.issuer.process, target);
    return uqi_node_grant(n, NULL, holder, &c, 1, em);
}

uq_err uqi_node_drop_caps(uqi_node *n, const char *holder, const uqi_capref *caps, uint32_t ncaps,
                          uint32_t *dropped, uq_errmsg *em)
{
    *dropped = 0;
    pthread_mutex_lock(&n->lock);
    uqi_kproc *h = find(n, holder);
    if (!h || h->dead) {
        pthread_mutex_unlock(&n->lock);
        return uqi_errf(em, UQ_ENOENT, "no process %s", holder);
    }
    caps_materialize(n, h);
    for (uint32_t i = 0; i < ncaps; i++) {
        uqi_cap *c = uqi_capset_find(&h->caps, &caps[i].issuer, caps[i].params,
                                     uqi_cap_hash(&caps[i].issuer, caps[i].params));
        if (c) {
            drop_one(h, c);
            (*dropped)++;
        }
    }
    pthread_mutex_unlock(&n->lock);
    return UQ_OK;
}

int uqi_node_has_cap(uqi_node *n, const char *holder, const uqi_capref *c)
{
    pthread_mutex_lock(&n->lock);
    uqi_kproc *h = find(n, holder);
    int r = !h || h->dead ? -1 : holds(n, h, &c->issuer, c->params) ? 1 : 0;
    pthread_mutex_unlock(&n->lock);
    return r;
}

char *uqi_node_caps_json(uqi_node *n, uqi_kproc *kp)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&n->lock);
    caps_materialize(n, kp);
    for (uint32_t i = 0; i < kp->caps.nb; i++)
        for (uqi_cap *c = kp->caps.b[i]; c; c = c->hnext) json_array_append_new(arr, uqi_cap_token(c));
    pthread_mutex_unlock(&n->lock);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

uq_err uqi_node_cap_verify(uqi_node *n, const char *token, size_t len, const uqi_addr *holder, uq_errmsg *em)
{
    uqi_cap *t;
    uq_err err = uqi_cap_token_check(token, len, n->pk, &t, em);
    if (err) return err;
    char h[2 * UQI_NAME_MAX + 2], want[2 * UQI_NAME_MAX + 2];
    uqi_addr_format(&t->holder, h, sizeof h);
    uqi_addr_format(holder, want, sizeof want);
    if (!uqi_addr_eq(&t->holder, holder)) {
        err = uqi_errf(em, UQ_EPERM, "the token was issued to %s, not to %s", h, want);
    } else {
        pthread_mutex_lock(&n->lock);
        uqi_kproc *kp = strcmp(holder->node, n->name) == 0 ? find(n, holder->process) : NULL;
        if (kp && !kp->dead) caps_materialize(n, kp);
        uqi_cap *c = kp && !kp->dead ? uqi_capset_find(&kp->caps, &t->issuer, t->params, t->hash) : NULL;
        if (!c || c->serial != t->serial)
            err = uqi_errf(em, UQ_ENOENT, "%s no longer holds that capability: it was dropped or revoked", h);
        pthread_mutex_unlock(&n->lock);
    }
    free(t);
    return err;
}

uint32_t uqi_kproc_cap_drop(uqi_kproc *kp, const uqi_capref *cr)
{
    uqi_node *n = kp->node;
    uint32_t k = 0;
    pthread_mutex_lock(&n->lock);
    uint64_t queued0 = n->records_queued;
    if (uqi_addr_eq(&cr->issuer, &kp->addr)) {
        /* Its own: revoke from every holder. */
        implicit_make_real(n, kp);
        for (uqi_cap *c = kp->issued, *nx; c; c = nx) {
            nx = c->inext;
            if (strcmp(c->params, cr->params) == 0) {
                drop_one(c->holder_kp, c);
                k++;
            }
        }
    } else {
        caps_materialize(n, kp);
        uqi_cap *c = uqi_capset_find(&kp->caps, &cr->issuer, cr->params, uqi_cap_hash(&cr->issuer, cr->params));
        if (c) {
            drop_one(kp, c);
            k = 1;
        }
    }
    if (n->records_queued != queued0) kp->records_due = true;
    pthread_mutex_unlock(&n->lock);
    return k;
}

void uqi_node_bench_cap_checks(uqi_node *n, bool on)
{
    pthread_mutex_lock(&n->lock);
    n->no_cap_checks = !on;
    gen_bump(n); /* the remembered checks (send_fast) were made with the old setting */
    pthread_mutex_unlock(&n->lock);
}

/* Spawned by a process: installed, granted and started in one locked step
 * (it was four: init, grant, run, each through the public calls), with the
 * same persistence hooks as those calls. */
uq_err uqi_node_spawn_child(uqi_node *n, uqi_kproc *parent, const char *id, const uint8_t *wasm, size_t len,
                            bool public, bool restart, const uqi_capref *caps, uint32_t ncaps,
                            char out_id[UQI_NAME_MAX + 1], uq_errmsg *em)
{
    uq_err err = ncaps ? uqi_node_check_held(n, parent, caps, ncaps, em) : UQ_OK;
    if (err) return err;
    char uuid[37], key[68], refused[600];
    uqi_module *mod;
    uqi_module *hint = parent->spawn_hint; /* the same bytes as last time: no engine lock, no search */
    if (hint && uqi_module_same(hint, wasm, len) && id && *id && uqi_process_name_valid(id) && strcmp(id, "kernel") != 0)
        mod = hint;
    else if ((err = load_for(n, &id, uuid, wasm, len, &mod, em)))
        return err;
    parent->spawn_hint = mod;
    if (n->store) wasm_key_of(wasm, len, key);
    pthread_mutex_lock(&n->lock);
    uqi_kproc *kp = install_locked(n, id, mod, public, em, &err);
    if (!kp) {
        pthread_mutex_unlock(&n->lock);
        return err;
    }
    if (n->store) persist_new(n, kp, key, wasm, len);
    if (restart) {
        kp->on_exit = UQI_ON_EXIT_RESTART;
        persist(n, kp);
    }
    if (parent->dead) {
        err = uqi_errf(em, UQ_ENOENT, "no process %s", parent->addr.process);
    } else if (ncaps && refused_list(n, parent, caps, ncaps, refused, sizeof refused)) {
        err = uqi_errf(em, UQ_EPERM, "%s may grant only capabilities it holds or issued; refused: %s",
                       parent->addr.process, refused);
    } else {
        for (uint32_t i = 0; i < ncaps; i++) grant_one(n, kp, &caps[i].issuer, caps[i].params);
        /* the parent may message its child: a record now if the parent's
         * is persisted, else implicit until needed (caps_materialize) */
        if (!public && n->store && parent->wasm_key[0]) grant_one_h(n, parent, &kp->addr, MESSAGING, msg_hash(kp));
        else if (!public) implicit_add(parent, kp);
        err = run_locked(n, kp, id, em);
    }
    pthread_mutex_unlock(&n->lock);
    if (err) {
        uqi_node_kill(n, id, NULL);
        return err;
    }
    name_copy(out_id, id);
    return UQ_OK;
}

struct uqs_store *uqi_node_store(uqi_node *n) { return n->store; }
void uqi_node_set_files(uqi_node *n, struct uqs_files *files)
{
    pthread_mutex_lock(&n->lock);
    n->files = files;
    pthread_mutex_unlock(&n->lock);
}

struct uqs_files *uqi_node_files(uqi_node *n)
{
    pthread_mutex_lock(&n->lock);
    struct uqs_files *f = n->files;
    pthread_mutex_unlock(&n->lock);
    return f;
}

void uqi_node_freeze(uqi_node *n, bool frozen)
{
    pthread_mutex_lock(&n->lock);
    n->frozen = frozen;
    pthread_mutex_unlock(&n->lock);
}

/* ---- the fs module (fsmod.c): a public host port ------------------------------ */
void uqi_kproc_set_public(uqi_kproc *kp, bool public)
{
    pthread_mutex_lock(&kp->node->lock);
    kp->public = public;
    gen_bump(kp->node); /* no remembered messaging check outlives the change */
    pthread_mutex_unlock(&kp->node->lock);
}

/* ---- network (issue 6; docs/PROTOCOL.md §6-7) ---------------------------------
 * Sending: a message for another node is encoded (remote.c) and queued in
 * the net module; a request that expects a response leaves its outstanding
 * record exactly as for a local target. The net module reports each queued
 * message once: written, or Offline / Timeout; a failure goes back to the
 * sender with the message, payload and context (for a request that expects
 * a response, through its outstanding record; otherwise from a copy).
 * Receiving: the source node is the link's authenticated peer; a remote
 * sender reaches only a process that is public and holds the network
 * capability; a response (or a refusal) is matched to its outstanding
 * request by id + requester and must come from the node the request went
 * to (or a node a local process forwarded it to), at most once. */

/* What the kernel keeps for a message queued in the net module: nothing,
 * for most. A message is encoded (into a buffer on the stack when short)
 * and queued quiet (uqn_net_send_quiet): no report when written; if it
 * fails, the net module hands back its bytes (uqi_node_net_lost), decoded
 * into the message again, and that is the error the sender gets (or, for a
 * request that expects a response, the id and source that find its
 * outstanding record, which keeps the body, metadata and payload). So the
 * sending thread frees its message at once, into its own cache, and the
 * net thread does nothing per message written. Only a message with a large
 * payload (NET_TAIL_MIN) is queued in two parts, the payload sent from the
 * sender's reference-counted uqi_payload; the message is then the cookie of
 * uqn_net_send_tail, kept until its done callback. */
#define NET_TAIL_MIN 4096

void uqi_node_set_net(uqi_node *n, struct uqn_net *net)
{
    pthread_mutex_lock(&n->lock);
    n->net = net;
    pthread_mutex_unlock(&n->lock);
}

/* An outstanding request matching id + requester without taking it. */
static uqi_outstanding *peek_outstanding(uqi_node *n, uint64_t id, const uqi_addr *requester)
{
    for (uqi_outstanding *o = n->otab[id % OTAB]; o; o = o->hnext)
        if (o->id == id && uqi_addr_eq(&o->requester->addr, requester)) return o;
    return NULL;
}

/* Node lock held: takes m and ctx on success; on failure the caller keeps both. */
static uq_err net_send(uqi_node *n, uqi_kproc *from, uqi_msg *m, uint8_t *ctx, size_t ctx_len, uq_errmsg *em)
{
    bool expects = m->kind == UQI_MSG_REQUEST && m->expects_response_s;
    if (expects) {
        m->rsvp = from->addr;
        m->has_rsvp = true;
    }
    if (!n->net) { /* networking is off: every other node is unreachable */
        if (expects) {
            bounce(n, from, m, ctx, ctx_len, UQI_SEND_OFFLINE);
            return UQ_OK;
        }
        return uqi_errf(em, UQ_ENOENT, "node %s cannot be reached: this node has no network", m->target.node);
    }
    /* An rsvp travels only if it is on this node: the receiver puts it on us. */
    bool with_rsvp = m->kind == UQI_MSG_REQUEST && m->has_rsvp && strcmp(m->rsvp.node, n->name) == 0;
    if (m->kind == UQI_MSG_REQUEST && m->has_rsvp && !with_rsvp)
        uq_log(UQ_LOG_INFO, "kernel", "%s forwards request %llu to %s: its response would go to a third node (%s), "
               "which version 1 does not do: no response will come back",
               from->addr.process, (unsigned long long)m->id, m->target.node, m->rsvp.node);
    uq_err e;
    /* a large message is not encoded (copied) only to find the queue full */
    size_t bulk = m->body_len + (m->payload ? m->payload->len : 0);
    if (bulk >= 65536 && (e = uqn_net_room(n->net, m->target.node, bulk, em))) return e;
    /* Quiet unless its payload is large, or it is an error (the wire
     * carries only the errors a kernel sends, so it could not be rebuilt). */
    bool quiet = (!m->payload || m->payload->len < NET_TAIL_MIN) && m->kind != UQI_MSG_ERROR;
    uint8_t stack[UQN_NET_INLINE], *buf;
    size_t len;
    if (quiet) e = uqi_wire_encode_buf(m, with_rsvp, stack, sizeof stack, &buf, &len, em);
    else e = uqi_wire_encode_head(m, with_rsvp, &buf, &len, em); /* the payload goes out from where it is */
    if (e) return e;
    if (expects) {
        /* the record keeps what an error return needs (body, metadata,
         * payload): a quiet message is done with once encoded, a two-part
         * one is the cookie until its done callback */
        record_outstanding(n, from, NULL, m, ctx, ctx_len);
    } else if (with_rsvp) {
        /* a local request forwarded with inherit: its response may come from there */
        uqi_outstanding *o = peek_outstanding(n, m->id, &m->rsvp);
        if (o) snprintf(o->fwd_node, sizeof o->fwd_node, "%s", m->target.node);
    }
    /* a message somebody waits for may go out from this thread (uqi_kernel_send pushes it after the lock) */
    unsigned qf = (buf == stack ? UQN_QUIET_COPY : 0) | (expects || m->kind == UQI_MSG_RESPONSE ? UQN_QUIET_PUSH : 0);
    if (quiet) e = uqn_net_send_quiet(n->net, m->target.node, buf, len, qf, em);
    else e = uqn_net_send_tail(n->net, m->target.node, buf, len, m->payload->data, m->payload->len, m, em);
    if (e) {
        if (buf != stack) free(buf);
        if (expects) {
            uqi_outstanding *o = take_outstanding(n, m->id, &from->addr);
            o->ctx = NULL; /* the caller keeps its context and message on failure */
            out_free(o);
        }
        return e;
    }
    if (!expects) free(ctx);
    if (quiet) uqi_msg_free(m); /* on this thread: back to its message cache */
    count_sent(from); /* a two-part message is the net module's until its done callback */
    return UQ_OK;
}

/* A message that failed (node lock held; takes m): to its sender, as an
 * error with the message (a request that expects a response: through its
 * outstanding record, with its context). */
static void net_failed(uqi_node *n, uqi_msg *m, int why)
{
    uqi_send_error se = why == UQN_DONE_TIMEOUT ? UQI_SEND_TIMEOUT : UQI_SEND_OFFLINE;
    if (m->kind == UQI_MSG_REQUEST && m->expects_response_s) {
        uqi_outstanding *o = take_outstanding(n, m->id, &m->source);
        if (o) fail_outstanding(n, o, se); /* else: answered or given up already */
    } else {
        uqi_kproc *kp = find(n, m->source.process);
        if (kp && !kp->dead) {
            uqi_addr target = m->target;
            bool was_response = m->kind == UQI_MSG_RESPONSE;
            m->kind = UQI_MSG_ERROR;
            m->error = se;
            m->expects_response_s = 0;
            m->source = target;
            m->source_len = 0;
            m->target = kp->addr;
            m->target_cached = false;
            /* answering this error (respond with it as the prompt) resends the
             * response to the original request */
            m->has_rsvp = was_response;
            if (was_response) m->rsvp = target;
            deliver_forced(kp, m);
            m = NULL;
        }
    }
    uqi_msg_free(m);
}

/* The net module's report on a two-part message (uqn_net_cfg.done). */
void uqi_node_net_done(void *arg, void *cookie, int why)
{
    uqi_node *n = arg;
    uqi_msg *m = cookie;
    if (!m) return; /* the kernel's own refusals */
    if (why != UQN_DONE_SENT) {
        pthread_mutex_lock(&n->lock);
        net_failed(n, m, why);
        pthread_mutex_unlock(&n->lock);
        return;
    }
    uqi_msg_free(m);
}

/* A quiet message that failed (uqn_net_cfg.lost): the message again from
 * its bytes, as it was sent from this node to peer. */
void uqi_node_net_lost(void *arg, const char *peer, const uint8_t *msg, size_t len, int why)
{
    uqi_node *n = arg;
    uqi_msg *m;
    uq_errmsg em;
    /* decoded as if it came from us to peer: source and rsvp on this node */
    if (uqi_wire_decode(msg, len, n->name, peer, &m, &em)) {
        uq_log(UQ_LOG_ERROR, "kernel", "a message to %s failed and cannot be returned to its sender: %s", peer,
               em.text);
        return;
    }
    pthread_mutex_lock(&n->lock);
    net_failed(n, m, why);
    pthread_mutex_unlock(&n->lock);
}

/* Tell peer that its request could not be delivered (node lock held). */
static void net_refuse(uqi_node *n, const uqi_msg *m, uqi_send_error why, const char *peer)
{
    n->remote_refused++;
    if (!m->has_rsvp || !n->net) return; /* nobody waits for an answer */
    uqi_msg *e = uqi_msg_new(UQI_MSG_ERROR, "", 0);
    e->id = m->id;
    e->error = why;
    e->source = m->target;
    e->source_len = 0;
    e->target = m->rsvp;
    uint8_t *buf;
    size_t len;
    if (uqi_wire_encode(e, false, &buf, &len, NULL) == UQ_OK && uqn_net_send(n->net, peer, buf, len, NULL, NULL) != UQ_OK)
        free(buf);
    uqi_msg_free(e);
}

/* Wake-ups owed after delivering a batch: each target once, at the end. */
#define RX_WAKES 8
typedef struct rx_wakes {
    uqi_kproc *kp[RX_WAKES];
    bool waits[RX_WAKES];
    unsigned n;
} rx_wakes;

static void rx_wake_all(rx_wakes *w)
{
    for (unsigned i = 0; i < w->n; i++) wake(w->kp[i], w->waits[i]);
    w->n = 0;
}

static void rx_wake(rx_wakes *w, uqi_kproc *kp, bool waits)
{
    for (unsigned i = 0; i < w->n; i++)
        if (w->kp[i] == kp) {
            w->waits[i] |= waits;
            return;
        }
    if (w->n == RX_WAKES) rx_wake_all(w);
    w->kp[w->n] = kp;
    w->waits[w->n++] = waits;
}

/* Route a message from node peer (node lock held; its source and target
 * nodes are peer and this node); returns m if it was not taken (the caller
 * frees it, without the lock). Wake-ups go to w (rx_wake_all makes them). */
static uqi_msg *deliver_remote_locked(uqi_node *n, uqi_msg *m, const char *peer, rx_wakes *w)
{
    uqi_kproc *to = find(n, m->target.process);
    if (to && to->dead) to = NULL;
    if (m->kind == UQI_MSG_REQUEST) {
        if (m->expects_response_s) {
            m->rsvp = m->source;
            m->has_rsvp = true;
        }
        if (!to) {
            uq_log(UQ_LOG_INFO, "kernel", "request %llu from %s@%s: no process %s", (unsigned long long)m->id, peer,
                   m->source.process, m->target.process);
            net_refuse(n, m, UQI_SEND_NO_PROCESS, peer);
        } else if (!n->no_cap_checks && !(to->public && holds(n, to, &n->kernel_addr, NETWORK))) {
            uq_log(UQ_LOG_INFO, "kernel", "request %llu from %s@%s refused: %s is %s", (unsigned long long)m->id, peer,
                   m->source.process, m->target.process,
                   !to->public ? "not public" : "without the network capability");
            net_refuse(n, m, UQI_SEND_REFUSED, peer);
        } else {
            bool waits;
            if (uqi_mailbox_put(&to->mbox, m, false, &waits) == UQ_OK) {
                rx_wake(w, to, waits);
                m = NULL;
            } else {
                uq_log(UQ_LOG_INFO, "kernel", "request %llu from %s@%s refused: the mailbox of %s is full",
                       (unsigned long long)m->id, peer, m->source.process, m->target.process);
                net_refuse(n, m, UQI_SEND_REFUSED, peer);
            }
        }
    } else {
        /* a response, or a refusal of our request: it must answer a request of
         * ours that went to that node, and is taken once */
        uqi_outstanding *o = peek_outstanding(n, m->id, &m->target);
        if (o && strcmp(o->target.node, peer) != 0 && strcmp(o->fwd_node, peer) != 0) o = NULL;
        if (!o || !to || (!n->no_cap_checks && !holds(n, to, &n->kernel_addr, NETWORK))) {
            n->unexpected_responses++;
            uq_log(UQ_LOG_INFO, "kernel", "%s %llu from %s@%s to %s: nobody is waiting for it",
                   m->kind == UQI_MSG_RESPONSE ? "response" : "refusal", (unsigned long long)m->id, peer,
                   m->source.process, m->target.process);
        } else {
            o = take_outstanding(n, m->id, &m->target);
            if (m->kind == UQI_MSG_ERROR) {
                fail_outstanding(n, o, (uqi_send_error)m->error);
            } else {
                m->context = o->ctx;
                m->context_len = o->ctx_len;
                o->ctx = NULL;
                out_free(o);
                bool waits; /* its request was counted: past the bound, as deliver_forced */
                uqi_mailbox_put(&to->mbox, m, true, &waits);
                rx_wake(w, to, waits);
                m = NULL;
            }
        }
    }
    return m;
}

/* Batched receiving: decoded messages wait in n->rx (net thread only) and
 * are delivered under one node lock, their targets woken once each. */
#define RX_BATCH 256

void uqi_node_net_flush(void *arg)
{
    uqi_node *n = arg;
    uqi_msg *m = n->rx_head, *refused = NULL;
    if (!m) return;
    n->rx_head = n->rx_tail = NULL;
    n->rx_n = 0;
    rx_wakes w;
    w.n = 0;
    pthread_mutex_lock(&n->lock);
    for (uqi_msg *nx; m; m = nx) {
        nx = m->next;
        char peer[UQI_NAME_MAX + 1];
        memcpy(peer, m->source.node, sizeof peer); /* the decoder set both nodes: the link's peer, us */
        uqi_msg *r = deliver_remote_locked(n, m, peer, &w);
        if (r) {
            r->next = refused;
            refused = r;
        }
    }
    rx_wake_all(&w);
    pthread_mutex_unlock(&n->lock);
    for (uqi_msg *nx; refused; refused = nx) {
        nx = refused->next;
        uqi_msg_free(refused);
    }
}

void uqi_node_net_recv_batch(void *arg, const char *peer, const uint8_t *buf, size_t len)
{
    uqi_node *n = arg;
    uqi_msg *m;
    uq_errmsg em = {{0}};
    uq_err e = uqi_wire_decode(buf, len, peer, n->name, &m, &em);
    if (e) {
        uqi_node_net_flush(n); /* in order with what came before */
        pthread_mutex_lock(&n->lock);
        n->remote_dropped++;
        pthread_mutex_unlock(&n->lock);
        uq_log(UQ_LOG_WARN, "kernel", "dropped: %s", em.text);
        return;
    }
    m->next = NULL;
    if (n->rx_tail) n->rx_tail->next = m;
    else n->rx_head = m;
    n->rx_tail = m;
    if (++n->rx_n >= RX_BATCH) uqi_node_net_flush(n);
}

void uqi_node_net_down(void *arg, const char *peer)
{
    uqi_node *n = arg;
    uint32_t k = 0;
    uqi_node_net_flush(n); /* answers that came before the cut are delivered */
    pthread_mutex_lock(&n->lock);
    for (int b = 0; b < OTAB; b++) {
        for (uqi_outstanding *o = n->otab[b], *nx; o; o = nx) {
            nx = o->hnext;
            if (strcmp(o->target.node, peer) == 0 || strcmp(o->fwd_node, peer) == 0) {
                out_unlink(n, o);
                fail_outstanding(n, o, UQI_SEND_OFFLINE);
                k++;
            }
        }
    }
    pthread_mutex_unlock(&n->lock);
    if (k) uq_log(UQ_LOG_INFO, "kernel", "the link to %s was cut: %u requests waiting on it fail Offline", peer, k);
}

void uqi_node_net_hooks(uqi_node *n, uqn_net_cfg *cfg)
{
    cfg->recv = uqi_node_net_recv_batch;
    cfg->recv_flush = uqi_node_net_flush;
    cfg->done = uqi_node_net_done;
    cfg->lost = uqi_node_net_lost;
    cfg->down = uqi_node_net_down;
    cfg->arg = n;
}
