/* Kernel messages: addresses ("node@process"), refcounted payloads shared by
 * reference when a message is forwarded, and bounded mailboxes that refuse
 * (backpressure) instead of dropping or growing without limit. */
#ifndef UQ_MSG_H
#define UQ_MSG_H

#include <pthread.h>
#include <stdatomic.h>

#include "util/util.h"

struct uqi_task;

/* ---- addresses ---------------------------------------------------------- */
/* A node name: 1-63 of [a-z0-9.-], not starting or ending with '.' or '-'.
 * A process id: 1-63 of [a-z0-9-] (a name), or a UUID in canonical form
 * (8-4-4-4-12 lowercase hex), which is the same alphabet. */
#define UQI_NAME_MAX 63

typedef struct uqi_addr {
    char node[UQI_NAME_MAX + 1];
    char process[UQI_NAME_MAX + 1];
} uqi_addr;

/* Parse "node@process" (or "process" alone, then node = local_node). */
uq_err uqi_addr_parse(const char *text, const char *local_node, uqi_addr *out, uq_errmsg *em);
/* The same for text[0..len), which need not be NUL-terminated (guest memory). */
uq_err uqi_addr_parse_n(const char *text, size_t len, const char *local_node, uqi_addr *out, uq_errmsg *em);
bool uqi_node_name_valid(const char *s);
bool uqi_process_name_valid(const char *s);
/* The same for s[0..n), which need not be NUL-terminated (a NUL in it is
 * not valid). */
bool uqi_process_name_valid_n(const char *s, size_t n);
/* Write "node@process" into buf (always NUL-terminated). */
void uqi_addr_format(const uqi_addr *a, char *buf, size_t cap);
bool uqi_addr_eq(const uqi_addr *a, const uqi_addr *b);
/* A fresh random process id in UUID v4 form (37 bytes with the NUL). */
void uqi_uuid_new(char out[37]);

/* ---- payloads ---------------------------------------------------------- */
typedef struct uqi_payload {
    atomic_uint refs;
    size_t len;
    uint8_t *data;           /* inl, or within an adopted buffer (uqi_payload_adopt) */
    void (*release)(void *base, size_t cap); /* adopted: gives base back when the last reference goes */
    void *base;
    size_t cap;
    char mime[128];          /* "" when none */
    uint8_t inl[];
} uqi_payload;

/* A payload holding a copy of data[0..len); refs = 1. NULL if len is over max. */
uqi_payload *uqi_payload_new(const void *data, size_t len, const char *mime);
/* A payload of data[0..len), which lies within a buffer (base, cap) that
 * it takes instead of copying: release(base, cap) once the last reference
 * is dropped (any thread). A received large message's bytes become a
 * payload so (net/frame.h, uqn_rx_take). refs = 1. */
uqi_payload *uqi_payload_adopt(uint8_t *data, size_t len, const char *mime, void (*release)(void *base, size_t cap),
                               void *base, size_t cap);
/* Share: forwarding a message with its payload inherited costs one increment. */
uqi_payload *uqi_payload_hold(uqi_payload *p);
void uqi_payload_rele(uqi_payload *p);

/* ---- messages ---------------------------------------------------------- */
/* A capability named by value (kernel/caps.h): what a process writes when it
 * attaches, grants, drops or asks about one. params is canonical JSON (owned). */
typedef struct uqi_capref {
    uqi_addr issuer;
    char *params;
} uqi_capref;

typedef enum uqi_msg_kind {
    UQI_MSG_REQUEST = 1,
    UQI_MSG_RESPONSE = 2,
    UQI_MSG_ERROR = 3,       /* Offline / Timeout / a refusal, returned to the sender */
} uqi_msg_kind;

/* Why an error message came back (kind UQI_MSG_ERROR). */
typedef enum uqi_send_error {
    UQI_SEND_OFFLINE = 1,    /* the target node cannot be reached */
    UQI_SEND_TIMEOUT = 2,    /* no response in time */
    UQI_SEND_NO_PROCESS = 3, /* the target process does not exist (or was killed) */
    UQI_SEND_REFUSED = 4,    /* the target's mailbox is full or it may not be messaged */
} uqi_send_error;

typedef struct uqi_msg {
    struct uqi_msg *next;    /* mailbox link */
    uqi_msg_kind kind;
    uint64_t id;
    uqi_addr source, target;
    bool has_rsvp;           /* uqi_msg_new zeroes from here to rsvp, and before source */
    uint32_t expects_response_s; /* 0: no response expected */
    uint32_t error;          /* uqi_send_error, for UQI_MSG_ERROR */
    uint8_t *context;        /* attached by the kernel on delivery; never leaves the node */
    size_t context_len;
    uint8_t *body;           /* by convention JSON text; stored inline after the message */
    size_t body_len;
    char *metadata;          /* owned or NULL */
    uqi_payload *payload;    /* held reference or NULL */
    uqi_capref *attach;      /* capabilities the sender attaches (owned), checked by the kernel */
    uint32_t n_attach;
    char *caps;              /* on delivery: JSON array of the tokens granted with it, or NULL */
    bool small;              /* of the size class the per-thread cache keeps */
    bool rx;                 /* small, made by uqi_msg_new_rx: freed back to the receivers' pool */
    bool target_cached;      /* target is the sender's last_target (kernel.h): the kernel may use its lookup */
    uint16_t source_len;     /* strlen of "node@process" of a local source, set by the kernel; 0: unknown */
    /* Last, and neither zeroed nor written unless used: a one-way message
     * touches two cache lines fewer (a burst of them is bound by memory). */
    uqi_addr rsvp;           /* where a response goes; valid (and read) only when has_rsvp */
} uqi_msg;

/* A message with a copy of body. Small ones (body up to UQI_MSG_SMALL_BODY
 * bytes) come from a per-thread free list: no malloc/free per message. */
#define UQI_MSG_SMALL_BODY 200
uqi_msg *uqi_msg_new(uqi_msg_kind kind, const void *body, size_t body_len);
/* The same for a message received from another node (net thread). Such
 * messages are freed on other threads (the process that takes them): a
 * small one goes back, when freed, to a pool shared by the process
 * (lock-free, bounded) from which the receiving threads make the next
 * ones, instead of to the freeing thread's cache. The receiving thread
 * then reuses blocks instead of malloc'ing fresh (cold) ones: half of its
 * time was malloc and the first stores into new blocks. */
uqi_msg *uqi_msg_new_rx(uqi_msg_kind kind, const void *body, size_t body_len);
void uqi_msg_free(uqi_msg *m);

/* ---- mailboxes ----------------------------------------------------------- */
/* Many producers, one consumer (the process's task, or whoever receives on
 * a host port). Producers append under the lock; the consumer takes the
 * whole queue in one locked step and then pops from its private batch
 * without the lock. The depth is pushed - popped: each counter has a
 * single writer (producers under the lock; the consumer), so a pop costs no
 * atomic read-modify-write. A consumer about to block marks the mailbox
 * waiting; the next put reports that it must wake the consumer, so a
 * sender wakes a task only when it actually waits. A sender without the
 * node lock (uqi_mailbox_put_wake) wakes the waiting task under the mailbox
 * lock; the task's end disarms the mailbox under it (uqi_mailbox_disarm),
 * so the task woken is always alive. */
typedef struct uqi_mailbox {
    pthread_mutex_t lock;
    uqi_msg *head, *tail;    /* shared queue, under lock */
    uqi_msg *batch;          /* taken by the consumer, consumer only */
    /* The local queue: a producer running on the consumer task's own
     * worker thread (owner) appends here with no lock and no atomic
     * read-modify-write; only that thread touches it (kernel code is never
     * preempted). Every put from that thread goes here, so one sender's
     * messages stay in one queue and in order; the consumer takes the
     * shared queue first, then this one. uqi_mailbox_unown moves it to
     * the shared queue when the task ends. */
    uqi_msg *lhead, *ltail;
    _Atomic(struct uqi_worker *) owner; /* set by the consumer task when it first takes */
    _Atomic bool waiting;    /* written under lock: the consumer waits for a put */
    _Atomic bool closed;     /* written under lock: its process is gone; put_wake refuses */
    _Atomic(struct uqi_task *) waiter; /* written under lock: the task that armed it, while waiting
                                          (read without it by a put on the owner's thread) */
    uint32_t cap;
    _Atomic uint64_t pushed; /* shared queue, written under lock (pushed + lpushed = messages delivered) */
    _Atomic uint64_t lpushed; /* local queue, written by the owner's thread */
    uint64_t taken;          /* consumer: pushed as of its last take of the shared queue */
    _Atomic uint64_t popped; /* written by the consumer only */
    uint64_t refused;        /* under lock */
} uqi_mailbox;

void uqi_mailbox_init(uqi_mailbox *mb, uint32_t cap);
/* Free every queued message and the lock; nobody else may reach mb. */
void uqi_mailbox_fini(uqi_mailbox *mb);
/* Append m. UQ_ELIMIT when full: then the caller still owns m (backpressure:
 * the sender is told, nothing is dropped silently). force ignores the bound
 * (the kernel's own answers, bounded elsewhere). *out_wake (if given) says
 * the consumer waits and must be woken by the caller. */
uq_err uqi_mailbox_put(uqi_mailbox *mb, uqi_msg *m, bool force, bool *out_wake);
static inline uq_err uqi_mailbox_push(uqi_mailbox *mb, uqi_msg *m) { return uqi_mailbox_put(mb, m, false, NULL); }
/* The same for a sender that holds no other lock: UQ_ENOENT when closed,
 * UQ_ELIMIT when full (the caller keeps m either way); wakes the waiting
 * consumer task itself, under the mailbox lock. */
uq_err uqi_mailbox_put_wake(uqi_mailbox *mb, uqi_msg *m);
/* Take the oldest message, or NULL. The caller owns it. Consumer only. With
 * arm (the consumer's task), an empty mailbox is marked waiting (see
 * uqi_mailbox_put). */
uqi_msg *uqi_mailbox_take(uqi_mailbox *mb, struct uqi_task *arm);
static inline uqi_msg *uqi_mailbox_pop(uqi_mailbox *mb) { return uqi_mailbox_take(mb, NULL); }
/* The consumer task ends, on its worker: the local queue joins the shared
 * one and the mailbox has no owner (a restart may run elsewhere). */
void uqi_mailbox_unown(uqi_mailbox *mb);
/* Messages delivered so far (both queues). */
uint64_t uqi_mailbox_delivered(uqi_mailbox *mb);
/* The consumer task ends: nobody may wake it through the mailbox any more;
 * with close, the process is gone: put_wake refuses from now on. shared:
 * another thread may be in put_wake (else the caller orders itself before
 * any that comes, and the lock is not needed). */
void uqi_mailbox_disarm(uqi_mailbox *mb, bool close, bool shared);
/* Free every queued message; the mailbox stays usable (the consumer has
 * ended: its batch too). */
void uqi_mailbox_drain(uqi_mailbox *mb);
uint32_t uqi_mailbox_depth(uqi_mailbox *mb);
/* Put m first, ahead of what waits. Only while nobody consumes (the process
 * is not running yet): the kernel's restored-state message. Never refused. */
void uqi_mailbox_put_front(uqi_mailbox *mb, uqi_msg *m);

#endif
