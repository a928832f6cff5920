/* Directory look-ups between peers (docs/PROTOCOL.md §8), on loopback with
 * real net modules: a.node is a real kernel with its net module and a port
 * "tester" standing for a process; the other nodes are bare net modules the
 * test drives (they answer look-ups by themselves, or, with look-ups off,
 * hand the raw look-up messages to the test so it can lie). */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "kernel/remote.h"
#include "knode.h"
#include "net/netmod.h"
#include "tnet.h"
#include "tpeer.h"
#include "util/util.h"

/* ---- a bare node (tpeer.h), with the look-up timeouts of a.node --------- */
static void lp_start(rawpeer *lp, const char *listen, bool lookup_off)
{
    lp->opt.send_timeout_ms = 2000, lp->opt.lookup_timeout_ms = 1000, lp->opt.lookup_off = lookup_off;
    rp_start(lp, listen, NULL);
}

static void lp_new(rawpeer *lp, const char *name, bool lookup_off)
{
    rp_init(lp, name, 0);
    lp_start(lp, NULL, lookup_off);
}

static uqn_record rec_of(uqn_net *net)
{
    uqn_record r;
    uqn_net_own_record(net, &r);
    ASSERT(r.name[0]);
    return r;
}

/* Write a directory file holding the records given (NULL-terminated). */
static void write_dir(const char *path, const uqn_record *const *recs)
{
    uqn_dir *d = uqn_dir_new();
    for (; *recs; recs++) ASSERT_EQ(uqn_dir_put(d, *recs, UQN_SRC_FILE, NULL), UQ_OK);
    ASSERT_EQ(uqn_dir_save(d, path, NULL), UQ_OK);
    uqn_dir_free(d);
    usleep(20000); /* a later rewrite gets another mtime */
}

/* ---- a.node: a kernel and its net module ----------------------------------- */
typedef struct anode {
    uqi_node *n;
    uqn_identity id;
    uqn_net *net;
    uqi_kproc *port;
    char dir[1200], learned[1200];
} anode;

static void a_net(anode *a)
{
    a->net = kn_net_start(a->n, (uqn_net_cfg){.id = &a->id, .listen = "127.0.0.1:0", .dir_path = a->dir,
                                              .learned_path = a->learned, .send_timeout_ms = 2000,
                                              .lookup_timeout_ms = 1000, .backoff_min_ms = 20, .backoff_max_ms = 100});
    uqi_node_set_net(a->n, a->net);
}

static void a_net_stop(anode *a)
{
    uqi_node_set_net(a->n, NULL);
    uqn_net_stop(a->net);
    a->net = NULL;
}

static void a_start(anode *a)
{
    memset(a, 0, sizeof *a);
    snprintf(a->dir, sizeof a->dir, "%s/a.peers", tb_tmpdir());
    snprintf(a->learned, sizeof a->learned, "%s/a.learned", tb_tmpdir());
    tn_identity("a.node", 0, &a->id);
    a->n = kn_boot_as("a.node", a->id.sk, 2);
    a_net(a);
    ASSERT_EQ(uqi_node_port(a->n, "tester", &a->port, NULL), UQ_OK);
}

static void a_stop(anode *a)
{
    if (a->net) a_net_stop(a);
    uqi_node_stop(a->n);
}

static uint64_t a_send(anode *a, const char *target, const char *body, const char *ctx)
{
    return kn_send(a->port, "a.node", target, body, 10, ctx, NULL, UQ_OK);
}

/* The request arrived at lp: answer it from there; a's port gets the response. */
static void answer_back(anode *a, rawpeer *lp, uint64_t id, const char *ctx)
{
    uqi_msg *in = rp_wait(lp, 5000);
    ASSERT(in != NULL);
    ASSERT(in->id == id && strcmp(in->source.node, "a.node") == 0);
    uqi_msg *r = uqi_msg_new(UQI_MSG_RESPONSE, "\"pong\"", 6);
    r->id = id;
    snprintf(r->source.process, sizeof r->source.process, "srv");
    snprintf(r->target.process, sizeof r->target.process, "tester");
    uint8_t *b;
    size_t len;
    ASSERT_EQ(uqi_wire_encode(r, false, &b, &len, NULL), UQ_OK);
    ASSERT_EQ(uqn_net_send(lp->net, "a.node", b, len, NULL, NULL), UQ_OK);
    uqi_msg_free(r);
    uqi_msg_free(in);
    uqi_msg *got = uqi_port_receive(a->port, 5000);
    ASSERT(got != NULL);
    if (got->kind != UQI_MSG_RESPONSE) test_fail(__FILE__, __LINE__, "kind %d error %u", got->kind, got->error);
    ASSERT(got->id == id && kn_body_is(got, "\"pong\"") && kn_ctx_is(got, ctx));
    ASSERT(strcmp(got->source.node, lp->id.name) == 0);
    uqi_msg_free(got);
}

/* The request comes back Offline, with its body and context. */
static void expect_offline(anode *a, uint64_t id, const char *body, const char *ctx)
{
    uqi_msg *e = uqi_port_receive(a->port, 5000);
    ASSERT(e != NULL);
    if (e->kind != UQI_MSG_ERROR || e->error != UQI_SEND_OFFLINE)
        test_fail(__FILE__, __LINE__, "kind %d error %u, want Offline", e->kind, e->error);
    ASSERT(e->id == id && kn_body_is(e, body) && kn_ctx_is(e, ctx));
    uqi_msg_free(e);
}

static char *file_text(const char *path)
{
    uint8_t *b;
    size_t n;
    if (uqi_read_file(path, &b, &n, NULL)) return uqi_xstrdup("");
    char *s = kn_str(b, n);
    free(b);
    return s;
}

/* ---- tests ------------------------------------------------------------------- */

/* A knows only B, B knows C (and A), C knows only B: a message from A to C
 * is delivered after B answers A's look-up (and C's, for A, when A's link
 * arrives), and C's response comes back with its context. The
 * record is kept in A's learned file (apart from its directory file) and
 * serves after a restart without asking anyone; when C moves (a new
 * address, a higher sequence), A refreshes the record from B. */
TEST_T(net_lookup_a_learns_c_from_b_persists_and_refreshes, 90)
{
    anode a;
    a_start(&a);
    rawpeer b, c;
    lp_new(&b, "b.node", false);
    lp_new(&c, "c.node", false);
    uqn_record ra = rec_of(a.net), rb = rec_of(b.net), rc = rec_of(c.net);
    write_dir(a.dir, (const uqn_record *[]){&rb, NULL});
    write_dir(b.dir, (const uqn_record *[]){&ra, &rb, &rc, NULL});
    write_dir(c.dir, (const uqn_record *[]){&rb, &rc, NULL}); /* C does not know A either */

    uint64_t t0 = uqi_now_ns();
    uint64_t id = a_send(&a, "c.node@srv", "{\"to\":\"c\"}", "via-b");
    answer_back(&a, &c, id, "via-b");
    test_log("first round trip to a node found by look-up (two link set-ups): %.1f ms",
             (double)(uqi_now_ns() - t0) / 1e6);
    uqn_lk_stats st, sb, sc;
    uqn_net_lookup_stats(a.net, &st);
    uqn_net_lookup_stats(b.net, &sb);
    uqn_net_lookup_stats(c.net, &sc);
    ASSERT_EQ(sc.found, 1); /* C held A's link until B told it A's key */
    ASSERT_EQ(st.started, 1);
    ASSERT_EQ(st.found, 1);
    ASSERT_EQ(st.learned, 1);
    ASSERT(sb.served >= 1);
    char hex[65];
    uqn_hex(c.id.pk, 32, hex);
    char *learned = file_text(a.learned);
    ASSERT_STR_HAS(learned, hex);
    ASSERT_STR_HAS(learned, "learned-from b.node");
    free(learned);
    char *dirf = file_text(a.dir);
    ASSERT_STR_LACKS(dirf, "c.node"); /* the operator's file is not touched */
    free(dirf);
    /* the next message goes straight there */
    id = a_send(&a, "c.node@srv", "2", "again");
    answer_back(&a, &c, id, "again");
    uqn_net_lookup_stats(a.net, &st);
    ASSERT_EQ(st.started, 1);

    /* a restart of A's networking, B gone: the learned record serves */
    a_net_stop(&a);
    rp_stop(&b);
    a_net(&a);
    id = a_send(&a, "c.node@srv", "3", "after-restart");
    answer_back(&a, &c, id, "after-restart");
    uqn_net_lookup_stats(a.net, &st);
    ASSERT_EQ(st.started, 0);
    ASSERT_EQ(st.learned, 1);

    /* C moves to another port with a newer record; B's directory has it */
    rp_stop(&c);
    lp_start(&c, NULL, false);
    uqn_record rc2;
    const char *addrs[1] = {c.listen};
    ASSERT_EQ(uqn_record_make(&c.id, addrs, 1, rc.seq + 1, &rc2, NULL), UQ_OK);
    lp_start(&b, b.listen, false);
    write_dir(b.dir, (const uqn_record *[]){&ra, &rb, &rc2, NULL});
    t0 = uqi_now_ns();
    id = a_send(&a, "c.node@srv", "4", "moved");
    answer_back(&a, &c, id, "moved");
    test_log("delivered after a refresh (old address refused, B asked): %.1f ms", (double)(uqi_now_ns() - t0) / 1e6);
    uqn_net_lookup_stats(a.net, &st);
    ASSERT_EQ(st.found, 1);
    learned = file_text(a.learned);
    char want[256];
    snprintf(want, sizeof want, "seq %llu at %s", (unsigned long long)rc2.seq, c.listen);
    ASSERT_STR_HAS(learned, want);
    free(learned);
    a_stop(&a);
    rp_fini(&b);
    rp_fini(&c);
}

/* A lying peer: L answers a record for c.node signed by another key.
 * Asked together with an honest B, the two keys disagree: both refused,
 * the message fails Offline with its context, nothing reaches L or C.
 * Once A knows the true C, L's key for it is refused outright (a peer may
 * not rebind a known name), and messages go only to the true C. */
TEST_T(net_lookup_lying_peer_refused, 90)
{
    anode a;
    a_start(&a);
    rawpeer b, c, l;
    lp_new(&b, "b.node", false);
    lp_new(&c, "c.node", false);
    lp_new(&l, "l.node", false);
    uqn_record ra = rec_of(a.net), rb = rec_of(b.net), rc = rec_of(c.net), rl = rec_of(l.net);
    uqn_identity fake;
    tn_identity("c.node", 1, &fake); /* the liar's key for the name c.node */
    uqn_record rfake;
    const char *addrs[1] = {l.listen};
    ASSERT_EQ(uqn_record_make(&fake, addrs, 1, rc.seq + 1000, &rfake, NULL), UQ_OK);
    write_dir(a.dir, (const uqn_record *[]){&rb, &rl, NULL});
    write_dir(b.dir, (const uqn_record *[]){&ra, &rb, &rc, NULL});
    write_dir(c.dir, (const uqn_record *[]){&ra, &rc, NULL});
    write_dir(l.dir, (const uqn_record *[]){&ra, &rl, &rfake, NULL});

    uint64_t id = a_send(&a, "c.node@srv", "\"one\"", "liar-1");
    expect_offline(&a, id, "\"one\"", "liar-1");
    char why[256];
    uqn_net_why(a.net, "c.node", why, sizeof why);
    test_log("why: %s", why);
    ASSERT_STR_HAS(why, "two different keys");
    uqn_lk_stats st;
    uqn_net_lookup_stats(a.net, &st);
    ASSERT(st.refused >= 1 && st.found == 0 && st.learned == 0);
    ASSERT(rp_wait(&c, 100) == NULL && rp_wait(&l, 100) == NULL);

    /* L gone, A asks only B: it learns the true C, and the message reaches it */
    rp_stop(&l);
    write_dir(a.dir, (const uqn_record *[]){&rb, NULL});
    usleep(1100 * 1000); /* a name nobody could give is not asked again for 1 s */
    id = a_send(&a, "c.node@srv", "\"two\"", "true-c");
    answer_back(&a, &c, id, "true-c");

    /* C goes down; A, asking again (B and L, back), gets L's key: refused */
    lp_start(&l, l.listen, false);
    write_dir(a.dir, (const uqn_record *[]){&rb, &rl, NULL});
    rp_stop(&c);
    usleep(100 * 1000);
    id = a_send(&a, "c.node@srv", "\"three\"", "down");
    expect_offline(&a, id, "\"three\"", "down");
    uqn_net_why(a.net, "c.node", why, sizeof why);
    test_log("why: %s", why);
    ASSERT_STR_HAS(why, "may not rebind a known name");
    ASSERT(rp_wait(&l, 200) == NULL);
    char hex[65];
    uqn_hex(c.id.pk, 32, hex);
    char *learned = file_text(a.learned);
    ASSERT_STR_HAS(learned, hex); /* still the true key */
    free(learned);
    /* C back at its address: messages reach it, not L */
    lp_start(&c, c.listen, false);
    bool back = false;
    for (int tries = 0; tries < 40 && !back; tries++) {
        id = a_send(&a, "c.node@srv", "\"four\"", "back");
        uqi_msg *in = rp_wait(&c, 250);
        back = in && in->id == id;
        uqi_msg_free(in);
        uqi_msg *e;
        while ((e = uqi_port_receive(a.port, 0))) uqi_msg_free(e);
    }
    ASSERT(back);
    ASSERT(rp_wait(&l, 100) == NULL);
    a_stop(&a);
    rp_fini(&b);
    rp_fini(&c);
    rp_fini(&l);
}

/* A hostile peer H (its look-ups off: the test writes its answers): an
 * altered record (an address changed without signing again), another
 * name's record, malformed and unsolicited answers are refused with a
 * reason and change nothing; A keeps answering; a flood of requests is
 * served at the bounded rate. */
TEST_T(net_lookup_forged_malformed_and_flood_refused, 90)
{
    anode a;
    a_start(&a);
    rawpeer h;
    lp_new(&h, "h.node", true);
    uqn_identity cid, did;
    tn_identity("c.node", 0, &cid);
    tn_identity("d.node", 0, &did);
    const char *addrs[1] = {h.listen};
    uqn_record rc, rd;
    ASSERT_EQ(uqn_record_make(&cid, addrs, 1, 9, &rc, NULL), UQ_OK);
    ASSERT_EQ(uqn_record_make(&did, addrs, 1, 9, &rd, NULL), UQ_OK);
    uqn_record ra = rec_of(a.net), rh = rec_of(h.net);
    write_dir(a.dir, (const uqn_record *[]){&rh, NULL});
    write_dir(h.dir, (const uqn_record *[]){&ra, &rh, NULL});
    uint8_t msg[UQN_LK_MSG_MAX];

    /* altered: c.node's record with another address, the signature kept */
    uint64_t id = a_send(&a, "c.node@srv", "1", "altered");
    size_t len;
    const uint8_t *req = rp_raw(&h, 0, &len, 5000);
    ASSERT(req && len == 9 && memcmp(req, "\x10\x01\x06" "c.node", 9) == 0);
    uqn_record alt = rc;
    snprintf(alt.addrs[0], sizeof alt.addrs[0], "127.0.0.1:1");
    size_t n = uqn_lk_encode_ans("c.node", &alt, msg);
    rp_send_raw(&h, "a.node", msg, n);
    expect_offline(&a, id, "1", "altered");
    char why[256];
    uqn_net_why(a.net, "c.node", why, sizeof why);
    test_log("why: %s", why);
    ASSERT_STR_HAS(why, "signature does not verify");

    /* another name's record in the answer for c.node */
    usleep(1100 * 1000);
    id = a_send(&a, "c.node@srv", "2", "wrong-name");
    ASSERT(rp_raw(&h, 1, &len, 5000) != NULL);
    n = uqn_lk_encode_ans("d.node", &rd, msg);
    msg[3] = 'c';
    rp_send_raw(&h, "a.node", msg, n);
    expect_offline(&a, id, "2", "wrong-name");
    uqn_net_why(a.net, "c.node", why, sizeof why);
    ASSERT_STR_HAS(why, "the record is for d.node");

    /* malformed, and a true record nobody asked for */
    const char *junk[] = {"\x11", "\x11\x01\x00", "\x10\x09\x01x", "\x11\x01\x06" "c.node\x01\xff\xff",
                          "\x10\x01\x05" "a.nodeXYZ"};
    size_t jl[] = {1, 3, 4, 12, 12};
    for (int i = 0; i < 5; i++) rp_send_raw(&h, "a.node", junk[i], jl[i]);
    n = uqn_lk_encode_ans("c.node", &rc, msg);
    rp_send_raw(&h, "a.node", msg, n);
    /* A still answers: its own record */
    n = uqn_lk_encode_req("a.node", msg);
    rp_send_raw(&h, "a.node", msg, n);
    const uint8_t *ans = rp_raw(&h, 2, &len, 5000);
    ASSERT(ans != NULL);
    uqn_lkmsg m;
    ASSERT_EQ(uqn_lk_decode(ans, len, &m, NULL), UQ_OK);
    ASSERT(m.type == UQN_LK_ANS && m.found && memcmp(m.rec.pk, a.id.pk, 32) == 0);
    uqn_lk_stats st;
    uqn_net_lookup_stats(a.net, &st);
    test_log("a.node: %llu refused, %llu malformed, %llu unsolicited, %u learned", (unsigned long long)st.refused,
             (unsigned long long)st.malformed, (unsigned long long)st.unsolicited, st.learned);
    ASSERT(st.refused >= 2 && st.malformed >= 5 && st.unsolicited >= 1);
    ASSERT_EQ(st.learned, 0);
    ASSERT_EQ(st.found, 0);

    /* a flood: 2000 requests at once are answered at the bounded rate */
    uqn_net_lookup_stats(a.net, &st);
    uint64_t served0 = st.served + st.served_unknown, limited0 = st.limited;
    uint64_t t0 = uqi_now_ns();
    for (int i = 0; i < 2000; i++) {
        n = uqn_lk_encode_req(i % 2 ? "a.node" : "x.node", msg);
        rp_send_raw(&h, "a.node", msg, n);
    }
    uint64_t served = 0;
    for (int i = 0; i < 1000; i++) { /* until all 2000 were served or dropped */
        usleep(10000);
        uqn_net_lookup_stats(a.net, &st);
        served = st.served + st.served_unknown - served0;
        if (served + st.limited - limited0 >= 2000) break;
    }
    double secs = (double)(uqi_now_ns() - t0) / 1e9;
    test_log("flood of 2000 requests: %llu answered, %llu dropped in %.2f s",
             (unsigned long long)served, (unsigned long long)(st.limited - limited0), secs);
    ASSERT_EQ(served + st.limited - limited0, 2000);
    ASSERT(served <= (uint64_t)(40 + 20 * secs + 2));
    a_stop(&a);
    rp_fini(&h);
}

/* A name nobody knows: the message fails Offline with its context once the
 * peers said so (at once), or when the look-up times out (a peer that does
 * not answer); the reason says the name is unknown. */
TEST_T(net_lookup_unknown_name_offline_with_context, 60)
{
    anode a;
    a_start(&a);
    rawpeer b, s;
    lp_new(&b, "b.node", false);
    lp_new(&s, "s.node", true); /* look-ups off: it never answers them */
    uqn_record ra = rec_of(a.net), rb = rec_of(b.net), rs = rec_of(s.net);
    write_dir(a.dir, (const uqn_record *[]){&rb, NULL});
    write_dir(b.dir, (const uqn_record *[]){&ra, &rb, NULL});
    write_dir(s.dir, (const uqn_record *[]){&ra, &rs, NULL});
    uint64_t t0 = uqi_now_ns();
    uint64_t id = a_send(&a, "zz.node@x", "{\"n\":1}", "nobody");
    expect_offline(&a, id, "{\"n\":1}", "nobody");
    double ms = (double)(uqi_now_ns() - t0) / 1e6;
    char why[256];
    uqn_net_why(a.net, "zz.node", why, sizeof why);
    test_log("unknown, B said so: Offline after %.1f ms: %s", ms, why);
    ASSERT_STR_HAS(why, "zz.node is unknown");
    ASSERT_STR_HAS(why, "1 did not know it");
    ASSERT(ms < 900);
    /* with a peer that stays silent: the look-up timeout (1 s) */
    write_dir(a.dir, (const uqn_record *[]){&rb, &rs, NULL});
    t0 = uqi_now_ns();
    id = a_send(&a, "yy.node@x", "2", "silent");
    expect_offline(&a, id, "2", "silent");
    ms = (double)(uqi_now_ns() - t0) / 1e6;
    uqn_net_why(a.net, "yy.node", why, sizeof why);
    test_log("unknown, one peer silent: Offline after %.1f ms: %s", ms, why);
    ASSERT(ms >= 950 && ms < 3000);
    ASSERT_STR_HAS(why, "yy.node is unknown");
    ASSERT_STR_HAS(why, "1 did not answer within 1000 ms");
    /* at once again within the second after (not asked again) */
    t0 = uqi_now_ns();
    id = a_send(&a, "yy.node@x", "3", "again");
    expect_offline(&a, id, "3", "again");
    ASSERT((uqi_now_ns() - t0) / 1000000 < 500);
    /* a node nobody knows dials A: its link is held while A asks, then closed */
    rawpeer z;
    lp_new(&z, "z.node", false);
    write_dir(z.dir, (const uqn_record *[]){&ra, NULL});
    write_dir(a.dir, (const uqn_record *[]){&rb, NULL});
    uqi_msg *q = uqi_msg_new(UQI_MSG_REQUEST, "\"hi\"", 4);
    snprintf(q->source.process, sizeof q->source.process, "zz");
    snprintf(q->target.process, sizeof q->target.process, "tester");
    uint8_t *qb;
    size_t ql;
    ASSERT_EQ(uqi_wire_encode(q, false, &qb, &ql, NULL), UQ_OK);
    uqi_msg_free(q);
    ASSERT_EQ(uqn_net_send(z.net, "a.node", qb, ql, NULL, NULL), UQ_OK);
    ASSERT(uqi_port_receive(a.port, 500) == NULL);
    for (int i = 0; i < 300; i++) { /* s.node, linked, is asked too and stays silent: up to 1 s */
        uqn_net_why(a.net, "z.node", why, sizeof why);
        if (why[0]) break;
        usleep(10000);
    }
    ASSERT(uqi_port_receive(a.port, 100) == NULL);
    test_log("a link from an unknown node: %s", why);
    ASSERT_STR_HAS(why, "z.node is unknown");
    uqn_net_stats ns;
    uqn_net_get_stats(a.net, &ns);
    ASSERT(ns.links_up >= 1);
    a_stop(&a);
    rp_fini(&b);
    rp_fini(&s);
    rp_fini(&z);
}
