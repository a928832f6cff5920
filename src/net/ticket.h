/* Link resumption tickets (docs/PROTOCOL.md, "Resumption"): after a link's
 * handshake both nodes hold the same ticket (a 16-byte id and a 32-byte
 * secret derived from the handshake, uqn_hs_resumption) for the peer it
 * authenticated. The next dial to that peer may present the id and prove the
 * secret (Noise NNpsk0: one DH per side instead of three, no signatures).
 * Each ticket is used once: taken (removed) by the dialer when it dials, and
 * by the responder when it looks the id up, whatever comes next. Tickets
 * expire; a store is bounded (the ticket that expires first is dropped) and
 * belongs to one net module, in memory only. Not thread-safe: the net
 * thread's. */
#ifndef UQ_NET_TICKET_H
#define UQ_NET_TICKET_H

#include "net/identity.h"

#define UQN_TICKET_ID 16
#define UQN_TICKET_LIFE_S 3600u   /* default lifetime */
#define UQN_TICKETS_MAX 256u      /* default bound */

typedef struct uqn_ticket {
    uint8_t id[UQN_TICKET_ID];
    uint8_t psk[32];
    char name[UQN_NAME_MAX + 1];  /* the peer it was made with */
    uint8_t pk[32];               /* and its Ed25519 key */
    uint64_t expires;             /* uqi_now_ns() time */
} uqn_ticket;

typedef struct uqn_tickets uqn_tickets;

uqn_tickets *uqn_tickets_new(size_t max, uint64_t life_ns);
void uqn_tickets_free(uqn_tickets *t);  /* wipes the secrets; NULL is a no-op */
/* Keep t's ticket for its peer (name, pk, id, psk; expires is set here to
 * now + the lifetime), replacing the one held for that name. */
void uqn_tickets_put(uqn_tickets *t, const uqn_ticket *tk, uint64_t now);
/* Take (remove) the ticket for name or with id; false if none is held or
 * it expired. *out is the caller's to wipe. */
bool uqn_tickets_take_name(uqn_tickets *t, const char *name, uint64_t now, uqn_ticket *out);
bool uqn_tickets_take_id(uqn_tickets *t, const uint8_t id[UQN_TICKET_ID], uint64_t now, uqn_ticket *out);
size_t uqn_tickets_count(const uqn_tickets *t);

#endif
