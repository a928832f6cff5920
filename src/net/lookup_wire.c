/* Look-up messages on a link: encoding and the decoder of what a peer sends
 * (docs/PROTOCOL.md §8). No state; fuzzed (tests/fuzz/fuzz_net_frame.c). */
#include "net/lookup.h"

#include <string.h>

#include "kernel/msg.h"

#define BAD(...) uqi_errf(em, UQ_ECORRUPT, __VA_ARGS__)

bool uqn_lk_is_msg(const uint8_t *p, size_t n) { return n >= 1 && (p[0] == UQN_LK_REQ || p[0] == UQN_LK_ANS); }

static size_t head(uint8_t type, const char *name, uint8_t *out)
{
    size_t nl = strlen(name);
    UQ_ASSERT(nl >= 1 && nl <= UQN_NAME_MAX);
    out[0] = type;
    out[1] = UQN_LK_VERSION;
    out[2] = (uint8_t)nl;
    memcpy(out + 3, name, nl);
    return 3 + nl;
}

size_t uqn_lk_encode_req(const char *name, uint8_t *out) { return head(UQN_LK_REQ, name, out); }

size_t uqn_lk_encode_ans(const char *name, const uqn_record *r, uint8_t *out)
{
    size_t n = head(UQN_LK_ANS, name, out);
    if (!r) {
        out[n++] = UQN_LK_UNKNOWN;
        return n;
    }
    UQ_ASSERT(strcmp(r->name, name) == 0);
    out[n++] = UQN_LK_FOUND;
    size_t rl = uqn_record_encode(r, out + n + 2);
    out[n] = (uint8_t)(rl >> 8);
    out[n + 1] = (uint8_t)rl;
    return n + 2 + rl;
}

uq_err uqn_lk_decode(const uint8_t *p, size_t n, uqn_lkmsg *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    if (n < 3) return BAD("look-up: %zu bytes is too short", n);
    if (p[0] != UQN_LK_REQ && p[0] != UQN_LK_ANS) return BAD("look-up: unknown type 0x%02x", p[0]);
    out->type = p[0];
    if (p[1] != UQN_LK_VERSION) return BAD("look-up: version %u, expected %u", p[1], UQN_LK_VERSION);
    size_t nl = p[2];
    if (nl == 0 || nl > UQN_NAME_MAX || n - 3 < nl) return BAD("look-up: bad name length %zu", nl);
    memcpy(out->name, p + 3, nl);
    out->name[nl] = '\0';
    if (strlen(out->name) != nl || !uqi_node_name_valid(out->name)) return BAD("look-up: the name is not a node name");
    size_t i = 3 + nl;
    if (out->type == UQN_LK_REQ) {
        if (i != n) return BAD("look-up request for %s: %zu bytes after the name", out->name, n - i);
        return UQ_OK;
    }
    if (i == n) return BAD("look-up answer for %s: no status", out->name);
    uint8_t st = p[i++];
    if (st == UQN_LK_UNKNOWN) {
        if (i != n) return BAD("look-up answer for %s: %zu bytes after \"unknown\"", out->name, n - i);
        return UQ_OK;
    }
    if (st != UQN_LK_FOUND) return BAD("look-up answer for %s: unknown status %u", out->name, st);
    if (n - i < 2) return BAD("look-up answer for %s: no record length", out->name);
    size_t rl = (size_t)p[i] << 8 | p[i + 1];
    i += 2;
    if (rl > UQN_RECORD_MAX || n - i != rl)
        return BAD("look-up answer for %s: record length %zu, %zu bytes follow", out->name, rl, n - i);
    uq_err e = uqn_record_decode(p + i, rl, &out->rec, em);
    if (e) return e;
    if (strcmp(out->rec.name, out->name) != 0)
        return BAD("look-up answer for %s: the record is for %s", out->name, out->rec.name);
    out->found = true;
    return UQ_OK;
}
