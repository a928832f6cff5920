/* The receiving side of remote messages: a large payload keeps the buffer
 * its message was reassembled in (uqn_rx_take, uqi_payload_adopt) and
 * outlives the decoder (the link) that made it; a tampered chunk in the
 * middle of a message delivers nothing; junk and huge lengths are refused
 * and take nothing; small received messages reuse their blocks. */
#include <stdio.h>
#include <sys/mman.h>

#include "integ/tnet.h"
#include "kernel/remote.h"
#include "net/frame.h"

/* Decoded kernel messages, as a node's receive callback makes them. */
typedef struct rx_box {
    uqi_msg *m[8];
    unsigned n, refused;
    uq_errmsg em;
} rx_box;

static uq_err rx_deliver(void *arg, const uint8_t *msg, size_t len)
{
    rx_box *b = arg;
    uqi_msg *m;
    if (uqi_wire_decode(msg, len, "peer.node", "self.node", &m, &b->em) != UQ_OK) {
        b->refused++;
        return UQ_OK;
    }
    if (b->n < 8) b->m[b->n++] = m;
    else uqi_msg_free(m);
    return UQ_OK;
}

static void rx_box_free(rx_box *b)
{
    for (unsigned i = 0; i < b->n; i++) uqi_msg_free(b->m[i]);
    memset(b, 0, sizeof *b);
}

/* A one-way request x -> y with a body and a payload of plen pseudo-random
 * bytes (seeded), encoded for a link. */
static uint8_t *wire_msg(size_t body_len, size_t plen, uint8_t seed, size_t *len)
{
    char *body = malloc(body_len + 1);
    memset(body, 'b', body_len);
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, body_len);
    free(body);
    snprintf(m->source.process, sizeof m->source.process, "x");
    snprintf(m->target.process, sizeof m->target.process, "y");
    if (plen) {
        uint8_t *d = malloc(plen);
        for (size_t i = 0; i < plen; i++) d[i] = (uint8_t)(i * 131 + seed + (i >> 12));
        m->payload = uqi_payload_new(d, plen, "application/octet-stream");
        free(d);
    }
    uint8_t *out;
    ASSERT_EQ(uqi_wire_encode(m, false, &out, len, NULL), UQ_OK);
    uqi_msg_free(m);
    return out;
}

static bool payload_is(const uqi_payload *p, size_t plen, uint8_t seed)
{
    if (!p || p->len != plen) return false;
    for (size_t i = 0; i < plen; i++)
        if (p->data[i] != (uint8_t)(i * 131 + seed + (i >> 12))) return false;
    return true;
}

/* Frame msgs (encrypted with a fresh key into *s); the receiving cipher in *rx. */
typedef struct wire {
    uint8_t *p;
    size_t n;
    size_t frame_end[64]; /* where each frame ends */
    unsigned frames;
} wire;

static void frame_all(uint8_t **msgs, size_t *lens, int count, wire *w, uqn_cipher *rx)
{
    uqn_cipher tx = {{0}, 0, true};
    randombytes_buf(tx.k, 32);
    *rx = tx;
    uqn_fenc enc;
    uqn_fenc_init(&enc);
    uq_errmsg em = {{0}};
    for (int i = 0; i < count; i++) ASSERT_EQ(uqn_fenc_push(&enc, msgs[i], lens[i], &em), UQ_OK);
    static uint8_t frame[UQN_FRAME_WIRE_MAX];
    memset(w, 0, sizeof *w);
    size_t n;
    for (;;) {
        ASSERT_EQ(uqn_fenc_next_frame(&enc, &tx, frame, &n, &em), UQ_OK);
        if (!n) break;
        w->p = realloc(w->p, w->n + n);
        memcpy(w->p + w->n, frame, n);
        w->n += n;
        ASSERT(w->frames < 64);
        w->frame_end[w->frames++] = w->n;
    }
    uqn_fenc_fini(&enc);
}

/* Feed w to d, whole or in random pieces. */
static uq_err feed(uqn_fdec *d, uqn_cipher *rx, const wire *w, bool split, uq_errmsg *em)
{
    if (!split) return uqn_fdec_feed(d, rx, w->p, w->n, em);
    for (size_t i = 0; i < w->n;) {
        size_t k = 1 + randombytes_uniform(randombytes_uniform(3) == 0 ? 20 : 90000);
        if (k > w->n - i) k = w->n - i;
        uq_err e = uqn_fdec_feed(d, rx, w->p + i, k, em);
        if (e) return e;
        i += k;
    }
    return UQ_OK;
}

TEST(net_recv_payload_adopted_outlives_the_link)
{
    /* 3 MiB (a mapped reassembly buffer), 150 KiB (a malloc'ed one), a
     * large body with a smaller payload (copied: the payload is not most of
     * the buffer), a small message (lent from its frame: copied) */
    size_t plens[4] = {3u << 20, 150000, 70000, 10}, blens[4] = {20, 5, 140000, 2}, lens[4];
    uint8_t *msgs[4];
    for (int i = 0; i < 4; i++) msgs[i] = wire_msg(blens[i], plens[i], (uint8_t)i, &lens[i]);
    for (int split = 0; split < 2; split++) {
        wire w;
        uqn_cipher rx;
        frame_all(msgs, lens, 4, &w, &rx);
        rx_box box = {0};
        uqn_fdec d;
        uq_errmsg em = {{0}};
        uqn_fdec_init(&d, 0, rx_deliver, &box);
        ASSERT_EQ(feed(&d, &rx, &w, split, &em), UQ_OK);
        uqn_fdec_fini(&d); /* the link is gone */
        memset(w.p, 0, w.n);
        free(w.p);
        ASSERT_EQ(box.refused, 0);
        ASSERT_EQ(box.n, 4);
        for (int i = 0; i < 4; i++) {
            uqi_msg *m = box.m[i];
            ASSERT_EQ(m->body_len, blens[i]);
            ASSERT(payload_is(m->payload, plens[i], (uint8_t)i));
            ASSERT_EQ(strcmp(m->source.node, "peer.node"), 0);
            ASSERT_EQ(strcmp(m->payload->mime, "application/octet-stream"), 0);
            bool adopted = m->payload->release != NULL;
            ASSERT_EQ(adopted, i < 2);
            if (adopted) /* within the buffer it keeps, not a copy */
                ASSERT((uint8_t *)m->payload->base < m->payload->data &&
                       m->payload->data + m->payload->len <= (uint8_t *)m->payload->base + m->payload->cap);
        }
        /* a payload held past its message (forwarded, kept by a process) */
        uqi_payload *keep = uqi_payload_hold(box.m[0]->payload);
        rx_box_free(&box);
        ASSERT(payload_is(keep, plens[0], 0));
        uqi_payload_rele(keep);
    }
    /* a message decoded outside a receive callback is copied */
    uqi_msg *m;
    ASSERT_EQ(uqi_wire_decode(msgs[0], lens[0], "peer.node", "self.node", &m, NULL), UQ_OK);
    ASSERT(m->payload->release == NULL && payload_is(m->payload, plens[0], 0));
    uqi_msg_free(m);
    for (int i = 0; i < 4; i++) free(msgs[i]);
}

TEST(net_recv_tampered_chunk_mid_message_delivers_nothing)
{
    /* a 1 MiB payload, framed in 17 frames, then a small message: a byte
     * flipped in a middle frame (its header, data or tag) fails the link,
     * and neither that message nor anything after it is delivered */
    size_t lens[2];
    uint8_t *msgs[2] = {wire_msg(10, 1u << 20, 7, &lens[0]), wire_msg(3, 5, 8, &lens[1])};
    wire w;
    uqn_cipher rx;
    frame_all(msgs, lens, 2, &w, &rx);
    ASSERT(w.frames >= 17);
    unsigned mid = w.frames / 2;
    size_t start = w.frame_end[mid - 1], end = w.frame_end[mid];
    size_t at[] = {start + 2, start + 5, start + 13, start + 14, start + 30000, end - 16, end - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        for (int split = 0; split < 2; split++) {
            rx_box box = {0};
            uqn_fdec d;
            uq_errmsg em = {{0}};
            uqn_cipher r = rx;
            uqn_fdec_init(&d, 0, rx_deliver, &box);
            w.p[at[k]] ^= 0x10;
            ASSERT_EQ(feed(&d, &r, &w, split, &em), UQ_ECRYPTO);
            w.p[at[k]] ^= 0x10;
            ASSERT_STR_HAS(em.text, "failed authentication");
            ASSERT_EQ(box.n, 0);
            ASSERT_EQ(box.refused, 0);
            /* the link stays failed */
            ASSERT_EQ(uqn_fdec_feed(&d, &r, w.p, 1, &em), UQ_ECRYPTO);
            uqn_fdec_fini(&d);
            rx_box_free(&box);
        }
    }
    /* untouched, both arrive */
    rx_box box = {0};
    uqn_fdec d;
    uq_errmsg em = {{0}};
    uqn_cipher r = rx;
    uqn_fdec_init(&d, 0, rx_deliver, &box);
    ASSERT_EQ(feed(&d, &r, &w, true, &em), UQ_OK);
    ASSERT_EQ(box.n, 2);
    ASSERT(payload_is(box.m[0]->payload, 1u << 20, 7) && box.m[0]->payload->release);
    uqn_fdec_fini(&d);
    rx_box_free(&box);
    free(w.p);
    free(msgs[0]);
    free(msgs[1]);
}

/* The decode of a message reassembled from chunks fails: nothing was taken
 * (the buffer can still be taken after, by whoever may). */
typedef struct junk_box {
    unsigned calls, refused, left;
    uq_err err;
    char text[sizeof(uq_errmsg)];
} junk_box;

static uq_err junk_deliver(void *arg, const uint8_t *msg, size_t len)
{
    junk_box *b = arg;
    uqi_msg *m = NULL;
    uq_errmsg em = {{0}};
    b->calls++;
    b->err = uqi_wire_decode(msg, len, "peer.node", "self.node", &m, &em);
    snprintf(b->text, sizeof b->text, "%s", em.text);
    if (b->err) {
        b->refused++;
        ASSERT(m == NULL);
        void *base;
        size_t cap;
        if (uqn_rx_take(msg, &base, &cap)) { /* still the decoder's to give */
            b->left++;
            uqn_rxbuf_release(base, cap);
        }
    }
    uqi_msg_free(m);
    return UQ_OK;
}

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

TEST(net_recv_junk_and_huge_lengths_refused)
{
    /* a 600 KiB payload message; its payload length field is at
     * len - plen - 4, its body length at 16 + 2 + 1 + 2 */
    size_t plen = 600000, len;
    uint8_t *good = wire_msg(4, plen, 3, &len);
    size_t pl_at = len - plen - 4, bl_at = 16 + 2 + 2;
    uint32_t bad_pl[] = {0xffffffffu, (uint32_t)plen + 1, 0x80000000u, (uint32_t)plen - 1, 0};
    uint32_t bad_bl[] = {0xffffffffu, (uint32_t)len, 5};
    for (int which = 0; which < 2; which++) {
        unsigned nv = which ? 3 : 5;
        for (unsigned v = 0; v < nv; v++) {
            uint8_t *m = malloc(len);
            memcpy(m, good, len);
            put32be(m + (which ? bl_at : pl_at), which ? bad_bl[v] : bad_pl[v]);
            size_t lens[1] = {len};
            wire w;
            uqn_cipher rx;
            frame_all(&m, lens, 1, &w, &rx);
            junk_box box = {0};
            uqn_fdec d;
            uq_errmsg em = {{0}};
            uqn_fdec_init(&d, 0, junk_deliver, &box);
            ASSERT_EQ(uqn_fdec_feed(&d, &rx, w.p, w.n, &em), UQ_OK); /* the frames are sound */
            ASSERT_EQ(box.calls, 1);
            ASSERT_EQ(box.err, UQ_ECORRUPT);
            ASSERT_EQ(box.left, 1); /* nothing taken by the failed decode */
            test_log("%s %#x: %s", which ? "body length" : "payload length", which ? bad_bl[v] : bad_pl[v], box.text);
            uqn_fdec_fini(&d);
            free(w.p);
            free(m);
        }
    }
    /* a chunked message announcing more than the limit (here 4 GiB - 1) is
     * refused before any buffer is made */
    uqn_fdec d;
    uq_errmsg em = {{0}};
    junk_box box = {0};
    uqn_fdec_init(&d, 1u << 20, junk_deliver, &box);
    uint8_t first[11 + 300] = {UQN_REC_FIRST, 0, 0, 0, 1};
    put32be(first + 5, 0xffffffffu);
    first[9] = 300 >> 8, first[10] = 300 & 0xff;
    ASSERT_EQ(uqn_fdec_plain(&d, first, sizeof first, &em), UQ_ELIMIT);
    ASSERT_EQ(box.calls, 0);
    uqn_fdec_fini(&d);
    free(good);
}

TEST(net_recv_small_messages_reuse_their_blocks)
{
    /* received small messages freed on another thread come back to the
     * receivers' pool: made again (on a receiving thread) from the same
     * blocks, and the body and names are those of the new message */
    size_t len;
    uint8_t *w = wire_msg(16, 0, 0, &len);
    uqi_msg *a[64];
    for (int i = 0; i < 64; i++) ASSERT_EQ(uqi_wire_decode(w, len, "peer.node", "self.node", &a[i], NULL), UQ_OK);
    for (int i = 0; i < 64; i++) {
        ASSERT(a[i]->rx);
        ASSERT_EQ(a[i]->body_len, 16);
        uqi_msg_free(a[i]);
    }
    uqi_msg *m;
    ASSERT_EQ(uqi_wire_decode(w, len, "peer.node", "self.node", &m, NULL), UQ_OK);
    ASSERT_EQ(strcmp(m->source.process, "x"), 0);
    ASSERT_EQ(strcmp(m->target.node, "self.node"), 0);
    ASSERT(m->payload == NULL && m->metadata == NULL && !m->has_rsvp);
    uqi_msg_free(m);
    /* an ordinary message made from a block that was a received one is not one */
    uqi_msg *o = uqi_msg_new(UQI_MSG_REQUEST, "{}", 2);
    ASSERT(!o->rx);
    uqi_msg_free(o);
    free(w);
}

/* kB of the mapping that holds p marked MADV_FREE ("LazyFree" in
 * /proc/self/smaps); -1 if no mapping holds it. */
static long lazyfree_kb(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ASSERT(f != NULL);
    char line[512];
    bool in = false;
    long kb = -1;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        if (in && sscanf(line, "LazyFree: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

/* A large reassembly buffer back in the pool is not marked MADV_FREE at
 * once (a stream of large messages takes it again, and writing into
 * marked pages costs): only once it has waited POOL_IDLE_NS (1 s) there,
 * when uqn_rxbuf_trim runs (each net tick). Before that, a trim leaves it
 * alone. */
TEST(net_recv_pooled_buffer_marked_free_only_when_idle)
{
    size_t cap = (size_t)24 << 20; /* larger than what other tests pool: kept, not unmapped */
    uint8_t *g = mmap(NULL, cap + 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(g != MAP_FAILED);
    /* a page with no access on each side: no neighbour merges into its mapping */
    ASSERT(mprotect(g, 4096, PROT_NONE) == 0 && mprotect(g + 4096 + cap, 4096, PROT_NONE) == 0);
    uint8_t *p = g + 4096;
    memset(p, 7, cap);
    uint64_t t0 = uqi_now_ns();
    uqn_rxbuf_release(p, cap);
    ASSERT_EQ(lazyfree_kb(p), 0);
    uqn_rxbuf_trim(t0 + 500000000ull); /* half a second on */
    ASSERT_EQ(lazyfree_kb(p), 0);
    uqn_rxbuf_trim(uqi_now_ns() + 1000000000ull); /* a second on */
    long kb = lazyfree_kb(p);
    test_log("LazyFree %ld kB of %zu", kb, cap >> 10);
    ASSERT(kb >= (long)(cap >> 10) * 9 / 10); /* (a few pages may sit in a per-CPU batch) */
    uqn_rxbuf_trim(uqi_now_ns() + 2000000000ull); /* marked once: nothing more to do */
    ASSERT(lazyfree_kb(p) >= kb);
}
