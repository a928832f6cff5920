/* Link framing: batching and chunking round trips through random splits,
 * with and without encryption; malformed frames are refused, never crash. */
#include "integ/tnet.h"
#include "net/frame.h"

typedef struct stream {
    uint8_t *p;
    size_t n, cap;
    unsigned frames;
} stream;

static void stream_put(stream *s, const uint8_t *p, size_t n)
{
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->p = realloc(s->p, s->cap);
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
}

/* Encode every queued message into a byte stream. */
static void encode_all(uqn_fenc *e, uqn_cipher *cs, stream *s)
{
    static uint8_t frame[UQN_FRAME_WIRE_MAX];
    size_t n;
    uq_errmsg em;
    for (;;) {
        ASSERT_EQ(uqn_fenc_next_frame(e, cs, frame, &n, &em), UQ_OK);
        if (!n) break;
        ASSERT(n <= UQN_FRAME_WIRE_MAX);
        ASSERT_EQ(((size_t)frame[0] << 8 | frame[1]) + 2, n);
        stream_put(s, frame, n);
        s->frames++;
    }
}

/* Feed a stream in random pieces (1 byte to 100 KB). */
static uq_err feed_random(uqn_fdec *d, uqn_cipher *cs, const stream *s, uq_errmsg *em)
{
    size_t i = 0;
    while (i < s->n) {
        size_t k = 1 + randombytes_uniform(randombytes_uniform(4) == 0 ? 7 : 100000);
        if (k > s->n - i) k = s->n - i;
        uq_err e = uqn_fdec_feed(d, cs, s->p + i, k, em);
        if (e) return e;
        i += k;
    }
    return UQ_OK;
}

/* n messages of random bytes, lens[i] each (into data[i], malloc'ed):
 * pushed as copies into a and by reference (refs[i]) into b. */
static void push_both(uqn_fenc *a, uqn_fenc *b, int n, const size_t *lens, uint8_t **data, uqn_fenc_msg *refs)
{
    uq_errmsg em;
    for (int i = 0; i < n; i++) {
        data[i] = malloc(lens[i]);
        randombytes_buf(data[i], lens[i]);
        ASSERT_EQ(uqn_fenc_push(a, data[i], lens[i], &em), UQ_OK);
        refs[i] = (uqn_fenc_msg){.data = data[i], .len = lens[i]};
        uqn_fenc_push_ref(b, &refs[i]);
    }
}

/* a and b encoded under one random key: the same frames, the same wire
 * bytes; *rx gets that key, for the receiver. */
static void encode_same(uqn_fenc *a, uqn_fenc *b, stream *sa, stream *sb, uqn_cipher *rx)
{
    uqn_cipher ta = {{0}, 0, true}, tb;
    randombytes_buf(ta.k, 32);
    tb = *rx = ta;
    encode_all(a, &ta, sa);
    encode_all(b, &tb, sb);
    ASSERT_EQ(sa->frames, sb->frames);
    ASSERT_EQ(sa->n, sb->n);
    ASSERT(memcmp(sa->p, sb->p, sa->n) == 0);
}

static void round_trip(bool encrypted)
{
    enum { N = 120 };
    uint8_t *msgs[N];
    size_t lens[N], total = 0;
    uqn_fenc enc;
    uqn_fenc_init(&enc);
    uq_errmsg em = {{0}};
    for (int i = 0; i < N; i++) {
        /* mostly small, some around the frame size, a few large */
        uint32_t r = randombytes_uniform(10);
        lens[i] = r < 6 ? randombytes_uniform(300) : r < 8 ? 65000 + randombytes_uniform(1200)
                                                             : randombytes_uniform(400000);
        if (i == 0) lens[i] = 0;
        if (i == 1) lens[i] = UQN_FRAME_PLAIN_MAX - 3; /* exactly one full frame */
        if (i == 2) lens[i] = UQN_FRAME_PLAIN_MAX - 2; /* one byte too many: chunked */
        msgs[i] = malloc(lens[i] + 1);
        randombytes_buf(msgs[i], lens[i]);
        ASSERT_EQ(uqn_fenc_push(&enc, msgs[i], lens[i], &em), UQ_OK);
        total += lens[i];
    }
    ASSERT_EQ(enc.queued_bytes, total);
    uqn_cipher tx = {{0}, 0, false}, rx = {{0}, 0, false};
    if (encrypted) {
        randombytes_buf(tx.k, 32);
        memcpy(rx.k, tx.k, 32);
        tx.has_key = rx.has_key = true;
    }
    stream s = {0};
    encode_all(&enc, encrypted ? &tx : NULL, &s);
    ASSERT(!uqn_fenc_pending(&enc));
    ASSERT_EQ(enc.queued_bytes, 0);
    /* the stream is about as dense as the framing allows */
    size_t min_frames = total / UQN_FRAME_PLAIN_MAX + 1;
    ASSERT(s.frames >= min_frames && s.frames <= min_frames + N / 2);
    for (int rep = 0; rep < 3; rep++) {
        tn_inbox in = {0};
        uqn_fdec dec;
        uqn_fdec_init(&dec, 0, tn_deliver, &in);
        uqn_cipher r = rx;
        ASSERT_EQ(feed_random(&dec, encrypted ? &r : NULL, &s, &em), UQ_OK);
        ASSERT_EQ(in.n, N);
        for (int i = 0; i < N; i++) {
            ASSERT_EQ(in.lens[i], lens[i]);
            ASSERT(memcmp(in.msgs[i], msgs[i], lens[i]) == 0);
        }
        ASSERT_EQ(dec.frames, s.frames);
        ASSERT_EQ(dec.hdr_got, 0);
        ASSERT_EQ(dec.nparts, 0);
        uqn_fdec_fini(&dec);
        tn_inbox_free(&in);
    }
    test_log("%d messages, %zu bytes, %u frames (%s)", N, total, s.frames, encrypted ? "encrypted" : "clear");
    for (int i = 0; i < N; i++) free(msgs[i]);
    free(s.p);
    uqn_fenc_fini(&enc);
}

TEST(net_frame_round_trip_random_splits) { round_trip(false); }
TEST(net_frame_round_trip_encrypted) { round_trip(true); }

TEST(net_frame_small_messages_are_batched)
{
    uqn_fenc enc;
    uqn_fenc_init(&enc);
    uq_errmsg em;
    for (int i = 0; i < 1000; i++) ASSERT_EQ(uqn_fenc_push(&enc, "0123456789", 10, &em), UQ_OK);
    stream s = {0};
    encode_all(&enc, NULL, &s);
    ASSERT_EQ(s.frames, 1); /* 1000 * 13 bytes fit one frame */
    ASSERT_EQ(s.n, 2 + 13000);
    tn_inbox in = {0};
    uqn_fdec dec;
    uqn_fdec_init(&dec, 0, tn_deliver, &in);
    ASSERT_EQ(uqn_fdec_feed(&dec, NULL, s.p, s.n, &em), UQ_OK);
    ASSERT_EQ(dec.msgs, 1000);
    uqn_fdec_fini(&dec);
    tn_inbox_free(&in);
    free(s.p);
}

/* Messages pushed by reference are encrypted straight from their buffers
 * (no copy into the frame first): the wire bytes are exactly those of the
 * same messages pushed as copies, and decode back to them. */
TEST(net_frame_by_reference_same_bytes)
{
    static const size_t sizes[] = {10, 600, 3000, 511, 512, 70000, 20, 200000, 65000, 1, 4096, 130000};
    enum { N = sizeof sizes / sizeof sizes[0] };
    uint8_t *data[N];
    uqn_fenc_msg refs[N];
    uqn_fenc a, b;
    uqn_fenc_init(&a);
    uqn_fenc_init(&b);
    uq_errmsg em;
    push_both(&a, &b, N, sizes, data, refs);
    uqn_cipher rx;
    stream sa = {0}, sb = {0};
    encode_same(&a, &b, &sa, &sb, &rx);
    tn_inbox in = {0};
    uqn_fdec dec;
    uqn_fdec_init(&dec, 0, tn_deliver, &in);
    ASSERT_EQ(feed_random(&dec, &rx, &sb, &em), UQ_OK);
    ASSERT_EQ(in.n, N);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(in.lens[i], sizes[i]);
        ASSERT(memcmp(in.msgs[i], data[i], sizes[i]) == 0);
        free(data[i]);
    }
    uqn_fdec_fini(&dec);
    tn_inbox_free(&in);
    uqn_fenc_fini(&a);
    uqn_fenc_fini(&b);
    free(sa.p);
    free(sb.p);
}

/* Records made by a sender (a pack of small messages, uqn_fenc_msg.recs)
 * go into frames as they are: the wire bytes are exactly those of the same
 * messages pushed one by one, when the packs end where those frames would
 * break, and every message decodes back in order in any case. */
typedef struct expect {
    uint8_t **data;
    size_t *lens, n, got, bad;
} expect;

static uq_err expect_deliver(void *arg, const uint8_t *msg, size_t len)
{
    expect *x = arg;
    if (x->got >= x->n || x->lens[x->got] != len || memcmp(x->data[x->got], msg, len) != 0) x->bad++;
    x->got++;
    return UQ_OK;
}

TEST(net_frame_records_same_bytes)
{
    enum { N = 3000 };
    static uint8_t packs[96][8192];
    static uqn_fenc_msg refs[96];
    uint8_t *data[N];
    size_t lens[N];
    uqn_fenc a, b;
    uqn_fenc_init(&a);
    uqn_fenc_init(&b);
    uq_errmsg em;
    size_t np = 0, at = 0, frame = 0;
    for (int i = 0; i < N; i++) {
        lens[i] = 1 + randombytes_uniform(232);
        data[i] = malloc(lens[i]);
        randombytes_buf(data[i], lens[i]);
        ASSERT_EQ(uqn_fenc_push(&a, data[i], lens[i], &em), UQ_OK);
        size_t rec = 3 + lens[i];
        /* a new pack where the pack is full, or where a frame of single
         * pushes would end (so that both streams break frames alike) */
        bool frame_full = frame + rec > UQN_FRAME_PLAIN_MAX;
        if (i == 0 || at + rec > sizeof packs[0] || frame_full) {
            if (i) {
                refs[np - 1] = (uqn_fenc_msg){.data = packs[np - 1], .len = at, .recs = true};
                uqn_fenc_push_ref(&b, &refs[np - 1]);
            }
            ASSERT(np < 96);
            np++;
            at = 0;
        }
        if (frame_full) frame = 0;
        packs[np - 1][at] = UQN_REC_MSG;
        packs[np - 1][at + 1] = (uint8_t)(lens[i] >> 8);
        packs[np - 1][at + 2] = (uint8_t)lens[i];
        memcpy(packs[np - 1] + at + 3, data[i], lens[i]);
        at += rec;
        frame += rec;
    }
    refs[np - 1] = (uqn_fenc_msg){.data = packs[np - 1], .len = at, .recs = true};
    uqn_fenc_push_ref(&b, &refs[np - 1]);
    uqn_cipher rx;
    stream sa = {0}, sb = {0};
    encode_same(&a, &b, &sa, &sb, &rx);
    ASSERT(!uqn_fenc_pending(&b) && b.queued_bytes == 0);
    expect x = {data, lens, N, 0, 0};
    uqn_fdec dec;
    uqn_fdec_init(&dec, 0, expect_deliver, &x);
    ASSERT_EQ(feed_random(&dec, &rx, &sb, &em), UQ_OK);
    ASSERT_EQ(x.got, N);
    ASSERT_EQ(x.bad, 0);
    for (int i = 0; i < N; i++) free(data[i]);
    test_log("%d messages in %zu packs, %u frames", N, np, sb.frames);
    uqn_fdec_fini(&dec);
    uqn_fenc_fini(&a);
    uqn_fenc_fini(&b);
    free(sa.p);
    free(sb.p);
}

/* The cipher's pieces start and end on multiples of UQN_CIPHER_ALIGN: a
 * message by reference is encrypted from its buffer only in its aligned
 * middle, its ends copied into the frame; a later chunk is decrypted into
 * the reassembly buffer only in its aligned middle, its ends copied from
 * the frame. Chunks ending on either side of each boundary of the first
 * pieces, each followed by more records in the same frame, and data at
 * every offset mod the alignment, give the same wire bytes as copies and
 * decode back whole, the frames fed whole (decrypted in place) and in
 * random pieces. */
TEST(net_frame_aligned_pieces_same_bytes)
{
    const size_t a = UQN_CIPHER_ALIGN, first = UQN_FRAME_PLAIN_MAX - 11; /* a first chunk's data */
    static const size_t ends[] = {1, 50, 116, 117, 118, 128, 244, 245, 246, 256, 373, 1000, 4000, 20000};
    enum { NE = sizeof ends / sizeof ends[0], N = 3 * NE };
    uint8_t *data[N];
    size_t lens[N];
    uqn_fenc_msg refs[N];
    uqn_fenc ea, eb;
    uqn_fenc_init(&ea);
    uqn_fenc_init(&eb);
    uq_errmsg em;
    /* a chunked message whose second chunk has ends[i / 3] bytes, then two
     * messages (one of them below the size sent by reference) whose data
     * starts at various offsets in the frame */
    for (int i = 0; i < N; i++)
        lens[i] = i % 3 == 0 ? first + ends[i / 3] : i % 3 == 1 ? 600 + a / 2 + (size_t)i : 40 + (size_t)i;
    push_both(&ea, &eb, N, lens, data, refs);
    uqn_cipher rx;
    stream sa = {0}, sb = {0};
    encode_same(&ea, &eb, &sa, &sb, &rx);
    for (int rep = 0; rep < 2; rep++) {
        expect x = {data, lens, N, 0, 0};
        uqn_fdec dec;
        uqn_fdec_init(&dec, 0, expect_deliver, &x);
        uqn_cipher r = rx;
        if (rep == 0) ASSERT_EQ(uqn_fdec_feed(&dec, &r, sb.p, sb.n, &em), UQ_OK);
        else ASSERT_EQ(feed_random(&dec, &r, &sb, &em), UQ_OK);
        ASSERT_EQ(x.got, N);
        ASSERT_EQ(x.bad, 0);
        ASSERT_EQ(dec.frames, sb.frames);
        uqn_fdec_fini(&dec);
    }
    for (int i = 0; i < N; i++) free(data[i]);
    uqn_fenc_fini(&ea);
    uqn_fenc_fini(&eb);
    free(sa.p);
    free(sb.p);
}

/* Decode one hand-made frame plaintext; returns the error. */
static uq_err decode1(const uint8_t *p, size_t n, size_t max_msg, uq_errmsg *em)
{
    uqn_fdec dec;
    tn_inbox in = {0};
    uqn_fdec_init(&dec, max_msg, tn_deliver, &in);
    uint8_t *w = malloc(n + 2);
    w[0] = (uint8_t)(n >> 8);
    w[1] = (uint8_t)n;
    memcpy(w + 2, p, n);
    uq_err e = uqn_fdec_feed(&dec, NULL, w, n + 2, em);
    if (e) { /* sticky */
        uq_errmsg em2;
        ASSERT_EQ(uqn_fdec_feed(&dec, NULL, w, n + 2, &em2), e);
    }
    free(w);
    uqn_fdec_fini(&dec);
    tn_inbox_free(&in);
    return e;
}

TEST(net_frame_malformed_refused)
{
    uq_errmsg em = {{0}};
    const uint8_t ok[] = {1, 0, 2, 'h', 'i', 1, 0, 0};
    ASSERT_EQ(decode1(ok, sizeof ok, 0, &em), UQ_OK);
    ASSERT_EQ(decode1(ok, 0, 0, &em), UQ_OK); /* an empty frame: keepalive */
    const uint8_t unknown[] = {9};
    ASSERT_EQ(decode1(unknown, 1, 0, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "unknown record kind 0x09");
    const uint8_t short_hdr[] = {1, 0};
    ASSERT_EQ(decode1(short_hdr, 2, 0, &em), UQ_ECORRUPT);
    const uint8_t overrun[] = {1, 0, 5, 'a'};
    ASSERT_EQ(decode1(overrun, 4, 0, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "overruns");
    const uint8_t more_unknown[] = {3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 1, 'x'};
    ASSERT_EQ(decode1(more_unknown, sizeof more_unknown, 0, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "not started");
    const uint8_t first_twice[] = {2, 0, 0, 0, 7, 0, 0, 0, 9, 0, 1, 'x', 2, 0, 0, 0, 7, 0, 0, 0, 9, 0, 1, 'x'};
    ASSERT_EQ(decode1(first_twice, sizeof first_twice, 0, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "started twice");
    const uint8_t bad_off[] = {2, 0, 0, 0, 7, 0, 0, 0, 9, 0, 1, 'x', 3, 0, 0, 0, 7, 0, 0, 0, 2, 0, 1, 'y'};
    ASSERT_EQ(decode1(bad_off, sizeof bad_off, 0, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "expected 1");
    const uint8_t overlong[] = {2, 0, 0, 0, 7, 0, 0, 0, 2, 0, 1, 'x', 3, 0, 0, 0, 7, 0, 0, 0, 1, 0, 2, 'y', 'z'};
    ASSERT_EQ(decode1(overlong, sizeof overlong, 0, &em), UQ_ECORRUPT);
    const uint8_t whole_as_first[] = {2, 0, 0, 0, 7, 0, 0, 0, 1, 0, 1, 'x'};
    ASSERT_EQ(decode1(whole_as_first, sizeof whole_as_first, 0, &em), UQ_ECORRUPT);
    const uint8_t empty_chunk[] = {2, 0, 0, 0, 7, 0, 0, 0, 5, 0, 0};
    ASSERT_EQ(decode1(empty_chunk, sizeof empty_chunk, 0, &em), UQ_ECORRUPT);
    const uint8_t huge[] = {2, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0, 1, 'x'};
    ASSERT_EQ(decode1(huge, sizeof huge, 0, &em), UQ_ELIMIT);
    ASSERT_STR_HAS(em.text, "exceeds");
    const uint8_t small_limit[] = {1, 0, 5, 'a', 'b', 'c', 'd', 'e'};
    ASSERT_EQ(decode1(small_limit, sizeof small_limit, 4, &em), UQ_ELIMIT);
    /* too many chunked messages open at once */
    uint8_t many[(UQN_PARTIAL_MAX + 1) * 12];
    for (unsigned i = 0; i <= UQN_PARTIAL_MAX; i++) {
        uint8_t r[12] = {2, 0, 0, 0, (uint8_t)i, 0, 0, 0, 9, 0, 1, 'x'};
        memcpy(many + 12 * i, r, 12);
    }
    ASSERT_EQ(decode1(many, sizeof many, 0, &em), UQ_ELIMIT);
    ASSERT_EQ(decode1(many, sizeof many - 12, 0, &em), UQ_OK);
}

TEST(net_frame_tampered_or_replayed_refused)
{
    uqn_cipher tx = {{0}, 0, true}, rx;
    randombytes_buf(tx.k, 32);
    rx = tx;
    uqn_fenc enc;
    uqn_fenc_init(&enc);
    uq_errmsg em = {{0}};
    uint8_t big[100000];
    randombytes_buf(big, sizeof big);
    ASSERT_EQ(uqn_fenc_push(&enc, big, sizeof big, &em), UQ_OK);
    stream s = {0};
    encode_all(&enc, &tx, &s);
    ASSERT_EQ(s.frames, 2);
    size_t f1 = 2 + ((size_t)s.p[0] << 8 | s.p[1]);
    /* each byte of the first frame's ciphertext, flipped, is refused */
    for (size_t i = 2; i < f1; i += 997) {
        uqn_fdec dec;
        tn_inbox in = {0};
        uqn_fdec_init(&dec, 0, tn_deliver, &in);
        uqn_cipher r = rx;
        s.p[i] ^= 4;
        ASSERT_EQ(uqn_fdec_feed(&dec, &r, s.p, s.n, &em), UQ_ECRYPTO);
        ASSERT_STR_HAS(em.text, "frame 1 failed authentication");
        s.p[i] ^= 4;
        ASSERT_EQ(in.n, 0);
        uqn_fdec_fini(&dec);
    }
    /* and of the second, a later chunk decrypted straight into the
     * reassembly buffer (its header, its data, its tag): refused, nothing
     * delivered, split anywhere or not */
    size_t second[] = {f1 + 2, f1 + 3, f1 + 8, f1 + 12, f1 + 13, f1 + 5000, s.n - 17, s.n - 1};
    for (size_t k = 0; k < sizeof second / sizeof second[0]; k++) {
        for (int split = 0; split < 2; split++) {
            uqn_fdec dec;
            tn_inbox in = {0};
            uqn_fdec_init(&dec, 0, tn_deliver, &in);
            uqn_cipher r = rx;
            s.p[second[k]] ^= 0x40;
            uq_err e = split ? feed_random(&dec, &r, &s, &em) : uqn_fdec_feed(&dec, &r, s.p, s.n, &em);
            ASSERT_EQ(e, UQ_ECRYPTO);
            ASSERT_STR_HAS(em.text, "frame 2 failed authentication");
            s.p[second[k]] ^= 0x40;
            ASSERT_EQ(in.n, 0);
            uqn_fdec_fini(&dec);
        }
    }
    /* the frames swapped, or the first replayed */
    uqn_fdec dec;
    tn_inbox in = {0};
    uqn_fdec_init(&dec, 0, tn_deliver, &in);
    uqn_cipher r = rx;
    ASSERT_EQ(uqn_fdec_feed(&dec, &r, s.p + f1, s.n - f1, &em), UQ_ECRYPTO);
    uqn_fdec_fini(&dec);
    uqn_fdec_init(&dec, 0, tn_deliver, &in);
    r = rx;
    ASSERT_EQ(uqn_fdec_feed(&dec, &r, s.p, f1, &em), UQ_OK);
    ASSERT_EQ(uqn_fdec_feed(&dec, &r, s.p, f1, &em), UQ_ECRYPTO);
    uqn_fdec_fini(&dec);
    /* a frame shorter than a tag */
    uqn_fdec_init(&dec, 0, tn_deliver, &in);
    r = rx;
    const uint8_t tiny[] = {0, 3, 1, 2, 3};
    ASSERT_EQ(uqn_fdec_feed(&dec, &r, tiny, sizeof tiny, &em), UQ_ECORRUPT);
    uqn_fdec_fini(&dec);
    tn_inbox_free(&in);
    free(s.p);
    uqn_fenc_fini(&enc);
}
