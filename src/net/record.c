/* Directory records: validation, canonical encoding, signing, verifying, and
 * the one-line text form. Format: docs/PROTOCOL.md ("Records"). */
#include "net/record.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "kernel/msg.h"

#define REC_VERSION 1
#define REC_CONTEXT "uqbar-record/1" /* signed before the body: domain separation */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

bool uqn_addr_valid(const char *a)
{
    size_t n = strnlen(a, UQN_ADDR_MAX + 1);
    if (n == 0 || n > UQN_ADDR_MAX) return false;
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a) return false;
    size_t hl = (size_t)(colon - a);
    if (a[0] == '[') { /* [IPv6] */
        if (hl < 4 || a[hl - 1] != ']') return false;
        for (size_t i = 1; i < hl - 1; i++) {
            char c = a[i];
            bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                      c == ':' || c == '.';
            if (!ok) return false;
        }
    } else {
        if (a[0] == '.' || a[0] == '-' || a[hl - 1] == '.' || a[hl - 1] == '-') return false;
        for (size_t i = 0; i < hl; i++)
            if (!host_char(a[i])) return false;
    }
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5 || p[0] == '0') return false;
    unsigned port = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        port = port * 10 + (unsigned)(p[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* The body (everything but the signature); returns its length. */
static size_t encode_body(const uqn_record *r, uint8_t *out)
{
    size_t n = 0, nl = strlen(r->name);
    out[n++] = REC_VERSION;
    out[n++] = (uint8_t)nl;
    memcpy(out + n, r->name, nl);
    n += nl;
    memcpy(out + n, r->pk, 32);
    n += 32;
    for (int i = 0; i < 8; i++) out[n++] = (uint8_t)(r->seq >> (56 - 8 * i));
    out[n++] = (uint8_t)r->naddrs;
    for (unsigned i = 0; i < r->naddrs; i++) {
        size_t al = strlen(r->addrs[i]);
        out[n++] = (uint8_t)al;
        memcpy(out + n, r->addrs[i], al);
        n += al;
    }
    return n;
}

static size_t signed_bytes(const uqn_record *r, uint8_t *out)
{
    memcpy(out, REC_CONTEXT, sizeof REC_CONTEXT - 1);
    return sizeof REC_CONTEXT - 1 + encode_body(r, out + sizeof REC_CONTEXT - 1);
}

uq_err uqn_record_make(const uqn_identity *id, const char *const *addrs, size_t n, uint64_t seq,
                       uqn_record *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    if (n > UQN_ADDRS_MAX)
        return uqi_errf(em, UQ_EINVAL, "record: %zu addresses, at most %d", n, UQN_ADDRS_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!uqn_addr_valid(addrs[i]))
            return uqi_errf(em, UQ_EINVAL, "record: \"%s\" is not host:port", addrs[i]);
        snprintf(out->addrs[i], sizeof out->addrs[i], "%s", addrs[i]);
    }
    snprintf(out->name, sizeof out->name, "%s", id->name);
    memcpy(out->pk, id->pk, 32);
    out->seq = seq;
    out->naddrs = (unsigned)n;
    uint8_t m[sizeof REC_CONTEXT + UQN_RECORD_MAX];
    uqn_identity_sign(id, m, signed_bytes(out, m), out->sig);
    return UQ_OK;
}

size_t uqn_record_encode(const uqn_record *r, uint8_t *out)
{
    size_t n = encode_body(r, out);
    memcpy(out + n, r->sig, 64);
    return n + 64;
}

uq_err uqn_record_verify(const uqn_record *r, uq_errmsg *em)
{
    uint8_t m[sizeof REC_CONTEXT + UQN_RECORD_MAX];
    if (uqn_sig_verify(r->pk, m, signed_bytes(r, m), r->sig) != UQ_OK)
        return uqi_errf(em, UQ_ECRYPTO, "record for %s: the signature does not verify (altered, or "
                        "not signed by the key it names)", r->name);
    return UQ_OK;
}

#define BAD(...) uqi_errf(em, UQ_ECORRUPT, __VA_ARGS__)

uq_err uqn_record_decode(const uint8_t *p, size_t n, uqn_record *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    if (n < 2 + 1 + 32 + 8 + 1 + 64) return BAD("record: %zu bytes is too short", n);
    if (p[0] != REC_VERSION) return BAD("record: version %u, expected %u", p[0], REC_VERSION);
    size_t nl = p[1];
    i = 2;
    if (nl == 0 || nl > UQN_NAME_MAX || n - i < nl + 32 + 8 + 1 + 64) return BAD("record: bad name length");
    memcpy(out->name, p + i, nl);
    out->name[nl] = '\0';
    if (strlen(out->name) != nl || !uqi_node_name_valid(out->name))
        return BAD("record: the node name is not valid");
    i += nl;
    memcpy(out->pk, p + i, 32);
    i += 32;
    for (int k = 0; k < 8; k++) out->seq = out->seq << 8 | p[i++];
    out->naddrs = p[i++];
    if (out->naddrs > UQN_ADDRS_MAX) return BAD("record for %s: %u addresses, at most %d", out->name,
                                                out->naddrs, UQN_ADDRS_MAX);
    for (unsigned a = 0; a < out->naddrs; a++) {
        if (n - i < 1 + 64) return BAD("record for %s: truncated in address %u", out->name, a + 1);
        size_t al = p[i++];
        if (al == 0 || al > UQN_ADDR_MAX || n - i < al + 64)
            return BAD("record for %s: bad length for address %u", out->name, a + 1);
        memcpy(out->addrs[a], p + i, al);
        out->addrs[a][al] = '\0';
        i += al;
        if (strlen(out->addrs[a]) != al || !uqn_addr_valid(out->addrs[a]))
            return BAD("record for %s: address %u is not host:port", out->name, a + 1);
    }
    if (n - i != 64) return BAD("record for %s: %zu bytes after the body, expected a 64-byte signature",
                                out->name, n - i);
    memcpy(out->sig, p + i, 64);
    return uqn_record_verify(out, em);
}

void uqn_record_to_line(const uqn_record *r, char *out)
{
    uint8_t buf[UQN_RECORD_MAX];
    size_t n = uqn_record_encode(r, buf);
    sodium_bin2base64(out, UQN_RECORD_LINE_MAX, buf, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

uq_err uqn_record_from_line(const char *line, uqn_record *out, uq_errmsg *em)
{
    uint8_t buf[UQN_RECORD_MAX];
    size_t n;
    const char *end;
    memset(out, 0, sizeof *out);
    if (sodium_base642bin(buf, sizeof buf, line, strlen(line), NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || *end != '\0')
        return BAD("record: not base64url (or longer than any record)");
    return uqn_record_decode(buf, n, out, em);
}
