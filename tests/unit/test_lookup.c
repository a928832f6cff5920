/* Look-up messages (docs/PROTOCOL.md §8): the exact bytes, round trips, and
 * every kind of malformed or forged message refused with its reason. */
#include "integ/tnet.h"
#include "net/lookup.h"

TEST(net_lookup_wire_bytes_and_round_trip)
{
    uint8_t b[UQN_LK_MSG_MAX];
    size_t n = uqn_lk_encode_req("c.node", b);
    ASSERT_EQ(n, 9);
    ASSERT(memcmp(b, "\x10\x01\x06" "c.node", 9) == 0);
    uqn_lkmsg m;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_lk_decode(b, n, &m, &em), UQ_OK);
    ASSERT(m.type == UQN_LK_REQ && strcmp(m.name, "c.node") == 0 && !m.found);
    ASSERT(uqn_lk_is_msg(b, n));
    n = uqn_lk_encode_ans("c.node", NULL, b);
    ASSERT_EQ(n, 10);
    ASSERT(memcmp(b, "\x11\x01\x06" "c.node\x00", 10) == 0);
    ASSERT_EQ(uqn_lk_decode(b, n, &m, &em), UQ_OK);
    ASSERT(m.type == UQN_LK_ANS && !m.found);
    uqn_identity c;
    tn_identity("c.node", 0, &c);
    const char *addrs[] = {"127.0.0.1:9000", "[::1]:9000"};
    uqn_record r;
    ASSERT_EQ(uqn_record_make(&c, addrs, 2, 77, &r, &em), UQ_OK);
    uint8_t rec[UQN_RECORD_MAX];
    size_t rl = uqn_record_encode(&r, rec);
    n = uqn_lk_encode_ans("c.node", &r, b);
    ASSERT_EQ(n, 10 + 2 + rl);
    ASSERT(b[9] == 1 && b[10] == (rl >> 8) && b[11] == (rl & 0xff) && memcmp(b + 12, rec, rl) == 0);
    ASSERT_EQ(uqn_lk_decode(b, n, &m, &em), UQ_OK);
    ASSERT(m.found && m.rec.seq == 77 && m.rec.naddrs == 2 && memcmp(m.rec.pk, c.pk, 32) == 0);
    ASSERT(!uqn_lk_is_msg((const uint8_t *)"\x01\x01", 2) && !uqn_lk_is_msg(b, 0));
}

TEST(net_lookup_wire_refuses_malformed_and_forged)
{
    uqn_identity c, d;
    tn_identity("c.node", 0, &c);
    tn_identity("d.node", 0, &d);
    const char *addrs[] = {"127.0.0.1:9000"};
    uqn_record rc, rd;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_record_make(&c, addrs, 1, 5, &rc, &em), UQ_OK);
    ASSERT_EQ(uqn_record_make(&d, addrs, 1, 5, &rd, &em), UQ_OK);
    uint8_t good[UQN_LK_MSG_MAX];
    size_t n = uqn_lk_encode_ans("c.node", &rc, good);
    uqn_lkmsg m;
    struct {
        const char *what;
        const char *bytes;
        size_t len;
        const char *reason;
    } bad[] = {
        {"empty", "", 0, "too short"},
        {"type", "\x12\x01\x01x", 4, "unknown type"},
        {"version", "\x10\x02\x01x", 4, "version 2"},
        {"no name", "\x10\x01\x00", 3, "bad name length"},
        {"name past the end", "\x10\x01\x09" "c.node", 9, "bad name length"},
        {"bad name", "\x10\x01\x03" "A_B", 6, "not a node name"},
        {"NUL in name", "\x10\x01\x03" "a\0b", 6, "not a node name"},
        {"request trailing", "\x10\x01\x01xz", 5, "after the name"},
        {"answer no status", "\x11\x01\x01x", 4, "no status"},
        {"answer status", "\x11\x01\x01x\x07", 5, "unknown status"},
        {"unknown trailing", "\x11\x01\x01x\x00\x00", 6, "after \"unknown\""},
        {"found no length", "\x11\x01\x01x\x01\x00", 6, "no record length"},
        {"found short", "\x11\x01\x01x\x01\x00\x05" "ab", 9, "record length 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        em.text[0] = '\0';
        uq_err e = uqn_lk_decode((const uint8_t *)bad[i].bytes, bad[i].len, &m, &em);
        if (e != UQ_ECORRUPT) test_fail(__FILE__, __LINE__, "%s: %s", bad[i].what, uq_strerror(e));
        ASSERT_STR_HAS(em.text, bad[i].reason);
    }
    /* every single-byte change of a good answer is refused or still means the same */
    for (size_t i = 0; i < n; i++) {
        good[i] ^= 0x20;
        uq_err e = uqn_lk_decode(good, n, &m, &em);
        if (e != UQ_ECORRUPT && e != UQ_ECRYPTO) test_fail(__FILE__, __LINE__, "byte %zu changed: accepted", i);
        good[i] ^= 0x20;
    }
    /* truncated anywhere, or one byte more */
    for (size_t k = 0; k < n; k++) ASSERT(uqn_lk_decode(good, k, &m, &em) != UQ_OK);
    good[n] = 0;
    ASSERT_EQ(uqn_lk_decode(good, n + 1, &m, &em), UQ_ECORRUPT);
    /* an address changed without signing again: the signature says no */
    uqn_record alt = rc;
    snprintf(alt.addrs[0], sizeof alt.addrs[0], "10.6.6.6:9000");
    n = uqn_lk_encode_ans("c.node", &alt, good);
    ASSERT_EQ(uqn_lk_decode(good, n, &m, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "signature does not verify");
    /* another name's (valid) record in an answer for c.node */
    n = uqn_lk_encode_ans("d.node", &rd, good);
    good[3] = 'c'; /* the name asked: c.node; the record: d.node */
    ASSERT_EQ(uqn_lk_decode(good, n, &m, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "the record is for d.node");
}
