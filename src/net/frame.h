/* Link framing: on the wire, a 2-byte big-endian length then that many bytes
 * of Noise ciphertext (at most 65,535, tag included). Inside a frame's
 * plaintext, a sequence of records: small messages are batched whole, large
 * ones are chunked across frames under a message id (docs/PROTOCOL.md,
 * "Framing"). The encoder and the incremental decoder do no I/O. */
#ifndef UQ_NET_FRAME_H
#define UQ_NET_FRAME_H

#include "net/noise.h"

#define UQN_FRAME_MAX 65535u                                  /* ciphertext bytes per frame */
#define UQN_FRAME_PLAIN_MAX (UQN_FRAME_MAX - UQN_NOISE_TAG)    /* 65,519 plaintext bytes */
#define UQN_FRAME_WIRE_MAX (2u + UQN_FRAME_MAX)                /* with the length prefix */
#define UQN_MSG_MAX_DEFAULT (16u << 20)                        /* largest message a decoder takes */
#define UQN_PARTIAL_MAX 16u       /* chunked messages a decoder reassembles at once */

/* Record kinds inside a frame's plaintext. */
#define UQN_REC_MSG 0x01   /* u16 len, data: a whole message */
#define UQN_REC_FIRST 0x02 /* u32 id, u32 total, u16 len, data: first chunk */
#define UQN_REC_MORE 0x03  /* u32 id, u32 offset, u16 len, data: a later chunk */

/* ---- encoder ------------------------------------------------------------ */

typedef struct uqn_fenc_msg {
    const uint8_t *data;
    size_t len, off;         /* bytes sent so far */
    const uint8_t *tail;     /* by reference only: the message is data[0..len - tail_len) */
    size_t tail_len;         /* then tail[0..tail_len) (0: data alone) */
    uint32_t id;             /* chunk id, once the first chunk is out */
    bool owned;              /* uqn_fenc_push: data and this record are freed once framed */
    bool recs;               /* data[0..len) is already whole UQN_REC_MSG records (several small
                                messages, len <= UQN_FRAME_PLAIN_MAX, no tail): put in one frame as is */
    struct uqn_fenc_msg *next;
} uqn_fenc_msg;

/* Messages queued for one direction of a link, sent in order. */
typedef struct uqn_fenc {
    uqn_fenc_msg *head, *tail;
    size_t queued_bytes;     /* not yet framed */
    uint32_t next_id;
} uqn_fenc;

void uqn_fenc_init(uqn_fenc *e);
void uqn_fenc_fini(uqn_fenc *e);   /* drops what is still queued */
/* Queue a copy of msg. UQ_ELIMIT if len does not fit in 32 bits. */
uq_err uqn_fenc_push(uqn_fenc *e, const void *msg, size_t len, uq_errmsg *em);
/* Queue m (m->data, m->len set, len < 2^32; m->tail and m->tail_len too if
 * the message is in two pieces; m->recs if it is records) without copying: m and its data
 * stay the caller's and must live until they are framed (the queue is empty)
 * or dropped (uqn_fenc_fini). No allocation. */
void uqn_fenc_push_ref(uqn_fenc *e, uqn_fenc_msg *m);
bool uqn_fenc_pending(const uqn_fenc *e);
/* Fill out (UQN_FRAME_PLAIN_MAX bytes) with the next frame's plaintext:
 * whole messages while they fit, a message longer than a frame in chunks.
 * Returns its length (0 when nothing is queued). */
size_t uqn_fenc_next_plain(uqn_fenc *e, uint8_t *out);
/* The next wire frame: length prefix + plaintext encrypted by cs (or left
 * clear if cs is NULL, for tests). out holds UQN_FRAME_WIRE_MAX bytes;
 * *out_len is 0 when nothing is queued. UQ_ELIMIT on nonce exhaustion. */
uq_err uqn_fenc_next_frame(uqn_fenc *e, uqn_cipher *cs, uint8_t *out, size_t *out_len,
                           uq_errmsg *em);

/* ---- decoder ------------------------------------------------------------ */

/* Called with each complete message. msg is lent: valid during the call
 * only (a copy of what the callee keeps; small messages are delivered
 * straight from the decrypted frame). A non-OK return stops the decoder
 * with that error. */
typedef uq_err (*uqn_deliver_fn)(void *arg, const uint8_t *msg, size_t len);

typedef struct uqn_fdec_part {
    uint32_t id, total, got;
    size_t cap;              /* grows with what arrived, not with what was announced */
    uint8_t *buf;
} uqn_fdec_part;

typedef struct uqn_fdec {
    size_t max_msg;
    uqn_deliver_fn deliver;
    void *arg;
    uq_err err;              /* sticky: once set, every feed returns it */
    uint8_t hdr[2];
    size_t hdr_got;
    uint8_t *frame;          /* UQN_FRAME_MAX bytes */
    size_t frame_len, frame_got;
    uqn_fdec_part parts[UQN_PARTIAL_MAX];
    unsigned nparts;
    uint64_t frames, msgs;   /* counts, for diagnostics */
} uqn_fdec;

/* max_msg 0 means UQN_MSG_MAX_DEFAULT. */
void uqn_fdec_init(uqn_fdec *d, size_t max_msg, uqn_deliver_fn deliver, void *arg);
void uqn_fdec_fini(uqn_fdec *d);
/* Feed n wire bytes, split anywhere. Each complete frame is decrypted with cs
 * (NULL: frames are clear, for tests and fuzzing) and its records decoded;
 * complete messages go to deliver. Errors, all final for the link:
 * UQ_ECRYPTO a frame failed authentication (wrong key, altered, replayed or
 * reordered); UQ_ECORRUPT a malformed frame or record; UQ_ELIMIT a message
 * larger than max_msg or too many chunked messages at once. */
uq_err uqn_fdec_feed(uqn_fdec *d, uqn_cipher *cs, const uint8_t *data, size_t n, uq_errmsg *em);
/* Decode one frame's plaintext (the records); used by feed, and by tests. */
uq_err uqn_fdec_plain(uqn_fdec *d, const uint8_t *p, size_t n, uq_errmsg *em);

/* Inside a deliver callback (on its thread), msg being the message
 * delivered: if it was reassembled from chunks, its buffer may be kept
 * instead of copied. Then true: the buffer is the caller's (msg lies
 * within it, unchanged), *base and *cap to give to uqn_rxbuf_release once
 * done with it, from any thread; the decoder forgets it. False (a message
 * lent from a frame, or called elsewhere): copy what you keep. */
bool uqn_rx_take(const uint8_t *msg, void **base, size_t *cap);
void uqn_rxbuf_release(void *base, size_t cap);
/* Mark the reassembly buffers pooled for a second or more (pooled by
 * uqn_rxbuf_release or a decoder, to be reused) MADV_FREE: the system may
 * take their pages back. A buffer reused sooner is not marked (writing
 * into marked pages costs). Cheap when none is due: the net thread calls
 * it every tick; now is uqi_now_ns(). */
void uqn_rxbuf_trim(uint64_t now);

#endif
