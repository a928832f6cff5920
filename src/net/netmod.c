/* The net module (netmod.h): one epoll thread, links per connection,
 * bounded per-peer queues. Locking: net->lock guards the peer list and
 * each peer's queue (senders append, the thread takes); everything else
 * (connections, links, peer state) is under net->io, which the thread
 * holds except while it waits in epoll_wait. A sender whose message
 * someone waits for may take io then and write the message itself
 * (uqn_net_push): one wake-up of a sleeping thread less on the path of a
 * remote round trip. Callbacks run with io held and no other lock of
 * ours, so they may call uqn_net_send. */
#define _GNU_SOURCE
#include "net/netmod.h"

#include "kernel/msg.h"
#include "net/lookup.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS 20
#define PREP_QUIET_US 300     /* no event for this long: make ephemeral keys ahead */
#define PREP_QUIET_HS_US 2000 /* the same while a link of ours is in its handshake */
#define BATCH_BYTES (256u << 10)   /* handed to a link at once */
#ifndef BATCH_MSGS
#define BATCH_MSGS 512u            /* and at most this many entries */
#endif
#define READ_BUF (256u << 10)  /* several frames per recv */

/* A queued message. Small ones are copied into the entry (inl) and the
 * sender's buffer is freed on its own thread, where malloc will reuse it at
 * once; entries are recycled through a free list (net->qfree). So a small
 * message crosses threads without a malloc on one side and a free on the
 * other: that pair (glibc arena locks, no thread cache hits) was the
 * largest cost of a small send. */
#define QENT_INLINE UQN_NET_INLINE
#define QFREE_MAX 8192

/* Packs: while a peer's queue is not empty (the net thread is behind), a
 * short quiet message is not given an entry of its own but appended, as a
 * link record (UQN_REC_MSG, its u16 length, its bytes), to a pack at the
 * tail of the queue: PACK_CAP bytes the link puts in a frame as they are
 * (uqn_fenc_msg.recs) and encrypts from where they are. The net thread then
 * walks, frames and recycles one entry per hundred or so messages, and a
 * pack written needs no report at all. A failed pack is reported message
 * by message (cfg.lost). Its deadline is its last message's, so no message
 * times out early; a pack takes messages whose deadlines are at most
 * PACK_SPAN_NS after its first's, so none waits more than that beyond its
 * own (the timeouts are checked every TICK_MS anyway). */
#define PACK_CAP 8192u
#define PACK_REC_HDR 3u           /* kind, u16 length (frame.h) */
#define PACK_SPAN_NS (20ull * 1000000ull)
#define PFREE_MAX 64

typedef struct qent {
    struct qent *next;
    uint8_t *data;           /* inl, pbuf, or the sender's buffer (then ours to free) */
    uint8_t *pbuf;           /* a pack's PACK_CAP bytes (kept with the entry when recycled), or NULL */
    uint32_t nmsgs;          /* messages in it: 1, or a pack's */
    size_t len;              /* with the tail */
    const uint8_t *tail;     /* uqn_net_send_tail: lent by the sender until done, or NULL */
    size_t tail_len;
    void *cookie;
    bool quiet;              /* uqn_net_send_quiet: no done; cfg.lost gets the bytes if it fails */
    uint64_t deadline;       /* a pack's: its last message's */
    uint64_t deadline0;      /* a pack's first message's (bounds how late the pack's deadline is) */
    uqn_fenc_msg fm;         /* how the link queues it: no copy (uqn_link_send_ref) */
    uint8_t inl[QENT_INLINE];
} qent;

typedef enum { P_IDLE = 0, P_DIALING, P_UP, P_BACKOFF, P_LOOKUP /* peers asked for its record (lookup.c) */ } pstate;

typedef struct peer peer;
typedef struct conn {
    struct conn *next;
    int fd;
    uqn_link *link;
    peer *peer;              /* dialed: from the start; accepted: once established */
    bool outbound, connecting, want_out, dead;
    bool held;               /* accepted from a node not in the directory: not read until looked up */
    uint64_t created, last_rx, last_tx, last_msg;
    qent *fl_head, *fl_tail; /* handed to the link, not yet all written */
    unsigned addr_idx;
    uint64_t fl_msgs, fl_bytes;
} conn;

struct peer {
    peer *next;
    char name[UQN_NAME_MAX + 1];
    /* under net->lock */
    qent *head, *tail;
    size_t qbytes;
    uint32_t qn;
    /* under io */
    pstate state;
    conn *out;               /* the connection we send on */
    uint64_t backoff_until;
    uint32_t backoff_ms;
};

struct uqn_net {
    uqn_net_cfg cfg;
    const uqn_identity *id;
    char dir_path[4096];
    uqn_dir *dir;
    uqn_lk *lk;              /* look-ups from peers, learned records (lookup.c) */
    uint32_t dir_gen, dir_swept; /* directory reloads; links checked against the last one */
    uint64_t dir_checked;    /* when the file was last looked at by the tick */
    struct timespec dir_mtime;
    off_t dir_size;
    int ep, lfd, efd;
    char listen_addr[UQN_ADDR_MAX + 1];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_mutex_t io;      /* connections, links, peer states: the thread's, except while it sleeps */
    _Atomic bool direct_ok;  /* the thread went to sleep and no sender has pushed since (uqn_net_push) */
    bool self_owed;          /* under io: the thread queued a message itself: it looks again before sleeping */
    uint32_t owing;          /* under lock: messages queued for a uqn_net_push not yet done (uqn_net_stop waits) */
    peer *peers;             /* under lock */
    uint32_t npeers;         /* under lock */
    bool stopping;           /* under lock */
    bool joined;             /* the thread is gone: uqn_net_stop closes what is left */
    bool kicked;             /* under lock: the eventfd was written and not yet read */
    bool running;            /* under lock: the thread is in its loop */
    pthread_cond_t started;  /* signalled when running is set, and when a drop is done */
    char drop_name[UQN_NAME_MAX + 1]; /* under lock: uqn_net_drop's request */
    uint32_t drop_req, drop_done;
    uqn_tickets *tickets;    /* under io: resumption tickets, or NULL */
    qent *qfree;             /* under lock: recycled entries */
    uint32_t nqfree;
    qent *pfree;             /* under lock: recycled packs (with their pbuf) */
    uint32_t npfree;
    uint64_t packed;         /* under lock: messages queued into packs */
    peer *last;              /* under lock: the peer of the last send (a cache) */
    conn *conns;             /* under io */
    uint32_t nconns;
    uint8_t *rbuf;
    bool rx_dirty;           /* under io: recv was called since the last recv_flush */
    uqn_net_stats st;        /* counters: the thread's (and uqn_net_stop's) */
    uqn_net_stats st_pub;    /* under lock: copied from st each tick */
};

/* Done entries collected under the lock, reported after it is released. */
typedef struct donelist {
    qent *head, *tail;
} donelist;

static void dl_push(donelist *d, qent *q)
{
    q->next = NULL;
    if (d->tail) d->tail->next = q;
    else d->head = q;
    d->tail = q;
}

static void qent_free_data(qent *q)
{
    if (q->data != q->inl && q->data != q->pbuf) free(q->data);
    q->data = NULL;
}

/* A pack that failed: each of its messages to cfg.lost. */
static void pack_lost(uqn_net *net, const char *pname, const qent *q, int why)
{
    for (size_t i = 0; i + PACK_REC_HDR <= q->len;) {
        size_t l = (size_t)q->pbuf[i + 1] << 8 | q->pbuf[i + 2];
        UQ_ASSERT(q->pbuf[i] == UQN_REC_MSG && i + PACK_REC_HDR + l <= q->len);
        if (net->cfg.lost) net->cfg.lost(net->cfg.arg, pname, q->pbuf + i + PACK_REC_HDR, l, why);
        i += PACK_REC_HDR + l;
    }
}

/* A donelist that counts its entries (for a bounded free list). */
typedef struct chain {
    donelist l;
    uint32_t n;
} chain;

static void chain_push(chain *c, qent *q)
{
    dl_push(&c->l, q);
    c->n++;
}

/* Lock held: put c on the free list *fl (bounded by max) in one splice if
 * it fits, else one by one; what does not fit goes on *rest. */
static void chain_recycle(chain *c, qent **fl, uint32_t *nfl, uint32_t max, qent **rest)
{
    if (c->l.head && *nfl + c->n <= max) {
        c->l.tail->next = *fl;
        *fl = c->l.head;
        *nfl += c->n;
        return;
    }
    for (qent *q = c->l.head, *nx; q; q = nx) {
        nx = q->next;
        if (*nfl < max) {
            q->next = *fl;
            *fl = q;
            (*nfl)++;
        } else {
            q->next = *rest;
            *rest = q;
        }
    }
}

/* Report the entries of d to their senders (pname: whom they were for).
 * Quiet entries written need nothing: a batch of them costs no call. */
static void dl_report(uqn_net *net, const char *pname, donelist *d, int why)
{
    for (qent *q = d->head; q; q = q->next) {
        if (q->quiet) {
            if (why != UQN_DONE_SENT) {
                if (why == UQN_DONE_OFFLINE) net->st.offline += q->nmsgs;
                else net->st.timeouts += q->nmsgs;
                if (q->pbuf) pack_lost(net, pname, q, why);
                else if (net->cfg.lost) net->cfg.lost(net->cfg.arg, pname, q->data, q->len, why);
            }
            qent_free_data(q);
            continue;
        }
        if (uqn_lk_owns(q->cookie)) { /* a look-up message of ours */
            qent_free_data(q);
            uqn_lk_sent(net->lk, q->cookie, why);
            continue;
        }
        if (why == UQN_DONE_OFFLINE) net->st.offline++;
        else if (why == UQN_DONE_TIMEOUT) net->st.timeouts++;
        qent_free_data(q);
        if (net->cfg.done) net->cfg.done(net->cfg.arg, q->cookie, why);
    }
    /* the entries go back to the free lists in one locked step: spliced
     * whole, without walking them under the lock, if they fit */
    chain ents = {0}, packs = {0};
    for (qent *q = d->head, *nx; q; q = nx) {
        nx = q->next;
        chain_push(q->pbuf ? &packs : &ents, q);
    }
    qent *rest = NULL;
    pthread_mutex_lock(&net->lock);
    chain_recycle(&ents, &net->qfree, &net->nqfree, QFREE_MAX, &rest);
    chain_recycle(&packs, &net->pfree, &net->npfree, PFREE_MAX, &rest);
    pthread_mutex_unlock(&net->lock);
    for (qent *q = rest, *nx; q; q = nx) {
        nx = q->next;
        free(q->pbuf);
        free(q);
    }
    d->head = d->tail = NULL;
}

/* ---- addresses ------------------------------------------------------------ */
uq_err uqn_resolve(const char *addr, struct sockaddr_storage *ss, unsigned *sslen, uq_errmsg *em)
{
    char host[UQN_ADDR_MAX + 1];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || strlen(addr) > UQN_ADDR_MAX)
        return uqi_errf(em, UQ_EINVAL, "net: '%s' is not host:port", addr);
    size_t hl = (size_t)(colon - addr);
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || end == colon + 1)
        return uqi_errf(em, UQ_EINVAL, "net: '%s' has a bad port", addr);
    /* a numeric address (the usual case) without getaddrinfo: it reads
     * configuration files on the dialing path */
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sslen = sizeof *s4;
        return UQ_OK;
    }
    if (!strchr(host, '%') && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof *s6;
        return UQ_OK;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int r = getaddrinfo(host, colon + 1, &hints, &res);
    if (r != 0 || !res) return uqi_errf(em, UQ_ENOENT, "net: cannot resolve %s: %s", host, gai_strerror(r));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = (unsigned)res->ai_addrlen;
    freeaddrinfo(res);
    return UQ_OK;
}

/* ---- directory ---------------------------------------------------------------- */
/* Reread the directory file if it changed (under io). */
static void dir_refresh(uqn_net *net)
{
    if (!net->dir_path[0]) return;
    struct stat sb;
    if (stat(net->dir_path, &sb) != 0) return;
    if (net->dir && sb.st_mtim.tv_sec == net->dir_mtime.tv_sec && sb.st_mtim.tv_nsec == net->dir_mtime.tv_nsec &&
        sb.st_size == net->dir_size)
        return;
    uqn_dir *d = uqn_dir_new();
    uq_errmsg em = {{0}};
    if (uqn_dir_load(d, net->dir_path, &em)) {
        uq_log(UQ_LOG_WARN, "net", "directory not reloaded: %s", em.text);
        uqn_dir_free(d);
        return;
    }
    uqn_dir_free(net->dir);
    net->dir = d;
    net->dir_gen++;
    net->dir_mtime = sb.st_mtim;
    net->dir_size = sb.st_size;
}

/* The record for name: the operator's file, or learned from peers. */
static const uqn_record *dir_get(uqn_net *net, const char *name)
{
    const uqn_record *r = uqn_lk_record(net->lk, net->dir, name);
    if (r) return r;
    dir_refresh(net);
    return uqn_lk_record(net->lk, net->dir, name);
}

static uq_err lookup(void *arg, const char *name, uint8_t pk[32], uq_errmsg *em)
{
    uqn_net *net = arg;
    /* reread first (a stat when nothing changed): a key the operator just
     * corrected applies to the next handshake, incoming ones too */
    dir_refresh(net);
    const uqn_record *r = dir_get(net, name);
    if (!r) return uqi_errf(em, UQ_ENOENT, "%s is not in the directory", name);
    memcpy(pk, r->pk, 32);
    return UQ_OK;
}

/* ---- peers (lock held) ----------------------------------------------------------- */
static peer *peer_find(uqn_net *net, const char *name)
{
    for (peer *p = net->peers; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

static peer *peer_get(uqn_net *net, const char *name)
{
    peer *p = peer_find(net, name);
    if (p || net->npeers >= net->cfg.max_peers) return p;
    p = uqi_xcalloc(1, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->next = net->peers;
    net->peers = p;
    net->npeers++;
    return p;
}

/* A message this thread queued without waking the net thread, which it
 * writes itself if it can (uqn_net_push); kernel code is never preempted,
 * so the sender's thread is the one that pushes. */
static __thread struct {
    uqn_net *net;
    char peer[UQN_NAME_MAX + 1];
} owed;

/* The net thread's own network (for deliver, and to know a send made from
 * the thread itself); NULL on every other thread. */
static __thread uqn_net *cur_net;

/* Wake the thread once until it looks (under lock; enqueue writes after
 * its unlock instead): kicked set means a write is made or coming, and
 * epoll's eventfd stays readable until the thread reads it. */
static void kick_locked(uqn_net *net)
{
    if (net->kicked) return;
    net->kicked = true;
    uint64_t one = 1;
    ssize_t w = write(net->efd, &one, sizeof one);
    UQ_UNUSED(w);
}

/* Queue a message (see uqn_net_send_tail, uqn_net_send_quiet). */
static uq_err enqueue(uqn_net *net, const char *name, uint8_t *msg, size_t head_len, const uint8_t *tail,
                      size_t tail_len, void *cookie, bool quiet, bool copy, bool push, uq_errmsg *em)
{
    size_t len = head_len + tail_len;
    if (len > UQN_NET_MSG_MAX)
        return uqi_errf(em, UQ_EINVAL, "net: a message of %zu bytes is over the limit of %u bytes", len,
                        UQN_NET_MSG_MAX);
    uint8_t *mine = NULL; /* a copy of a caller's message too long for an entry, made before the lock */
    if (copy && len > QENT_INLINE) {
        mine = uqi_xmalloc(head_len);
        memcpy(mine, msg, head_len);
        msg = mine;
    }
    /* the coarse clock (a few ms behind at most, no rdtsc) is enough for a
     * deadline in seconds, and costs 5 ns instead of 25 per message */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t deadline = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
                        (uint64_t)net->cfg.send_timeout_ms * 1000000ull;
    bool kick = false;
    pthread_mutex_lock(&net->lock);
    uq_err e = UQ_OK;
    if (net->stopping) {
        e = uqi_errf(em, UQ_ECLOSED, "net: the node is stopping");
        goto out;
    }
    /* the name was checked when that peer was made */
    peer *p = net->last && strcmp(net->last->name, name) == 0 ? net->last : NULL;
    if (!p) {
        if (!uqi_node_name_valid(name)) {
            e = uqi_errf(em, UQ_EINVAL, "net: '%s' is not a node name", name);
            goto out;
        }
        p = peer_get(net, name);
        net->last = p;
    }
    if (!p) {
        e = uqi_errf(em, UQ_ELIMIT, "net: %u peers already: %s cannot be added now, try again", net->cfg.max_peers,
                     name);
        goto out;
    }
    if (p->qn >= net->cfg.queue_msgs || (p->qn && p->qbytes + len > net->cfg.queue_bytes)) {
        e = uqi_errf(em, UQ_ELIMIT, "net: the queue to %s is full (%u messages, %zu bytes): try again", name, p->qn,
                     p->qbytes);
        goto out;
    }
    qent *q, *t = p->tail;
    if (quiet && len <= QENT_INLINE && t) { /* behind: into a pack */
        if (t->pbuf && t->len + PACK_REC_HDR + len <= PACK_CAP && deadline >= t->deadline0 &&
            deadline - t->deadline0 <= PACK_SPAN_NS) {
            q = t; /* the open pack at the tail */
            if (deadline > q->deadline) q->deadline = deadline; /* never early for this one */
        } else {
            q = net->pfree;
            if (q) {
                net->pfree = q->next;
                net->npfree--;
            } else {
                q = uqi_xmalloc(sizeof *q);
                q->pbuf = uqi_xmalloc(PACK_CAP);
            }
            q->next = NULL;
            q->data = q->pbuf;
            q->tail = NULL;
            q->tail_len = 0;
            q->len = 0;
            q->nmsgs = 0;
            q->cookie = NULL;
            q->quiet = true;
            q->deadline = q->deadline0 = deadline;
            if (t) t->next = q;
            p->tail = q;
        }
        uint8_t *w = q->pbuf + q->len;
        w[0] = UQN_REC_MSG;
        w[1] = (uint8_t)(len >> 8);
        w[2] = (uint8_t)len;
        memcpy(w + PACK_REC_HDR, msg, len);
        q->len += PACK_REC_HDR + len;
        q->nmsgs++;
        net->packed++;
        p->qn++;
        p->qbytes += PACK_REC_HDR + len;
        goto kick;
    }
    q = net->qfree;
    if (q) {
        net->qfree = q->next;
        net->nqfree--;
    } else {
        q = uqi_xmalloc(sizeof *q);
        q->pbuf = NULL;
    }
    q->next = NULL;
    q->nmsgs = 1;
    q->data = msg;
    q->tail = tail_len ? tail : NULL;
    q->tail_len = tail_len;
    if (len <= QENT_INLINE) {
        memcpy(q->inl, msg, head_len);
        if (tail_len) memcpy(q->inl + head_len, tail, tail_len);
        q->data = q->inl;
        q->tail = NULL;
        q->tail_len = 0;
    }
    q->len = len;
    q->cookie = cookie;
    q->quiet = quiet;
    q->deadline = deadline;
    if (p->tail) p->tail->next = q;
    else p->head = q;
    p->tail = q;
    p->qn++;
    p->qbytes += len;
kick:
    if (cur_net == net) {
        net->self_owed = true; /* the thread itself: it feeds its queues before it sleeps */
    } else if (push && !net->kicked && !owed.net && atomic_exchange(&net->direct_ok, false)) {
        owed.net = net; /* the thread sleeps: the sender writes it (uqn_net_push), at most one per sleep */
        memcpy(owed.peer, p->name, sizeof owed.peer);
        net->owing++;
    } else {
        /* the thread is woken once until it looks (the write after the
         * lock: kicked set means a write is made or coming, and epoll's
         * eventfd stays readable until the thread reads it) */
        kick = !net->kicked;
        net->kicked = true;
    }
out:
    pthread_mutex_unlock(&net->lock);
    if (e == UQ_OK && kick) {
        uint64_t one = 1;
        ssize_t w = write(net->efd, &one, sizeof one);
        UQ_UNUSED(w);
    }
    if (e == UQ_OK && len <= QENT_INLINE && !copy) free(msg); /* copied into the entry */
    if (e && mine) free(mine);
    return e;
}

uq_err uqn_net_send(uqn_net *net, const char *name, uint8_t *msg, size_t len, void *cookie, uq_errmsg *em)
{
    return enqueue(net, name, msg, len, NULL, 0, cookie, false, false, false, em);
}

uq_err uqn_net_send_tail(uqn_net *net, const char *name, uint8_t *msg, size_t head_len, const uint8_t *tail,
                         size_t tail_len, void *cookie, uq_errmsg *em)
{
    return enqueue(net, name, msg, head_len, tail, tail_len, cookie, false, false, false, em);
}

uq_err uqn_net_send_quiet(uqn_net *net, const char *name, uint8_t *msg, size_t len, unsigned flags, uq_errmsg *em)
{
    return enqueue(net, name, msg, len, NULL, 0, NULL, true, flags & UQN_QUIET_COPY, flags & UQN_QUIET_PUSH, em);
}

uq_err uqn_net_room(uqn_net *net, const char *name, size_t len, uq_errmsg *em)
{
    pthread_mutex_lock(&net->lock);
    peer *p = peer_find(net, name);
    bool full = p && (p->qn >= net->cfg.queue_msgs || (p->qn && p->qbytes + len > net->cfg.queue_bytes));
    uint32_t qn = p ? p->qn : 0;
    size_t qb = p ? p->qbytes : 0;
    pthread_mutex_unlock(&net->lock);
    if (full)
        return uqi_errf(em, UQ_ELIMIT, "net: the queue to %s is full (%u messages, %zu bytes): try again", name, qn, qb);
    return UQ_OK;
}

/* Take the whole queue of p into d (lock held). */
static void take_queue(peer *p, donelist *d)
{
    for (qent *q = p->head, *nx; q; q = nx) {
        nx = q->next;
        dl_push(d, q);
    }
    p->head = p->tail = NULL;
    p->qn = 0;
    p->qbytes = 0;
}

static void fail_queue(uqn_net *net, peer *p, int why)
{
    donelist d = {0};
    pthread_mutex_lock(&net->lock);
    take_queue(p, &d);
    pthread_mutex_unlock(&net->lock);
    dl_report(net, p->name, &d, why);
}

/* ---- connections (under io) ---------------------------------------------------- */

static void ep_update(uqn_net *net, conn *c, bool want_out)
{
    if (c->want_out == want_out) return;
    c->want_out = want_out;
    struct epoll_event ev = {.events = (c->held ? 0 : EPOLLIN) | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(net->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void ep_hold(uqn_net *net, conn *c, bool held)
{
    c->held = held;
    struct epoll_event ev = {.events = (held ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(net->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static uq_err deliver(void *arg, const uint8_t *msg, size_t len);

static conn *conn_new(uqn_net *net, int fd, bool outbound, peer *p)
{
    conn *c = uqi_xcalloc(1, sizeof *c);
    c->fd = fd;
    c->outbound = outbound;
    c->peer = p;
    c->created = c->last_rx = c->last_tx = c->last_msg = uqi_now_ns();
    c->next = net->conns;
    net->conns = c;
    net->nconns++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = true;
    epoll_ctl(net->ep, EPOLL_CTL_ADD, fd, &ev);
    return c;
}

static bool link_start(uqn_net *net, conn *c, uq_errmsg *em)
{
    /* deliver_arg is the connection: the link tells us who the peer is */
    uqn_link_cfg lc = {.id = net->id, .initiator = c->outbound, .expect_name = c->outbound ? c->peer->name : NULL,
                       .lookup = lookup, .lookup_arg = net, .deliver = deliver, .deliver_arg = c,
                       .max_msg = UQN_NET_MSG_MAX, .defer_unknown = !c->outbound && !net->cfg.lookup_off,
                       .tickets = net->tickets};
    return uqn_link_new(&lc, &c->link, em) == UQ_OK;
}

/* The receiver's batch is delivered (uqn_net_cfg.recv_flush): after each
 * read, and before anything that must come after what was received (a
 * link reported down). */
static void rx_flush(uqn_net *net)
{
    if (!net->rx_dirty) return;
    net->rx_dirty = false;
    if (net->cfg.recv_flush) net->cfg.recv_flush(net->cfg.arg);
}

static void dial(uqn_net *net, peer *p);
static void feed(uqn_net *net, peer *p);

/* Close c; its unwritten messages fail Offline. A dial that failed moves
 * to the next address, or puts the peer in back-off. */
static void conn_close(uqn_net *net, conn *c, const char *why)
{
    if (c->dead) return;
    c->dead = true;
    epoll_ctl(net->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->link) uqn_link_cancel_output(c->link); /* it lent the messages below */
    donelist d = {c->fl_head, c->fl_tail};
    c->fl_head = c->fl_tail = NULL;
    bool was_up = c->link && uqn_link_established(c->link);
    peer *p = c->peer;
    if (p)
        uq_log(was_up ? UQ_LOG_INFO : UQ_LOG_WARN, "net", "link %s %s closed: %s", c->outbound ? "to" : "from",
               p->name, why);
    else
        uq_log(UQ_LOG_INFO, "net", "incoming connection closed: %s", why);
    if (p && p->out == c) {
        p->out = NULL;
        if (was_up) {
            p->state = P_IDLE; /* redial at once if something waits */
        } else {
            net->st.links_failed++;
            uint32_t b = p->backoff_ms ? p->backoff_ms * 2 : net->cfg.backoff_min_ms;
            if (b > net->cfg.backoff_max_ms) b = net->cfg.backoff_max_ms;
            p->backoff_ms = b;
            p->backoff_until = uqi_now_ns() + (uint64_t)b * 1000000ull;
            p->state = P_BACKOFF;
            dl_report(net, p->name, &d, UQN_DONE_OFFLINE);
            fail_queue(net, p, UQN_DONE_OFFLINE);
            return;
        }
    }
    dl_report(net, p ? p->name : "", &d, UQN_DONE_OFFLINE);
    if (was_up && p && net->cfg.down && !net->joined && strcmp(why, "idle") != 0 && strcmp(why, "dropped") != 0) {
        for (conn *o = net->conns; o; o = o->next)
            if (o != c && !o->dead && o->peer == p && o->link && uqn_link_established(o->link)) return;
        rx_flush(net);
        net->cfg.down(net->cfg.arg, p->name);
    }
}

static void conn_free(uqn_net *net, conn *c)
{
    uqn_link_free(c->link);
    net->nconns--;
    free(c);
}

/* Does p's queue hold a message of the kernel's (not only look-ups)? */
static bool user_msgs(uqn_net *net, peer *p)
{
    bool any = false;
    pthread_mutex_lock(&net->lock);
    for (qent *q = p->head; q && !any; q = q->next) any = !uqn_lk_owns(q->cookie);
    pthread_mutex_unlock(&net->lock);
    return any;
}

/* Start (or continue with the next address of) a dial to p. */
static void dial_from(uqn_net *net, peer *p, unsigned idx)
{
    dir_refresh(net);
    const uqn_record *r = dir_get(net, p->name);
    uq_errmsg em = {{0}};
    while (r && idx < r->naddrs) {
        struct sockaddr_storage ss;
        unsigned sl;
        unsigned i = idx++;
        if (uqn_resolve(r->addrs[i], &ss, &sl, &em)) {
            uq_log(UQ_LOG_WARN, "net", "%s: %s", p->name, em.text);
            continue;
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int rc = connect(fd, (struct sockaddr *)&ss, sl);
        if (rc != 0 && errno != EINPROGRESS) {
            uq_log(UQ_LOG_INFO, "net", "dial %s at %s: %s", p->name, r->addrs[i], strerror(errno));
            close(fd);
            continue;
        }
        conn *c = conn_new(net, fd, true, p);
        c->connecting = true;
        c->addr_idx = i + 1;
        if (!link_start(net, c, &em)) {
            conn_close(net, c, em.text);
            return;
        }
        p->out = c;
        p->state = P_DIALING;
        return;
    }
    /* no record, or every address failed: peers may know it (or a newer
     * record; not for our own look-up requests alone) */
    if (!net->cfg.lookup_off && (!r || user_msgs(net, p)) && uqn_lk_want(net->lk, p->name, r != NULL)) {
        p->state = P_LOOKUP;
        return;
    }
    uq_log(UQ_LOG_INFO, "net", "%s cannot be reached: %s", p->name,
           r ? "no address answers" : "it is not in the directory");
    net->st.links_failed++;
    uint32_t b = p->backoff_ms ? p->backoff_ms * 2 : net->cfg.backoff_min_ms;
    if (b > net->cfg.backoff_max_ms) b = net->cfg.backoff_max_ms;
    p->backoff_ms = r ? b : 0; /* an unknown name is retried as soon as the directory changes */
    p->backoff_until = uqi_now_ns() + (r ? (uint64_t)b * 1000000ull : 0);
    p->state = r ? P_BACKOFF : P_IDLE;
    fail_queue(net, p, UQN_DONE_OFFLINE);
}

/* Send on a link the peer opened to us if there is one; else dial. */
static void dial(uqn_net *net, peer *p)
{
    for (conn *c = net->conns; c; c = c->next) {
        if (!c->dead && c->peer == p && c->link && uqn_link_established(c->link)) {
            p->out = c;
            p->state = P_UP;
            feed(net, p);
            return;
        }
    }
    dial_from(net, p, 0);
}

/* An accepted connection's link is established: attach it to its peer. */
static void adopt(uqn_net *net, conn *c)
{
    const uqn_peer *who = uqn_link_peer(c->link);
    pthread_mutex_lock(&net->lock);
    peer *p = peer_get(net, who->name);
    pthread_mutex_unlock(&net->lock);
    if (!p) {
        conn_close(net, c, "too many peers");
        return;
    }
    c->peer = p;
    if (!p->out) {
        p->out = c;
        p->state = P_UP;
        p->backoff_ms = 0;
    }
}

static uq_err deliver(void *arg, const uint8_t *msg, size_t len)
{
    conn *c = arg;
    uqn_net *net = cur_net;
    if (len == 0) return UQ_OK; /* keepalive (on_readable set last_rx) */
    c->last_msg = c->last_rx;
    net->st.msgs_recv++;
    net->st.bytes_recv += len;
    const uqn_peer *who = uqn_link_peer(c->link);
    if (!net->cfg.lookup_off && uqn_lk_is_msg(msg, len)) {
        uqn_lk_recv(net->lk, who->name, msg, len);
        return UQ_OK;
    }
    if (net->cfg.recv) {
        net->rx_dirty = true;
        net->cfg.recv(net->cfg.arg, who->name, msg, len);
    }
    return UQ_OK;
}

/* Write what the link has; when all of it is out, the messages handed to
 * it are sent. */
static void flush(uqn_net *net, conn *c)
{
    if (c->dead || c->connecting) return;
    const uint8_t *p;
    size_t n;
    while ((n = uqn_link_output(c->link, &p)) > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ep_update(net, c, true);
                return;
            }
            if (errno == EINTR) continue;
            conn_close(net, c, strerror(errno));
            return;
        }
        uqn_link_output_done(c->link, (size_t)w);
        c->last_tx = uqi_now_ns();
    }
    if (uqn_link_error(c->link)) {
        conn_close(net, c, uq_strerror(uqn_link_error(c->link)));
        return;
    }
    ep_update(net, c, false);
    if (c->fl_head) {
        net->st.msgs_sent += c->fl_msgs;
        net->st.bytes_sent += c->fl_bytes;
        donelist d = {c->fl_head, c->fl_tail};
        c->fl_head = c->fl_tail = NULL;
        c->fl_msgs = c->fl_bytes = 0;
        dl_report(net, c->peer ? c->peer->name : "", &d, UQN_DONE_SENT);
    }
}

/* Hand the next batch of p's queue to its link (only when the previous one
 * is written: a message is sent or failed as a whole); a batch written at
 * once is followed by the next, up to FEED_ROUNDS. Batches are bounded in
 * messages too: the entries of a batch are walked four times (taken,
 * framed, reported, recycled), and a few hundred stay in the cache between
 * walks where thousands did not. */
#define FEED_ROUNDS 32

static void feed(uqn_net *net, peer *p)
{
    for (int round = 0; round < FEED_ROUNDS; round++) {
        conn *c = p->out;
        if (!c || c->dead || !uqn_link_established(c->link) || c->fl_head) return;
        /* The queue is detached under the lock, the batch cut from it
         * without (senders are not kept waiting while its entries are
         * walked), and the rest put back in front of what came meanwhile.
         * Only this thread takes from queues, so nobody sees the gap. */
        pthread_mutex_lock(&net->lock);
        qent *first = p->head, *old_tail = p->tail;
        p->head = p->tail = NULL;
        pthread_mutex_unlock(&net->lock);
        if (!first) return;
        size_t bytes = 0;
        qent *last = NULL;
        uint64_t cnt = 0, msgs = 0; /* entries, and the messages in them (packs hold many) */
        for (qent *q = first; q && cnt < BATCH_MSGS && (bytes == 0 || bytes + q->len <= BATCH_BYTES); q = q->next) {
            bytes += q->len;
            last = q;
            cnt++;
            msgs += q->nmsgs;
        }
        qent *rest = last->next;
        last->next = NULL;
        pthread_mutex_lock(&net->lock);
        if (rest) {
            if (p->head) old_tail->next = p->head;
            else p->tail = old_tail;
            p->head = rest;
        }
        p->qn -= (uint32_t)msgs;
        p->qbytes -= bytes;
        pthread_mutex_unlock(&net->lock);
        c->fl_head = first;
        c->fl_tail = last;
        c->fl_msgs = msgs;
        c->fl_bytes = bytes;
        for (qent *q = first; q; q = q->next) {
            uq_errmsg em;
            q->fm.data = q->data; /* lent to the link until the batch is written */
            q->fm.len = q->len;
            q->fm.tail = q->tail;
            q->fm.tail_len = q->tail_len;
            q->fm.recs = q->pbuf != NULL;
            if (uqn_link_send_ref(c->link, &q->fm, &em)) {
                conn_close(net, c, em.text);
                return;
            }
        }
        c->last_msg = uqi_now_ns();
        flush(net, c);
    }
}

/* Write what this thread queued with UQN_QUIET_PUSH, if the net thread
 * sleeps (io is free): the round trip's request or response goes out from
 * its sender's thread, and a sleeping net thread (on a halted CPU, whose
 * wake-up costs 10-20 us in a VM) is not on its path. What cannot go now
 * (no link up yet, a batch still being written) stays queued and the
 * thread is woken for it, as for any message. */
void uqn_net_push(void)
{
    while (owed.net) { /* a callback of feed may owe another */
        uqn_net *net = owed.net;
        char name[UQN_NAME_MAX + 1];
        memcpy(name, owed.peer, sizeof name);
        owed.net = NULL;
        bool kick = true;
        if (pthread_mutex_trylock(&net->io) == 0) {
            pthread_mutex_lock(&net->lock);
            /* the thread frees a peer only under io, so p stays */
            peer *p = net->stopping ? NULL : peer_find(net, name);
            pthread_mutex_unlock(&net->lock);
            if (p) {
                net->st.pushed++;
                feed(net, p);
                pthread_mutex_lock(&net->lock);
                kick = p->head != NULL;
                pthread_mutex_unlock(&net->lock);
            }
            pthread_mutex_unlock(&net->io);
        }
        /* net is not touched after this section: uqn_net_stop may free it
         * as soon as owing is 0 */
        pthread_mutex_lock(&net->lock);
        if (kick) kick_locked(net);
        if (--net->owing == 0 && net->stopping) pthread_cond_broadcast(&net->started);
        pthread_mutex_unlock(&net->lock);
    }
}

static void inbound_up(uqn_net *net, conn *c);

/* An accepted link from a node the directory does not know: stop reading
 * it and ask peers about that name (lk_finished resolves it). */
static void hold(uqn_net *net, conn *c)
{
    const uqn_peer *who = uqn_link_pending(c->link);
    ep_hold(net, c, true);
    uq_log(UQ_LOG_INFO, "net", "link from %s, not in the directory: looking it up", who->name);
    if (!uqn_lk_want(net->lk, who->name, false)) {
        char why[256];
        uqn_lk_why(net->lk, who->name, why, sizeof why);
        conn_close(net, c, why[0] ? why : "not in the directory");
    }
}

static void on_readable(uqn_net *net, conn *c)
{
    if (c->held) { /* not read while held: only a hang-up or an error gets here */
        conn_close(net, c, "the peer went away while it was looked up");
        return;
    }
    for (int i = 0; i < 16 && !c->dead; i++) {
        ssize_t r = recv(c->fd, net->rbuf, READ_BUF, 0);
        if (r == 0) {
            conn_close(net, c, "the peer closed the connection");
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            conn_close(net, c, strerror(errno));
            return;
        }
        bool was = uqn_link_established(c->link);
        uq_errmsg em = {{0}};
        c->last_rx = uqi_now_ns();
        uq_err ie = uqn_link_input(c->link, net->rbuf, (size_t)r, &em);
        rx_flush(net); /* what authentic frames brought, before a failure is reported */
        if (ie) {
            uq_log(UQ_LOG_WARN, "net", "link %s %s refused: %s", c->outbound ? "to" : "from",
                   c->peer ? c->peer->name : "an incoming connection", em.text);
            conn_close(net, c, em.text);
            return;
        }
        if (!was && uqn_link_established(c->link)) {
            if (uqn_link_resumed(c->link)) net->st.links_resumed++;
            if (c->outbound) {
                net->st.links_up++;
                c->peer->state = P_UP;
                c->peer->backoff_ms = 0;
                uq_log(UQ_LOG_INFO, "net", "link to %s up%s", c->peer->name,
                   uqn_link_resumed(c->link) ? " (resumed)" : "");
            } else {
                inbound_up(net, c);
                if (c->dead) return;
            }
        }
        if (!c->outbound && uqn_link_pending(c->link)) {
            flush(net, c);
            if (!c->dead) hold(net, c);
            return;
        }
        if ((size_t)r < READ_BUF) break;
    }
    /* messages waiting for the link go out with the last handshake message
     * (one write, one wake-up of the peer) */
    if (!c->dead && c->peer && c->peer->out == c) feed(net, c->peer);
    if (!c->dead) flush(net, c); /* handshake replies */
}

static void on_writable(uqn_net *net, conn *c)
{
    if (c->connecting) {
        int err = 0;
        socklen_t sl = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
        if (err) {
            peer *p = c->peer;
            unsigned next = c->addr_idx;
            uq_log(UQ_LOG_INFO, "net", "dial %s: %s", p->name, strerror(err));
            /* try the next address before giving up */
            c->dead = true;
            epoll_ctl(net->ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            p->out = NULL;
            dial_from(net, p, next);
            return;
        }
        c->connecting = false;
    }
    flush(net, c);
    /* a new link's first message is out: the wait for the answer can do
     * one of the handshake's X25519 (a no-op after, or when resuming) */
    if (!c->dead && c->outbound && c->link) uqn_link_precompute(c->link);
    if (!c->dead && c->peer && c->peer->out == c) feed(net, c->peer);
}

static void on_accept(uqn_net *net)
{
    for (;;) {
        int fd = accept4(net->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (net->nconns >= 2 * net->cfg.max_peers) {
            net->st.refused_conns++;
            uq_log(UQ_LOG_WARN, "net", "refusing a connection: %u connections already", net->nconns);
            close(fd);
            continue;
        }
        net->st.accepted++;
        conn *c = conn_new(net, fd, false, NULL);
        uq_errmsg em = {{0}};
        if (!link_start(net, c, &em)) conn_close(net, c, em.text);
    }
}

/* Time from t to now, 0 when t is later: a connection's stamps may be taken
 * after `now` (work done inside service, e.g. a look-up answer resolving a
 * held link, delivers and sends), and an unsigned difference would wrap and
 * close a busy link as "idle" or "silent". */
static inline uint64_t since(uint64_t now, uint64_t t) { return now > t ? now - t : 0; }

/* Timers, queues, keepalives, idle links, garbage (each tick and after events). */
static void service(uqn_net *net)
{
    uint64_t now = uqi_now_ns();
    uint64_t ka = (uint64_t)net->cfg.keepalive_ms * 1000000ull;
    uint64_t ct = (uint64_t)net->cfg.connect_timeout_ms * 1000000ull;
    uint64_t idle = (uint64_t)net->cfg.idle_ms * 1000000ull;
    net->self_owed = false; /* what this thread queued so far is fed below */
    uqn_lk_tick(net->lk, now);
    uqn_rxbuf_trim(now);
    for (conn *c = net->conns; c; c = c->next) {
        if (c->dead) continue;
        bool up = c->link && uqn_link_established(c->link);
        if (!up) {
            if (since(now, c->created) > ct) conn_close(net, c, "the connection or handshake timed out");
            continue;
        }
        if (since(now, c->last_rx) > 3 * ka) {
            conn_close(net, c, "the peer went silent (no keepalive)");
            continue;
        }
        if (since(now, c->last_msg) > idle && !c->fl_head) {
            bool queued = false;
            if (c->peer && c->peer->out == c) {
                pthread_mutex_lock(&net->lock);
                queued = c->peer->head != NULL;
                pthread_mutex_unlock(&net->lock);
            }
            if (!queued) {
                conn_close(net, c, "idle");
                continue;
            }
        }
        if (since(now, c->last_tx) > ka && !c->fl_head) {
            uq_errmsg em;
            uqn_link_send(c->link, "", 0, &em);
            flush(net, c);
        }
    }
    /* the directory changed: a link whose peer it now gives another key ends */
    if (now - net->dir_checked > 200000000ull) {
        net->dir_checked = now;
        dir_refresh(net);
    }
    if (net->dir_swept != net->dir_gen) {
        net->dir_swept = net->dir_gen;
        for (conn *c = net->conns; c; c = c->next) {
            if (c->dead || !c->link || !uqn_link_established(c->link)) continue;
            const uqn_peer *who = uqn_link_peer(c->link);
            const uqn_record *r = dir_get(net, who->name);
            if (r && memcmp(r->pk, who->pk, 32) != 0) conn_close(net, c, "the directory now gives it another key");
        }
    }
    /* peers: dial, feed, fail after back-off, time out what waits too long */
    pthread_mutex_lock(&net->lock);
    peer *list[1024];
    size_t np = 0;
    for (peer *p = net->peers; p && np < 1024; p = p->next) list[np++] = p;
    pthread_mutex_unlock(&net->lock);
    for (size_t i = 0; i < np; i++) {
        peer *p = list[i];
        pthread_mutex_lock(&net->lock);
        bool pending = p->head != NULL;
        donelist late = {0};
        while (p->head && p->head->deadline <= now) {
            qent *q = p->head;
            p->head = q->next;
            if (!p->head) p->tail = NULL;
            p->qn -= q->nmsgs;
            p->qbytes -= q->len;
            dl_push(&late, q);
        }
        pthread_mutex_unlock(&net->lock);
        /* waiting for a look-up: not known to be reachable */
        dl_report(net, p->name, &late, p->state == P_LOOKUP ? UQN_DONE_OFFLINE : UQN_DONE_TIMEOUT);
        if (!pending) continue;
        if (p->state == P_BACKOFF) {
            if (now < p->backoff_until) fail_queue(net, p, UQN_DONE_OFFLINE);
            else p->state = P_IDLE;
        }
        if (p->state == P_IDLE && !p->out) dial(net, p);
        else if (p->state == P_UP) feed(net, p);
    }
    /* reap closed connections; forget peers with nothing going on */
    for (conn **cp = &net->conns; *cp;) {
        conn *c = *cp;
        if (c->dead) {
            *cp = c->next;
            conn_free(net, c);
        } else {
            cp = &c->next;
        }
    }
    pthread_mutex_lock(&net->lock);
    net->st.conns = net->nconns;
    net->st_pub = net->st;
    for (peer **pp = &net->peers; *pp;) {
        peer *p = *pp;
        bool linked = false;
        for (conn *c = net->conns; c && !linked; c = c->next) linked = c->peer == p;
        if (!linked && !p->head && (p->state != P_BACKOFF || now >= p->backoff_until)) {
            *pp = p->next;
            net->npeers--;
            if (net->last == p) net->last = NULL;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    pthread_mutex_unlock(&net->lock);
}

/* uqn_net_drop's request, if one waits. */
static void drop_links(uqn_net *net)
{
    char name[UQN_NAME_MAX + 1];
    pthread_mutex_lock(&net->lock);
    uint32_t req = net->drop_req;
    bool want = req != net->drop_done;
    memcpy(name, net->drop_name, sizeof name);
    pthread_mutex_unlock(&net->lock);
    if (!want) return;
    for (conn *c = net->conns; c; c = c->next)
        if (!c->dead && c->peer && strcmp(c->peer->name, name) == 0) conn_close(net, c, "dropped");
    pthread_mutex_lock(&net->lock);
    net->drop_done = req;
    pthread_cond_broadcast(&net->started);
    pthread_mutex_unlock(&net->lock);
}

void uqn_net_drop(uqn_net *net, const char *node)
{
    pthread_mutex_lock(&net->lock);
    snprintf(net->drop_name, sizeof net->drop_name, "%s", node);
    uint32_t req = ++net->drop_req;
    kick_locked(net);
    while (net->drop_done != req && !net->stopping) pthread_cond_wait(&net->started, &net->lock);
    pthread_mutex_unlock(&net->lock);
}

/* A link of ours is in its handshake: its next step waits for us or for
 * the peer. */
static bool handshaking(uqn_net *net)
{
    for (conn *c = net->conns; c; c = c->next)
        if (!c->dead && c->link && !uqn_link_established(c->link) && !uqn_link_pending(c->link) &&
            !uqn_link_error(c->link))
            return true;
    return false;
}

/* epoll_wait for up to us microseconds (epoll_pwait2; a kernel without it,
 * before 5.11: epoll_wait, rounded up to milliseconds). */
static int wait_us(uqn_net *net, struct epoll_event *evs, int max, long us)
{
    static _Atomic bool no_pwait2;
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec to = {.tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000};
        int n = epoll_pwait2(net->ep, evs, max, &to, NULL);
        if (n >= 0 || errno != ENOSYS) return n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    return epoll_wait(net->ep, evs, max, (int)((us + 999) / 1000));
}

static void *net_main(void *arg)
{
    uqn_net *net = arg;
    cur_net = net;
    struct epoll_event evs[64];
    bool quiet = false; /* the last wait ended with no event */
    pthread_mutex_lock(&net->io);
    pthread_mutex_lock(&net->lock);
    net->running = true;
    pthread_cond_broadcast(&net->started);
    pthread_mutex_unlock(&net->lock);
    for (;;) {
        pthread_mutex_lock(&net->lock);
        bool stop = net->stopping;
        pthread_mutex_unlock(&net->lock);
        if (stop) break;
        /* something this thread queued after its last service(): look now */
        bool again = net->self_owed;
        net->self_owed = false;
        /* Quiet (no event for PREP_QUIET_US, or PREP_QUIET_HS_US while a
         * link of ours is in its handshake): make an ephemeral key for a
         * future handshake, off its path. Not as soon as nothing waits: a
         * link setup is a ping-pong of two threads, and on a busy 2-core
         * machine a scalar multiplication made between two of its
         * messages (60-130 us) delayed the other side's next step; nor in
         * the first moments after one, when the thread its last message
         * woke may need the CPU. Quiet used to mean 2 ms in every case
         * (epoll_wait's unit): a node that set up a link every millisecond
         * (bench_net's first contacts) never refilled the pool, and two of
         * each handshake's key pairs were made on its path (60-70 us each
         * here). The pool is usually full, and then this costs no system
         * call. */
        int n;
        bool need = !uqn_noise_pool_full(), waited = false;
        if (quiet && need) {
            n = epoll_wait(net->ep, evs, 64, 0);
            if (n == 0) {
                uqn_noise_prepare();
                continue;
            }
        } else if (again) {
            n = epoll_wait(net->ep, evs, 64, 0);
        } else {
            long us = !need ? TICK_MS * 1000L : handshaking(net) ? PREP_QUIET_HS_US : PREP_QUIET_US;
            /* asleep: a sender may push one message itself (uqn_net_push) */
            atomic_store_explicit(&net->direct_ok, true, memory_order_relaxed);
            pthread_mutex_unlock(&net->io);
            n = wait_us(net, evs, 64, us);
            pthread_mutex_lock(&net->io);
            waited = true;
        }
        quiet = waited && n == 0;
        if (n < 0) n = 0; /* EINTR */
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &net->lfd) {
                on_accept(net);
            } else if (ptr == &net->efd) {
                /* Read, then clear: a kick that comes between the two finds
                 * kicked set and writes nothing, but its message is queued
                 * already and service() below sends it; every kick after the
                 * clear writes again. (Clear, then read, could swallow the
                 * write of a kick made between the two and leave kicked set
                 * with nothing to read: every later send waited for the
                 * next tick, 20 ms.) */
                uint64_t v;
                ssize_t r = read(net->efd, &v, sizeof v);
                UQ_UNUSED(r);
                pthread_mutex_lock(&net->lock);
                net->kicked = false;
                pthread_mutex_unlock(&net->lock);
            } else {
                conn *c = ptr;
                if (c->dead) continue;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    if (c->connecting) on_writable(net, c);
                    else on_readable(net, c);
                }
                if (!c->dead && (evs[i].events & EPOLLOUT)) on_writable(net, c);
            }
        }
        rx_flush(net);
        drop_links(net);
        service(net);
        rx_flush(net);
    }
    pthread_mutex_unlock(&net->io);
    return NULL;
}

static void inbound_up(uqn_net *net, conn *c)
{
    net->st.links_up++;
    adopt(net, c);
    if (!c->dead) uq_log(UQ_LOG_INFO, "net", "link from %s up", c->peer->name);
}

/* ---- look-ups (lookup.c): what the table borrows ------------------------------------ */
static size_t lk_linked(uqn_net *net, char (*out)[UQN_NAME_MAX + 1], size_t max)
{
    size_t n = 0;
    for (conn *c = net->conns; c && n < max; c = c->next) {
        if (c->dead || !c->peer || !c->link || !uqn_link_established(c->link)) continue;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++) dup = strcmp(out[i], c->peer->name) == 0;
        if (!dup) snprintf(out[n++], UQN_NAME_MAX + 1, "%s", c->peer->name);
    }
    return n;
}

static const uqn_dir *lk_file(uqn_net *net)
{
    dir_refresh(net);
    return net->dir;
}

/* The look-up of name ended: dial with what was learned, or fail what waits. */
static void lk_finished(uqn_net *net, const char *name, bool ok)
{
    /* links from that node waiting for it to be known */
    for (conn *c = net->conns; c; c = c->next) {
        if (c->dead || !c->held) continue;
        const uqn_peer *who = uqn_link_pending(c->link);
        if (!who || strcmp(who->name, name) != 0) continue;
        uq_errmsg em = {{0}};
        ep_hold(net, c, false);
        uq_err re = uqn_link_resolve(c->link, &em);
        rx_flush(net);
        if (re) {
            char why[256];
            uqn_lk_why(net->lk, name, why, sizeof why);
            conn_close(net, c, !ok && why[0] ? why : em.text);
            continue;
        }
        inbound_up(net, c);
        if (!c->dead) flush(net, c);
        if (!c->dead && c->peer && c->peer->out == c) feed(net, c->peer);
    }
    pthread_mutex_lock(&net->lock);
    peer *p = peer_find(net, name);
    pthread_mutex_unlock(&net->lock);
    if (!p || p->state != P_LOOKUP) return;
    p->state = P_IDLE; /* service dials if messages wait */
    if (ok) return;
    if (dir_get(net, name)) { /* known, its addresses failed, nothing newer: back-off as for any failed dial */
        uint32_t b = p->backoff_ms ? p->backoff_ms * 2 : net->cfg.backoff_min_ms;
        p->backoff_ms = b > net->cfg.backoff_max_ms ? net->cfg.backoff_max_ms : b;
        p->backoff_until = uqi_now_ns() + (uint64_t)p->backoff_ms * 1000000ull;
        p->state = P_BACKOFF;
    }
    fail_queue(net, p, UQN_DONE_OFFLINE);
}

static void lk_start(uqn_net *net)
{
    uint32_t t = net->cfg.lookup_timeout_ms ? net->cfg.lookup_timeout_ms : 3000;
    if (t > net->cfg.send_timeout_ms) t = net->cfg.send_timeout_ms; /* messages wait at most that long */
    uqn_lk_cfg lc = {.id = net->id, .learned_path = net->cfg.learned_path, .timeout_ms = t};
    uqn_lk_hooks h = {.net = net, .linked = lk_linked, .file = lk_file, .finished = lk_finished};
    net->lk = uqn_lk_new(&lc, &h);
    net->cfg.learned_path = NULL;
    /* our own record, answered to look-ups (and written to <home>/record by boot) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const char *addrs[1] = {net->listen_addr};
    uqn_record r;
    uq_errmsg em = {{0}};
    if (uqn_record_make(net->id, addrs, net->listen_addr[0] ? 1 : 0, (uint64_t)ts.tv_sec, &r, &em) == UQ_OK)
        uqn_lk_set_own(net->lk, &r);
    else
        uq_log(UQ_LOG_WARN, "net", "no record of our own to answer look-ups with: %s", em.text);
}

void uqn_net_own_record(const uqn_net *net, uqn_record *out)
{
    const uqn_record *r = uqn_lk_own(net->lk);
    if (r) *out = *r;
    else memset(out, 0, sizeof *out);
}

void uqn_net_why(uqn_net *net, const char *node, char *out, size_t cap) { uqn_lk_why(net->lk, node, out, cap); }

void uqn_net_lookup_stats(uqn_net *net, uqn_lk_stats *out) { uqn_lk_get_stats(net->lk, out); }

/* ---- start / stop ---------------------------------------------------------------- */
static uq_err listen_on(uqn_net *net, const char *addr, uq_errmsg *em)
{
    struct sockaddr_storage ss;
    unsigned sl;
    uq_err e = uqn_resolve(addr, &ss, &sl, em);
    if (e) return e;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return uqi_errf(em, uqi_err_from_errno(errno), "net: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
        int er = errno;
        close(fd);
        return uqi_errf(em, uqi_err_from_errno(er), "net: cannot listen on %s: %s", addr, strerror(er));
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    getsockname(fd, (struct sockaddr *)&got, &gl);
    char host[UQN_ADDR_MAX + 1];
    const char *colon = strrchr(addr, ':');
    int hl = (int)(colon - addr);
    if (hl > UQN_ADDR_MAX - 6) hl = UQN_ADDR_MAX - 6;
    snprintf(host, sizeof host, "%.*s", hl, addr);
    unsigned port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                     : ((struct sockaddr_in *)&got)->sin_port);
    snprintf(net->listen_addr, sizeof net->listen_addr, "%.*s:%u", hl, host, port & 0xffff);
    net->lfd = fd;
    return UQ_OK;
}

uq_err uqn_net_start(const uqn_net_cfg *cfg, uqn_net **out, uq_errmsg *em)
{
    if (!cfg->id) return uqi_errf(em, UQ_EINVAL, "net: no identity");
    uqn_net *net = uqi_xcalloc(1, sizeof *net);
    net->cfg = *cfg;
    net->id = cfg->id;
    if (!net->cfg.max_peers) net->cfg.max_peers = 256;
    if (net->cfg.max_peers > 1024) net->cfg.max_peers = 1024;
    if (!net->cfg.queue_bytes) net->cfg.queue_bytes = 64u << 20;
    if (!net->cfg.queue_msgs) net->cfg.queue_msgs = 65536;
    if (!net->cfg.send_timeout_ms) net->cfg.send_timeout_ms = 5000;
    if (!net->cfg.connect_timeout_ms) net->cfg.connect_timeout_ms = 5000;
    if (!net->cfg.keepalive_ms) net->cfg.keepalive_ms = 10000;
    if (!net->cfg.idle_ms) net->cfg.idle_ms = 300000;
    if (!net->cfg.backoff_min_ms) net->cfg.backoff_min_ms = 100;
    if (!net->cfg.backoff_max_ms) net->cfg.backoff_max_ms = 5000;
    net->cfg.listen = NULL;
    net->cfg.dir_path = NULL;
    if (cfg->dir_path) snprintf(net->dir_path, sizeof net->dir_path, "%s", cfg->dir_path);
    net->lfd = -1;
    pthread_mutex_init(&net->lock, NULL);
    pthread_mutex_init(&net->io, NULL);
    net->ep = epoll_create1(EPOLL_CLOEXEC);
    net->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    uq_err e;
    if (cfg->listen && (e = listen_on(net, cfg->listen, em))) {
        close(net->ep);
        close(net->efd);
        pthread_mutex_destroy(&net->lock);
        pthread_mutex_destroy(&net->io);
        free(net);
        return e;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &net->efd};
    epoll_ctl(net->ep, EPOLL_CTL_ADD, net->efd, &ev);
    if (net->lfd >= 0) {
        ev.data.ptr = &net->lfd;
        epoll_ctl(net->ep, EPOLL_CTL_ADD, net->lfd, &ev);
    }
    dir_refresh(net);
    lk_start(net);
    if (!cfg->resume_off)
        net->tickets = uqn_tickets_new(net->cfg.max_peers, (uint64_t)cfg->ticket_life_s * 1000000000ull);
    net->rbuf = uqi_xmalloc(READ_BUF);
    pthread_cond_init(&net->started, NULL);
    pthread_create(&net->thread, NULL, net_main, net);
    pthread_setname_np(net->thread, "uq-net");
    /* return once the thread runs: a new thread on a busy machine can wait
     * a scheduler slice (1-3 ms here) before its first instruction, and a
     * send right after start (the first link) would wait with it */
    pthread_mutex_lock(&net->lock);
    while (!net->running) pthread_cond_wait(&net->started, &net->lock);
    pthread_mutex_unlock(&net->lock);
    *out = net;
    return UQ_OK;
}

void uqn_net_stop(uqn_net *net)
{
    if (!net) return;
    pthread_mutex_lock(&net->lock);
    net->stopping = true;
    pthread_mutex_unlock(&net->lock);
    pthread_join(net->thread, NULL);
    /* a sender that queued a message to push (before stopping was set)
     * is done with net first */
    pthread_mutex_lock(&net->lock);
    while (net->owing) pthread_cond_wait(&net->started, &net->lock);
    pthread_mutex_unlock(&net->lock);
    pthread_mutex_lock(&net->io);
    net->joined = true;
    for (conn *c = net->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->peer) c->peer->out = NULL; /* no back-off bookkeeping now */
        conn_close(net, c, "the node is stopping");
        conn_free(net, c);
    }
    net->conns = NULL;
    for (peer *p = net->peers, *nx; p; p = nx) {
        nx = p->next;
        fail_queue(net, p, UQN_DONE_OFFLINE);
        free(p);
    }
    net->peers = net->last = NULL;
    for (qent *q = net->qfree, *nx; q; q = nx) {
        nx = q->next;
        free(q);
    }
    for (qent *q = net->pfree, *nx; q; q = nx) {
        nx = q->next;
        free(q->pbuf);
        free(q);
    }
    if (net->lfd >= 0) close(net->lfd);
    close(net->ep);
    close(net->efd);
    uqn_dir_free(net->dir);
    uqn_lk_free(net->lk);
    uqn_tickets_free(net->tickets);
    free(net->rbuf);
    pthread_cond_destroy(&net->started);
    pthread_mutex_unlock(&net->io);
    pthread_mutex_destroy(&net->io);
    pthread_mutex_destroy(&net->lock);
    free(net);
}

const char *uqn_net_listen_addr(const uqn_net *net) { return net->listen_addr; }

void uqn_net_get_stats(uqn_net *net, uqn_net_stats *out)
{
    pthread_mutex_lock(&net->lock);
    *out = net->st_pub; /* as of the last tick */
    out->peers = net->npeers;
    out->packed = net->packed;
    pthread_mutex_unlock(&net->lock);
}
