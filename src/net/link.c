/* A link without I/O: the XX handshake with signed identity payloads, then
 * frames both ways (docs/PROTOCOL.md, "Handshake" and "Framing"). */
#include "net/link.h"

#include <pthread.h>
#include <stddef.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "kernel/msg.h"

#define SIG_CONTEXT "uqbar-link/1 static key" /* domain separation for the hello signature */

struct uqn_link {
    uqn_link_cfg cfg;
    char expect[UQN_NAME_MAX + 1];
    uqn_hs hs;
    bool established;
    bool held;               /* defer_unknown: the peer's name awaits a look-up */
    uint8_t *hbuf;           /* what it sent meanwhile */
    size_t hlen;
    uq_err err;              /* sticky */
    uqn_peer peer;
    uqn_cipher tx, rx;
    uqn_fenc enc;
    uqn_fdec dec;
    size_t hin_got;
    size_t out_len, out_off;
    /* resumption (docs/PROTOCOL.md, "Resumption") */
    uqn_hs xx;               /* initiator resuming: the XX state its message 1 also began (the fallback) */
    bool resuming;           /* initiator: message 1 was a resumption attempt */
    bool resumed;            /* set up with a ticket (NNpsk0) */
    bool confirm;            /* responder, resumed: established once a frame of the peer authenticates */
    uqn_ticket next;         /* the ticket this handshake made, kept once the link is established */
    /* The buffers last: they hold only wire bytes (handshake messages,
     * sealed frames), never a secret, so a new link does not clear them and
     * a freed one does not wipe them (320 KiB: clearing and wiping them was
     * 40-60 us of CPU per link on each side, on the setup path). */
    uint8_t hin[UQN_FRAME_WIRE_MAX]; /* a handshake message being read */
    uint8_t out[UQN_LINK_OUT_FRAMES * UQN_FRAME_WIRE_MAX];
};
#define LINK_STATE offsetof(struct uqn_link, hin) /* what is cleared and wiped */

/* ---- hello -------------------------------------------------------------- */

static size_t signed_msg(const uint8_t x_pk[32], const char *name, uint8_t *out)
{
    size_t n = sizeof SIG_CONTEXT - 1, nl = strlen(name);
    memcpy(out, SIG_CONTEXT, n);
    memcpy(out + n, x_pk, 32);
    memcpy(out + n + 32, name, nl);
    return n + 32 + nl;
}

/* Link setup is a chain of public-key operations, each 40-100 us here
 * (docs/PERFORMANCE.md, "Network"). Three of them need not be redone for
 * every link, and are remembered process-wide (a few entries, under a
 * lock):
 * - our hello: its bytes depend only on the identity (Ed25519 signatures
 *   are deterministic), so it is signed once per identity;
 * - a peer's hello that verified, with the Noise static key it was
 *   checked against: the same bytes again (the peer reconnecting) verify
 *   the same way, since verification is a function of exactly those bytes
 *   (key, signed message, signature). Only successes are remembered;
 * - a dialed node's X25519 key derived from its Ed25519 key (what
 *   uqn_link_precompute needs): libsodium's conversion checks the point's
 *   subgroup, a scalar multiplication, 80-110 us here, on the dialer's
 *   path when both sides share a CPU. A function of public bytes only. */
#define HELLO_CACHE 4
#define VERIFIED_CACHE 64
#define XKEY_CACHE 64

typedef struct hello_ent {
    uint8_t pk[32], x_pk[32];
    char name[UQN_NAME_MAX + 1];
    uint8_t hello[UQN_HELLO_MAX];
    size_t len;
} hello_ent;

typedef struct verified_ent {
    uint8_t rs[32];
    uint8_t hello[UQN_HELLO_MAX];
    size_t len;
} verified_ent;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static hello_ent hello_cache[HELLO_CACHE];
static unsigned hello_next;
static verified_ent verified_cache[VERIFIED_CACHE];
static unsigned verified_next;
static struct {
    uint8_t pk[32], x[32];
    bool ok;
} xkey_cache[XKEY_CACHE];
static unsigned xkey_next;

/* The X25519 key of the Ed25519 key pk, as crypto_sign_ed25519_pk_to_curve25519
 * makes it; false for a key it refuses. */
static bool x_key_of(const uint8_t pk[32], uint8_t x[32])
{
    pthread_mutex_lock(&cache_lock);
    for (unsigned i = 0; i < XKEY_CACHE; i++)
        if (xkey_cache[i].ok && memcmp(xkey_cache[i].pk, pk, 32) == 0) {
            memcpy(x, xkey_cache[i].x, 32);
            pthread_mutex_unlock(&cache_lock);
            return true;
        }
    pthread_mutex_unlock(&cache_lock);
    if (crypto_sign_ed25519_pk_to_curve25519(x, pk) != 0) return false;
    pthread_mutex_lock(&cache_lock);
    unsigned i = xkey_next++ % XKEY_CACHE;
    memcpy(xkey_cache[i].pk, pk, 32);
    memcpy(xkey_cache[i].x, x, 32);
    xkey_cache[i].ok = true;
    pthread_mutex_unlock(&cache_lock);
    return true;
}

size_t uqn_hello_encode(const uqn_identity *id, uint8_t *out)
{
    size_t nl = strlen(id->name), len = 2 + nl + 32 + 64;
    pthread_mutex_lock(&cache_lock);
    for (unsigned i = 0; i < HELLO_CACHE; i++) {
        hello_ent *h = &hello_cache[i];
        if (h->len == len && memcmp(h->pk, id->pk, 32) == 0 && memcmp(h->x_pk, id->x_pk, 32) == 0 &&
            strcmp(h->name, id->name) == 0) {
            memcpy(out, h->hello, len);
            pthread_mutex_unlock(&cache_lock);
            return len;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    uint8_t m[sizeof SIG_CONTEXT + 32 + UQN_NAME_MAX];
    size_t ml = signed_msg(id->x_pk, id->name, m);
    out[0] = UQN_HELLO_VERSION;
    out[1] = (uint8_t)nl;
    memcpy(out + 2, id->name, nl);
    memcpy(out + 2 + nl, id->pk, 32);
    uqn_identity_sign(id, m, ml, out + 2 + nl + 32);
    pthread_mutex_lock(&cache_lock);
    hello_ent *h = &hello_cache[hello_next++ % HELLO_CACHE];
    memcpy(h->pk, id->pk, 32);
    memcpy(h->x_pk, id->x_pk, 32);
    snprintf(h->name, sizeof h->name, "%s", id->name);
    memcpy(h->hello, out, len);
    h->len = len;
    pthread_mutex_unlock(&cache_lock);
    return len;
}

static bool verified_before(const uint8_t *p, size_t n, const uint8_t rs[32])
{
    bool hit = false;
    pthread_mutex_lock(&cache_lock);
    for (unsigned i = 0; i < VERIFIED_CACHE && !hit; i++) {
        verified_ent *v = &verified_cache[i];
        hit = v->len == n && memcmp(v->rs, rs, 32) == 0 && memcmp(v->hello, p, n) == 0;
    }
    pthread_mutex_unlock(&cache_lock);
    return hit;
}

static void verified_now(const uint8_t *p, size_t n, const uint8_t rs[32])
{
    pthread_mutex_lock(&cache_lock);
    verified_ent *v = &verified_cache[verified_next++ % VERIFIED_CACHE];
    memcpy(v->rs, rs, 32);
    memcpy(v->hello, p, n);
    v->len = n;
    pthread_mutex_unlock(&cache_lock);
}

uq_err uqn_hello_decode(const uint8_t *p, size_t n, const uint8_t remote_static[32],
                        uqn_peer *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    if (n < 2) return uqi_errf(em, UQ_ECORRUPT, "net: the peer's hello is %zu bytes", n);
    if (p[0] != UQN_HELLO_VERSION)
        return uqi_errf(em, UQ_ECORRUPT, "net: the peer speaks link version %u, we speak %u",
                        p[0], UQN_HELLO_VERSION);
    size_t nl = p[1];
    if (nl == 0 || nl > UQN_NAME_MAX || n != 2 + nl + 32 + 64)
        return uqi_errf(em, UQ_ECORRUPT, "net: the peer's hello is malformed (%zu bytes)", n);
    memcpy(out->name, p + 2, nl);
    out->name[nl] = '\0';
    if (strlen(out->name) != nl || !uqi_node_name_valid(out->name))
        return uqi_errf(em, UQ_ECORRUPT, "net: the peer's hello carries an invalid node name");
    memcpy(out->pk, p + 2 + nl, 32);
    if (verified_before(p, n, remote_static)) return UQ_OK;
    uint8_t m[sizeof SIG_CONTEXT + 32 + UQN_NAME_MAX];
    size_t ml = signed_msg(remote_static, out->name, m);
    if (uqn_sig_verify(out->pk, m, ml, p + 2 + nl + 32) != UQ_OK)
        return uqi_errf(em, UQ_ECRYPTO, "net: the peer claiming to be %s did not sign its Noise key "
                        "with that node's identity key", out->name);
    verified_now(p, n, remote_static);
    return UQ_OK;
}

/* ---- link --------------------------------------------------------------- */

static uq_err fail(uqn_link *l, uq_err e)
{
    if (!l->err) l->err = e;
    return e;
}

static void out_append(uqn_link *l, const uint8_t *msg, size_t len)
{
    UQ_VERIFY(l->out_len + 2 + len <= sizeof l->out);
    l->out[l->out_len] = (uint8_t)(len >> 8);
    l->out[l->out_len + 1] = (uint8_t)len;
    memcpy(l->out + l->out_len + 2, msg, len);
    l->out_len += 2 + len;
}

static uq_err hs_write(uqn_link *l, const uint8_t *payload, size_t plen, uq_errmsg *em)
{
    uint8_t msg[32 + 48 + UQN_HELLO_MAX + UQN_NOISE_TAG];
    size_t n;
    uq_err e = uqn_hs_write(&l->hs, payload, plen, msg, sizeof msg, &n, em);
    if (e) return fail(l, e);
    out_append(l, msg, n);
    return UQ_OK;
}

/* ---- resumption ---------------------------------------------------------- */

#define RESUME_PROLOGUE "uqbar-link/1 resume"
#define RESUME_MSG1 (UQN_TICKET_ID + 32 + UQN_NOISE_TAG) /* ticket id || NNpsk0 message 1 (e, tag) */
#define RESUME_MSG2 (32 + UQN_NOISE_TAG)                 /* NNpsk0 message 2 (e, tag) */
#define XX_MSG1 32

static size_t resume_prologue(const uint8_t id[UQN_TICKET_ID], uint8_t out[64])
{
    size_t n = sizeof RESUME_PROLOGUE - 1;
    memcpy(out, RESUME_PROLOGUE, n);
    memcpy(out + n, id, UQN_TICKET_ID);
    return n + UQN_TICKET_ID;
}

/* Before the split: the ticket this handshake makes for the peer. */
static void make_ticket(uqn_link *l)
{
    if (!l->cfg.tickets) return;
    uqn_hs_resumption(&l->hs, l->next.id, l->next.psk);
    snprintf(l->next.name, sizeof l->next.name, "%s", l->peer.name);
    memcpy(l->next.pk, l->peer.pk, 32);
}

static void keep_ticket(uqn_link *l)
{
    if (l->cfg.tickets && l->next.name[0]) uqn_tickets_put(l->cfg.tickets, &l->next, uqi_now_ns());
    sodium_memzero(&l->next, sizeof l->next);
}

/* Is tk's peer still the one the directory names? */
static bool ticket_current(uqn_link *l, const uqn_ticket *tk)
{
    uint8_t want[32];
    uq_errmsg lem = {{0}};
    return strcmp(tk->name, l->cfg.id->name) != 0 && l->cfg.lookup(l->cfg.lookup_arg, tk->name, want, &lem) == UQ_OK &&
           sodium_memcmp(want, tk->pk, 32) == 0;
}

/* Initiator: message 1 as a resumption attempt, if a ticket for the peer is
 * held and its key is still the directory's. Its e also begins an XX
 * handshake (l->xx), for a responder that answers with XX instead. */
static bool try_resume(uqn_link *l)
{
    uqn_ticket tk;
    if (!uqn_tickets_take_name(l->cfg.tickets, l->expect, uqi_now_ns(), &tk)) return false;
    uint8_t pro[64], msg[RESUME_MSG1], x1[XX_MSG1];
    size_t pl = resume_prologue(tk.id, pro), n = 0, xn = 0;
    uq_errmsg em = {{0}};
    bool ok = ticket_current(l, &tk) &&
              uqn_hs_init_psk0(&l->hs, l->cfg.hash, true, pro, pl, tk.psk, &em) == UQ_OK &&
              uqn_hs_write(&l->hs, NULL, 0, msg + UQN_TICKET_ID, sizeof msg - UQN_TICKET_ID, &n, &em) == UQ_OK &&
              uqn_hs_init_pair(&l->xx, l->cfg.hash, true, (const uint8_t *)UQN_PROLOGUE, strlen(UQN_PROLOGUE),
                               l->cfg.id->x_sk, l->cfg.id->x_pk, &em) == UQ_OK;
    if (ok) {
        uqn_hs_share_ephemeral(&l->xx, &l->hs);
        ok = uqn_hs_write(&l->xx, NULL, 0, x1, sizeof x1, &xn, &em) == UQ_OK && xn == XX_MSG1 &&
             n + UQN_TICKET_ID == RESUME_MSG1;
    }
    if (ok) {
        memcpy(msg, tk.id, UQN_TICKET_ID);
        out_append(l, msg, RESUME_MSG1);
        l->resuming = true;
        snprintf(l->peer.name, sizeof l->peer.name, "%s", tk.name);
        memcpy(l->peer.pk, tk.pk, 32);
    } else {
        uqn_hs_wipe(&l->hs);
        uqn_hs_wipe(&l->xx);
    }
    sodium_memzero(&tk, sizeof tk);
    sodium_memzero(x1, sizeof x1);
    return ok;
}

static uq_err finish(uqn_link *l, uq_errmsg *em);

/* Responder, resumed: the first frame of the peer that authenticates
 * proves it holds the session keys (message 1 alone could be a replay). */
static void confirmed(uqn_link *l)
{
    l->confirm = false;
    l->established = true;
    l->dec.deliver = l->cfg.deliver;
    l->dec.arg = l->cfg.deliver_arg;
    keep_ticket(l);
}

static uq_err confirm_deliver(void *arg, const uint8_t *msg, size_t len)
{
    uqn_link *l = arg;
    if (l->confirm) confirmed(l);
    return l->cfg.deliver ? l->cfg.deliver(l->cfg.deliver_arg, msg, len) : UQ_OK;
}

/* Responder: message 1 is a resumption attempt. A ticket it does not hold
 * (unknown, used, expired) or whose peer the directory now names otherwise:
 * *fall_back, and its e is answered as XX message 1. A ticket it holds:
 * the message must authenticate under that ticket's secret (UQ_ECRYPTO
 * otherwise, final); the answer is NNpsk0 message 2. */
static uq_err resume_respond(uqn_link *l, const uint8_t *msg, size_t len, bool *fall_back, uq_errmsg *em)
{
    *fall_back = true;
    uqn_ticket tk;
    if (!l->cfg.tickets || !uqn_tickets_take_id(l->cfg.tickets, msg, uqi_now_ns(), &tk)) return UQ_OK;
    if (!ticket_current(l, &tk)) {
        sodium_memzero(&tk, sizeof tk);
        return UQ_OK;
    }
    *fall_back = false;
    uint8_t pro[64], pb[16];
    size_t pl = resume_prologue(tk.id, pro), pn = 0;
    uqn_hs hs;
    uq_errmsg nem = {{0}};
    uq_err e = uqn_hs_init_psk0(&hs, l->cfg.hash, false, pro, pl, tk.psk, &nem);
    if (!e) e = uqn_hs_read(&hs, msg + UQN_TICKET_ID, len - UQN_TICKET_ID, pb, sizeof pb, &pn, &nem);
    if (!e && pn) e = uqi_errf(&nem, UQ_ECORRUPT, "net: a resumption's first message carries a payload");
    if (e) {
        uqi_errf(em, e, "net: a resumption with a ticket of %s was refused: %s", tk.name, nem.text);
    } else {
        l->hs = hs;
        snprintf(l->peer.name, sizeof l->peer.name, "%s", tk.name);
        memcpy(l->peer.pk, tk.pk, 32);
        l->resumed = l->confirm = true;
        l->dec.deliver = confirm_deliver;
        l->dec.arg = l;
        if (!(e = hs_write(l, NULL, 0, em))) e = finish(l, em); /* <- e, ee; split; a new ticket once confirmed */
    }
    uqn_hs_wipe(&hs);
    sodium_memzero(&tk, sizeof tk);
    return e;
}

/* Initiator resuming, message 2: NNpsk0's answer, or XX's (fall back to
 * the XX state its message 1 began). *done: it was NNpsk0's. */
static uq_err resume_answer(uqn_link *l, const uint8_t *msg, size_t len, bool *done, uq_errmsg *em)
{
    l->resuming = false;
    *done = len == RESUME_MSG2;
    if (!*done) {
        uqn_hs_wipe(&l->hs);
        l->hs = l->xx;
        uqn_hs_wipe(&l->xx);
        memset(&l->peer, 0, sizeof l->peer);
        return UQ_OK;
    }
    uqn_hs_wipe(&l->xx);
    uint8_t pb[16];
    size_t pn = 0;
    uq_err e = uqn_hs_read(&l->hs, msg, len, pb, sizeof pb, &pn, em);
    if (e) return e;
    if (pn) return uqi_errf(em, UQ_ECORRUPT, "net: the answer to a resumption carries a payload");
    l->resumed = true;
    if ((e = finish(l, em))) return e;
    /* the responder counts the link up once a frame of ours authenticates:
     * one goes at once, with whatever is queued (an empty message) */
    return uqn_fenc_push(&l->enc, "", 0, em);
}

uq_err uqn_link_new(const uqn_link_cfg *cfg, uqn_link **out, uq_errmsg *em)
{
    *out = NULL;
    if (!cfg->id || !cfg->lookup || (cfg->initiator && !cfg->expect_name))
        return uqi_errf(em, UQ_EINVAL, "net: a link needs an identity, a lookup, and (to dial) a name");
    if (cfg->expect_name && !uqi_node_name_valid(cfg->expect_name))
        return uqi_errf(em, UQ_EINVAL, "net: \"%s\" is not a node name", cfg->expect_name);
    uqn_link *l = uqi_xmalloc(sizeof *l);
    memset(l, 0, LINK_STATE);
    l->cfg = *cfg;
    if (cfg->expect_name) snprintf(l->expect, sizeof l->expect, "%s", cfg->expect_name);
    l->cfg.expect_name = cfg->expect_name ? l->expect : NULL;
    uqn_fenc_init(&l->enc);
    uqn_fdec_init(&l->dec, cfg->max_msg, cfg->deliver, cfg->deliver_arg);
    uq_err e = UQ_OK;
    if (!(cfg->initiator && cfg->tickets && try_resume(l))) {
        e = uqn_hs_init_pair(&l->hs, cfg->hash, cfg->initiator, (const uint8_t *)UQN_PROLOGUE,
                             strlen(UQN_PROLOGUE), cfg->id->x_sk, cfg->id->x_pk, em);
        if (!e && cfg->initiator) e = hs_write(l, NULL, 0, em); /* -> e */
    }
    if (e) {
        uqn_link_free(l);
        return e;
    }
    *out = l;
    return UQ_OK;
}

void uqn_link_free(uqn_link *l)
{
    if (!l) return;
    uqn_fenc_fini(&l->enc);
    uqn_fdec_fini(&l->dec);
    free(l->hbuf);
    sodium_memzero(l, LINK_STATE); /* the handshake state and the transport keys */
    free(l);
}

/* The peer proved it holds the static key; now check who it claims to be
 * against the name we dialed and the directory's key for that name. */
static uq_err check_peer(uqn_link *l, const uint8_t *payload, size_t plen, uq_errmsg *em)
{
    uq_err e = uqn_hello_decode(payload, plen, uqn_hs_remote_static(&l->hs), &l->peer, em);
    if (e) return e;
    if (l->cfg.expect_name && strcmp(l->peer.name, l->cfg.expect_name) != 0)
        return uqi_errf(em, UQ_ECRYPTO, "net: dialed %s but the peer is %s", l->cfg.expect_name,
                        l->peer.name);
    if (strcmp(l->peer.name, l->cfg.id->name) == 0)
        return uqi_errf(em, UQ_ECRYPTO, "net: the peer claims our own name %s", l->peer.name);
    uint8_t want[32];
    uq_errmsg lem = {{0}};
    e = l->cfg.lookup(l->cfg.lookup_arg, l->peer.name, want, &lem);
    if (e == UQ_ENOENT)
        return uqi_errf(em, UQ_ENOENT, "net: %s is not in the directory", l->peer.name);
    if (e) return uqi_errf(em, e, "net: looking up %s: %s", l->peer.name, lem.text);
    if (sodium_memcmp(want, l->peer.pk, 32) != 0) {
        char got[65], exp[65];
        uqn_hex(l->peer.pk, 32, got);
        uqn_hex(want, 32, exp);
        return uqi_errf(em, UQ_ECRYPTO, "net: the peer claiming to be %s has key %.16s..., the "
                        "directory says %.16s...", l->peer.name, got, exp);
    }
    return UQ_OK;
}

static uq_err finish(uqn_link *l, uq_errmsg *em)
{
    make_ticket(l);
    uq_err e = uqn_hs_split(&l->hs, &l->tx, &l->rx, em);
    if (e) return e;
    if (l->confirm) return UQ_OK; /* resumed responder: established by confirmed() */
    l->established = true;
    keep_ticket(l);
    return UQ_OK;
}

/* One complete handshake message from the peer. */
static uq_err hs_message(uqn_link *l, const uint8_t *msg, size_t len, uq_errmsg *em)
{
    uint8_t payload[UQN_HELLO_MAX], hello[UQN_HELLO_MAX]; /* a longer payload is refused */
    size_t plen;
    uq_err e;
    if (!l->cfg.initiator && l->hs.step == 0 && !l->hs.psk0 && len == RESUME_MSG1) {
        bool fall_back;
        if ((e = resume_respond(l, msg, len, &fall_back, em)) || !fall_back) return e;
        msg += UQN_TICKET_ID; /* its e is XX message 1 */
        len = XX_MSG1;
    }
    if (l->resuming) {
        bool done;
        if ((e = resume_answer(l, msg, len, &done, em)) || done) return e;
    }
    int step = l->hs.step;
    e = uqn_hs_read(&l->hs, msg, len, payload, sizeof payload, &plen, em);
    if (e) return e;
    if (step == 0) { /* responder got -> e; answers <- e, ee, s, es + hello */
        if (plen != 0) return uqi_errf(em, UQ_ECORRUPT, "net: the first handshake message carries a payload");
        return hs_write(l, hello, uqn_hello_encode(l->cfg.id, hello), em);
    }
    if ((e = check_peer(l, payload, plen, em))) {
        if (e == UQ_ENOENT && l->cfg.defer_unknown && !l->cfg.initiator) {
            l->held = true; /* until uqn_link_resolve */
            return UQ_OK;
        }
        return e;
    }
    if (step == 1) { /* initiator: -> s, se + hello, then done */
        if ((e = hs_write(l, hello, uqn_hello_encode(l->cfg.id, hello), em))) return e;
    }
    return finish(l, em);
}

uq_err uqn_link_input(uqn_link *l, const uint8_t *data, size_t n, uq_errmsg *em)
{
    if (l->err) return uqi_errf(em, l->err, "net: the link already failed (%s)", uq_strerror(l->err));
    size_t i = 0;
    uq_err e;
    if (l->held) goto hold;
    while (i < n && !l->established && !l->held && !l->confirm) {
        if (uqn_hs_next(&l->hs) != UQN_HS_READ)
            return fail(l, uqi_errf(em, UQ_ECORRUPT, "net: the peer sent out of turn in the handshake"));
        if (l->hin_got < 2) { /* the length prefix */
            l->hin[l->hin_got++] = data[i++];
            if (l->hin_got < 2) continue;
        }
        size_t want = 2 + ((size_t)l->hin[0] << 8 | l->hin[1]);
        size_t take = want - l->hin_got;
        if (take > n - i) take = n - i;
        memcpy(l->hin + l->hin_got, data + i, take);
        l->hin_got += take;
        i += take;
        if (l->hin_got < want) break;
        l->hin_got = 0;
        if ((e = hs_message(l, l->hin + 2, want - 2, em))) return fail(l, e);
    }
    if (i < n && l->confirm) { /* resumed responder: the peer's first frame */
        uint64_t n0 = l->rx.n;
        if ((e = uqn_fdec_feed(&l->dec, &l->rx, data + i, n - i, em))) return fail(l, e);
        if (l->confirm && l->rx.n > n0) confirmed(l);
        i = n;
    }
    if (i < n && l->established) {
        if ((e = uqn_fdec_feed(&l->dec, &l->rx, data + i, n - i, em))) return fail(l, e);
    }
hold:
    if (i < n && l->held) {
        if (l->hlen + (n - i) > UQN_LINK_HELD_MAX)
            return fail(l, uqi_errf(em, UQ_ELIMIT, "net: %s, not yet known, sent over %u bytes before it was looked "
                                    "up", l->peer.name, UQN_LINK_HELD_MAX));
        l->hbuf = realloc(l->hbuf, l->hlen + (n - i));
        UQ_VERIFY(l->hbuf != NULL);
        memcpy(l->hbuf + l->hlen, data + i, n - i);
        l->hlen += n - i;
    }
    return UQ_OK;
}

const uqn_peer *uqn_link_pending(const uqn_link *l) { return l->held && !l->err ? &l->peer : NULL; }

uq_err uqn_link_resolve(uqn_link *l, uq_errmsg *em)
{
    if (l->err) return uqi_errf(em, l->err, "net: the link already failed (%s)", uq_strerror(l->err));
    if (!l->held) return UQ_OK;
    l->held = false;
    uint8_t want[32];
    uq_errmsg lem = {{0}};
    uq_err e = l->cfg.lookup(l->cfg.lookup_arg, l->peer.name, want, &lem);
    if (e == UQ_ENOENT)
        return fail(l, uqi_errf(em, UQ_ENOENT, "net: %s is not in the directory, and no peer knew it", l->peer.name));
    if (e) return fail(l, uqi_errf(em, e, "net: looking up %s: %s", l->peer.name, lem.text));
    if (sodium_memcmp(want, l->peer.pk, 32) != 0) {
        char got[65], exp[65];
        uqn_hex(l->peer.pk, 32, got);
        uqn_hex(want, 32, exp);
        return fail(l, uqi_errf(em, UQ_ECRYPTO, "net: the peer claiming to be %s has key %.16s..., the directory "
                                "(after a look-up) says %.16s...", l->peer.name, got, exp));
    }
    if ((e = finish(l, em))) return fail(l, e);
    uint8_t *b = l->hbuf;
    size_t n = l->hlen;
    l->hbuf = NULL;
    l->hlen = 0;
    if (n) e = uqn_fdec_feed(&l->dec, &l->rx, b, n, em);
    free(b);
    return e ? fail(l, e) : UQ_OK;
}

uq_err uqn_link_send(uqn_link *l, const void *msg, size_t len, uq_errmsg *em)
{
    if (l->err) return uqi_errf(em, UQ_ECLOSED, "net: the link failed (%s)", uq_strerror(l->err));
    return uqn_fenc_push(&l->enc, msg, len, em);
}

uq_err uqn_link_send_ref(uqn_link *l, uqn_fenc_msg *m, uq_errmsg *em)
{
    if (l->err) return uqi_errf(em, UQ_ECLOSED, "net: the link failed (%s)", uq_strerror(l->err));
    if (m->len > UINT32_MAX)
        return uqi_errf(em, UQ_ELIMIT, "net: a message of %zu bytes is too large for a link", m->len);
    uqn_fenc_push_ref(&l->enc, m);
    return UQ_OK;
}

void uqn_link_cancel_output(uqn_link *l)
{
    uqn_fenc_fini(&l->enc);
    uqn_fenc_init(&l->enc);
    l->out_off = l->out_len = 0;
}

size_t uqn_link_output(uqn_link *l, const uint8_t **p)
{
    if (l->out_off == l->out_len) l->out_off = l->out_len = 0;
    /* as many frames as fit, for one write; also behind bytes not yet
     * written (the last handshake message: the first messages go with it) */
    while (l->established && !l->err && uqn_fenc_pending(&l->enc) &&
           sizeof l->out - l->out_len >= UQN_FRAME_WIRE_MAX) {
        uq_errmsg em;
        size_t n;
        uq_err e = uqn_fenc_next_frame(&l->enc, &l->tx, l->out + l->out_len, &n, &em);
        if (e) {
            fail(l, e);
            break;
        }
        l->out_len += n;
    }
    *p = l->out + l->out_off;
    return l->out_len - l->out_off;
}

void uqn_link_output_done(uqn_link *l, size_t n)
{
    UQ_VERIFY(n <= l->out_len - l->out_off);
    l->out_off += n;
}

void uqn_link_precompute(uqn_link *l)
{
    if (!l->cfg.initiator || l->established || l->err || l->resuming || l->hs.psk0 || l->hs.step != 1 ||
        l->hs.has_es)
        return;
    uint8_t pk[32], x[32];
    uq_errmsg em = {{0}};
    if (l->cfg.lookup(l->cfg.lookup_arg, l->expect, pk, &em) != UQ_OK) return;
    if (x_key_of(pk, x)) uqn_hs_precompute_es(&l->hs, x);
}

bool uqn_link_established(const uqn_link *l) { return l->established; }
bool uqn_link_resumed(const uqn_link *l) { return l->resumed; }
const uqn_peer *uqn_link_peer(const uqn_link *l) { return l->established ? &l->peer : NULL; }
size_t uqn_link_queued(const uqn_link *l) { return l->enc.queued_bytes; }
uq_err uqn_link_error(const uqn_link *l) { return l->err; }
