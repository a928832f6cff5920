/* Links in memory: the full XX handshake with identity payloads, transport
 * both ways, and the refusals (wrong key, unknown node, tampered bytes). */
#include "integ/tnet.h"

typedef struct pair {
    uqn_identity ia, ib;
    uqn_dir *da, *db;        /* what each side's directory says */
    tn_inbox ina, inb;
    uqn_link *a, *b;         /* a dials b */
} pair;

static void pair_links(pair *p, const char *dial)
{
    uq_errmsg em = {{0}};
    uqn_link_cfg ca = {.id = &p->ia, .initiator = true, .expect_name = dial, .lookup = uqn_dir_lookup,
                       .lookup_arg = p->da, .deliver = tn_deliver, .deliver_arg = &p->ina};
    uqn_link_cfg cb = {.id = &p->ib, .initiator = false, .lookup = uqn_dir_lookup, .lookup_arg = p->db,
                       .deliver = tn_deliver, .deliver_arg = &p->inb};
    ASSERT_EQ(uqn_link_new(&ca, &p->a, &em), UQ_OK);
    ASSERT_EQ(uqn_link_new(&cb, &p->b, &em), UQ_OK);
}

/* alice and bob, each directory knowing both. */
static void pair_init(pair *p)
{
    memset(p, 0, sizeof *p);
    tn_identity("alice.dev", 0, &p->ia);
    tn_identity("bob.dev", 0, &p->ib);
    p->da = uqn_dir_new();
    p->db = uqn_dir_new();
    tn_dir_add(p->da, &p->ia, NULL);
    tn_dir_add(p->da, &p->ib, "127.0.0.1:9000");
    tn_dir_add(p->db, &p->ia, NULL);
    tn_dir_add(p->db, &p->ib, "127.0.0.1:9000");
}

static void pair_fini(pair *p)
{
    uqn_link_free(p->a);
    uqn_link_free(p->b);
    uqn_dir_free(p->da);
    uqn_dir_free(p->db);
    tn_inbox_free(&p->ina);
    tn_inbox_free(&p->inb);
}

TEST(net_link_handshake_and_transport_both_ways)
{
    pair p;
    pair_init(&p);
    pair_links(&p, "bob.dev");
    uq_errmsg em = {{0}};
    /* alice queues before the handshake is done: sent once it is */
    ASSERT_EQ(uqn_link_send(p.a, "early", 5, &em), UQ_OK);
    ASSERT(!uqn_link_established(p.a) && uqn_link_peer(p.a) == NULL);
    char which = 0;
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_OK);
    ASSERT(uqn_link_established(p.a) && uqn_link_established(p.b));
    ASSERT(strcmp(uqn_link_peer(p.a)->name, "bob.dev") == 0);
    ASSERT(strcmp(uqn_link_peer(p.b)->name, "alice.dev") == 0);
    ASSERT(memcmp(uqn_link_peer(p.b)->pk, p.ia.pk, 32) == 0);
    ASSERT_EQ(p.inb.n, 1);
    ASSERT(p.inb.lens[0] == 5 && memcmp(p.inb.msgs[0], "early", 5) == 0);
    /* both ways at once: a large and small messages each way */
    size_t big = 3u << 20;
    uint8_t *x = malloc(big), *y = malloc(big);
    randombytes_buf(x, big);
    randombytes_buf(y, big);
    for (int i = 0; i < 50; i++) {
        char s[32];
        int n = snprintf(s, sizeof s, "a->b %d", i);
        ASSERT_EQ(uqn_link_send(p.a, s, (size_t)n, &em), UQ_OK);
        n = snprintf(s, sizeof s, "b->a %d", i);
        ASSERT_EQ(uqn_link_send(p.b, s, (size_t)n, &em), UQ_OK);
        if (i == 25) {
            ASSERT_EQ(uqn_link_send(p.a, x, big, &em), UQ_OK);
            ASSERT_EQ(uqn_link_send(p.b, y, big, &em), UQ_OK);
        }
    }
    ASSERT(uqn_link_queued(p.a) > big);
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_OK);
    ASSERT_EQ(uqn_link_queued(p.a), 0);
    ASSERT_EQ(p.inb.n, 1 + 51);
    ASSERT_EQ(p.ina.n, 51);
    ASSERT(memcmp(p.inb.msgs[1 + 26], x, big) == 0 && p.inb.lens[27] == big);
    ASSERT(memcmp(p.ina.msgs[26], y, big) == 0);
    ASSERT(memcmp(p.ina.msgs[50], "b->a 49", 7) == 0);
    free(x);
    free(y);
    pair_fini(&p);
}

TEST(net_link_wrong_static_key_refused)
{
    /* bob's directory has alice's real key; the caller has another key
     * under alice's name: bob refuses at message 3 */
    pair p;
    pair_init(&p);
    uqn_identity_wipe(&p.ia);
    tn_identity("alice.dev", 7, &p.ia);
    tn_dir_add(p.da, &p.ia, NULL); /* alice's own directory: her new key */
    pair_links(&p, "bob.dev");
    uq_errmsg em = {{0}};
    char which = 0;
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_ECRYPTO);
    ASSERT_EQ(which, 'b');
    ASSERT_STR_HAS(em.text, "the directory says");
    ASSERT(!uqn_link_established(p.b));
    ASSERT_EQ(uqn_link_error(p.b), UQ_ECRYPTO);
    ASSERT_EQ(uqn_link_input(p.b, (const uint8_t *)"x", 1, &em), UQ_ECRYPTO); /* stays failed */
    pair_fini(&p);

    /* alice dials bob, but the responder is someone else holding another
     * key for "bob.dev": alice refuses at message 2 */
    pair_init(&p);
    uqn_identity_wipe(&p.ib);
    tn_identity("bob.dev", 3, &p.ib);
    pair_links(&p, "bob.dev");
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_ECRYPTO);
    ASSERT_EQ(which, 'a');
    ASSERT_STR_HAS(em.text, "claiming to be bob.dev has key");
    pair_fini(&p);

    /* alice dials carol.dev but reaches bob */
    pair_init(&p);
    pair_links(&p, "carol.dev");
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "dialed carol.dev but the peer is bob.dev");
    pair_fini(&p);

    /* a caller bob's directory does not know */
    pair_init(&p);
    uqn_dir_free(p.db);
    p.db = uqn_dir_new();
    tn_dir_add(p.db, &p.ib, NULL);
    pair_links(&p, "bob.dev");
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_ENOENT);
    ASSERT_STR_HAS(em.text, "alice.dev is not in the directory");
    pair_fini(&p);
}

TEST(net_link_hello_must_sign_the_noise_key)
{
    uqn_identity a;
    tn_identity("alice.dev", 0, &a);
    uint8_t hello[UQN_HELLO_MAX], other[32];
    size_t n = uqn_hello_encode(&a, hello);
    uqn_peer peer;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_hello_decode(hello, n, a.x_pk, &peer, &em), UQ_OK);
    ASSERT(strcmp(peer.name, "alice.dev") == 0);
    /* replayed over a handshake with another static key */
    randombytes_buf(other, 32);
    ASSERT_EQ(uqn_hello_decode(hello, n, other, &peer, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "did not sign its Noise key");
    /* the name changed (signed too) */
    hello[2] = 'x';
    ASSERT_EQ(uqn_hello_decode(hello, n, a.x_pk, &peer, &em), UQ_ECRYPTO);
    hello[2] = 'a';
    hello[0] = 2;
    ASSERT_EQ(uqn_hello_decode(hello, n, a.x_pk, &peer, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "version 2");
    hello[0] = 1;
    ASSERT_EQ(uqn_hello_decode(hello, n - 1, a.x_pk, &peer, &em), UQ_ECORRUPT);
}

/* Run the handshake with one byte of the k-th output chunk flipped. */
static uq_err tampered_run(int chunk, long at, char *which, uq_errmsg *em)
{
    pair p;
    pair_init(&p);
    pair_links(&p, "bob.dev");
    ASSERT_EQ(uqn_link_send(p.a, "payload", 7, em), UQ_OK);
    uq_err e = UQ_OK;
    size_t moved;
    for (int k = 0; k < 8 && !e; k++) {
        uqn_link *from = k % 2 == 0 ? p.a : p.b, *to = k % 2 == 0 ? p.b : p.a;
        e = tn_move(from, to, k == chunk ? at : -1, &moved, em);
        *which = to == p.a ? 'a' : 'b';
    }
    if (!e) ASSERT_EQ(p.inb.n, 1);
    pair_fini(&p);
    return e;
}

TEST(net_link_tampered_bytes_refused)
{
    uq_errmsg em = {{0}};
    char which;
    ASSERT_EQ(tampered_run(-1, 0, &which, &em), UQ_OK);
    /* message 1 (a->b), 2 (b->a), 3 + the first frame (a->b) */
    ASSERT_EQ(tampered_run(0, 10, &which, &em), UQ_ECRYPTO); /* e altered: DH differs, msg 2 fails */
    ASSERT_EQ(which, 'a');
    ASSERT_EQ(tampered_run(1, 60, &which, &em), UQ_ECRYPTO);
    ASSERT_EQ(which, 'a');
    ASSERT_STR_HAS(em.text, "handshake message 2 failed authentication");
    ASSERT_EQ(tampered_run(2, 40, &which, &em), UQ_ECRYPTO);
    ASSERT_EQ(which, 'b');
    /* the length prefix of message 3 altered: the frame boundaries break */
    ASSERT(tampered_run(2, 1, &which, &em) != UQ_OK);
    /* the transport frame after message 3: message 3 is 2+48+161+16 bytes */
    long frame_at = 2 + 48 + (2 + 9 + 32 + 64) + 16 + 2 + 5;
    ASSERT_EQ(tampered_run(2, frame_at, &which, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "frame 1 failed authentication");
}

/* The dialer's precomputed es (uqn_link_precompute: the dialed node's
 * X25519 key from its directory key, remembered process-wide, then the
 * X25519) changes nothing but when the work is done: the link comes up the
 * same, the second time with the key remembered; and when the responder
 * holds another key under the dialed name, it is not used and the link is
 * refused as without it. */
TEST(net_link_precompute_changes_only_the_timing)
{
    for (int round = 0; round < 2; round++) {
        pair p;
        pair_init(&p);
        pair_links(&p, "bob.dev");
        uqn_link_precompute(p.a); /* message 1 is written */
        uqn_link_precompute(p.a); /* once only: a no-op */
        uq_errmsg em = {{0}};
        ASSERT_EQ(uqn_link_send(p.a, "first", 5, &em), UQ_OK);
        char which = 0;
        ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_OK);
        ASSERT(uqn_link_established(p.a) && uqn_link_established(p.b));
        ASSERT(strcmp(uqn_link_peer(p.a)->name, "bob.dev") == 0);
        ASSERT_EQ(p.inb.n, 1);
        ASSERT(p.inb.lens[0] == 5 && memcmp(p.inb.msgs[0], "first", 5) == 0);
        ASSERT_EQ(uqn_link_send(p.b, "back", 4, &em), UQ_OK);
        ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_OK);
        ASSERT(p.ina.n == 1 && p.ina.lens[0] == 4 && memcmp(p.ina.msgs[0], "back", 4) == 0);
        uqn_link_precompute(p.a); /* established: a no-op */
        pair_fini(&p);
    }
    pair p;
    pair_init(&p);
    uqn_identity_wipe(&p.ib);
    tn_identity("bob.dev", 3, &p.ib); /* not the key alice's directory has */
    pair_links(&p, "bob.dev");
    uqn_link_precompute(p.a);
    uq_errmsg em = {{0}};
    char which = 0;
    ASSERT_EQ(tn_pump(p.a, p.b, &which, &em), UQ_ECRYPTO);
    ASSERT_EQ(which, 'a');
    ASSERT_STR_HAS(em.text, "claiming to be bob.dev has key");
    pair_fini(&p);
}
