/* The net module: one thread that owns every TCP connection of a node. It
 * listens, dials peers found in the directory, runs a uqn_link per
 * connection, and moves opaque messages (bytes) between per-peer send
 * queues and a receive callback. It knows nothing of kernel messages: the
 * kernel encodes them (src/kernel/remote.c) and gets back, for each message
 * it queued, exactly one "done" callback: written to the peer's socket, or
 * failed (Offline / Timeout).
 *
 * Per peer: a bounded send queue (bytes and messages: a full queue refuses
 * with UQ_ELIMIT, nothing is dropped); connection set up on demand;
 * reconnection with exponential back-off after a failure; keepalives and a
 * dead-peer timeout; an idle timeout that closes links no message used for a
 * while. A bound on peers and on connections. Docs: docs/PROTOCOL.md §7. */
#ifndef UQ_NET_NETMOD_H
#define UQ_NET_NETMOD_H

#include "net/link.h"
#include "net/lookup.h"
#include "net/record.h"

#define UQN_NET_MSG_MAX 10485800u   /* largest message on a link (kinode's figure) */

/* Why a queued message failed (the kernel's uqi_send_error values). */
#define UQN_DONE_SENT 0
#define UQN_DONE_OFFLINE 1          /* unknown name, nothing listening, refused, cut, wrong key */
#define UQN_DONE_TIMEOUT 2          /* reachable (or trying) but not written within the send timeout */

typedef struct uqn_net uqn_net;

typedef struct uqn_net_cfg {
    const uqn_identity *id;         /* borrowed; must outlive the module */
    const char *listen;             /* "host:port" to listen on (port 0: any), or NULL: dial only */
    const char *dir_path;           /* directory file (PROTOCOL.md §5), reread when it changes; may be NULL */
    uint32_t max_peers;             /* 0 = 256: peers with a queue or a link */
    size_t queue_bytes;             /* per peer; 0 = 64 MiB */
    uint32_t queue_msgs;            /* per peer; 0 = 65536 */
    uint32_t send_timeout_ms;       /* 0 = 5000: not written by then -> Timeout */
    uint32_t connect_timeout_ms;    /* 0 = 5000: TCP connect + handshake */
    uint32_t keepalive_ms;          /* 0 = 10000: an empty message when nothing was sent; dead after 3x silence */
    uint32_t idle_ms;               /* 0 = 300000: a link no message used for this long is closed */
    uint32_t backoff_min_ms;        /* 0 = 100: after a failed dial, sends fail Offline this long */
    uint32_t backoff_max_ms;        /* 0 = 5000: doubling up to this */
    /* Look-ups (PROTOCOL.md §8): a name the directory does not know (or
     * whose addresses all fail) is asked of peers; what they answer is
     * checked by the directory's rules and kept in learned_path. */
    const char *learned_path;       /* records learned from peers, or NULL: kept in memory only */
    uint32_t lookup_timeout_ms;     /* 0 = 3000, at most send_timeout_ms: peers are waited for this long */
    bool lookup_off;                /* neither ask nor answer: look-up messages go to recv like others */
    /* Resumption (PROTOCOL.md, "Resumption"): a link keeps a ticket for its
     * peer, and the next dial to that peer uses it (one DH per side instead
     * of three). Tickets live in this module's memory only. */
    bool resume_off;                /* no tickets: every link is a full XX handshake */
    uint32_t ticket_life_s;         /* 0 = 3600 */
    /* A message from an authenticated peer (net thread; msg is lent for the
     * call: copy what you keep). */
    void (*recv)(void *arg, const char *peer, const uint8_t *msg, size_t len);
    /* Optional: called after a burst of recv calls (each read's messages),
     * and before down, so that a receiver may collect what recv gives and
     * deliver it in one step (net thread). */
    void (*recv_flush)(void *arg);
    /* Each message queued with uqn_net_send ends here once (net thread, the
     * thread calling uqn_net_stop, or one in uqn_net_push), with UQN_DONE_*;
     * no lock of the net module's held but its io lock. */
    void (*done)(void *arg, void *cookie, int why);
    /* A message queued with uqn_net_send_quiet that failed (why is
     * UQN_DONE_OFFLINE or _TIMEOUT): its bytes, lent for the call, from
     * which the sender's error is rebuilt. Nothing is reported for one that
     * was written. Same threads as done; may be NULL (failures unreported). */
    void (*lost)(void *arg, const char *peer, const uint8_t *msg, size_t len, int why);
    /* An established link to peer was cut (closed by the peer, reset, dead
     * after silence; not an idle close) and no other link to it is up: what
     * was written and awaits an answer may never get one (net thread, or a
     * thread in uqn_net_push whose write found the link broken; may be
     * NULL). */
    void (*down)(void *arg, const char *peer);
    void *arg;
} uqn_net_cfg;

uq_err uqn_net_start(const uqn_net_cfg *cfg, uqn_net **out, uq_errmsg *em);
/* Stop the thread, close every link; what is still queued fails Offline. */
void uqn_net_stop(uqn_net *net);

/* Queue msg (malloc'ed; taken on success) for the node named peer. Errors
 * (the caller keeps msg): UQ_EINVAL bad name or a message over
 * UQN_NET_MSG_MAX; UQ_ELIMIT the peer's queue is full or too many peers
 * (backpressure: try again); UQ_ECLOSED stopping. Callable from any thread,
 * also from inside recv/done. cookie comes back in done (may be NULL). */
uq_err uqn_net_send(uqn_net *net, const char *peer, uint8_t *msg, size_t len, void *cookie, uq_errmsg *em);

/* The same for a message in two pieces: msg[0..head_len) (malloc'ed, taken
 * on success) then tail[0..tail_len), which is not copied: it is lent and
 * must stay unchanged until done reports the message (a large payload goes
 * out from where it is; the cookie can keep it alive). */
uq_err uqn_net_send_tail(uqn_net *net, const char *peer, uint8_t *msg, size_t head_len, const uint8_t *tail,
                         size_t tail_len, void *cookie, uq_errmsg *em);

/* A message that needs no report once written (no done call, no cookie):
 * a failure goes to cfg.lost with the message's bytes instead, so the
 * sender keeps nothing per message. With UQN_QUIET_COPY, msg stays the
 * caller's (it may be on the stack) and is copied; without, it is
 * malloc'ed and taken on success. A message of at most UQN_NET_INLINE
 * bytes is copied into its queue entry either way (no allocation).
 * With UQN_QUIET_PUSH (a message somebody waits for: a request that
 * expects a response, a response), the net thread may be left asleep and
 * the message written from this thread instead, by uqn_net_push: the
 * caller must call it once it holds no lock that a callback (done, lost,
 * down, recv) takes. Errors as uqn_net_send. */
#define UQN_NET_INLINE 232
#define UQN_QUIET_COPY 1u
#define UQN_QUIET_PUSH 2u
uq_err uqn_net_send_quiet(uqn_net *net, const char *peer, uint8_t *msg, size_t len, unsigned flags, uq_errmsg *em);
/* Write the messages this thread queued with UQN_QUIET_PUSH: from this
 * thread if the net thread sleeps (it saves waking it: 10-20 us on a
 * virtual CPU that halted), else by waking it. Callbacks may run here (a
 * link that fails while written), with no lock of the caller's held.
 * Cheap when nothing is owed; safe to call from any thread. */
void uqn_net_push(void);

/* Would a message of len bytes for peer fit in its queue now? UQ_ELIMIT
 * (with the same message as uqn_net_send) if not. Only a hint, for a
 * sender about to encode a large message: the queue may fill meanwhile, and
 * uqn_net_send decides. */
uq_err uqn_net_room(uqn_net *net, const char *peer, size_t len, uq_errmsg *em);

/* This node's own record (its key, the address listened on, signed; the
 * sequence is the Unix time at start): what it answers look-ups with. */
void uqn_net_own_record(const uqn_net *net, uqn_record *out);
/* Why messages to node last failed Offline after a look-up, e.g. "x is
 * unknown: not in the directory, and no peer knew it (...)"; "" if no
 * look-up failed for it. Any thread. */
void uqn_net_why(uqn_net *net, const char *node, char *out, size_t cap);
void uqn_net_lookup_stats(uqn_net *net, uqn_lk_stats *out);

/* Close the links to node now (the next send dials again), like an idle
 * close: for tests and benchmarks of link setup. Returns once the net
 * thread has closed them. */
void uqn_net_drop(uqn_net *net, const char *node);

/* The address actually listened on ("host:port"), or "" when not listening. */
const char *uqn_net_listen_addr(const uqn_net *net);

typedef struct uqn_net_stats {
    uint64_t links_up, links_failed, accepted, refused_conns;
    uint64_t links_resumed;         /* of links_up: set up with a ticket */
    uint64_t msgs_sent, msgs_recv, bytes_sent, bytes_recv;
    uint64_t offline, timeouts;
    uint64_t packed;                /* messages queued into a pack (netmod.c) rather than an entry of their own */
    uint64_t pushed;                /* times a sender wrote its own message while the thread slept (uqn_net_push) */
    uint32_t peers, conns;
} uqn_net_stats;
void uqn_net_get_stats(uqn_net *net, uqn_net_stats *out);

/* Parse "host:port" into a socket address (numeric hosts, or a name
 * resolved with getaddrinfo). */
struct sockaddr_storage;
uq_err uqn_resolve(const char *addr, struct sockaddr_storage *ss, unsigned *sslen, uq_errmsg *em);

#endif
