/* Addresses, payloads, messages and bounded mailboxes for the kernel. */
#include "kernel/msg.h"

#include "sched/sched.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define PAYLOAD_MAX ((size_t)1 << 32) /* 4 GiB: a guest could not address more */

static bool name_ok_n(const char *s, size_t n, bool dots)
{
    if (n == 0 || n > UQI_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (dots && c == '.');
        if (!ok) return false;
    }
    if (s[0] == '-' || s[n - 1] == '-' || s[0] == '.' || s[n - 1] == '.') return false;
    return true;
}

bool uqi_node_name_valid(const char *s) { return name_ok_n(s, strlen(s), true); }
bool uqi_process_name_valid(const char *s) { return name_ok_n(s, strlen(s), false); }
bool uqi_process_name_valid_n(const char *s, size_t n) { return name_ok_n(s, n, false); }

uq_err uqi_addr_parse_n(const char *text, size_t len, const char *local_node, uqi_addr *out, uq_errmsg *em)
{
    const char *at = memchr(text, '@', len);
    const char *proc = at ? at + 1 : text;
    size_t plen = len - (size_t)(proc - text);
    if (at) {
        size_t n = (size_t)(at - text);
        if (!name_ok_n(text, n, true))
            return uqi_errf(em, UQ_EINVAL, "bad address \"%.*s\": node name must be 1-%d characters of a-z, 0-9, '.' and '-'",
                            (int)(len < 200 ? len : 200), text, UQI_NAME_MAX);
        memcpy(out->node, text, n);
        out->node[n] = '\0';
    } else {
        if (!local_node)
            return uqi_errf(em, UQ_EINVAL, "bad address \"%.*s\": expected node@process", (int)(len < 200 ? len : 200), text);
        size_t n = strlen(local_node);
        memcpy(out->node, local_node, n + 1 <= sizeof out->node ? n + 1 : sizeof out->node);
        out->node[sizeof out->node - 1] = '\0';
    }
    if (!name_ok_n(proc, plen, false))
        return uqi_errf(em, UQ_EINVAL, "bad address \"%.*s\": process id must be 1-%d characters of a-z, 0-9 and '-'",
                        (int)(len < 200 ? len : 200), text, UQI_NAME_MAX);
    memcpy(out->process, proc, plen);
    out->process[plen] = '\0';
    return UQ_OK;
}

uq_err uqi_addr_parse(const char *text, const char *local_node, uqi_addr *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    return uqi_addr_parse_n(text, strlen(text), local_node, out, em);
}

void uqi_addr_format(const uqi_addr *a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s@%s", a->node, a->process);
}

bool uqi_addr_eq(const uqi_addr *a, const uqi_addr *b)
{
    return strcmp(a->node, b->node) == 0 && strcmp(a->process, b->process) == 0;
}

void uqi_uuid_new(char out[37])
{
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

uqi_payload *uqi_payload_new(const void *data, size_t len, const char *mime)
{
    if (len > PAYLOAD_MAX) return NULL;
    uqi_payload *p = malloc(sizeof *p + len);
    if (!p) return NULL;
    atomic_init(&p->refs, 1);
    p->len = len;
    p->data = p->inl;
    p->release = NULL;
    p->base = NULL;
    p->cap = 0;
    snprintf(p->mime, sizeof p->mime, "%s", mime ? mime : "");
    if (len) memcpy(p->data, data, len);
    return p;
}

uqi_payload *uqi_payload_adopt(uint8_t *data, size_t len, const char *mime, void (*release)(void *base, size_t cap),
                               void *base, size_t cap)
{
    UQ_ASSERT(release && (uint8_t *)base <= data && data + len <= (uint8_t *)base + cap);
    uqi_payload *p = uqi_xmalloc(sizeof *p);
    atomic_init(&p->refs, 1);
    p->len = len;
    p->data = data;
    p->release = release;
    p->base = base;
    p->cap = cap;
    snprintf(p->mime, sizeof p->mime, "%s", mime ? mime : "");
    return p;
}

uqi_payload *uqi_payload_hold(uqi_payload *p)
{
    if (p) atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void uqi_payload_rele(uqi_payload *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        if (p->release) p->release(p->base, p->cap);
        free(p);
    }
}

/* ---- messages ------------------------------------------------------------ */
/* Freed small messages wait in a per-thread free list for the next
 * uqi_msg_new on that thread: a one-way message then costs no malloc/free
 * (glibc's tcache keeps only 7 blocks of a size, and a burst of a few
 * thousand queued messages went through _int_free and consolidation). A
 * message freed on another thread than the one that made it lands in the
 * freeing thread's list; beyond MSG_CACHE_MAX blocks a thread frees for
 * real, so the list is bounded. Off under AddressSanitizer, which should
 * see every use after free. */
#define MSG_SMALL_SIZE (sizeof(uqi_msg) + UQI_MSG_SMALL_BODY)
#if defined(__SANITIZE_ADDRESS__)
#define MSG_CACHE_MAX 0
#else
#define MSG_CACHE_MAX 4096
#endif

typedef struct msg_cache {
    uqi_msg *head; /* linked through ->next */
    int n;         /* signed: MSG_CACHE_MAX may be 0 */
    bool keyed;    /* cache_key set for this thread (once, not at every refill) */
    bool rx;       /* a receiving thread (uqi_msg_new_rx): what it frees stays here */
} msg_cache;

static _Thread_local msg_cache tcache;
static pthread_key_t cache_key; /* only for its destructor: frees a thread's list at exit */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drain(void *arg)
{
    msg_cache *c = arg;
    for (uqi_msg *m = c->head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    c->head = NULL;
    c->n = 0;
    c->keyed = false; /* a free after this (another destructor) sets the key again */
}

static void cache_key_make(void) { UQ_VERIFY(pthread_key_create(&cache_key, cache_drain) == 0); }

/* The receivers' pool (uqi_msg_new_rx): a lock-free stack that any thread
 * pushes one block on (compare-and-swap) and a receiving thread takes whole
 * (exchange: no ABA), into its own cache. The count is a soft bound (a push
 * racing a take may go uncounted until the next take resets it). */
#if defined(__SANITIZE_ADDRESS__)
#undef RX_POOL_MAX
#define RX_POOL_MAX 0
#elif !defined(RX_POOL_MAX)
#define RX_POOL_MAX 8192
#endif
static _Atomic(uqi_msg *) rx_pool;
static atomic_int rx_pool_n;

static bool rx_pool_push(uqi_msg *m)
{
    if (atomic_load_explicit(&rx_pool_n, memory_order_relaxed) >= RX_POOL_MAX) return false;
    uqi_msg *h = atomic_load_explicit(&rx_pool, memory_order_relaxed);
    do m->next = h;
    while (!atomic_compare_exchange_weak_explicit(&rx_pool, &h, m, memory_order_release, memory_order_relaxed));
    atomic_fetch_add_explicit(&rx_pool_n, 1, memory_order_relaxed);
    return true;
}

uqi_msg *uqi_msg_new_rx(uqi_msg_kind kind, const void *body, size_t body_len)
{
    if (!tcache.head && body_len <= UQI_MSG_SMALL_BODY && atomic_load_explicit(&rx_pool, memory_order_relaxed)) {
        uqi_msg *l = atomic_exchange_explicit(&rx_pool, NULL, memory_order_acquire);
        int k = atomic_exchange_explicit(&rx_pool_n, 0, memory_order_relaxed);
        tcache.head = l; /* freed on this thread later, they join its cache (bounded) as any */
        tcache.n += k > 0 ? k : 0;
    }
    tcache.rx = true;
    uqi_msg *m = uqi_msg_new(kind, body, body_len);
    m->rx = m->small;
    return m;
}

/* One allocation: the body lives right after the message. */
uqi_msg *uqi_msg_new(uqi_msg_kind kind, const void *body, size_t body_len)
{
    uqi_msg *m;
    bool small = body_len <= UQI_MSG_SMALL_BODY;
    if (small && tcache.head) {
        m = tcache.head;
        tcache.head = m->next;
        tcache.n--;
        /* the next one's lines, for writing: the stores below then hit L1
         * and the mailbox lock's locked instruction waits less for them */
        if (tcache.head) {
            char *nx = (char *)tcache.head;
            for (size_t o = 0; o < offsetof(uqi_msg, rsvp); o += 64) __builtin_prefetch(nx + o, 1, 3);
            __builtin_prefetch(nx + sizeof(uqi_msg), 1, 3); /* the body */
        }
    } else {
        m = uqi_xmalloc(small ? MSG_SMALL_SIZE : sizeof *m + body_len);
    }
    /* Everything but the three addresses is zeroed; source and target get
     * an empty string each (the sender fills them), rsvp nothing: it is
     * read only when has_rsvp (writing 384 bytes twice was most of this
     * function). */
    memset(m, 0, offsetof(uqi_msg, source));
    memset(&m->has_rsvp, 0, offsetof(uqi_msg, rsvp) - offsetof(uqi_msg, has_rsvp));
    m->source.node[0] = m->source.process[0] = '\0';
    m->target.node[0] = m->target.process[0] = '\0';
    m->kind = kind;
    m->small = small;
    m->body = (uint8_t *)(m + 1);
    if (body_len) memcpy(m->body, body, body_len);
    m->body_len = body_len;
    return m;
}

void uqi_msg_free(uqi_msg *m)
{
    if (!m) return;
    free(m->metadata);
    free(m->context);
    uqi_payload_rele(m->payload);
    for (uint32_t i = 0; i < m->n_attach; i++) free(m->attach[i].params);
    free(m->attach);
    free(m->caps);
    if (m->rx && !tcache.rx && rx_pool_push(m)) return; /* made on a receiving thread, freed on another */
    if (m->small && tcache.n < MSG_CACHE_MAX) {
        if (UQ_UNLIKELY(!tcache.keyed)) {
            pthread_once(&cache_once, cache_key_make);
            pthread_setspecific(cache_key, &tcache);
            tcache.keyed = true;
        }
        m->next = tcache.head;
        tcache.head = m;
        tcache.n++;
        return;
    }
    free(m);
}

/* ---- mailboxes ------------------------------------------------------------ */
void uqi_mailbox_init(uqi_mailbox *mb, uint32_t cap)
{
    memset(mb, 0, sizeof *mb);
    pthread_mutex_init(&mb->lock, NULL);
    mb->cap = cap ? cap : 1;
}

static void free_list(uqi_msg *m)
{
    for (uqi_msg *n; m; m = n) {
        n = m->next;
        uqi_msg_free(m);
    }
}

static inline uint64_t ld(_Atomic uint64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }
static inline void st(_Atomic uint64_t *v, uint64_t x) { atomic_store_explicit(v, x, memory_order_relaxed); }

void uqi_mailbox_drain(uqi_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    uqi_msg *q = mb->head;
    mb->head = mb->tail = NULL;
    st(&mb->popped, ld(&mb->pushed) + ld(&mb->lpushed));
    pthread_mutex_unlock(&mb->lock);
    free_list(mb->batch);
    free_list(mb->lhead);
    mb->batch = mb->lhead = mb->ltail = NULL;
    free_list(q);
}

void uqi_mailbox_fini(uqi_mailbox *mb)
{
    free_list(mb->batch);
    free_list(mb->head);
    free_list(mb->lhead);
    mb->batch = mb->head = mb->tail = mb->lhead = mb->ltail = NULL;
    st(&mb->popped, ld(&mb->pushed) + ld(&mb->lpushed));
    pthread_mutex_destroy(&mb->lock);
}

uint64_t uqi_mailbox_delivered(uqi_mailbox *mb) { return ld(&mb->pushed) + ld(&mb->lpushed); }

/* Is the caller on the consumer's worker thread (the local queue's)? */
static inline bool local(uqi_mailbox *mb)
{
    struct uqi_worker *w = atomic_load_explicit(&mb->owner, memory_order_relaxed);
    return w && w == uqi_sched_current_worker();
}

/* Owner's thread: append to the local queue if there is room. */
static inline bool lput(uqi_mailbox *mb, uqi_msg *m, bool force)
{
    uint64_t lp = ld(&mb->lpushed);
    if (!force && ld(&mb->pushed) + lp - ld(&mb->popped) >= mb->cap) return false;
    m->next = NULL;
    if (mb->ltail) mb->ltail->next = m;
    else mb->lhead = m;
    mb->ltail = m;
    st(&mb->lpushed, lp + 1);
    return true;
}

/* Owner's thread, after a local put: did the consumer wait? (It armed on
 * this thread, so no put can have been missed; others clear the mark under
 * the lock.) With wake, the task is woken here. No lock: the mark is taken
 * by an exchange (a producer on another thread that clears it at the same
 * time may wake the task too: a spurious wake, which receive absorbs), and
 * the waiter cannot end meanwhile: it ends only on this thread, which is
 * running us (a disarm from elsewhere, at a kill, leaves it alive). */
static bool lwaits(uqi_mailbox *mb, bool wake)
{
    if (!atomic_load_explicit(&mb->waiting, memory_order_relaxed)) return false;
    if (!atomic_exchange_explicit(&mb->waiting, false, memory_order_relaxed)) return false;
    struct uqi_task *t = atomic_load_explicit(&mb->waiter, memory_order_relaxed);
    if (wake && t) uqi_task_wake(t);
    return true;
}

/* A producer on another thread than the owner's, mailbox lock held: count
 * its push (pushed = its new value), then say whether the consumer waits.
 * The consumer may arm without the lock (uqi_mailbox_take: the mark, then a
 * second look at pushed), so both sides use sequentially consistent
 * accesses (not fences, which ThreadSanitizer cannot see): the store of
 * pushed and the load of the mark here, the store of the mark and the load
 * of pushed there; one of the two sees the other. */
static inline bool push_and_take_mark(uqi_mailbox *mb, uint64_t pushed)
{
    atomic_store_explicit(&mb->pushed, pushed, memory_order_seq_cst);
    if (!atomic_load_explicit(&mb->waiting, memory_order_seq_cst)) return false;
    return atomic_exchange_explicit(&mb->waiting, false, memory_order_relaxed);
}

uq_err uqi_mailbox_put(uqi_mailbox *mb, uqi_msg *m, bool force, bool *out_wake)
{
    if (local(mb)) {
        if (!lput(mb, m, force)) {
            pthread_mutex_lock(&mb->lock);
            mb->refused++;
            pthread_mutex_unlock(&mb->lock);
            return UQ_ELIMIT;
        }
        bool w = lwaits(mb, false);
        if (out_wake) *out_wake = w;
        return UQ_OK;
    }
    pthread_mutex_lock(&mb->lock);
    uint64_t pushed = ld(&mb->pushed);
    /* popped only grows meanwhile: a stale value errs towards refusing */
    if (!force && pushed + ld(&mb->lpushed) - ld(&mb->popped) >= mb->cap) {
        mb->refused++;
        pthread_mutex_unlock(&mb->lock);
        return UQ_ELIMIT;
    }
    m->next = NULL;
    if (mb->tail) mb->tail->next = m;
    else mb->head = m;
    mb->tail = m;
    bool wake = push_and_take_mark(mb, pushed + 1);
    pthread_mutex_unlock(&mb->lock);
    if (out_wake) *out_wake = wake;
    return UQ_OK;
}

uq_err uqi_mailbox_put_wake(uqi_mailbox *mb, uqi_msg *m)
{
    if (local(mb)) {
        if (UQ_UNLIKELY(atomic_load_explicit(&mb->closed, memory_order_relaxed))) return UQ_ENOENT;
        if (!lput(mb, m, false)) {
            pthread_mutex_lock(&mb->lock);
            mb->refused++;
            pthread_mutex_unlock(&mb->lock);
            return UQ_ELIMIT;
        }
        lwaits(mb, true);
        return UQ_OK;
    }
    pthread_mutex_lock(&mb->lock);
    uint64_t pushed = ld(&mb->pushed);
    if (UQ_UNLIKELY(atomic_load_explicit(&mb->closed, memory_order_relaxed))) {
        pthread_mutex_unlock(&mb->lock);
        return UQ_ENOENT;
    }
    if (pushed + ld(&mb->lpushed) - ld(&mb->popped) >= mb->cap) {
        mb->refused++;
        pthread_mutex_unlock(&mb->lock);
        return UQ_ELIMIT;
    }
    m->next = NULL;
    if (mb->tail) mb->tail->next = m;
    else mb->head = m;
    mb->tail = m;
    if (push_and_take_mark(mb, pushed + 1)) {
        struct uqi_task *t = atomic_load_explicit(&mb->waiter, memory_order_relaxed);
        if (t) uqi_task_wake(t); /* alive: its end disarms under this lock */
    }
    pthread_mutex_unlock(&mb->lock);
    return UQ_OK;
}

void uqi_mailbox_unown(uqi_mailbox *mb)
{
    if (!atomic_load_explicit(&mb->owner, memory_order_relaxed)) return;
    pthread_mutex_lock(&mb->lock);
    if (mb->lhead) { /* after what is in the shared queue: the consumer took that first */
        if (mb->tail) mb->tail->next = mb->lhead;
        else mb->head = mb->lhead;
        mb->tail = mb->ltail;
        mb->lhead = mb->ltail = NULL;
    }
    st(&mb->pushed, ld(&mb->pushed) + ld(&mb->lpushed)); /* the moved ones count as shared now */
    st(&mb->lpushed, 0);
    atomic_store_explicit(&mb->owner, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&mb->lock);
}

void uqi_mailbox_disarm(uqi_mailbox *mb, bool close, bool shared)
{
    if (shared) pthread_mutex_lock(&mb->lock);
    atomic_store_explicit(&mb->waiting, false, memory_order_relaxed);
    atomic_store_explicit(&mb->waiter, NULL, memory_order_relaxed);
    if (close) atomic_store_explicit(&mb->closed, true, memory_order_relaxed);
    if (shared) pthread_mutex_unlock(&mb->lock);
}

uqi_msg *uqi_mailbox_take(uqi_mailbox *mb, struct uqi_task *arm)
{
    uqi_msg *m = mb->batch;
    if (!m) {
        if (arm && UQ_UNLIKELY(!atomic_load_explicit(&mb->owner, memory_order_relaxed)))
            atomic_store_explicit(&mb->owner, arm->worker, memory_order_relaxed);
        /* the shared queue first (the older messages of a sender that
         * became local), only if something was put there since */
        uqi_msg *sh = NULL, *st_tail = NULL;
        uint64_t pushed = ld(&mb->pushed);
        if (pushed == mb->taken && !mb->lhead && arm) {
            /* Nothing anywhere: arm without the lock. The waiter first, then
             * the mark and a second look at the shared queue's count (a
             * producer elsewhere counts its push, then looks at the mark:
             * push_and_take_mark); a producer on this thread cannot run before
             * the task blocks. If something came meanwhile, the locked path
             * below takes it (and may find the task woken once for nothing). */
            atomic_store_explicit(&mb->waiter, arm, memory_order_relaxed);
            atomic_store_explicit(&mb->waiting, true, memory_order_seq_cst);
            pushed = atomic_load_explicit(&mb->pushed, memory_order_seq_cst);
            if (pushed == mb->taken) return NULL;
        }
        if (pushed != mb->taken || (!mb->lhead && arm)) {
            pthread_mutex_lock(&mb->lock);
            sh = mb->head;
            st_tail = mb->tail;
            mb->head = mb->tail = NULL;
            mb->taken = ld(&mb->pushed);
            if (!sh && !mb->lhead && arm) {
                atomic_store_explicit(&mb->waiting, true, memory_order_relaxed);
                atomic_store_explicit(&mb->waiter, arm, memory_order_relaxed);
            } else if (arm) {
                atomic_store_explicit(&mb->waiting, false, memory_order_relaxed);
            }
            pthread_mutex_unlock(&mb->lock);
        }
        m = sh;
        if (mb->lhead) { /* only this thread touches it: no lock */
            if (st_tail) st_tail->next = mb->lhead;
            else m = mb->lhead;
            mb->lhead = mb->ltail = NULL;
        }
        if (!m) return NULL;
    }
    mb->batch = m->next;
    m->next = NULL;
    st(&mb->popped, ld(&mb->popped) + 1);
    return m;
}

uint32_t uqi_mailbox_depth(uqi_mailbox *mb)
{
    uint64_t popped = ld(&mb->popped);
    return (uint32_t)(ld(&mb->pushed) + ld(&mb->lpushed) - popped);
}

void uqi_mailbox_put_front(uqi_mailbox *mb, uqi_msg *m)
{
    pthread_mutex_lock(&mb->lock);
    if (mb->batch) {
        m->next = mb->batch;
        mb->batch = m;
    } else {
        m->next = mb->head;
        mb->head = m;
        if (!mb->tail) mb->tail = m;
    }
    atomic_store_explicit(&mb->pushed, atomic_load_explicit(&mb->pushed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&mb->lock);
}
