/* A link between two nodes, without I/O: the Noise XX handshake with uqbar's
 * identity payloads (who we are, signed), then framed transport both ways.
 * The caller moves bytes between the link and a socket: uqn_link_input with
 * what it read, uqn_link_output/uqn_link_output_done for what to write.
 * Protocol: docs/PROTOCOL.md ("Handshake"). Not thread-safe: one thread at
 * a time per link. */
#ifndef UQ_NET_LINK_H
#define UQ_NET_LINK_H

#include "net/frame.h"
#include "net/identity.h"
#include "net/noise.h"
#include "net/ticket.h"

#define UQN_PROLOGUE "uqbar-link/1"
#define UQN_HELLO_VERSION 1
#define UQN_HELLO_MAX (2 + UQN_NAME_MAX + 32 + 64)

/* ---- handshake payloads ("hello") -------------------------------------- */

/* Who the peer proved to be. */
typedef struct uqn_peer {
    char name[UQN_NAME_MAX + 1];
    uint8_t pk[32];   /* Ed25519 */
} uqn_peer;

/* Our hello: version, name, Ed25519 key, and the Ed25519 signature that binds
 * our Noise static key x_pk to them. out holds UQN_HELLO_MAX bytes. */
size_t uqn_hello_encode(const uqn_identity *id, uint8_t *out);
/* Parse a peer's hello and check its signature over remote_static (the
 * static key Noise authenticated). UQ_ECORRUPT if malformed, UQ_ECRYPTO if
 * the signature does not verify. */
uq_err uqn_hello_decode(const uint8_t *p, size_t n, const uint8_t remote_static[32],
                        uqn_peer *out, uq_errmsg *em);

/* The directory's answer for a name: its Ed25519 key. UQ_ENOENT if unknown. */
typedef uq_err (*uqn_lookup_fn)(void *arg, const char *name, uint8_t pk[32], uq_errmsg *em);

typedef struct uqn_link_cfg {
    const uqn_identity *id;   /* borrowed; must outlive the link */
    bool initiator;           /* we dialed */
    const char *expect_name;  /* initiator: the node we dialed (required); responder: NULL */
    uqn_lookup_fn lookup;     /* required: name -> key, e.g. uqn_dir_lookup */
    void *lookup_arg;
    uqn_deliver_fn deliver;   /* each received message (lent for the call) */
    void *deliver_arg;
    size_t max_msg;           /* largest message received; 0: UQN_MSG_MAX_DEFAULT */
    bool defer_unknown;       /* responder: a peer the directory does not know is held (uqn_link_pending)
                               * until uqn_link_resolve, instead of refused */
    uqn_hash hash;            /* UQN_HASH_BLAKE2B (both sides must agree) */
    uqn_tickets *tickets;     /* resumption tickets (borrowed, the link's thread only); NULL: none kept, none
                               * used, and a resumption attempt is answered with XX */
} uqn_link_cfg;

typedef struct uqn_link uqn_link;

/* A new link. The initiator's first handshake message is ready in the output
 * at once: a resumption attempt if cfg->tickets holds a ticket for
 * expect_name whose key is still the directory's, else XX message 1.
 * UQ_EINVAL for a bad configuration. */
uq_err uqn_link_new(const uqn_link_cfg *cfg, uqn_link **out, uq_errmsg *em);
void uqn_link_free(uqn_link *l);  /* NULL is a no-op; wipes keys */

/* Bytes read from the peer, split anywhere. Drives the handshake, then
 * decodes frames and delivers messages. Every error is final (close the
 * link): UQ_ECRYPTO (authentication: wrong key, altered bytes, a peer whose
 * key is not the directory's), UQ_ENOENT (a peer the directory does not
 * know), UQ_ECORRUPT (malformed), UQ_ELIMIT (a message over the limit). */
uq_err uqn_link_input(uqn_link *l, const uint8_t *data, size_t n, uq_errmsg *em);
/* Queue a message (copied). Sent once the handshake is done. */
uq_err uqn_link_send(uqn_link *l, const void *msg, size_t len, uq_errmsg *em);
/* Queue m (m->data and m->len set, len < 2^32) without a copy: m and its
 * data stay the caller's until the link has framed them all (output drained
 * and uqn_link_queued is 0), or uqn_link_cancel_output, or uqn_link_free. */
uq_err uqn_link_send_ref(uqn_link *l, uqn_fenc_msg *m, uq_errmsg *em);
/* Forget what is queued and not yet written (the link is being closed). */
void uqn_link_cancel_output(uqn_link *l);
/* The bytes to write now (*p valid until the next call on the link); 0 if
 * none. Up to UQN_LINK_OUT_FRAMES frames are made at a time (one write for
 * several frames), so a large queue costs no more than that much buffer. */
#define UQN_LINK_OUT_FRAMES 4
size_t uqn_link_output(uqn_link *l, const uint8_t **p);
/* n bytes of the last output were written. */
void uqn_link_output_done(uqn_link *l, size_t n);

/* Responder with defer_unknown: the peer proved its key but the directory
 * does not know its name. The handshake is complete; what the peer sends
 * meanwhile is held (at most UQN_LINK_HELD_MAX bytes, else UQ_ELIMIT)
 * until uqn_link_resolve looks the name up again: then the key must be the
 * directory's (UQ_ECRYPTO), the name known (UQ_ENOENT); both are final. */
#define UQN_LINK_HELD_MAX (1u << 20)
const uqn_peer *uqn_link_pending(const uqn_link *l);   /* NULL unless held */
uq_err uqn_link_resolve(uqn_link *l, uq_errmsg *em);

/* Work the initiator may do while it waits for the responder's answer to
 * its first handshake message (call after writing it): the X25519 with the
 * static key the directory gives for the dialed name (uqn_hs_precompute_es).
 * Optional, done once; the bytes are the same. */
void uqn_link_precompute(uqn_link *l);

bool uqn_link_established(const uqn_link *l);
/* The link was set up by resuming a ticket (NNpsk0) instead of XX. */
bool uqn_link_resumed(const uqn_link *l);
/* The authenticated peer, once established (NULL before). */
const uqn_peer *uqn_link_peer(const uqn_link *l);
/* Messages waiting to be framed (bytes), for back-pressure. */
size_t uqn_link_queued(const uqn_link *l);
/* The failure of the link, or UQ_OK. */
uq_err uqn_link_error(const uqn_link *l);

#endif
