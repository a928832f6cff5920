/* The look-up table of one net module (lookup.h; docs/PROTOCOL.md §8).
 * Everything but the "why" table and the counters belongs to the net
 * thread; those two are under lk->mu. Bounds: LK_PENDING_MAX names looked up
 * at once, each asked of at most LK_ASK_MAX peers; answers only from a peer
 * asked for that name, once; LK_LEARNED_MAX learned records (the oldest
 * goes); requests served at LK_RATE per peer and LK_GRATE in all. */
#define _GNU_SOURCE
#include "net/lookup.h"

#include <pthread.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "net/netmod.h"

#define LK_PENDING_MAX 64
#define LK_ASK_MAX 8
#define LK_GRACE_MS 200        /* after a good answer, the other peers get this long to disagree */
#define LK_NEG_MS 1000         /* a name nobody knew is not asked again for this long */
#define LK_REFRESH_MS 5000     /* a known name is refreshed at most this often */
#define LK_LEARNED_MAX 1024
#define LK_WHY_MAX 64
#define LK_BUCKETS 64
#define LK_RATE 20.0           /* requests served per second and peer */
#define LK_BURST 40.0
#define LK_GRATE 200.0         /* in all */
#define LK_GBURST 400.0
#define LK_LOGS_PER_S 10       /* warnings about bad messages, per second */

/* Cookies of our own messages: addresses in this array (ticket 0: an answer). */
#define LK_TICKETS 4096
static uint8_t tickets[LK_TICKETS];

typedef struct ask {
    char peer[UQN_NAME_MAX + 1];
    unsigned ticket;
    bool waiting;
} ask;

typedef struct pend {
    bool used, known;
    char name[UQN_NAME_MAX + 1];
    uint64_t deadline, first_good;
    ask asks[LK_ASK_MAX];
    unsigned nasks, nunknown, nstale, nfailed, nrefused;
    bool have, conflict;
    uqn_record cand;
    char cand_from[UQN_NAME_MAX + 1];
    char refusal[200];
} pend;

typedef struct learned {
    uqn_record r;
    char from[UQN_NAME_MAX + 1];
    uint64_t at;               /* Unix seconds */
} learned;

typedef struct whyent {
    char name[UQN_NAME_MAX + 1];
    uint64_t asked;            /* last look-up began (monotonic ns) */
    uint64_t refreshed;        /* last refresh of a known name began */
    uint64_t failed_at;        /* 0: the last one did not fail */
    char text[256];
} whyent;

typedef struct bucket {
    char peer[UQN_NAME_MAX + 1];
    double tokens;
    uint64_t last;
} bucket;

struct uqn_lk {
    uqn_lk_cfg cfg;
    uqn_lk_hooks h;
    char learned_path[4096];
    uqn_record own;
    bool has_own;
    pend pend[LK_PENDING_MAX];
    learned *lr;
    size_t nlr;
    bucket buckets[LK_BUCKETS];
    double gtokens;
    uint64_t glast;
    unsigned next_ticket;
    uint64_t log_sec;
    unsigned logs;
    pthread_mutex_t mu;        /* why, st */
    whyent why[LK_WHY_MAX];
    uqn_lk_stats st;
};

#define STAT(lk, field, k)                \
    do {                                  \
        pthread_mutex_lock(&(lk)->mu);    \
        (lk)->st.field += (k);            \
        pthread_mutex_unlock(&(lk)->mu);  \
    } while (0)

/* A warning about what a peer sent, at most LK_LOGS_PER_S a second. */
static bool may_log(uqn_lk *lk)
{
    uint64_t s = uqi_now_ns() / 1000000000ull;
    if (s != lk->log_sec) lk->log_sec = s, lk->logs = 0;
    return lk->logs++ < LK_LOGS_PER_S;
}

/* ---- learned records --------------------------------------------------------- */

static learned *lr_find(uqn_lk *lk, const char *name)
{
    for (size_t i = 0; i < lk->nlr; i++)
        if (strcmp(lk->lr[i].r.name, name) == 0) return &lk->lr[i];
    return NULL;
}

static void lr_save(uqn_lk *lk)
{
    if (!lk->learned_path[0]) return;
    size_t cap = 256 + lk->nlr * (UQN_RECORD_LINE_MAX + 256 + UQN_ADDRS_MAX * (UQN_ADDR_MAX + 2));
    char *buf = uqi_xmalloc(cap);
    size_t n = (size_t)snprintf(buf, cap,
                                "# uqbar: records learned from peers' answers to look-ups (docs/PROTOCOL.md §8).\n"
                                "# Kept apart from the operator's directory file; rewritten by the node.\n");
    for (size_t i = 0; i < lk->nlr; i++) {
        const learned *l = &lk->lr[i];
        char hex[65], line[UQN_RECORD_LINE_MAX];
        uqn_hex(l->r.pk, 32, hex);
        n += (size_t)snprintf(buf + n, cap - n, "# %s key %s seq %llu", l->r.name, hex, (unsigned long long)l->r.seq);
        for (unsigned a = 0; a < l->r.naddrs; a++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", a ? "," : " at ", l->r.addrs[a]);
        uqn_record_to_line(&l->r, line);
        n += (size_t)snprintf(buf + n, cap - n, " learned-from %s time %llu\n%s\n", l->from,
                              (unsigned long long)l->at, line);
    }
    uq_errmsg em = {{0}};
    if (uqi_write_file_atomic(lk->learned_path, buf, n, &em))
        uq_log(UQ_LOG_WARN, "net", "learned records not saved: %s", em.text);
    free(buf);
}

static void lr_put(uqn_lk *lk, const uqn_record *r, const char *from, uint64_t at)
{
    learned *l = lr_find(lk, r->name);
    if (!l) {
        if (lk->nlr == LK_LEARNED_MAX) { /* the oldest goes */
            size_t old = 0;
            for (size_t i = 1; i < lk->nlr; i++)
                if (lk->lr[i].at < lk->lr[old].at) old = i;
            lk->lr[old] = lk->lr[--lk->nlr];
        }
        l = &lk->lr[lk->nlr++];
    }
    l->r = *r;
    snprintf(l->from, sizeof l->from, "%s", from);
    l->at = at;
    pthread_mutex_lock(&lk->mu);
    lk->st.learned = (uint32_t)lk->nlr;
    pthread_mutex_unlock(&lk->mu);
}

/* The learned file: comment lines (the "learned-from" peer is read back
 * from them), record lines. A damaged line is skipped with a warning: it
 * is a cache of what peers said, and each record is verified again. */
static void lr_load(uqn_lk *lk)
{
    if (!lk->learned_path[0]) return;
    FILE *f = fopen(lk->learned_path, "re");
    if (!f) return;
    char line[UQN_RECORD_LINE_MAX + 512], from[UQN_NAME_MAX + 1] = "";
    unsigned long long at = 0;
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#') {
            const char *k = strstr(line, " learned-from ");
            from[0] = '\0';
            at = 0;
            if (k) sscanf(k, " learned-from %63s time %llu", from, &at);
            continue;
        }
        if (!line[0]) continue;
        uqn_record r;
        uq_errmsg em = {{0}};
        if (uqn_record_from_line(line, &r, &em)) {
            uq_log(UQ_LOG_WARN, "net", "%s:%u: skipped: %s", lk->learned_path, lineno, em.text);
            continue;
        }
        lr_put(lk, &r, from[0] ? from : "?", at);
    }
    fclose(f);
    if (lk->nlr) uq_log(UQ_LOG_INFO, "net", "%zu records learned from peers (%s)", lk->nlr, lk->learned_path);
}

const uqn_record *uqn_lk_record(uqn_lk *lk, const uqn_dir *file, const char *name)
{
    const uqn_record *f = file ? uqn_dir_get(file, name) : NULL;
    learned *l = lr_find(lk, name);
    if (f && l && sodium_memcmp(f->pk, l->r.pk, 32) == 0 && l->r.seq > f->seq) return &l->r;
    if (f) return f;
    return l ? &l->r : NULL;
}

/* ---- why --------------------------------------------------------------------- */

static whyent *why_get(uqn_lk *lk, const char *name, bool make)
{
    whyent *old = &lk->why[0];
    for (int i = 0; i < LK_WHY_MAX; i++) {
        if (strcmp(lk->why[i].name, name) == 0) return &lk->why[i];
        if (lk->why[i].asked < old->asked) old = &lk->why[i];
    }
    if (!make) return NULL;
    memset(old, 0, sizeof *old);
    snprintf(old->name, sizeof old->name, "%s", name);
    return old;
}

static void why_fail(uqn_lk *lk, const char *name, uint64_t now, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void why_fail(uqn_lk *lk, const char *name, uint64_t now, const char *fmt, ...)
{
    pthread_mutex_lock(&lk->mu);
    whyent *w = why_get(lk, name, true);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text, sizeof w->text, fmt, ap);
    va_end(ap);
    w->failed_at = now ? now : 1;
    pthread_mutex_unlock(&lk->mu);
}

void uqn_lk_why(uqn_lk *lk, const char *name, char *out, size_t cap)
{
    pthread_mutex_lock(&lk->mu);
    whyent *w = why_get(lk, name, false);
    snprintf(out, cap, "%s", w && w->failed_at ? w->text : "");
    pthread_mutex_unlock(&lk->mu);
}

void uqn_lk_get_stats(uqn_lk *lk, uqn_lk_stats *out)
{
    pthread_mutex_lock(&lk->mu);
    *out = lk->st;
    pthread_mutex_unlock(&lk->mu);
}

/* ---- asking ------------------------------------------------------------------ */

static pend *pend_find(uqn_lk *lk, const char *name)
{
    for (int i = 0; i < LK_PENDING_MAX; i++)
        if (lk->pend[i].used && strcmp(lk->pend[i].name, name) == 0) return &lk->pend[i];
    return NULL;
}

static bool chosen(const pend *p, const char *peer)
{
    for (unsigned i = 0; i < p->nasks; i++)
        if (strcmp(p->asks[i].peer, peer) == 0) return true;
    return false;
}

static void add_ask(uqn_lk *lk, pend *p, const char *peer)
{
    if (p->nasks >= LK_ASK_MAX || strcmp(peer, p->name) == 0 || strcmp(peer, lk->cfg.id->name) == 0 ||
        chosen(p, peer))
        return;
    ask *a = &p->asks[p->nasks++];
    snprintf(a->peer, sizeof a->peer, "%s", peer);
    lk->next_ticket = lk->next_ticket % (LK_TICKETS - 1) + 1; /* 1..LK_TICKETS-1 */
    a->ticket = lk->next_ticket;
    a->waiting = true;
}

bool uqn_lk_want(uqn_lk *lk, const char *name, bool known)
{
    if (pend_find(lk, name)) return true;
    uint64_t now = uqi_now_ns();
    pthread_mutex_lock(&lk->mu);
    whyent *w = why_get(lk, name, false);
    bool recent = w && (known ? w->refreshed && now - w->refreshed < (uint64_t)LK_REFRESH_MS * 1000000ull
                              : w->failed_at && now - w->failed_at < (uint64_t)LK_NEG_MS * 1000000ull);
    pthread_mutex_unlock(&lk->mu);
    if (recent) return false; /* the last look-up's why stands */
    pend *p = NULL;
    for (int i = 0; i < LK_PENDING_MAX && !p; i++)
        if (!lk->pend[i].used) p = &lk->pend[i];
    if (!p) {
        why_fail(lk, name, now, "%s is not in the directory, and %d look-ups are in progress already: try again",
                 name, LK_PENDING_MAX);
        return false;
    }
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->known = known;
    /* the peers we have links to, then the operator's directory */
    char linked[LK_ASK_MAX * 2][UQN_NAME_MAX + 1];
    size_t nl = lk->h.linked(lk->h.net, linked, LK_ASK_MAX * 2);
    for (size_t i = 0; i < nl; i++) add_ask(lk, p, linked[i]);
    const uqn_dir *file = lk->h.file(lk->h.net);
    for (size_t i = 0; file && i < uqn_dir_count(file) && p->nasks < LK_ASK_MAX; i++)
        add_ask(lk, p, uqn_dir_at(file, i)->name);
    pthread_mutex_lock(&lk->mu);
    w = why_get(lk, name, true);
    w->asked = now;
    if (known) w->refreshed = now;
    pthread_mutex_unlock(&lk->mu);
    char list[LK_ASK_MAX * (UQN_NAME_MAX + 2) + 1] = "";
    unsigned sent = 0;
    for (unsigned i = 0; i < p->nasks; i++) {
        ask *a = &p->asks[i];
        uint8_t *b = uqi_xmalloc(UQN_LK_MSG_MAX);
        size_t len = uqn_lk_encode_req(name, b);
        uq_errmsg em = {{0}};
        if (uqn_net_send(lk->h.net, a->peer, b, len, &tickets[a->ticket], &em)) {
            uq_log(UQ_LOG_INFO, "net", "look-up of %s: cannot ask %s: %s", name, a->peer, em.text);
            free(b);
            a->waiting = false;
            p->nfailed++;
            continue;
        }
        sent++;
        if (list[0]) strcat(list, ", ");
        strcat(list, a->peer);
    }
    if (!sent) {
        if (!known)
            why_fail(lk, name, now, "%s is not in the directory, and there is no peer to ask about it", name);
        return false;
    }
    p->used = true;
    p->deadline = now + (uint64_t)lk->cfg.timeout_ms * 1000000ull;
    STAT(lk, started, 1);
    uq_log(UQ_LOG_INFO, "net", "%s %s: asking %s", known ? "refreshing the record of" : "looking up", name, list);
    return true;
}

void uqn_lk_sent(uqn_lk *lk, void *cookie, int why)
{
    unsigned t = (unsigned)((uint8_t *)cookie - tickets);
    if (t == 0 || why == UQN_DONE_SENT) return;
    for (int i = 0; i < LK_PENDING_MAX; i++) {
        pend *p = &lk->pend[i];
        if (!p->used) continue;
        for (unsigned k = 0; k < p->nasks; k++) {
            if (p->asks[k].ticket == t && p->asks[k].waiting) {
                p->asks[k].waiting = false;
                p->nfailed++;
                return;
            }
        }
    }
}

bool uqn_lk_owns(const void *cookie)
{
    return (const uint8_t *)cookie >= tickets && (const uint8_t *)cookie < tickets + LK_TICKETS;
}

static void finish(uqn_lk *lk, pend *p, uint64_t now)
{
    char name[UQN_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", p->name);
    bool ok = p->have && !p->conflict;
    if (ok) {
        lr_put(lk, &p->cand, p->cand_from, (uint64_t)time(NULL));
        lr_save(lk);
        STAT(lk, found, 1);
        char hex[65];
        uqn_hex(p->cand.pk, 32, hex);
        uq_log(UQ_LOG_INFO, "net", "%s %s from %s: key %.16s..., sequence %llu, %u address(es)",
               p->known ? "refreshed the record of" : "learned", name, p->cand_from, hex,
               (unsigned long long)p->cand.seq, p->cand.naddrs);
        pthread_mutex_lock(&lk->mu);
        whyent *w = why_get(lk, name, true);
        w->failed_at = 0;
        pthread_mutex_unlock(&lk->mu);
    } else {
        STAT(lk, failed, 1);
        unsigned silent = 0;
        for (unsigned i = 0; i < p->nasks; i++) silent += p->asks[i].waiting;
        if (p->conflict)
            why_fail(lk, name, now, "%s is not in the directory, and peers answered with two different keys for it "
                     "(%s): refused", name, p->refusal);
        else if (p->nrefused && !p->known)
            why_fail(lk, name, now, "%s is not in the directory, and the only answers were refused: %s", name,
                     p->refusal);
        else if (p->known)
            why_fail(lk, name, now, "no address of %s answers, and no peer has a newer record for it%s%s%s", name,
                     p->nrefused ? " (refused: " : "", p->nrefused ? p->refusal : "", p->nrefused ? ")" : "");
        else
            why_fail(lk, name, now, "%s is unknown: not in the directory, and no peer knew it (asked %u: %u did not "
                     "know it, %u could not be reached, %u did not answer within %u ms)",
                     name, p->nasks, p->nunknown, p->nfailed, silent, lk->cfg.timeout_ms);
        if (p->known && p->nrefused == 0) {
            pthread_mutex_lock(&lk->mu);
            why_get(lk, name, true)->failed_at = 0; /* the dial's own failure speaks for a known name */
            pthread_mutex_unlock(&lk->mu);
        }
        uq_log(UQ_LOG_INFO, "net", "look-up of %s failed (%u asked, %u unknown, %u stale, %u refused, %u unreachable, "
               "%u silent)", name, p->nasks, p->nunknown, p->nstale, p->nrefused, p->nfailed, silent);
    }
    p->used = false;
    lk->h.finished(lk->h.net, name, ok);
}

void uqn_lk_tick(uqn_lk *lk, uint64_t now)
{
    for (int i = 0; i < LK_PENDING_MAX; i++) {
        pend *p = &lk->pend[i];
        if (!p->used) continue;
        unsigned waiting = 0;
        for (unsigned k = 0; k < p->nasks; k++) waiting += p->asks[k].waiting;
        if (waiting == 0 || p->conflict || now >= p->deadline ||
            (p->have && now >= p->first_good + (uint64_t)LK_GRACE_MS * 1000000ull))
            finish(lk, p, now);
    }
}

/* ---- answers and requests ------------------------------------------------------ */

static bool rate_ok(uqn_lk *lk, const char *peer, uint64_t now)
{
    bucket *b = NULL, *old = &lk->buckets[0];
    for (int i = 0; i < LK_BUCKETS && !b; i++) {
        if (strcmp(lk->buckets[i].peer, peer) == 0) b = &lk->buckets[i];
        else if (lk->buckets[i].last < old->last) old = &lk->buckets[i];
    }
    if (!b) {
        b = old;
        snprintf(b->peer, sizeof b->peer, "%s", peer);
        b->tokens = LK_BURST;
        b->last = now;
    }
    b->tokens += (double)(now - b->last) / 1e9 * LK_RATE;
    if (b->tokens > LK_BURST) b->tokens = LK_BURST;
    b->last = now;
    lk->gtokens += (double)(now - lk->glast) / 1e9 * LK_GRATE;
    if (lk->gtokens > LK_GBURST) lk->gtokens = LK_GBURST;
    lk->glast = now;
    if (b->tokens < 1.0 || lk->gtokens < 1.0) return false;
    b->tokens -= 1.0;
    lk->gtokens -= 1.0;
    return true;
}

static void serve(uqn_lk *lk, const char *peer, const uint8_t *p, size_t n, uint64_t now)
{
    if (!rate_ok(lk, peer, now)) {
        STAT(lk, limited, 1);
        if (may_log(lk))
            uq_log(UQ_LOG_WARN, "net", "look-up request from %s dropped: over %.0f a second", peer, LK_RATE);
        return;
    }
    uqn_lkmsg m;
    uq_errmsg em = {{0}};
    if (uqn_lk_decode(p, n, &m, &em)) {
        STAT(lk, malformed, 1);
        if (may_log(lk)) uq_log(UQ_LOG_WARN, "net", "look-up request from %s refused: %s", peer, em.text);
        return;
    }
    const uqn_record *r = lk->has_own && strcmp(m.name, lk->own.name) == 0 ? &lk->own
                                                                           : uqn_lk_record(lk, lk->h.file(lk->h.net), m.name);
    uint8_t *b = uqi_xmalloc(UQN_LK_MSG_MAX);
    size_t len = uqn_lk_encode_ans(m.name, r, b);
    if (uqn_net_send(lk->h.net, peer, b, len, &tickets[0], &em)) {
        free(b);
        if (may_log(lk)) uq_log(UQ_LOG_INFO, "net", "look-up of %s by %s not answered: %s", m.name, peer, em.text);
        return;
    }
    if (r) STAT(lk, served, 1);
    else STAT(lk, served_unknown, 1);
}

static void refuse(uqn_lk *lk, pend *pd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(uqn_lk *lk, pend *pd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pd->refusal, sizeof pd->refusal, fmt, ap);
    va_end(ap);
    pd->nrefused++;
    STAT(lk, refused, 1);
    uq_log(UQ_LOG_WARN, "net", "look-up answer refused: %s", pd->refusal);
}

static void answer(uqn_lk *lk, const char *peer, const uint8_t *p, size_t n, uint64_t now)
{
    /* who asked is checked before anything costs a signature check */
    char name[UQN_NAME_MAX + 1] = "";
    if (n >= 3 && p[2] >= 1 && p[2] <= UQN_NAME_MAX && n - 3 >= p[2]) {
        memcpy(name, p + 3, p[2]);
        name[p[2]] = '\0';
    }
    pend *pd = name[0] ? pend_find(lk, name) : NULL;
    ask *a = NULL;
    for (unsigned k = 0; pd && k < pd->nasks && !a; k++)
        if (strcmp(pd->asks[k].peer, peer) == 0 && pd->asks[k].waiting) a = &pd->asks[k];
    uqn_lkmsg m;
    uq_errmsg em = {{0}};
    if (!name[0]) {
        STAT(lk, malformed, 1);
        uqn_lk_decode(p, n, &m, &em);
        if (may_log(lk)) uq_log(UQ_LOG_WARN, "net", "look-up answer from %s refused: %s", peer, em.text);
        return;
    }
    if (!a) {
        STAT(lk, unsolicited, 1);
        if (may_log(lk))
            uq_log(UQ_LOG_INFO, "net", "look-up answer from %s for %s dropped: nobody asked it (or it answered already)",
                   peer, name);
        return;
    }
    a->waiting = false;
    uq_err e = uqn_lk_decode(p, n, &m, &em);
    if (e) {
        if (e == UQ_ECORRUPT) STAT(lk, malformed, 1);
        refuse(lk, pd, "%s answered for %s: %s", peer, name, em.text);
        return;
    }
    if (!m.found) {
        pd->nunknown++;
        return;
    }
    const uqn_record *known = uqn_lk_record(lk, lk->h.file(lk->h.net), name);
    char hx[65], hy[65];
    if (known && sodium_memcmp(known->pk, m.rec.pk, 32) != 0) {
        uqn_hex(m.rec.pk, 32, hx);
        uqn_hex(known->pk, 32, hy);
        refuse(lk, pd, "%s says %s has key %.16s..., the directory has %.16s...: a peer may not rebind a known name",
               peer, name, hx, hy);
        return;
    }
    if (known && m.rec.seq <= known->seq) {
        uint8_t x[UQN_RECORD_MAX], y[UQN_RECORD_MAX];
        size_t nx = uqn_record_encode(known, x), ny = uqn_record_encode(&m.rec, y);
        if (m.rec.seq == known->seq && (nx != ny || memcmp(x, y, nx) != 0))
            refuse(lk, pd, "%s answered for %s a record with the sequence of the one held (%llu) and other content",
                   peer, name, (unsigned long long)known->seq);
        else
            pd->nstale++;
        return;
    }
    if (pd->have && sodium_memcmp(pd->cand.pk, m.rec.pk, 32) != 0) {
        uqn_hex(m.rec.pk, 32, hx);
        uqn_hex(pd->cand.pk, 32, hy);
        pd->conflict = true;
        refuse(lk, pd, "%s says key %.16s..., %s says %.16s...", peer, hx, pd->cand_from, hy);
        return;
    }
    if (!pd->have || m.rec.seq > pd->cand.seq) {
        if (!pd->have) pd->first_good = now;
        pd->have = true;
        pd->cand = m.rec;
        snprintf(pd->cand_from, sizeof pd->cand_from, "%s", peer);
    }
}

void uqn_lk_recv(uqn_lk *lk, const char *peer, const uint8_t *p, size_t n)
{
    uint64_t now = uqi_now_ns();
    if (n >= 1 && p[0] == UQN_LK_REQ) serve(lk, peer, p, n, now);
    else answer(lk, peer, p, n, now);
}

/* ---- life ---------------------------------------------------------------------- */

uqn_lk *uqn_lk_new(const uqn_lk_cfg *cfg, const uqn_lk_hooks *hooks)
{
    uqn_lk *lk = uqi_xcalloc(1, sizeof *lk);
    lk->cfg = *cfg;
    lk->h = *hooks;
    if (cfg->learned_path) snprintf(lk->learned_path, sizeof lk->learned_path, "%s", cfg->learned_path);
    lk->cfg.learned_path = NULL;
    lk->lr = uqi_xcalloc(LK_LEARNED_MAX, sizeof *lk->lr);
    lk->gtokens = LK_GBURST;
    lk->glast = uqi_now_ns();
    pthread_mutex_init(&lk->mu, NULL);
    lr_load(lk);
    return lk;
}

void uqn_lk_free(uqn_lk *lk)
{
    if (!lk) return;
    pthread_mutex_destroy(&lk->mu);
    free(lk->lr);
    free(lk);
}

void uqn_lk_set_own(uqn_lk *lk, const uqn_record *r)
{
    lk->own = *r;
    lk->has_own = true;
}

const uqn_record *uqn_lk_own(const uqn_lk *lk) { return lk->has_own ? &lk->own : NULL; }
