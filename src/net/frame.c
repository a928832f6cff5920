/* Link framing: the record encoder (batching and chunking) and the
 * incremental, bounds-checked frame decoder. Format: docs/PROTOCOL.md. */
#define _GNU_SOURCE /* mremap */
#include "net/frame.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include <sys/mman.h>

#define MSG_HDR 3u     /* kind, u16 len */
#define CHUNK_HDR 11u  /* kind, u32 id, u32 total|offset, u16 len */
#define MIN_CHUNK 256u /* do not open a chunk in less room than this */

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- encoder ------------------------------------------------------------ */

void uqn_fenc_init(uqn_fenc *e) { memset(e, 0, sizeof *e); }

void uqn_fenc_fini(uqn_fenc *e)
{
    for (uqn_fenc_msg *m = e->head, *nx; m; m = nx) {
        nx = m->next;
        if (m->owned) {
            free((void *)m->data);
            free(m);
        }
    }
    memset(e, 0, sizeof *e);
}

uq_err uqn_fenc_push(uqn_fenc *e, const void *msg, size_t len, uq_errmsg *em)
{
    if (len > UINT32_MAX)
        return uqi_errf(em, UQ_ELIMIT, "net: a message of %zu bytes is too large for a link", len);
    uqn_fenc_msg *m = uqi_xcalloc(1, sizeof *m);
    uint8_t *d = uqi_xmalloc(len ? len : 1);
    if (len) memcpy(d, msg, len);
    m->data = d;
    m->len = len;
    m->tail = NULL;
    m->tail_len = 0;
    uqn_fenc_push_ref(e, m);
    m->owned = true;
    return UQ_OK;
}

void uqn_fenc_push_ref(uqn_fenc *e, uqn_fenc_msg *m)
{
    UQ_VERIFY(m->len <= UINT32_MAX && m->tail_len <= m->len && (m->tail || !m->tail_len));
    UQ_VERIFY(!m->recs || (m->len <= UQN_FRAME_PLAIN_MAX && !m->tail_len));
    m->off = 0;
    m->id = 0;
    m->owned = false;
    m->next = NULL;
    if (e->tail) e->tail->next = m;
    else e->head = m;
    e->tail = m;
    e->queued_bytes += m->len;
}

bool uqn_fenc_pending(const uqn_fenc *e) { return e->head != NULL; }

static void pop(uqn_fenc *e)
{
    uqn_fenc_msg *m = e->head;
    e->head = m->next;
    if (!e->head) e->tail = NULL;
    if (m->owned) {
        free((void *)m->data);
        free(m);
    }
}

/* Data of at least GATHER_MIN bytes from a message that is not ours (pushed
 * by reference: it lives until the queue is empty) need not be copied into
 * the frame before encryption: it is noted as a segment, and encrypted
 * straight from the message into the frame (uqn_fenc_next_frame). */
#define GATHER_MIN 512u
#define GATHER_MAX (UQN_FRAME_PLAIN_MAX / GATHER_MIN + 2)

typedef struct seg {
    size_t off;              /* where in the frame's plaintext */
    const uint8_t *src;
    size_t len;
} seg;

typedef struct gather {
    seg s[GATHER_MAX];
    unsigned n;
} gather;

/* Put len bytes of src at out + off, now or (g not NULL) at encryption. */
static void put_piece(uint8_t *out, size_t off, const uqn_fenc_msg *m, const uint8_t *src, size_t len, gather *g)
{
    if (g && !m->owned && len >= GATHER_MIN && g->n < GATHER_MAX) {
        g->s[g->n++] = (seg){off, src, len};
        return;
    }
    memcpy(out + off, src, len);
}

/* Bytes [from, from + len) of message m at out + off (from its one or two
 * pieces). */
static void put_data(uint8_t *out, size_t off, const uqn_fenc_msg *m, size_t from, size_t len, gather *g)
{
    size_t head = m->len - m->tail_len;
    if (from < head) {
        size_t k = len < head - from ? len : head - from;
        put_piece(out, off, m, m->data + from, k, g);
        off += k;
        from += k;
        len -= k;
    }
    if (len) put_piece(out, off, m, m->tail + (from - head), len, g);
}

static size_t next_plain(uqn_fenc *e, uint8_t *out, gather *g)
{
    size_t n = 0;
    while (e->head) {
        uqn_fenc_msg *m = e->head;
        size_t room = UQN_FRAME_PLAIN_MAX - n;
        if (m->recs) { /* records made by the sender: as they are, in one frame */
            if (m->len > room) break;
            put_data(out, n, m, 0, m->len, g);
            n += m->len;
            e->queued_bytes -= m->len;
            pop(e);
            continue;
        }
        if (m->off == 0 && MSG_HDR + m->len <= room) { /* whole: batch it */
            out[n] = UQN_REC_MSG;
            put16(out + n + 1, (uint32_t)m->len);
            put_data(out, n + MSG_HDR, m, 0, m->len, g);
            n += MSG_HDR + m->len;
            e->queued_bytes -= m->len;
            pop(e);
            continue;
        }
        if (m->off == 0 && MSG_HDR + m->len <= UQN_FRAME_PLAIN_MAX) break; /* whole, next frame */
        if (room < CHUNK_HDR + MIN_CHUNK) break;
        size_t take = m->len - m->off;
        if (take > room - CHUNK_HDR) take = room - CHUNK_HDR;
        if (m->off == 0) {
            m->id = e->next_id++;
            out[n] = UQN_REC_FIRST;
            put32(out + n + 5, (uint32_t)m->len);
        } else {
            out[n] = UQN_REC_MORE;
            put32(out + n + 5, (uint32_t)m->off);
        }
        put32(out + n + 1, m->id);
        put16(out + n + 9, (uint32_t)take);
        put_data(out, n + CHUNK_HDR, m, m->off, take, g);
        n += CHUNK_HDR + take;
        m->off += take;
        e->queued_bytes -= take;
        if (m->off < m->len) break; /* the frame is full */
        pop(e);
    }
    return n;
}

size_t uqn_fenc_next_plain(uqn_fenc *e, uint8_t *out) { return next_plain(e, out, NULL); }

/* Encrypt a frame's n plaintext bytes at pt in place, with g's segments
 * from their messages: the records' headers (and short data) in place, the
 * long data from where it is. Only a segment's middle, from and to
 * multiples of UQN_CIPHER_ALIGN (counted from the frame's start), is
 * encrypted from the message; its two ends (less than that each) are
 * copied into the frame first and go with the pieces in place. So every
 * piece but the last starts and ends on a multiple of UQN_CIPHER_ALIGN:
 * the cipher's fast path (noise.h). */
static void seal_gather(uint8_t *pt, size_t n, const gather *g)
{
    const size_t a = UQN_CIPHER_ALIGN;
    size_t at = 0;
    for (unsigned i = 0; i < g->n; i++) {
        const seg *s = &g->s[i];
        size_t end = s->off + s->len, from = (s->off + a - 1) / a * a, to = end / a * a;
        if (from >= to) { /* no aligned middle: all in the frame */
            memcpy(pt + s->off, s->src, s->len);
            continue;
        }
        memcpy(pt + s->off, s->src, from - s->off);
        memcpy(pt + to, s->src + (to - s->off), end - to);
        uqn_cipher_seal_update(pt + at, from - at, pt + at);
        uqn_cipher_seal_update(s->src + (from - s->off), to - from, pt + from);
        at = to;
    }
    uqn_cipher_seal_update(pt + at, n - at, pt + at);
}

uq_err uqn_fenc_next_frame(uqn_fenc *e, uqn_cipher *cs, uint8_t *out, size_t *out_len,
                           uq_errmsg *em)
{
    *out_len = 0;
    if (!e->head) return UQ_OK;
    if (cs && cs->has_key && cs->n == UINT64_MAX)
        return uqi_errf(em, UQ_ELIMIT, "net: the link's send nonce is exhausted; reconnect");
    gather g;
    g.n = 0;
    uint8_t *pt = out + 2;
    size_t n = next_plain(e, pt, cs && cs->has_key ? &g : NULL);
    size_t clen = n + (cs && cs->has_key ? UQN_NOISE_TAG : 0);
    if (g.n && uqn_cipher_seal_begin(cs, n)) {
        seal_gather(pt, n, &g);
        uqn_cipher_seal_final(cs, pt + n);
    } else if (cs) {
        for (unsigned i = 0; i < g.n; i++) memcpy(pt + g.s[i].off, g.s[i].src, g.s[i].len);
        uq_err err = uqn_cipher_encrypt(cs, NULL, 0, pt, n, pt);
        if (err) return uqi_errf(em, err, "net: frame encryption failed: %s", uq_strerror(err));
    }
    put16(out, (uint32_t)clen);
    *out_len = 2 + clen;
    return UQ_OK;
}

/* ---- decoder ------------------------------------------------------------ */

static void part_free(uqn_fdec *d, uqn_fdec_part *pt);

void uqn_fdec_init(uqn_fdec *d, size_t max_msg, uqn_deliver_fn deliver, void *arg)
{
    memset(d, 0, sizeof *d);
    d->max_msg = max_msg ? max_msg : UQN_MSG_MAX_DEFAULT;
    if (d->max_msg > UINT32_MAX) d->max_msg = UINT32_MAX;
    d->deliver = deliver;
    d->arg = arg;
    d->frame = uqi_xmalloc(UQN_FRAME_MAX);
}

void uqn_fdec_fini(uqn_fdec *d)
{
    for (unsigned i = 0; i < d->nparts; i++) part_free(d, &d->parts[i]);
    free(d->frame);
    memset(d, 0, sizeof *d);
}

static uq_err deliver(uqn_fdec *d, const uint8_t *msg, size_t len, uq_errmsg *em)
{
    d->msgs++;
    if (!d->deliver) return UQ_OK;
    uq_err e = d->deliver(d->arg, msg, len);
    if (e) return uqi_errf(em, e, "net: the receiver refused a message: %s", uq_strerror(e));
    return UQ_OK;
}

/* Reassembly buffers: malloc'ed while small; past PART_MAP bytes, mapped
 * pages (cap a multiple of the page size) grown with mremap, which moves
 * page tables instead of copying (a realloc'ed heap block copied the
 * message at every doubling). A complete message's buffer may be taken by
 * the receiver (uqn_rx_take: a payload made of it, no copy); mapped ones
 * come back, when the decoder or that receiver is done with them, to a
 * pool shared by the process (fresh pages cost a fault and a clearing
 * each: about a third of a receiving thread's time). A buffer left in the
 * pool for POOL_IDLE_NS is marked MADV_FREE (uqn_rxbuf_trim), so that the
 * system may take its pages back under memory pressure; one taken again
 * sooner is not: a stream of large messages reuses the same buffers back
 * to back, and writing into marked pages is slow (on this VM a memset of
 * 8 MiB took 0.20 us a KB against 0.06 unmarked, with no page fault
 * counted; deferring the marking cut a bulk link's CPU by 11-14 %:
 * docs/PERFORMANCE.md, "Network, seventh round"). */
#define PART_MAP ((size_t)256 << 10)
#define POOL_MAX 4u
#define POOL_IDLE_NS 1000000000ull

static size_t page_round(size_t n) { return (n + 4095) & ~(size_t)4095; }

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint8_t *p;
    size_t cap;
    uint64_t since;          /* pooled then (uqi_now_ns) */
    bool lazy;               /* marked MADV_FREE */
} pool[POOL_MAX];
static unsigned npool;
static _Atomic uint64_t pool_due = UINT64_MAX; /* when an entry not lazy is due (UINT64_MAX: none) */

/* pool_due again, from the entries (pool_mu held). */
static void pool_due_update(void)
{
    uint64_t due = UINT64_MAX;
    for (unsigned i = 0; i < npool; i++)
        if (!pool[i].lazy && pool[i].since + POOL_IDLE_NS < due) due = pool[i].since + POOL_IDLE_NS;
    pool_due = due;
}

/* A mapped buffer back to the pool (or unmapped: the pool keeps the
 * largest POOL_MAX), pooled since then, lazy if marked MADV_FREE already.
 * Any thread. */
static void pool_add(uint8_t *p, size_t cap, uint64_t since, bool lazy)
{
    pthread_mutex_lock(&pool_mu);
    unsigned s;
    if (npool < POOL_MAX) {
        s = npool++;
        pool[s].p = NULL;
    } else {
        s = 0;
        for (unsigned i = 1; i < npool; i++)
            if (pool[i].cap < pool[s].cap) s = i;
    }
    if (!pool[s].p || pool[s].cap < cap) { /* a free place, or the smallest out for the larger */
        uint8_t *q = pool[s].p;
        size_t qc = pool[s].cap;
        pool[s].p = p;
        pool[s].cap = cap;
        pool[s].since = since;
        pool[s].lazy = lazy;
        p = q;
        cap = qc;
    }
    pool_due_update();
    pthread_mutex_unlock(&pool_mu);
    if (p) munmap(p, cap);
}

void uqn_rxbuf_trim(uint64_t now)
{
    if (now < pool_due) return;
    struct { uint8_t *p; size_t cap; uint64_t since; } due[POOL_MAX];
    unsigned n = 0;
    pthread_mutex_lock(&pool_mu);
    for (unsigned i = 0; i < npool;) {
        if (!pool[i].lazy && pool[i].since + POOL_IDLE_NS <= now) { /* out while it is marked */
            due[n].p = pool[i].p;
            due[n].cap = pool[i].cap;
            due[n++].since = pool[i].since;
            pool[i] = pool[--npool];
        } else {
            i++;
        }
    }
    pool_due_update();
    pthread_mutex_unlock(&pool_mu);
    for (unsigned i = 0; i < n; i++) {
        madvise(due[i].p, due[i].cap, MADV_FREE);
        pool_add(due[i].p, due[i].cap, due[i].since, true);
    }
}

static void pool_put(uint8_t *p, size_t cap)
{
    uint64_t now = uqi_now_ns();
    pool_add(p, cap, now, false);
    uqn_rxbuf_trim(now); /* others idle long enough, if no net thread calls it */
}

/* A pooled buffer for a message of want bytes: the smallest of at least
 * want and at most 2 * want bytes (a taken buffer is held whole by its
 * payload), else the largest smaller one (grown with mremap); NULL if
 * none fits. */
static uint8_t *pool_get(size_t want, size_t *cap)
{
    pthread_mutex_lock(&pool_mu);
    int fit = -1, big = -1;
    for (unsigned i = 0; i < npool; i++) {
        size_t c = pool[i].cap;
        if (c >= want && c / 2 <= want && (fit < 0 || c < pool[fit].cap)) fit = (int)i;
        if (c < want && (big < 0 || c > pool[big].cap)) big = (int)i;
    }
    int k = fit >= 0 ? fit : big;
    uint8_t *p = NULL;
    if (k >= 0) {
        p = pool[k].p;
        *cap = pool[k].cap;
        pool[k] = pool[--npool];
    }
    pthread_mutex_unlock(&pool_mu);
    return p;
}

void uqn_rxbuf_release(void *base, size_t cap)
{
    if (!base) return;
    if (cap <= PART_MAP) free(base);
    else pool_put(base, cap);
}

static void part_free(uqn_fdec *d, uqn_fdec_part *pt)
{
    if (!pt->buf) return;
    uqn_rxbuf_release(pt->buf, pt->cap);
    pt->buf = NULL;
}

static void part_grow(uqn_fdec *d, uqn_fdec_part *pt, size_t cap)
{
    uint8_t *nb;
    if (cap <= PART_MAP) {
        nb = realloc(pt->buf, cap);
        UQ_VERIFY(nb != NULL);
    } else if (pt->cap <= PART_MAP) {
        size_t have;
        if ((nb = pool_get(cap, &have))) { /* reuse, at whatever size it has */
            if (have >= cap) cap = have;
            else nb = mremap(nb, have, page_round(cap), MREMAP_MAYMOVE);
        } else {
            nb = mmap(NULL, page_round(cap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        UQ_VERIFY(nb != MAP_FAILED);
        memcpy(nb, pt->buf, pt->got);
        free(pt->buf);
    } else {
        nb = mremap(pt->buf, pt->cap, page_round(cap), MREMAP_MAYMOVE);
        UQ_VERIFY(nb != MAP_FAILED);
    }
    pt->buf = nb;
    pt->cap = cap <= PART_MAP ? cap : page_round(cap);
}

/* The message being delivered from a reassembly buffer (this thread): what
 * uqn_rx_take may take. */
static _Thread_local struct {
    const uint8_t *msg;
    uint8_t *buf;
    size_t cap;
} rx_cur;

bool uqn_rx_take(const uint8_t *msg, void **base, size_t *cap)
{
    if (!msg || msg != rx_cur.msg) return false;
    *base = rx_cur.buf;
    *cap = rx_cur.cap;
    rx_cur.msg = NULL;
    rx_cur.buf = NULL;
    return true;
}

static uqn_fdec_part *find_part(uqn_fdec *d, uint32_t id)
{
    for (unsigned i = 0; i < d->nparts; i++)
        if (d->parts[i].id == id) return &d->parts[i];
    return NULL;
}

#define BAD(...) uqi_errf(em, UQ_ECORRUPT, __VA_ARGS__)

/* Room for len more bytes in pt; it grows to at most twice what arrived: a
 * peer cannot reserve memory by announcing large messages. */
static void part_reserve(uqn_fdec *d, uqn_fdec_part *pt, size_t len)
{
    if (pt->got + len <= pt->cap) return;
    uint64_t cap = (uint64_t)pt->cap * 2;
    if (cap < pt->got + len) cap = pt->got + len;
    if (cap > pt->total) cap = pt->total;
    part_grow(d, pt, (size_t)cap);
}

/* len more bytes are in pt's buffer: delivered once complete. */
static uq_err part_got(uqn_fdec *d, uqn_fdec_part *pt, size_t len, uq_errmsg *em)
{
    pt->got += (uint32_t)len;
    if (pt->got < pt->total) return UQ_OK;
    uqn_fdec_part done = *pt;
    *pt = d->parts[--d->nparts]; /* unordered removal */
    rx_cur.msg = done.buf;
    rx_cur.buf = done.buf;
    rx_cur.cap = done.cap;
    uq_err e = deliver(d, done.buf, done.total, em);
    if (!rx_cur.buf) done.buf = NULL; /* taken (uqn_rx_take) */
    rx_cur.msg = NULL;
    rx_cur.buf = NULL;
    part_free(d, &done);
    return e;
}

/* A later chunk that a frame of plen plaintext bytes starts with, decrypted
 * header in h: the part it continues, if the header is sound (else NULL:
 * the frame is decoded the ordinary way, which says what is wrong). */
static uqn_fdec_part *chunk_in_place(uqn_fdec *d, const uint8_t *h, size_t plen)
{
    if (h[0] != UQN_REC_MORE) return NULL;
    uqn_fdec_part *pt = find_part(d, get32(h + 1));
    size_t len = get16(h + 9);
    if (!pt || get32(h + 5) != pt->got || len == 0 || len > pt->total - pt->got || len > plen - CHUNK_HDR) return NULL;
    return pt;
}

/* A whole frame of len ciphertext bytes at src, decrypted in pieces: when it
 * starts with a later chunk of a message being reassembled (a large
 * message's frames all do), the chunk's data is decrypted straight into the
 * reassembly buffer, the rest of the frame into d->frame; the reassembled
 * bytes count once the tag verifies (if it does not, they are wiped and
 * the link fails). This saves a copy of every byte of a large message.
 * The pieces start and end on multiples of UQN_CIPHER_ALIGN (noise.h), all
 * but the last: the first (the chunk's header and the start of its data)
 * and the chunk's end go to d->frame, and are copied from there once the
 * frame authenticates. Returns false if the frame cannot be done so (short,
 * no key). */
static bool open_in_place(uqn_fdec *d, uqn_cipher *cs, const uint8_t *src, size_t len, uq_err *e, uq_errmsg *em)
{
    const size_t a = UQN_CIPHER_ALIGN;
    size_t plen = len - UQN_NOISE_TAG;
    if (plen < a || !uqn_cipher_open_begin(cs, len)) return false;
    uint8_t *f = d->frame;
    uqn_cipher_open_update(src, a, f);
    uqn_fdec_part *pt = chunk_in_place(d, f, plen);
    size_t dlen = 0, mid = a; /* [a, mid): decrypted into the reassembly buffer */
    if (pt) {
        dlen = get16(f + 9);
        part_reserve(d, pt, dlen);
        size_t to = (CHUNK_HDR + dlen) / a * a;
        if (to > a) {
            uqn_cipher_open_update(src + a, to - a, pt->buf + pt->got + (a - CHUNK_HDR));
            mid = to;
        }
    }
    uqn_cipher_open_update(src + mid, plen - mid, f + mid);
    if ((*e = uqn_cipher_open_final(cs, src + plen))) {
        if (pt) sodium_memzero(pt->buf + pt->got, dlen);
        sodium_memzero(f, plen);
        *e = uqi_errf(em, *e, "net: frame %llu failed authentication (wrong key, altered, replayed or reordered)",
                      (unsigned long long)d->frames + 1);
        return true;
    }
    d->frames++;
    size_t rest = CHUNK_HDR + dlen;
    if (!pt) {
        rest = 0; /* the whole frame is in d->frame */
    } else {
        uint8_t *to = pt->buf + pt->got;
        if (mid == a) { /* the chunk is all in d->frame */
            memcpy(to, f + CHUNK_HDR, dlen);
        } else {        /* its two ends are */
            memcpy(to, f + CHUNK_HDR, a - CHUNK_HDR);
            memcpy(to + (mid - CHUNK_HDR), f + mid, rest - mid);
        }
        if ((*e = part_got(d, pt, dlen, em))) return true;
    }
    *e = uqn_fdec_plain(d, f + rest, plen - rest, em);
    return true;
}

uq_err uqn_fdec_plain(uqn_fdec *d, const uint8_t *p, size_t n, uq_errmsg *em)
{
    size_t i = 0;
    uq_err e;
    while (i < n) {
        uint8_t kind = p[i];
        if (kind == UQN_REC_MSG) {
            if (n - i < MSG_HDR) return BAD("net: frame ends inside a record header at byte %zu", i);
            size_t len = get16(p + i + 1);
            if (n - i - MSG_HDR < len)
                return BAD("net: a %zu-byte record overruns its frame at byte %zu", len, i);
            if (len > d->max_msg)
                return uqi_errf(em, UQ_ELIMIT, "net: a %zu-byte message exceeds the %zu-byte limit",
                                len, d->max_msg);
            if ((e = deliver(d, p + i + MSG_HDR, len, em))) return e;
            i += MSG_HDR + len;
        } else if (kind == UQN_REC_FIRST || kind == UQN_REC_MORE) {
            if (n - i < CHUNK_HDR) return BAD("net: frame ends inside a chunk header at byte %zu", i);
            uint32_t id = get32(p + i + 1), val = get32(p + i + 5);
            size_t len = get16(p + i + 9);
            const uint8_t *data = p + i + CHUNK_HDR;
            if (n - i - CHUNK_HDR < len)
                return BAD("net: a %zu-byte chunk overruns its frame at byte %zu", len, i);
            if (len == 0) return BAD("net: empty chunk for message %u", id);
            uqn_fdec_part *pt = find_part(d, id);
            if (kind == UQN_REC_FIRST) {
                if (pt) return BAD("net: message %u started twice", id);
                if (val <= len) return BAD("net: chunked message %u of %u bytes has a first chunk of %zu",
                                           id, val, len);
                if (val > d->max_msg)
                    return uqi_errf(em, UQ_ELIMIT, "net: a %u-byte message exceeds the %zu-byte limit",
                                    val, d->max_msg);
                if (d->nparts == UQN_PARTIAL_MAX)
                    return uqi_errf(em, UQ_ELIMIT, "net: more than %u chunked messages in progress",
                                    UQN_PARTIAL_MAX);
                pt = &d->parts[d->nparts++];
                pt->id = id;
                pt->total = val;
                pt->got = (uint32_t)len;
                pt->cap = 0;
                pt->buf = NULL;
                size_t have;
                /* a large message starts in a pooled buffer if one fits (the
                 * memory is the process's already: no reservation by
                 * announcing), else small and grown as chunks arrive */
                if (val > PART_MAP && (pt->buf = pool_get(val, &have))) {
                    if (have < val / 2) { /* too small to be worth it: back */
                        pool_put(pt->buf, have);
                        pt->buf = NULL;
                    } else {
                        pt->cap = have;
                    }
                }
                if (!pt->buf) {
                    pt->cap = len;
                    pt->buf = uqi_xmalloc(len);
                }
                memcpy(pt->buf, data, len);
            } else {
                if (!pt) return BAD("net: chunk for message %u, which was not started", id);
                if (val != pt->got)
                    return BAD("net: chunk of message %u at offset %u, expected %u", id, val, pt->got);
                if (len > pt->total - pt->got)
                    return BAD("net: chunk of message %u overruns its %u bytes", id, pt->total);
                part_reserve(d, pt, len);
                memcpy(pt->buf + pt->got, data, len);
                if ((e = part_got(d, pt, len, em))) return e;
            }
            i += CHUNK_HDR + len;
        } else {
            return BAD("net: unknown record kind 0x%02x at byte %zu of a frame", kind, i);
        }
    }
    return UQ_OK;
}

uq_err uqn_fdec_feed(uqn_fdec *d, uqn_cipher *cs, const uint8_t *data, size_t n, uq_errmsg *em)
{
    if (d->err) return uqi_errf(em, d->err, "net: the link already failed (%s)", uq_strerror(d->err));
    bool crypt = cs && cs->has_key;
    size_t i = 0;
    uq_err e = UQ_OK;
    while (i < n) {
        if (d->hdr_got < 2) {
            d->hdr[d->hdr_got++] = data[i++];
            if (d->hdr_got < 2) continue;
            d->frame_len = get16(d->hdr);
            d->frame_got = 0;
            if (crypt && d->frame_len < UQN_NOISE_TAG) {
                e = BAD("net: a %zu-byte frame is shorter than its tag", d->frame_len);
                goto fail;
            }
        }
        size_t take = d->frame_len - d->frame_got;
        if (take > n - i) take = n - i;
        /* a frame whole in the input is decrypted from there (no copy first) */
        const uint8_t *src = d->frame;
        if (crypt && d->frame_got == 0 && take == d->frame_len) src = data + i;
        else memcpy(d->frame + d->frame_got, data + i, take);
        d->frame_got += take;
        i += take;
        if (d->frame_got < d->frame_len) break;
        /* a whole frame */
        d->hdr_got = 0;
        size_t plen = d->frame_len;
        if (crypt && open_in_place(d, cs, src, d->frame_len, &e, em)) {
            if (e) goto fail;
            continue;
        }
        if (crypt) {
            e = uqn_cipher_decrypt(cs, NULL, 0, src, d->frame_len, d->frame);
            if (e == UQ_ECRYPTO) {
                e = uqi_errf(em, e, "net: frame %llu failed authentication (wrong key, altered, "
                             "replayed or reordered)", (unsigned long long)d->frames + 1);
                goto fail;
            }
            if (e) {
                e = uqi_errf(em, e, "net: frame %llu: %s", (unsigned long long)d->frames + 1,
                             uq_strerror(e));
                goto fail;
            }
            plen -= UQN_NOISE_TAG;
        }
        d->frames++;
        if ((e = uqn_fdec_plain(d, d->frame, plen, em))) goto fail;
    }
    return UQ_OK;
fail:
    d->err = e;
    return e;
}
