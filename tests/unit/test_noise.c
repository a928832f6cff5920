/* Noise XX: byte-for-byte against the Cacophony vectors (tests/vectors),
 * nonce encoding and exhaustion, and refusals of altered messages. */
#include <jansson.h>

#include "integ/tnet.h"
#include "net/noise.h"

static const char *vectors_path(void)
{
    const char *src = getenv("UQ_SRCDIR");
    static char p[1024];
    snprintf(p, sizeof p, "%s/tests/vectors/noise_xx.json", src && *src ? src : ".");
    return p;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s) test_fail(__FILE__, __LINE__, "vector lacks %s", k);
    return s;
}

/* Handshake message i of a vector (m: payload, ciphertext): s writes it,
 * byte for byte the published one, and r reads the payload back. */
static void hs_message(const char *proto, size_t i, json_t *m, uqn_hs *s, uqn_hs *r)
{
    uint8_t payload[256], want[512], got[512], back[512];
    size_t pl = tn_unhex(jstr(m, "payload"), payload, sizeof payload);
    size_t wl = tn_unhex(jstr(m, "ciphertext"), want, sizeof want);
    size_t gl, bl;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_hs_next(s), UQN_HS_WRITE);
    ASSERT_EQ(uqn_hs_next(r), UQN_HS_READ);
    ASSERT_EQ(uqn_hs_write(s, payload, pl, got, sizeof got, &gl, &em), UQ_OK);
    ASSERT_EQ(gl, wl);
    if (memcmp(got, want, wl) != 0) test_fail(__FILE__, __LINE__, "%s: message %zu differs", proto, i + 1);
    ASSERT_EQ(uqn_hs_read(r, got, gl, back, sizeof back, &bl, &em), UQ_OK);
    ASSERT_EQ(bl, pl);
    ASSERT(memcmp(back, payload, pl) == 0);
}

/* Transport message i: tx seals it as published, rx opens it. */
static void transport_message(const char *proto, size_t i, json_t *m, uqn_cipher *tx, uqn_cipher *rx)
{
    uint8_t payload[256], want[512], got[512], back[512];
    size_t pl = tn_unhex(jstr(m, "payload"), payload, sizeof payload);
    size_t wl = tn_unhex(jstr(m, "ciphertext"), want, sizeof want);
    ASSERT_EQ(uqn_cipher_encrypt(tx, NULL, 0, payload, pl, got), UQ_OK);
    ASSERT_EQ(pl + 16, wl);
    if (memcmp(got, want, wl) != 0) test_fail(__FILE__, __LINE__, "%s: transport %zu differs", proto, i + 1);
    ASSERT_EQ(uqn_cipher_decrypt(rx, NULL, 0, got, wl, back), UQ_OK);
    ASSERT(memcmp(back, payload, pl) == 0);
}

/* Run one vector: both sides with the fixed keys; every handshake and
 * transport message must match the published ciphertext, and decrypt back.
 * pre: the initiator precomputes message 2's es (uqn_hs_precompute_es)
 * after message 1, with the responder's real static key (1) or another
 * (2): the bytes must be the published ones either way. */
static void run_vector(json_t *v, int pre)
{
    const char *proto = jstr(v, "protocol_name");
    uqn_hash hash = strstr(proto, "BLAKE2b") ? UQN_HASH_BLAKE2B : UQN_HASH_SHA256;
    uint8_t prologue[64], is[32], ie[32], rs[32], re[32], hh[64];
    size_t plen = tn_unhex(jstr(v, "init_prologue"), prologue, sizeof prologue);
    tn_unhex(jstr(v, "init_static"), is, 32);
    tn_unhex(jstr(v, "init_ephemeral"), ie, 32);
    tn_unhex(jstr(v, "resp_static"), rs, 32);
    tn_unhex(jstr(v, "resp_ephemeral"), re, 32);
    size_t hhlen = tn_unhex(jstr(v, "handshake_hash"), hh, sizeof hh);

    uqn_hs hi, hr;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_hs_init(&hi, hash, true, prologue, plen, is, &em), UQ_OK);
    ASSERT_EQ(uqn_hs_init(&hr, hash, false, prologue, plen, rs, &em), UQ_OK);
    uqn_hs_set_ephemeral(&hi, ie);
    uqn_hs_set_ephemeral(&hr, re);
    uqn_cipher ci_tx, ci_rx, cr_tx, cr_rx;
    json_t *msgs = json_object_get(v, "messages");
    ASSERT_EQ(json_array_size(msgs), 6);
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        bool from_init = i % 2 == 0;
        if (i < 3) {
            hs_message(proto, i, m, from_init ? &hi : &hr, from_init ? &hr : &hi);
            if (i == 0 && pre) {
                uint8_t rpub[32];
                uqn_x25519_public(rs, rpub);
                if (pre == 2) rpub[5] ^= 1;
                uqn_hs_precompute_es(&hi, rpub);
                ASSERT(hi.has_es);
            }
            if (i == 1) ASSERT(!hi.has_es); /* used or dropped, and wiped */
            if (i == 2) {
                ASSERT_EQ(uqn_hs_next(&hi), UQN_HS_SPLIT);
                size_t l1, l2;
                const uint8_t *h1 = uqn_hs_hash(&hi, &l1), *h2 = uqn_hs_hash(&hr, &l2);
                ASSERT_EQ(l1, hhlen);
                ASSERT(memcmp(h1, h2, l1) == 0);
                if (json_is_true(json_object_get(v, "check_handshake_hash")))
                    ASSERT(memcmp(h1, hh, hhlen) == 0);
                ASSERT(memcmp(uqn_hs_remote_static(&hr), hi.s_pk, 32) == 0);
                ASSERT(memcmp(uqn_hs_remote_static(&hi), hr.s_pk, 32) == 0);
                ASSERT_EQ(uqn_hs_split(&hi, &ci_tx, &ci_rx, &em), UQ_OK);
                ASSERT_EQ(uqn_hs_split(&hr, &cr_tx, &cr_rx, &em), UQ_OK);
                ASSERT_EQ(uqn_hs_next(&hi), UQN_HS_DONE);
                ASSERT(uqn_hs_split(&hi, &ci_tx, &ci_rx, &em) == UQ_EINVAL);
            }
        } else {
            transport_message(proto, i, m, from_init ? &ci_tx : &cr_tx, from_init ? &cr_rx : &ci_rx);
        }
    }
    test_log("%s (%s)%s: 3 handshake + 3 transport messages%s match", proto, jstr(v, "source"),
             pre == 1 ? ", es precomputed" : pre == 2 ? ", es precomputed for another key" : "",
             json_is_true(json_object_get(v, "check_handshake_hash")) ? " and the handshake hash" : "");
}

TEST(net_noise_published_vectors)
{
    json_error_t je;
    json_t *root = json_load_file(vectors_path(), 0, &je);
    if (!root) test_fail(__FILE__, __LINE__, "%s: %s", vectors_path(), je.text);
    json_t *vs = json_object_get(root, "vectors");
    ASSERT_EQ(json_array_size(vs), 4);
    for (int pre = 0; pre < 3; pre++)
        for (size_t i = 0; i < json_array_size(vs); i++) run_vector(json_array_get(vs, i), pre);
    json_decref(root);
}

/* Noise_NNpsk0 (link resumption): the published Cacophony vectors byte for
 * byte (tests/vectors/noise_nnpsk0.json), then a wrong psk, a flipped byte
 * of either message, and the ticket secret both sides derive. */
static void run_psk0_vector(json_t *v)
{
    const char *proto = jstr(v, "protocol_name");
    uqn_hash hash = strstr(proto, "BLAKE2b") ? UQN_HASH_BLAKE2B : UQN_HASH_SHA256;
    uint8_t prologue[64], psk[32], rpsk[32], ie[32], re[32];
    size_t plen = tn_unhex(jstr(v, "init_prologue"), prologue, sizeof prologue);
    ASSERT_EQ(tn_unhex(json_string_value(json_array_get(json_object_get(v, "init_psks"), 0)), psk, 32), 32);
    ASSERT_EQ(tn_unhex(json_string_value(json_array_get(json_object_get(v, "resp_psks"), 0)), rpsk, 32), 32);
    tn_unhex(jstr(v, "init_ephemeral"), ie, 32);
    tn_unhex(jstr(v, "resp_ephemeral"), re, 32);
    uqn_hs hi, hr;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_hs_init_psk0(&hi, hash, true, prologue, plen, psk, &em), UQ_OK);
    ASSERT_EQ(uqn_hs_init_psk0(&hr, hash, false, prologue, plen, rpsk, &em), UQ_OK);
    uqn_hs_set_ephemeral(&hi, ie);
    uqn_hs_set_ephemeral(&hr, re);
    uqn_cipher ci_tx, ci_rx, cr_tx, cr_rx;
    json_t *msgs = json_object_get(v, "messages");
    ASSERT_EQ(json_array_size(msgs), 6);
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        bool from_init = i % 2 == 0;
        if (i < 2) {
            hs_message(proto, i, m, from_init ? &hi : &hr, from_init ? &hr : &hi);
            if (i == 1) {
                ASSERT_EQ(uqn_hs_next(&hi), UQN_HS_SPLIT);
                ASSERT_EQ(uqn_hs_next(&hr), UQN_HS_SPLIT);
                size_t l1, l2;
                const uint8_t *h1 = uqn_hs_hash(&hi, &l1), *h2 = uqn_hs_hash(&hr, &l2);
                ASSERT(l1 == l2 && memcmp(h1, h2, l1) == 0);
                ASSERT(uqn_hs_remote_static(&hi) == NULL && uqn_hs_remote_static(&hr) == NULL);
                uint8_t id1[16], id2[16], k1[32], k2[32];
                uqn_hs_resumption(&hi, id1, k1);
                uqn_hs_resumption(&hr, id2, k2);
                ASSERT(memcmp(id1, id2, 16) == 0 && memcmp(k1, k2, 32) == 0);
                ASSERT(memcmp(k1, psk, 32) != 0);
                ASSERT_EQ(uqn_hs_split(&hi, &ci_tx, &ci_rx, &em), UQ_OK);
                ASSERT_EQ(uqn_hs_split(&hr, &cr_tx, &cr_rx, &em), UQ_OK);
                ASSERT_EQ(uqn_hs_next(&hi), UQN_HS_DONE);
            }
        } else {
            transport_message(proto, i, m, from_init ? &ci_tx : &cr_tx, from_init ? &cr_rx : &ci_rx);
        }
    }
    test_log("%s (%s): 2 handshake + 4 transport messages match", proto, jstr(v, "source"));
}

TEST(net_noise_nnpsk0_published_vectors_and_refusals)
{
    const char *src = getenv("UQ_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/vectors/noise_nnpsk0.json", src && *src ? src : ".");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) test_fail(__FILE__, __LINE__, "%s: %s", path, je.text);
    json_t *vs = json_object_get(root, "vectors");
    ASSERT_EQ(json_array_size(vs), 2);
    for (size_t i = 0; i < json_array_size(vs); i++) run_psk0_vector(json_array_get(vs, i));
    json_decref(root);

    /* a wrong psk fails message 1; a flipped byte of either message fails */
    uint8_t k[32], k2[32], buf[128], pl[64];
    size_t n, pn;
    uq_errmsg em = {{0}};
    randombytes_buf(k, 32);
    memcpy(k2, k, 32);
    k2[31] ^= 1;
    for (int round = 0; round < 3; round++) {
        uqn_hs hi, hr;
        ASSERT_EQ(uqn_hs_init_psk0(&hi, UQN_HASH_BLAKE2B, true, (const uint8_t *)"p", 1, k, &em), UQ_OK);
        ASSERT_EQ(uqn_hs_init_psk0(&hr, UQN_HASH_BLAKE2B, false, (const uint8_t *)"p", 1, round == 0 ? k2 : k, &em),
                  UQ_OK);
        ASSERT_EQ(uqn_hs_write(&hi, NULL, 0, buf, sizeof buf, &n, &em), UQ_OK);
        ASSERT_EQ(n, 48);
        if (round == 1) buf[5] ^= 0x10;
        uq_err e = uqn_hs_read(&hr, buf, n, pl, sizeof pl, &pn, &em);
        if (round < 2) {
            ASSERT_EQ(e, UQ_ECRYPTO);
            ASSERT_EQ(uqn_hs_next(&hr), UQN_HS_FAILED);
            continue;
        }
        ASSERT_EQ(e, UQ_OK);
        ASSERT_EQ(uqn_hs_write(&hr, NULL, 0, buf, sizeof buf, &n, &em), UQ_OK);
        ASSERT_EQ(n, 48);
        buf[40] ^= 0x01;
        ASSERT_EQ(uqn_hs_read(&hi, buf, n, pl, sizeof pl, &pn, &em), UQ_ECRYPTO);
        /* too short */
        uqn_hs h3;
        ASSERT_EQ(uqn_hs_init_psk0(&h3, UQN_HASH_BLAKE2B, false, (const uint8_t *)"p", 1, k, &em), UQ_OK);
        ASSERT_EQ(uqn_hs_read(&h3, buf, 47, pl, sizeof pl, &pn, &em), UQ_ECORRUPT);
    }
}

/* The precomputed es is the one message 2 uses when the responder's static
 * is the expected one: spoiled on purpose, the handshake fails there; with
 * another expected key it is not used, and the handshake succeeds. */
TEST(net_noise_precomputed_es_is_used_only_for_its_key)
{
    for (int spoil = 0; spoil < 2; spoil++) {
        uqn_hs hi, hr;
        uq_errmsg em = {{0}};
        uint8_t si[32], sr[32], srp[32], buf[512], pl[512];
        size_t n, pn;
        randombytes_buf(si, 32);
        randombytes_buf(sr, 32);
        uqn_x25519_public(sr, srp);
        ASSERT_EQ(uqn_hs_init(&hi, UQN_HASH_BLAKE2B, true, (const uint8_t *)"p", 1, si, &em), UQ_OK);
        ASSERT_EQ(uqn_hs_init(&hr, UQN_HASH_BLAKE2B, false, (const uint8_t *)"p", 1, sr, &em), UQ_OK);
        uqn_hs_precompute_es(&hi, srp); /* before message 1: not its turn, no effect */
        ASSERT(!hi.has_es);
        ASSERT_EQ(uqn_hs_write(&hi, NULL, 0, buf, sizeof buf, &n, &em), UQ_OK);
        ASSERT_EQ(uqn_hs_read(&hr, buf, n, pl, sizeof pl, &pn, &em), UQ_OK);
        uqn_hs_precompute_es(&hi, srp);
        ASSERT(hi.has_es);
        hi.es_dh[0] ^= 1; /* spoiled: used for the right key, so message 2 fails */
        if (spoil) hi.es_rs[0] ^= 1; /* expected another key: not used */
        ASSERT_EQ(uqn_hs_write(&hr, (const uint8_t *)"hi", 2, buf, sizeof buf, &n, &em), UQ_OK);
        uq_err e = uqn_hs_read(&hi, buf, n, pl, sizeof pl, &pn, &em);
        ASSERT_EQ(e, spoil ? UQ_OK : UQ_ECRYPTO);
        ASSERT(!hi.has_es);
        uqn_hs_wipe(&hi);
        uqn_hs_wipe(&hr);
    }
}

/* A fresh pair of handshakes run to the end with random ephemerals. */
static void handshake_pair(uqn_hs *hi, uqn_hs *hr, long tamper_msg, uq_err *err, uq_errmsg *em)
{
    uint8_t si[32], sr[32], buf[512], pl[512];
    size_t n, pn;
    randombytes_buf(si, 32);
    randombytes_buf(sr, 32);
    ASSERT_EQ(uqn_hs_init(hi, UQN_HASH_BLAKE2B, true, (const uint8_t *)"p", 1, si, em), UQ_OK);
    ASSERT_EQ(uqn_hs_init(hr, UQN_HASH_BLAKE2B, false, (const uint8_t *)"p", 1, sr, em), UQ_OK);
    *err = UQ_OK;
    for (int i = 0; i < 3; i++) {
        uqn_hs *s = i % 2 == 0 ? hi : hr, *r = i % 2 == 0 ? hr : hi;
        ASSERT_EQ(uqn_hs_write(s, (const uint8_t *)"hello", 5, buf, sizeof buf, &n, em), UQ_OK);
        if (i == tamper_msg) buf[n - 1] ^= 0x80;
        *err = uqn_hs_read(r, buf, n, pl, sizeof pl, &pn, em);
        if (*err) return;
    }
}

TEST(net_noise_tampered_handshake_refused)
{
    uqn_hs hi, hr;
    uq_err e;
    uq_errmsg em = {{0}};
    handshake_pair(&hi, &hr, -1, &e, &em);
    ASSERT_EQ(e, UQ_OK);
    /* message 1 is in clear (e + payload): a flipped payload bit is caught
     * only later, as h differs; messages 2 and 3 are authenticated at once */
    for (int m = 1; m < 3; m++) {
        handshake_pair(&hi, &hr, m, &e, &em);
        ASSERT_EQ(e, UQ_ECRYPTO);
        ASSERT_STR_HAS(em.text, "failed authentication");
        ASSERT_EQ(uqn_hs_next(m == 1 ? &hi : &hr), UQN_HS_FAILED);
    }
    handshake_pair(&hi, &hr, 0, &e, &em); /* altered message 1 breaks message 2 */
    ASSERT_EQ(e, UQ_ECRYPTO);
    /* a message too short, and a read out of turn */
    uint8_t si[32] = {1}, buf[8] = {0}, pl[8];
    size_t pn;
    ASSERT_EQ(uqn_hs_init(&hr, UQN_HASH_BLAKE2B, false, NULL, 0, si, &em), UQ_OK);
    ASSERT_EQ(uqn_hs_read(&hr, buf, 8, pl, sizeof pl, &pn, &em), UQ_ECORRUPT);
    ASSERT_EQ(uqn_hs_init(&hi, UQN_HASH_BLAKE2B, true, NULL, 0, si, &em), UQ_OK);
    ASSERT_EQ(uqn_hs_read(&hi, buf, 8, pl, sizeof pl, &pn, &em), UQ_EINVAL);
}

TEST(net_noise_nonce_encoding_and_exhaustion)
{
    uqn_hs hi, hr;
    uq_err e;
    uq_errmsg em = {{0}};
    uqn_cipher itx, irx, rtx, rrx;
    handshake_pair(&hi, &hr, -1, &e, &em);
    ASSERT_EQ(e, UQ_OK);
    ASSERT_EQ(uqn_hs_split(&hi, &itx, &irx, &em), UQ_OK);
    ASSERT_EQ(uqn_hs_split(&hr, &rtx, &rrx, &em), UQ_OK);
    /* the nonce is 4 zero bytes + the counter little-endian: check against
     * libsodium directly at a counter that uses several bytes */
    itx.n = 0x0102030405ull;
    uint8_t ct[64], pt[64], want[64], nonce[12] = {0, 0, 0, 0, 5, 4, 3, 2, 1, 0, 0, 0};
    unsigned long long wl;
    crypto_aead_chacha20poly1305_ietf_encrypt(want, &wl, (const uint8_t *)"abc", 3, NULL, 0, NULL, nonce, itx.k);
    ASSERT_EQ(uqn_cipher_encrypt(&itx, NULL, 0, (const uint8_t *)"abc", 3, ct), UQ_OK);
    ASSERT(memcmp(ct, want, 19) == 0);
    ASSERT_EQ(itx.n, 0x0102030406ull);
    /* out of order: the receiver is at 0 */
    ASSERT_EQ(uqn_cipher_decrypt(&rrx, NULL, 0, ct, 19, pt), UQ_ECRYPTO);
    rrx.n = 0x0102030405ull;
    ASSERT_EQ(uqn_cipher_decrypt(&rrx, NULL, 0, ct, 19, pt), UQ_OK);
    ASSERT_EQ(uqn_cipher_decrypt(&rrx, NULL, 0, ct, 19, pt), UQ_ECRYPTO); /* replay */
    ASSERT_EQ(uqn_cipher_decrypt(&rrx, NULL, 0, ct, 10, pt), UQ_ECORRUPT);
    /* the last nonce, 2^64-1, is reserved */
    itx.n = UINT64_MAX - 1;
    ASSERT_EQ(uqn_cipher_encrypt(&itx, NULL, 0, (const uint8_t *)"x", 1, ct), UQ_OK);
    ASSERT_EQ(uqn_cipher_encrypt(&itx, NULL, 0, (const uint8_t *)"x", 1, ct), UQ_ELIMIT);
    rrx.n = UINT64_MAX;
    ASSERT_EQ(uqn_cipher_decrypt(&rrx, NULL, 0, ct, 17, pt), UQ_ELIMIT);
    /* rekey changes the key on both sides alike */
    uqn_cipher a = rtx, b = irx;
    uqn_cipher_rekey(&a);
    uqn_cipher_rekey(&b);
    ASSERT(memcmp(a.k, b.k, 32) == 0 && memcmp(a.k, rtx.k, 32) != 0);
    ASSERT_EQ(uqn_cipher_encrypt(&a, NULL, 0, (const uint8_t *)"rk", 2, ct), UQ_OK);
    ASSERT_EQ(uqn_cipher_decrypt(&b, NULL, 0, ct, 18, pt), UQ_OK);
    ASSERT(memcmp(pt, "rk", 2) == 0);
}

/* The transport cipher is libsodium's below 1 KiB and OpenSSL's above: both
 * must give libsodium's bytes, with and without associated data, in place
 * or not, and refuse (leaving no plaintext) a frame with a flipped bit. */
TEST(net_noise_cipher_matches_libsodium_at_every_size)
{
    static const size_t sizes[] = {0, 1, 63, 64, 1000, 1023, 1024, 1025, 4096, 65519};
    static uint8_t pt[65536], ct[65536 + 16], ref[65536 + 16], back[65536];
    for (size_t i = 0; i < sizeof pt; i++) pt[i] = (uint8_t)(i * 7 + 3);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (int with_ad = 0; with_ad < 2; with_ad++) {
            size_t len = sizes[si];
            const uint8_t ad[5] = {9, 8, 7, 6, 5};
            uqn_cipher tx = {{0}, 0x0102030405060708ull, true}, rx;
            for (int k = 0; k < 32; k++) tx.k[k] = (uint8_t)(k + si);
            rx = tx;
            uint8_t nonce[12] = {0};
            for (int b = 0; b < 8; b++) nonce[4 + b] = (uint8_t)(tx.n >> (8 * b));
            unsigned long long rl;
            crypto_aead_chacha20poly1305_ietf_encrypt(ref, &rl, pt, len, with_ad ? ad : NULL, with_ad ? 5 : 0, NULL,
                                                      nonce, tx.k);
            ASSERT_EQ(rl, len + 16);
            ASSERT_EQ(uqn_cipher_encrypt(&tx, with_ad ? ad : NULL, with_ad ? 5 : 0, pt, len, ct), UQ_OK);
            ASSERT(memcmp(ct, ref, len + 16) == 0);
            /* in place gives the same */
            uqn_cipher tx2 = rx;
            memcpy(back, pt, len);
            static uint8_t inplace[65536 + 16];
            memcpy(inplace, pt, len);
            ASSERT_EQ(uqn_cipher_encrypt(&tx2, with_ad ? ad : NULL, with_ad ? 5 : 0, inplace, len, inplace), UQ_OK);
            ASSERT(memcmp(inplace, ref, len + 16) == 0);
            /* a flipped bit is refused, the nonce stays, no plaintext is left */
            uqn_cipher bad = rx;
            ct[len / 2] ^= 0x10;
            memset(back, 0xaa, sizeof back);
            ASSERT_EQ(uqn_cipher_decrypt(&bad, with_ad ? ad : NULL, with_ad ? 5 : 0, ct, len + 16, back), UQ_ECRYPTO);
            ASSERT_EQ(bad.n, rx.n);
            for (size_t b = 0; b < len; b++)
                if (back[b] == pt[b] && pt[b] != 0xaa && back[b] != 0) ASSERT(!"plaintext left after a refusal");
            ct[len / 2] ^= 0x10;
            ASSERT_EQ(uqn_cipher_decrypt(&rx, with_ad ? ad : NULL, with_ad ? 5 : 0, ct, len + 16, back), UQ_OK);
            ASSERT(memcmp(back, pt, len) == 0);
            ASSERT_EQ(rx.n, tx.n);
        }
    }
}

/* Handshakes take their ephemeral key pairs from the pool while it has
 * some, and make one on their path (counted) once it is empty. */
TEST(net_noise_ephemeral_pool_and_its_misses)
{
    while (uqn_noise_prepare()) {
    }
    ASSERT(uqn_noise_pool_full());
    uint64_t m0 = uqn_noise_pool_misses();
    uint8_t si[32], buf[512];
    randombytes_buf(si, 32);
    uq_errmsg em = {{0}};
    uint8_t pks[5][32];
    for (int i = 0; i < 5; i++) {
        uqn_hs h;
        size_t n;
        ASSERT_EQ(uqn_hs_init(&h, UQN_HASH_BLAKE2B, true, NULL, 0, si, &em), UQ_OK);
        ASSERT_EQ(uqn_hs_write(&h, NULL, 0, buf, sizeof buf, &n, &em), UQ_OK);
        ASSERT_EQ(n, 32);
        uint8_t pk[32];
        uqn_x25519_public(h.e_sk, pk); /* the pair taken is a pair */
        ASSERT(memcmp(pk, buf, 32) == 0);
        memcpy(pks[i], buf, 32);
        for (int j = 0; j < i; j++) ASSERT(memcmp(pks[j], pks[i], 32) != 0); /* each used once */
        ASSERT(!uqn_noise_pool_full());
        ASSERT_EQ(uqn_noise_pool_misses() - m0, i < 4 ? 0 : 1);
        uqn_hs_wipe(&h);
    }
    ASSERT(uqn_noise_prepare());
    ASSERT_EQ(uqn_noise_pool_misses() - m0, 1);
}
