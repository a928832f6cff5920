/* libFuzzer target for what a peer controls on a link: the frame decoder
 * (any bytes, split anywhere, clear or encrypted), directory records, the
 * handshake identity payload, the handshake messages of a link that
 * resumes or answers a resumption (with a ticket the fuzzer's bytes may
 * name, docs/PROTOCOL.md "Resumption"), and look-up messages (which must also encode
 * back to the same bytes: the encoding is canonical). Every input must give UQ_OK or an error with a
 * message, never a crash, a leak or an out-of-bounds access. Run with
 * `make fuzz` (FUZZ_SECONDS each). */
#include <stdio.h>
#include <string.h>

#include "net/frame.h"
#include "net/link.h"
#include "net/lookup.h"
#include "net/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(uq_err e, const uq_errmsg *em);

/* Two fixed identities and a directory of both, for the link modes. */
static uqn_identity fz_a, fz_b;
static bool fz_ready;

static uq_err fz_lookup(void *arg, const char *name, uint8_t pk[32], uq_errmsg *em)
{
    const uqn_identity *id = strcmp(name, fz_a.name) == 0 ? &fz_a : strcmp(name, fz_b.name) == 0 ? &fz_b : NULL;
    if (!id) return uqi_errf(em, UQ_ENOENT, "%s is not in the directory", name);
    memcpy(pk, id->pk, 32);
    return UQ_OK;
}

static uq_err fz_deliver(void *arg, const uint8_t *msg, size_t len) { return UQ_OK; }

/* A link of b (responder, mode bit 1 clear) or of a dialing b (initiator)
 * with one ticket held for the other side, fed the input as what the peer
 * sends, split anywhere. The responder's input may name the held ticket:
 * bytes 2..17 of the input are replaced with its id when mode bit 0 is set,
 * so that the fuzzer reaches the NNpsk0 read with a live ticket. */
static void fuzz_resume(uint8_t mode, uint8_t split, const uint8_t *data, size_t size)
{
    if (!fz_ready) {
        uint8_t seed[32];
        memset(seed, 1, sizeof seed);
        if (uqn_identity_from_seed("a.fuzz", seed, &fz_a, NULL)) __builtin_trap();
        memset(seed, 2, sizeof seed);
        if (uqn_identity_from_seed("b.fuzz", seed, &fz_b, NULL)) __builtin_trap();
        fz_ready = true;
    }
    bool initiator = mode & 2;
    uqn_tickets *t = uqn_tickets_new(4, 0);
    uqn_ticket tk;
    memset(&tk, 0, sizeof tk);
    memset(tk.id, 0x5a, sizeof tk.id);
    memset(tk.psk, 0x33, sizeof tk.psk);
    const uqn_identity *peer = initiator ? &fz_b : &fz_a;
    snprintf(tk.name, sizeof tk.name, "%s", peer->name);
    memcpy(tk.pk, peer->pk, 32);
    uqn_tickets_put(t, &tk, uqi_now_ns());
    uqn_link_cfg c = {.id = initiator ? &fz_a : &fz_b, .initiator = initiator,
                      .expect_name = initiator ? fz_b.name : NULL, .lookup = fz_lookup,
                      .deliver = fz_deliver, .max_msg = 4096, .tickets = t};
    uqn_link *l;
    uq_errmsg em;
    em.text[0] = '\0';
    if (uqn_link_new(&c, &l, &em)) __builtin_trap();
    static uint8_t buf[70000];
    if (size > sizeof buf) size = sizeof buf;
    memcpy(buf, data, size);
    if (!initiator && (mode & 1) && size >= 18) memcpy(buf + 2, tk.id, sizeof tk.id);
    size_t step = split ? split : size ? size : 1, i = 0;
    uq_err e = UQ_OK;
    while (i < size && !e) {
        size_t k = size - i < step ? size - i : step;
        e = uqn_link_input(l, buf + i, k, &em);
        i += k;
        const uint8_t *p;
        size_t n;
        while ((n = uqn_link_output(l, &p)) > 0) uqn_link_output_done(l, n);
    }
    check(e, &em);
    /* nothing the fuzzer can make proves the responder's peer: never up */
    if (!initiator && uqn_link_established(l) && uqn_link_resumed(l)) __builtin_trap();
    uqn_link_free(l);
    uqn_tickets_free(t);
}

static void check(uq_err e, const uq_errmsg *em)
{
    if (e != UQ_OK && em->text[0] == '\0') __builtin_trap(); /* every refusal explains itself */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t mode = data[0], split = data[1];
    data += 2;
    size -= 2;
    uq_errmsg em;
    em.text[0] = '\0';
    if (mode < 0xc0) { /* the frame decoder on a clear stream, fed in pieces */
        uqn_fdec d;
        uqn_fdec_init(&d, mode & 1 ? 1u << 20 : 300, NULL, NULL);
        size_t step = split ? split : size ? size : 1, i = 0;
        uq_err e = UQ_OK;
        while (i < size && !e) {
            size_t k = size - i < step ? size - i : step;
            e = uqn_fdec_feed(&d, NULL, data + i, k, &em);
            i += k;
        }
        check(e, &em);
        uqn_fdec_fini(&d);
    } else if (mode < 0xd0) { /* authentic frames of any plaintext: the input is a
                                * sequence of (u16 length, plaintext), each sealed as
                                * the peer would; decoded in pieces (a later chunk
                                * goes straight to its reassembly buffer) */
        uqn_cipher tx = {{0}, 0, true}, rx;
        memset(tx.k, 9, sizeof tx.k);
        rx = tx;
        static uint8_t wire[1u << 20];
        size_t wn = 0, i = 0;
        while (size - i >= 2 && wn + UQN_FRAME_WIRE_MAX <= sizeof wire) {
            size_t n = (size_t)data[i] << 8 | data[i + 1];
            i += 2;
            if (n > size - i) n = size - i;
            if (n > UQN_FRAME_PLAIN_MAX) n = UQN_FRAME_PLAIN_MAX;
            memcpy(wire + wn + 2, data + i, n);
            if (uqn_cipher_encrypt(&tx, NULL, 0, wire + wn + 2, n, wire + wn + 2)) __builtin_trap();
            wire[wn] = (uint8_t)((n + UQN_NOISE_TAG) >> 8);
            wire[wn + 1] = (uint8_t)(n + UQN_NOISE_TAG);
            wn += 2 + n + UQN_NOISE_TAG;
            i += n;
        }
        uqn_fdec d;
        uqn_fdec_init(&d, mode & 1 ? 1u << 20 : 300, NULL, NULL);
        size_t step = split ? (size_t)split * 257 : wn ? wn : 1, k = 0;
        uq_err e = UQ_OK;
        while (k < wn && !e) {
            size_t m = wn - k < step ? wn - k : step;
            e = uqn_fdec_feed(&d, &rx, wire + k, m, &em);
            k += m;
        }
        if (e == UQ_ECRYPTO) __builtin_trap(); /* every frame was authentic */
        check(e, &em);
        uqn_fdec_fini(&d);
    } else if (mode < 0xe0) { /* encrypted frames: authentication must refuse */
        uqn_cipher cs = {{0}, 0, true};
        memset(cs.k, 7, sizeof cs.k);
        uqn_fdec d;
        uqn_fdec_init(&d, 0, NULL, NULL);
        check(uqn_fdec_feed(&d, &cs, data, size, &em), &em);
        uqn_fdec_fini(&d);
    } else if (mode < 0xf0) { /* a directory record, binary or as a line */
        uqn_record r;
        check(uqn_record_decode(data, size, &r, &em), &em);
        char line[UQN_RECORD_LINE_MAX + 1];
        size_t n = size < UQN_RECORD_LINE_MAX ? size : UQN_RECORD_LINE_MAX;
        memcpy(line, data, n);
        line[n] = '\0';
        em.text[0] = '\0';
        check(uqn_record_from_line(line, &r, &em), &em);
    } else if (mode < 0xf4) { /* a handshake hello */
        uint8_t rs[32] = {1};
        uqn_peer p;
        check(uqn_hello_decode(data, size, rs, &p, &em), &em);
    } else if (mode < 0xf8) { /* a resumption attempt, or the answer to one */
        fuzz_resume(mode, split, data, size);
    } else { /* a look-up message (docs/PROTOCOL.md §8) */
        uqn_lkmsg m;
        uq_err e = uqn_lk_decode(data, size, &m, &em);
        check(e, &em);
        if (e == UQ_OK) {
            uint8_t out[UQN_LK_MSG_MAX];
            size_t n = m.type == UQN_LK_REQ ? uqn_lk_encode_req(m.name, out)
                                            : uqn_lk_encode_ans(m.name, m.found ? &m.rec : NULL, out);
            if (n != size || memcmp(out, data, size) != 0) __builtin_trap();
        }
    }
    return 0;
}
