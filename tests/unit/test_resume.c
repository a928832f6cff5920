/* Link resumption in memory (docs/PROTOCOL.md, "Resumption"): a link made
 * with XX leaves a ticket on both sides; the next dial resumes with it
 * (NNpsk0), and so on; a ticket the responder does not hold (restarted,
 * used, expired) falls back to XX on the same connection; a forged or
 * replayed attempt never gives an established link; a peer whose key the
 * directory no longer gives cannot resume. */
#include <time.h>

#include "integ/tnet.h"

typedef struct side {
    uqn_identity id;
    uqn_dir *dir;
    uqn_tickets *t;
    tn_inbox in;
} side;

static void side_init(side *s, const char *name, int variant)
{
    memset(s, 0, sizeof *s);
    tn_identity(name, variant, &s->id);
    s->dir = uqn_dir_new();
    s->t = uqn_tickets_new(0, 0);
}

static void side_fini(side *s)
{
    uqn_dir_free(s->dir);
    uqn_tickets_free(s->t);
    tn_inbox_free(&s->in);
}

/* Both directories know alice and bob (bob's dir may be given another key
 * for alice by the test). */
static void both_know(side *a, side *b)
{
    tn_dir_add(a->dir, &a->id, NULL);
    tn_dir_add(a->dir, &b->id, "127.0.0.1:9000");
    tn_dir_add(b->dir, &a->id, NULL);
    tn_dir_add(b->dir, &b->id, "127.0.0.1:9000");
}

static uqn_link *mk(side *s, bool initiator, const char *dial)
{
    uq_errmsg em = {{0}};
    uqn_link_cfg c = {.id = &s->id, .initiator = initiator, .expect_name = dial, .lookup = uqn_dir_lookup,
                      .lookup_arg = s->dir, .deliver = tn_deliver, .deliver_arg = &s->in, .tickets = s->t};
    uqn_link *l;
    ASSERT_EQ(uqn_link_new(&c, &l, &em), UQ_OK);
    return l;
}

/* The bytes of l's pending output (copied), drained. */
static size_t take_out(uqn_link *l, uint8_t *buf, size_t cap)
{
    const uint8_t *p;
    size_t n, got = 0;
    while ((n = uqn_link_output(l, &p)) > 0) {
        ASSERT(got + n <= cap);
        memcpy(buf + got, p, n);
        uqn_link_output_done(l, n);
        got += n;
    }
    return got;
}

/* One link a -> b, pumped to the end; returns whether it resumed (both
 * sides must agree), and checks a message each way. */
static bool connect_once(side *a, side *b)
{
    uqn_link *la = mk(a, true, "bob.dev"), *lb = mk(b, false, NULL);
    uq_errmsg em = {{0}};
    char which = 0;
    size_t na = a->in.n, nb = b->in.n;
    ASSERT_EQ(uqn_link_send(la, "from alice", 10, &em), UQ_OK);
    ASSERT_EQ(tn_pump(la, lb, &which, &em), UQ_OK);
    ASSERT(uqn_link_established(la) && uqn_link_established(lb));
    ASSERT(strcmp(uqn_link_peer(lb)->name, "alice.dev") == 0 && memcmp(uqn_link_peer(lb)->pk, a->id.pk, 32) == 0);
    ASSERT(strcmp(uqn_link_peer(la)->name, "bob.dev") == 0 && memcmp(uqn_link_peer(la)->pk, b->id.pk, 32) == 0);
    ASSERT_EQ(uqn_link_send(lb, "from bob", 8, &em), UQ_OK);
    ASSERT_EQ(tn_pump(la, lb, &which, &em), UQ_OK);
    bool resumed = uqn_link_resumed(la);
    ASSERT_EQ(uqn_link_resumed(lb), resumed);
    /* a resumed link also carries an empty message (alice's key
     * confirmation, queued behind what waited) */
    ASSERT_EQ(b->in.n, nb + (resumed ? 2 : 1));
    ASSERT(b->in.lens[nb] == 10 && memcmp(b->in.msgs[nb], "from alice", 10) == 0);
    if (resumed) ASSERT_EQ(b->in.lens[nb + 1], 0);
    ASSERT_EQ(a->in.n, na + 1);
    ASSERT(a->in.lens[na] == 8 && memcmp(a->in.msgs[na], "from bob", 8) == 0);
    uqn_link_free(la);
    uqn_link_free(lb);
    return resumed;
}

TEST(net_resume_after_xx_then_chained)
{
    side a, b;
    side_init(&a, "alice.dev", 0);
    side_init(&b, "bob.dev", 0);
    both_know(&a, &b);
    ASSERT(!connect_once(&a, &b)); /* first contact: XX */
    ASSERT_EQ(uqn_tickets_count(a.t), 1);
    ASSERT_EQ(uqn_tickets_count(b.t), 1);
    for (int i = 0; i < 3; i++) { /* each resumption leaves the next ticket */
        ASSERT(connect_once(&a, &b));
        ASSERT_EQ(uqn_tickets_count(a.t), 1);
        ASSERT_EQ(uqn_tickets_count(b.t), 1);
    }
    /* the messages: alice's attempt is 2 + 64 bytes, bob's answer 2 + 48
     * and bob counts the link up only once alice's first frame authenticates */
    uqn_link *la = mk(&a, true, "bob.dev"), *lb = mk(&b, false, NULL);
    uint8_t buf[4096];
    uq_errmsg em = {{0}};
    size_t n = take_out(la, buf, sizeof buf);
    ASSERT_EQ(n, 2 + 64);
    ASSERT(buf[0] == 0 && buf[1] == 64);
    ASSERT_EQ(uqn_link_input(lb, buf, n, &em), UQ_OK);
    ASSERT(!uqn_link_established(lb) && uqn_link_peer(lb) == NULL);
    n = take_out(lb, buf, sizeof buf);
    ASSERT_EQ(n, 2 + 48);
    ASSERT_EQ(uqn_link_input(la, buf, n, &em), UQ_OK);
    ASSERT(uqn_link_established(la) && uqn_link_resumed(la));
    ASSERT_EQ(uqn_tickets_count(a.t), 1); /* alice keeps the next ticket at once */
    ASSERT_EQ(uqn_tickets_count(b.t), 0); /* bob once confirmed */
    n = take_out(la, buf, sizeof buf);    /* the empty confirmation frame */
    ASSERT(n > 0);
    ASSERT_EQ(uqn_link_input(lb, buf, n, &em), UQ_OK);
    ASSERT(uqn_link_established(lb) && uqn_link_resumed(lb));
    ASSERT_EQ(uqn_tickets_count(b.t), 1);
    uqn_link_free(la);
    uqn_link_free(lb);
    ASSERT(connect_once(&a, &b));
    side_fini(&a);
    side_fini(&b);
}

TEST(net_resume_unknown_used_or_expired_ticket_falls_back_to_xx)
{
    side a, b;
    side_init(&a, "alice.dev", 0);
    side_init(&b, "bob.dev", 0);
    both_know(&a, &b);
    ASSERT(!connect_once(&a, &b));
    /* bob restarted: his tickets are gone; alice's attempt gets XX, same connection */
    uqn_tickets_free(b.t);
    b.t = uqn_tickets_new(0, 0);
    ASSERT(!connect_once(&a, &b));
    ASSERT(connect_once(&a, &b)); /* and the XX left new tickets */

    /* a used ticket: the same attempt replayed to bob falls back (XX answer, nothing established) */
    uqn_link *la = mk(&a, true, "bob.dev"), *lb = mk(&b, false, NULL);
    uint8_t m1[256], buf[4096];
    uq_errmsg em = {{0}};
    size_t n1 = take_out(la, m1, sizeof m1);
    ASSERT_EQ(n1, 66);
    char which = 0;
    ASSERT_EQ(uqn_link_input(lb, m1, n1, &em), UQ_OK);
    ASSERT_EQ(tn_pump(la, lb, &which, &em), UQ_OK);
    ASSERT(uqn_link_resumed(la) && uqn_link_established(lb));
    uqn_link *lr = mk(&b, false, NULL);
    ASSERT_EQ(uqn_link_input(lr, m1, n1, &em), UQ_OK);
    size_t n = take_out(lr, buf, sizeof buf);
    ASSERT(n > 2 + 48); /* XX message 2 (with bob's hello), not a resumption's answer */
    ASSERT(!uqn_link_established(lr));
    uqn_link_free(lr);
    uqn_link_free(la);
    uqn_link_free(lb);

    /* a ticket expired at the responder: XX */
    uqn_tickets_free(b.t);
    b.t = uqn_tickets_new(0, 1000000); /* 1 ms */
    ASSERT(!connect_once(&a, &b)); /* alice's ticket was in bob's old store: XX */
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    ASSERT_EQ(uqn_tickets_count(a.t), 1);
    ASSERT(!connect_once(&a, &b));
    /* and at the dialer: no attempt at all (XX message 1 is 2 + 32 bytes) */
    uqn_tickets_free(a.t);
    a.t = uqn_tickets_new(0, 1000000);
    uqn_tickets_free(b.t);
    b.t = uqn_tickets_new(0, 0);
    ASSERT(!connect_once(&a, &b));
    nanosleep(&ts, NULL);
    la = mk(&a, true, "bob.dev");
    ASSERT_EQ(take_out(la, buf, sizeof buf), 2 + 32);
    uqn_link_free(la);
    side_fini(&a);
    side_fini(&b);
}

TEST(net_resume_forged_replayed_or_wrong_key_refused)
{
    side a, b, e;
    side_init(&a, "alice.dev", 0);
    side_init(&b, "bob.dev", 0);
    both_know(&a, &b);
    ASSERT(!connect_once(&a, &b));
    uq_errmsg em = {{0}};
    uint8_t m1[256], buf[4096];

    /* a flipped byte in the attempt (e or tag): bob holds the ticket, the
     * message does not authenticate under it: refused, final */
    static const int flip[2] = {2 + 16 + 3, 2 + 16 + 32 + 9}; /* in e, in the tag */
    for (int k = 0; k < 2; k++) {
        int at = flip[k];
        ASSERT(connect_once(&a, &b)); /* and a fresh pair of tickets */
        uqn_link *la = mk(&a, true, "bob.dev"), *lb = mk(&b, false, NULL);
        size_t n1 = take_out(la, m1, sizeof m1);
        ASSERT_EQ(n1, 66);
        m1[at] ^= 0x04;
        ASSERT_EQ(uqn_link_input(lb, m1, n1, &em), UQ_ECRYPTO);
        test_log("flipped byte %d: %s", at, em.text);
        ASSERT(strstr(em.text, "resumption") != NULL);
        ASSERT(!uqn_link_established(lb));
        uqn_link_free(la);
        uqn_link_free(lb);
        ASSERT(!connect_once(&a, &b)); /* both tickets are spent: XX again, which works */
    }

    /* eve saw a ticket id on the wire and tries it without the secret */
    ASSERT(connect_once(&a, &b));
    uqn_link *la = mk(&a, true, "bob.dev");
    size_t n1 = take_out(la, m1, sizeof m1);
    uqn_link_free(la);
    side_init(&e, "alice.dev", 1); /* eve claims alice's name, with her own key */
    tn_dir_add(e.dir, &b.id, "127.0.0.1:9000");
    uqn_ticket stolen;
    memset(&stolen, 0, sizeof stolen);
    memcpy(stolen.id, m1 + 2, 16);
    randombytes_buf(stolen.psk, 32);
    snprintf(stolen.name, sizeof stolen.name, "bob.dev");
    memcpy(stolen.pk, b.id.pk, 32);
    uqn_tickets_put(e.t, &stolen, uqi_now_ns());
    uqn_link *le = mk(&e, true, "bob.dev"), *lb = mk(&b, false, NULL);
    size_t n = take_out(le, buf, sizeof buf);
    ASSERT_EQ(n, 66);
    ASSERT(memcmp(buf + 2, m1 + 2, 16) == 0);
    ASSERT_EQ(uqn_link_input(lb, buf, n, &em), UQ_ECRYPTO);
    ASSERT(!uqn_link_established(lb));
    uqn_link_free(le);
    uqn_link_free(lb);

    /* an attempt bob holds the ticket of, sent by someone who cannot go on
     * (a replay of alice's bytes, before alice's own): answered, but bob
     * never counts that link up, since no frame of the sender's can
     * authenticate */
    ASSERT(!connect_once(&a, &b)); /* the stolen id burned bob's ticket: XX */
    la = mk(&a, true, "bob.dev");
    n1 = take_out(la, m1, sizeof m1);
    lb = mk(&b, false, NULL);
    ASSERT_EQ(uqn_link_input(lb, m1, n1, &em), UQ_OK);
    n = take_out(lb, buf, sizeof buf);
    ASSERT_EQ(n, 2 + 48);
    ASSERT(!uqn_link_established(lb));
    uint8_t junk[40] = {0, 38};
    randombytes_buf(junk + 2, 38);
    ASSERT_EQ(uqn_link_input(lb, junk, sizeof junk, &em), UQ_ECRYPTO);
    ASSERT(!uqn_link_established(lb));
    uqn_link_free(la);
    uqn_link_free(lb);

    /* the directory now gives alice another key: bob's ticket for her is
     * void, the attempt falls back to XX, and XX refuses the old key */
    ASSERT(!connect_once(&a, &b));
    ASSERT_EQ(uqn_tickets_count(b.t), 1);
    uqn_dir_free(b.dir);
    b.dir = uqn_dir_new();
    tn_dir_add(b.dir, &e.id, NULL); /* "alice.dev" is now eve's key */
    tn_dir_add(b.dir, &b.id, "127.0.0.1:9000");
    la = mk(&a, true, "bob.dev");
    lb = mk(&b, false, NULL);
    char which = 0;
    ASSERT_EQ(tn_pump(la, lb, &which, &em), UQ_ECRYPTO);
    test_log("old key after the directory changed: %s", em.text);
    ASSERT(!uqn_link_established(lb) && !uqn_link_resumed(lb));
    uqn_link_free(la);
    uqn_link_free(lb);
    side_fini(&e);
    side_fini(&a);
    side_fini(&b);
}
