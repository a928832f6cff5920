/* Kernel messages on a link between nodes (docs/PROTOCOL.md §6): the wire
 * encoding, and the glue between the kernel and the net module. */
#ifndef UQ_KERNEL_REMOTE_H
#define UQ_KERNEL_REMOTE_H

#include "kernel/msg.h"

#define UQI_WIRE_VERSION 1
#define UQI_WIRE_RSVP 0x1u
#define UQI_WIRE_METADATA 0x2u
#define UQI_WIRE_PAYLOAD 0x4u

/* Encode m for a link: the node parts of its addresses are left out (the
 * receiver knows them from the link), so is its context; rsvp only when
 * with_rsvp (its process; the node is the sender's). *out is malloc'ed.
 * UQ_EINVAL if it carries capabilities (not in version 1), UQ_ELIMIT if
 * the encoding is over UQN_NET_MSG_MAX. */
uq_err uqi_wire_encode(const uqi_msg *m, bool with_rsvp, uint8_t **out, size_t *len, uq_errmsg *em);
/* The same into buf[0..cap) when it fits (*out = buf: nothing to free),
 * else into a malloc'ed *out: a small message costs no allocation. */
uq_err uqi_wire_encode_buf(const uqi_msg *m, bool with_rsvp, uint8_t *buf, size_t cap, uint8_t **out, size_t *len,
                           uq_errmsg *em);
/* The same without the payload's bytes, which end the encoding: the
 * message is *out then m->payload->data (if any), sent from where it is
 * (uqn_net_send_tail). */
uq_err uqi_wire_encode_head(const uqi_msg *m, bool with_rsvp, uint8_t **out, size_t *len, uq_errmsg *em);
/* Decode a message that came from node peer to node self: source.node =
 * peer (authenticated by the link), target.node = self; rsvp (if any) is
 * on peer. UQ_ECORRUPT for anything malformed or not canonical. Called
 * from a net module's receive callback with the message it was given, a
 * payload of UQI_WIRE_ADOPT_MIN bytes or more that is at least half of a
 * message reassembled from chunks keeps the reassembly buffer instead of
 * a copy (uqn_rx_take, net/frame.h): then p (within that payload) must
 * not be used once *out is freed. Nothing is taken when decoding fails. */
#define UQI_WIRE_ADOPT_MIN 65536u
uq_err uqi_wire_decode(const uint8_t *p, size_t n, const char *peer, const char *self, uqi_msg **out, uq_errmsg *em);

#endif
