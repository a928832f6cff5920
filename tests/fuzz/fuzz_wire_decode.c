/* libFuzzer target for the kernel's decoder of messages from other nodes
 * (uqi_wire_decode, docs/PROTOCOL.md §6): every byte string a peer can send
 * over an authenticated link. Each input must decode or be refused with a
 * message, never crash, leak or read out of bounds; what decodes must
 * encode back to the same bytes (the encoding is canonical). Run by
 * `make fuzz` (FUZZ_SECONDS). */
#include <string.h>

#include "kernel/remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uqi_msg *m = NULL;
    uq_errmsg em;
    em.text[0] = '\0';
    uq_err e = uqi_wire_decode(data, size, "peer.node", "self.node", &m, &em);
    if (e != UQ_OK) {
        if (em.text[0] == '\0' || m) __builtin_trap(); /* a refusal explains itself and returns nothing */
        return 0;
    }
    if (strcmp(m->source.node, "peer.node") != 0 || strcmp(m->target.node, "self.node") != 0 ||
        (m->has_rsvp && strcmp(m->rsvp.node, "peer.node") != 0))
        __builtin_trap(); /* node names come from the link, never from the bytes */
    uint8_t *out = NULL;
    size_t len = 0;
    if (uqi_wire_encode(m, m->has_rsvp, &out, &len, &em) != UQ_OK) __builtin_trap();
    if (len != size || memcmp(out, data, size) != 0) __builtin_trap(); /* canonical: one encoding per message */
    free(out);
    uqi_msg_free(m);
    return 0;
}
