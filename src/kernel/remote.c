/* The wire encoding of kernel messages between nodes (remote.h). */
#include "kernel/remote.h"

#include <stdio.h>
#include <string.h>

#include "net/netmod.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* The encoding, without the payload's bytes when !whole (they end it);
 * into buf[0..cap) if it fits there, else into a malloc'ed block. */
static uq_err encode(const uqi_msg *m, bool with_rsvp, bool whole, uint8_t *buf, size_t cap, uint8_t **out,
                     size_t *len, uq_errmsg *em)
{
    if (m->n_attach)
        return uqi_errf(em, UQ_EINVAL, "capabilities cannot be attached to a message for another node (not in version 1)");
    size_t ls = strlen(m->source.process), lt = strlen(m->target.process), lr = with_rsvp ? strlen(m->rsvp.process) : 0;
    size_t lm = m->metadata ? strlen(m->metadata) : 0, lmime = m->payload ? strlen(m->payload->mime) : 0;
    size_t total = 4 + 8 + 4 + 1 + ls + 1 + lt + (with_rsvp ? 1 + lr : 0) + 4 + m->body_len + (m->metadata ? 4 + lm : 0) +
                   (m->payload ? 1 + lmime + 4 + m->payload->len : 0);
    if (total > UQN_NET_MSG_MAX)
        return uqi_errf(em, UQ_ELIMIT, "a message of %zu bytes is over the limit between nodes (%u bytes)", total,
                        UQN_NET_MSG_MAX);
    size_t tail = m->payload && !whole ? m->payload->len : 0;
    uint8_t *b = total - tail <= cap ? buf : uqi_xmalloc(total - tail), *p = b;
    *p++ = UQI_WIRE_VERSION;
    *p++ = (uint8_t)m->kind;
    *p++ = (uint8_t)((with_rsvp ? UQI_WIRE_RSVP : 0) | (m->metadata ? UQI_WIRE_METADATA : 0) |
                     (m->payload ? UQI_WIRE_PAYLOAD : 0));
    *p++ = (uint8_t)(m->kind == UQI_MSG_ERROR ? m->error : 0);
    for (int i = 7; i >= 0; i--) *p++ = (uint8_t)(m->id >> (8 * i));
    put32(p, m->kind == UQI_MSG_REQUEST ? m->expects_response_s : 0);
    p += 4;
    *p++ = (uint8_t)ls;
    memcpy(p, m->source.process, ls), p += ls;
    *p++ = (uint8_t)lt;
    memcpy(p, m->target.process, lt), p += lt;
    if (with_rsvp) {
        *p++ = (uint8_t)lr;
        memcpy(p, m->rsvp.process, lr), p += lr;
    }
    put32(p, (uint32_t)m->body_len), p += 4;
    if (m->body_len) memcpy(p, m->body, m->body_len), p += m->body_len;
    if (m->metadata) {
        put32(p, (uint32_t)lm), p += 4;
        memcpy(p, m->metadata, lm), p += lm;
    }
    if (m->payload) {
        *p++ = (uint8_t)lmime;
        memcpy(p, m->payload->mime, lmime), p += lmime;
        put32(p, (uint32_t)m->payload->len), p += 4;
        if (whole) memcpy(p, m->payload->data, m->payload->len), p += m->payload->len;
    }
    UQ_VERIFY((size_t)(p - b) == total - tail);
    *out = b;
    *len = total - tail;
    return UQ_OK;
}

uq_err uqi_wire_encode(const uqi_msg *m, bool with_rsvp, uint8_t **out, size_t *len, uq_errmsg *em)
{
    return encode(m, with_rsvp, true, NULL, 0, out, len, em);
}

uq_err uqi_wire_encode_buf(const uqi_msg *m, bool with_rsvp, uint8_t *buf, size_t cap, uint8_t **out, size_t *len,
                           uq_errmsg *em)
{
    return encode(m, with_rsvp, true, buf, cap, out, len, em);
}

uq_err uqi_wire_encode_head(const uqi_msg *m, bool with_rsvp, uint8_t **out, size_t *len, uq_errmsg *em)
{
    return encode(m, with_rsvp, false, NULL, 0, out, len, em);
}

/* dst = a node name known to be valid (at most UQI_NAME_MAX bytes): no
 * snprintf per message. */
static void set_node(char dst[UQI_NAME_MAX + 1], const char *node)
{
    size_t l = strnlen(node, UQI_NAME_MAX);
    memcpy(dst, node, l);
    dst[l] = '\0';
}

#define BAD(...) (uqi_errf(em, UQ_ECORRUPT, "net: from %s: " __VA_ARGS__), UQ_ECORRUPT)

/* A process name of u8 length at *i: its place (*off, *len) in p. */
static bool name_span(const uint8_t *p, size_t n, size_t *i, size_t *off, size_t *len)
{
    if (*i >= n) return false;
    size_t l = p[(*i)++];
    if (l == 0 || l > UQI_NAME_MAX || n - *i < l) return false;
    *off = *i;
    *len = l;
    *i += l;
    return true;
}

/* Check a name found by name_span (a NUL in it is not valid) and copy it
 * into out. Checked on the wire bytes: a strlen of the copy just written
 * was a seventh of the receiving thread. */
static bool put_name(char out[UQI_NAME_MAX + 1], const uint8_t *p, size_t off, size_t len)
{
    if (!uqi_process_name_valid_n((const char *)p + off, len)) return false;
    memcpy(out, p + off, len);
    out[len] = '\0';
    return true;
}

uq_err uqi_wire_decode(const uint8_t *p, size_t n, const char *peer, const char *self, uqi_msg **out, uq_errmsg *em)
{
    *out = NULL;
    if (n < 16) return BAD("a %zu-byte message", peer, n);
    if (p[0] != UQI_WIRE_VERSION) return BAD("message version %u (we speak %u)", peer, p[0], UQI_WIRE_VERSION);
    unsigned kind = p[1], flags = p[2], error = p[3];
    if (kind < UQI_MSG_REQUEST || kind > UQI_MSG_ERROR) return BAD("message kind %u", peer, kind);
    if (flags & ~7u) return BAD("message flags %#x", peer, flags);
    if (kind == UQI_MSG_ERROR ? (error != UQI_SEND_NO_PROCESS && error != UQI_SEND_REFUSED) : error != 0)
        return BAD("error code %u in a message of kind %u", peer, error, kind);
    uint64_t id = 0;
    for (int k = 0; k < 8; k++) id = id << 8 | p[4 + k];
    uint32_t expects = get32(p + 12);
    if (kind != UQI_MSG_REQUEST && expects) return BAD("a timeout on a message that is not a request", peer);
    if ((flags & UQI_WIRE_RSVP) && kind != UQI_MSG_REQUEST) return BAD("an rsvp on a message that is not a request", peer);
    /* the names are found first and copied straight into the message (no
     * zeroed addresses on the stack copied again: a third of this function) */
    size_t i = 16, so, sl, to, tl, ro = 0, rl = 0;
    if (!name_span(p, n, &i, &so, &sl)) return BAD("a bad source process", peer);
    if (!name_span(p, n, &i, &to, &tl)) return BAD("a bad target process", peer);
    if ((flags & UQI_WIRE_RSVP) && !name_span(p, n, &i, &ro, &rl)) return BAD("a bad rsvp process", peer);
    if (n - i < 4) return BAD("truncated before the body", peer);
    uint32_t bl = get32(p + i);
    i += 4;
    if (n - i < bl) return BAD("a body past the end", peer);
    uqi_msg *m = uqi_msg_new_rx((uqi_msg_kind)kind, p + i, bl);
    i += bl;
    const char *bad = !put_name(m->source.process, p, so, sl)                              ? "a bad source process"
                      : !put_name(m->target.process, p, to, tl)                            ? "a bad target process"
                      : (flags & UQI_WIRE_RSVP) && !put_name(m->rsvp.process, p, ro, rl) ? "a bad rsvp process"
                                                                                           : NULL;
    if (bad) {
        uqi_msg_free(m);
        return BAD("%s", peer, bad);
    }
    m->id = id;
    m->error = error;
    m->expects_response_s = expects;
    set_node(m->source.node, peer);
    set_node(m->target.node, self);
    if (flags & UQI_WIRE_RSVP) {
        set_node(m->rsvp.node, peer);
        m->has_rsvp = true;
    }
    if (flags & UQI_WIRE_METADATA) {
        uint32_t ml = n - i >= 4 ? get32(p + i) : UINT32_MAX;
        if (ml == UINT32_MAX || n - i - 4 < ml || memchr(p + i + 4, 0, ml)) {
            uqi_msg_free(m);
            return BAD("bad metadata", peer);
        }
        m->metadata = uqi_xmalloc(ml + 1);
        memcpy(m->metadata, p + i + 4, ml);
        m->metadata[ml] = '\0';
        i += 4 + ml;
    }
    if (flags & UQI_WIRE_PAYLOAD) {
        size_t ml = i < n ? p[i] : 1000;
        char mime[128];
        if (ml > 127 || n - i - 1 < ml + 4 || memchr(p + i + 1, 0, ml)) {
            uqi_msg_free(m);
            return BAD("a bad payload mime type", peer);
        }
        memcpy(mime, p + i + 1, ml);
        mime[ml] = '\0';
        i += 1 + ml;
        uint32_t pl = get32(p + i);
        i += 4;
        if (n - i < pl) {
            uqi_msg_free(m);
            return BAD("a payload past the end", peer);
        }
        if (n - i > pl) { /* checked before the buffer may be taken below: nothing fails after */
            uqi_msg_free(m);
            return BAD("%zu bytes after the message", peer, n - i - pl);
        }
        /* a large payload that came in chunks is taken with the buffer it
         * was reassembled in (no copy) when it is most of that buffer */
        void *base;
        size_t cap;
        if (pl >= UQI_WIRE_ADOPT_MIN && pl >= n / 2 && uqn_rx_take(p, &base, &cap))
            m->payload = uqi_payload_adopt((uint8_t *)p + i, pl, mime, uqn_rxbuf_release, base, cap);
        else
            m->payload = uqi_payload_new(p + i, pl, mime);
        i += pl;
    }
    if (i != n) {
        uqi_msg_free(m);
        return BAD("%zu bytes after the message", peer, n - i);
    }
    *out = m;
    return UQ_OK;
}
