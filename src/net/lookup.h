/* Directory look-ups between peers (docs/PROTOCOL.md §8). A node that must
 * send to a name its directory does not know asks the peers it has links to
 * (and those of its directory file) for that name's signed record; an answer
 * is accepted only through the directory's rules (the signature verifies; a
 * different key for a known name is refused) and only if that peer was asked
 * for that name; records learned so are kept apart from the operator's file
 * (<home>/learned) and survive a reboot. Nodes answer look-ups for the
 * records they know, their own included, at a bounded rate.
 *
 * Two parts: the wire codec (lookup_wire.c, no state: fuzzed), and the
 * look-up table of one net module (lookup.c), driven by the net thread
 * only (except uqn_lk_why and uqn_lk_get_stats, which any thread may call). */
#ifndef UQ_NET_LOOKUP_H
#define UQ_NET_LOOKUP_H

#include "net/record.h"

/* ---- wire ------------------------------------------------------------------ */

#define UQN_LK_REQ 0x10        /* first byte of a look-up request */
#define UQN_LK_ANS 0x11        /* first byte of a look-up answer */
#define UQN_LK_VERSION 1
#define UQN_LK_UNKNOWN 0       /* answer status: the name is not known */
#define UQN_LK_FOUND 1         /* answer status: a record follows */
/* The largest look-up message: an answer with the largest record. */
#define UQN_LK_MSG_MAX (3 + UQN_NAME_MAX + 1 + 2 + UQN_RECORD_MAX)

typedef struct uqn_lkmsg {
    uint8_t type;              /* UQN_LK_REQ or UQN_LK_ANS */
    char name[UQN_NAME_MAX + 1];
    bool found;                /* answers: a record for name follows */
    uqn_record rec;            /* when found: decoded and its signature verified */
} uqn_lkmsg;

/* Is this link message a look-up message (by its first byte)? */
bool uqn_lk_is_msg(const uint8_t *p, size_t n);
/* Encodings into out (UQN_LK_MSG_MAX bytes); return the length. */
size_t uqn_lk_encode_req(const char *name, uint8_t *out);
/* r NULL: "unknown"; else r->name must be name. */
size_t uqn_lk_encode_ans(const char *name, const uqn_record *r, uint8_t *out);
/* Decode a look-up message. UQ_ECORRUPT: malformed or not canonical (a bad
 * type, version, name, status, length, trailing bytes, a record for another
 * name); UQ_ECRYPTO: the record's signature does not verify. */
uq_err uqn_lk_decode(const uint8_t *p, size_t n, uqn_lkmsg *out, uq_errmsg *em);

/* ---- the look-up table of a net module ------------------------------------ */

struct uqn_net;
typedef struct uqn_lk uqn_lk;

/* What the net module lends the table (net thread). */
typedef struct uqn_lk_hooks {
    struct uqn_net *net;
    /* the names of peers with an established link, at most max */
    size_t (*linked)(struct uqn_net *net, char (*out)[UQN_NAME_MAX + 1], size_t max);
    /* the operator's directory (reread if it changed), or NULL */
    const uqn_dir *(*file)(struct uqn_net *net);
    /* the look-up of name ended: ok = a record (new, or newer) is now known */
    void (*finished)(struct uqn_net *net, const char *name, bool ok);
} uqn_lk_hooks;

typedef struct uqn_lk_cfg {
    const uqn_identity *id;
    const char *learned_path;  /* records learned from peers, or NULL: memory only */
    uint32_t timeout_ms;       /* how long peers are waited for */
} uqn_lk_cfg;

typedef struct uqn_lk_stats {
    uint64_t started;          /* look-ups begun (a name asked of peers) */
    uint64_t found, failed;    /* ended with a record / without */
    uint64_t refused;          /* answers refused: bad signature, another key, wrong name, two keys */
    uint64_t malformed;        /* look-up messages that did not decode */
    uint64_t unsolicited;      /* answers nobody asked that peer for */
    uint64_t served, served_unknown, limited;  /* requests answered (found / unknown), dropped over the rate */
    uint32_t learned;          /* records held that were learned from peers */
} uqn_lk_stats;

uqn_lk *uqn_lk_new(const uqn_lk_cfg *cfg, const uqn_lk_hooks *hooks);
void uqn_lk_free(uqn_lk *lk);  /* NULL is a no-op */

/* This node's own record (answered for its name). */
void uqn_lk_set_own(uqn_lk *lk, const uqn_record *r);
const uqn_record *uqn_lk_own(const uqn_lk *lk);

/* The record to use for name: the file's, or a learned one (a learned
 * record with the file's key and a higher sequence is a refresh and wins;
 * a learned record with another key than the file's is ignored). NULL if
 * neither knows it. Valid until the next call on the table. */
const uqn_record *uqn_lk_record(uqn_lk *lk, const uqn_dir *file, const char *name);

/* Messages to name wait: ask peers about it. known: the directory has a
 * record whose addresses all failed (a refresh, at most one per name every
 * few seconds). True if a look-up is under way (the hook "finished" will
 * come); false if there is nobody to ask, too many look-ups already, or the
 * name failed a moment ago: the caller fails the messages (uqn_lk_why says
 * why). */
bool uqn_lk_want(uqn_lk *lk, const char *name, bool known);
/* A look-up message from an authenticated peer. */
void uqn_lk_recv(uqn_lk *lk, const char *peer, const uint8_t *p, size_t n);
/* Is cookie one of the table's own (a request it queued)? Then its fate. */
bool uqn_lk_owns(const void *cookie);
void uqn_lk_sent(uqn_lk *lk, void *cookie, int why);
/* Timeouts and ends of look-ups (each tick of the net thread). */
void uqn_lk_tick(uqn_lk *lk, uint64_t now_ns);

/* Why the last look-up of name failed, "" if none (any thread). */
void uqn_lk_why(uqn_lk *lk, const char *name, char *out, size_t cap);
void uqn_lk_get_stats(uqn_lk *lk, uqn_lk_stats *out);

#endif
