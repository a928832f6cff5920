/* Helpers shared by the network tests: hex, identities, a directory, and
 * two links pumped in memory. */
#ifndef UQ_TEST_TNET_H
#define UQ_TEST_TNET_H

#include <sodium.h>

#include "net/link.h"
#include "net/record.h"
#include "runner.h"

static inline size_t tn_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n;
    if (sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &n, NULL) != 0)
        test_fail(__FILE__, __LINE__, "bad hex: %s", hex);
    return n;
}

/* A deterministic identity: the seed is name's BLAKE2b (distinct per name),
 * or a variant for a second key under the same name. */
static inline void tn_identity(const char *name, int variant, uqn_identity *out)
{
    uint8_t seed[32];
    crypto_generichash(seed, 32, (const uint8_t *)name, strlen(name), (const uint8_t *)&variant,
                       sizeof variant);
    uq_errmsg em = {{0}};
    if (uqn_identity_from_seed(name, seed, out, &em) != UQ_OK)
        test_fail(__FILE__, __LINE__, "identity %s: %s", name, em.text);
}

static inline void tn_dir_add(uqn_dir *d, const uqn_identity *id, const char *addr)
{
    uqn_record r;
    uq_errmsg em = {{0}};
    const char *addrs[1] = {addr};
    if (uqn_record_make(id, addrs, addr ? 1 : 0, 1, &r, &em) != UQ_OK ||
        uqn_dir_put(d, &r, UQN_SRC_FILE, &em) != UQ_OK)
        test_fail(__FILE__, __LINE__, "directory: %s", em.text);
}

/* Messages received by one side. */
typedef struct tn_inbox {
    uint8_t *msgs[256];
    size_t lens[256];
    size_t n;
    size_t bytes;
} tn_inbox;

static inline uq_err tn_deliver(void *arg, const uint8_t *msg, size_t len)
{
    tn_inbox *b = arg;
    if (b->n < 256) { /* msg is lent: keep a copy */
        uint8_t *c = malloc(len ? len : 1);
        if (len) memcpy(c, msg, len);
        b->msgs[b->n] = c;
        b->lens[b->n++] = len;
    }
    b->bytes += len;
    return UQ_OK;
}

static inline void tn_inbox_free(tn_inbox *b)
{
    for (size_t i = 0; i < b->n && i < 256; i++) free(b->msgs[i]);
    memset(b, 0, sizeof *b);
}

/* Move one side's pending output into the other (whole). Returns the input
 * error, with em filled. tamper_at >= 0 flips that byte of what moves
 * (counted over the whole call). */
static inline uq_err tn_move(uqn_link *from, uqn_link *to, long tamper_at, size_t *moved, uq_errmsg *em)
{
    const uint8_t *p;
    size_t n;
    *moved = 0;
    while ((n = uqn_link_output(from, &p)) > 0) {
        uint8_t *copy = malloc(n);
        memcpy(copy, p, n);
        if (tamper_at >= 0 && (size_t)tamper_at >= *moved && (size_t)tamper_at < *moved + n)
            copy[(size_t)tamper_at - *moved] ^= 0x01;
        uqn_link_output_done(from, n);
        uq_err e = uqn_link_input(to, copy, n, em);
        free(copy);
        *moved += n;
        if (e) return e;
    }
    return UQ_OK;
}

/* Pump a and b until neither has output; errors are returned (a's input
 * first reported as *which = 'a', b's as 'b'). */
static inline uq_err tn_pump(uqn_link *a, uqn_link *b, char *which, uq_errmsg *em)
{
    for (;;) {
        size_t m1, m2;
        uq_err e = tn_move(a, b, -1, &m1, em);
        if (e) { *which = 'b'; return e; }
        e = tn_move(b, a, -1, &m2, em);
        if (e) { *which = 'a'; return e; }
        if (m1 == 0 && m2 == 0) return UQ_OK;
    }
}

#endif
