/* The host side of the guest ABI, import module "uqbar" (docs/ABI.md).
 * The current message is explicit: receive returns a handle, and reading,
 * answering or inheriting always names a handle. Every guest pointer goes
 * through uqi_guest_ptr; every failure is a negative UQ_ABI_* code. */
#include <stdio.h>
#include <string.h>

#include "kernel/kernel.h"
#include "sdk_abi.h"

#pragma GCC diagnostic ignored "-Wmissing-prototypes" /* reached by symbol name from guest code */

typedef uint32_t u32;
typedef uint64_t u64;
typedef struct uqi_proc abi_ctx;

static inline void put32(uint8_t *b, u32 v) { memcpy(b, &v, 4); }
static inline void put64(uint8_t *b, u64 v) { memcpy(b, &v, 8); }
static inline u32 get32(const uint8_t *b) { u32 v; memcpy(&v, b, 4); return v; }

static uqi_msg *held(uqi_kproc *kp, u32 h)
{
    return h >= 1 && h <= UQI_MAX_HELD ? kp->held[h - 1] : NULL;
}

/* receive(header*) -> handle: waits for the next message. */
int32_t Z_uqbarZ_receive(abi_ctx *p, u32 hdr)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    uint8_t *h = uqi_guest_ptr(p, hdr, UQ_ABI_HEADER_SIZE);
    if (!h) return UQ_ABI_EFAULT;
    int slot = -1;
    for (int i = 0; i < UQI_MAX_HELD; i++)
        if (!kp->held[i]) { slot = i; break; }
    if (slot < 0) return UQ_ABI_ETOOMANY;
    uqi_msg *m;
    while (!(m = uqi_mailbox_take(&kp->mbox, true))) { /* marked waiting: the next sender wakes us */
        uqi_task_check_kill();
        uqi_task_block();
        uqi_task_check_kill();
    }
    kp->held[slot] = m;
    memset(h, 0, UQ_ABI_HEADER_SIZE);
    put32(h + 0, (u32)slot + 1);
    put32(h + 4, (u32)m->kind);
    put64(h + 8, m->id);
    put32(h + 16, (u32)(strlen(m->source.node) + 1 + strlen(m->source.process))); /* "node@process" */
    put32(h + 20, (u32)m->body_len);
    put32(h + 24, m->metadata ? (u32)strlen(m->metadata) : 0);
    put32(h + 28, (u32)m->context_len);
    put32(h + 32, m->payload ? (u32)m->payload->len : 0);
    put32(h + 36, m->payload ? (u32)strlen(m->payload->mime) : 0);
    put32(h + 40, m->expects_response_s);
    put32(h + 44, m->error);
    u32 flags = (m->payload ? UQ_ABI_HAS_PAYLOAD : 0) | (m->metadata ? UQ_ABI_HAS_METADATA : 0) |
                (m->kind == UQI_MSG_REQUEST && m->has_rsvp ? UQ_ABI_AWAITED : 0) |
                (strcmp(m->source.node, kp->node ? uqi_node_name(kp->node) : "") != 0 ? UQ_ABI_REMOTE : 0);
    put32(h + 48, flags);
    return slot + 1;
}

/* msg_read(handle, field, offset, buf, len) -> bytes copied. Only this
 * brings payload bytes into the process. */
int32_t Z_uqbarZ_msg_read(abi_ctx *p, u32 handle, u32 field, u32 offset, u32 buf, u32 len)
{
    uqi_kproc *kp = p->user;
    uqi_msg *m = kp ? held(kp, handle) : NULL;
    if (!m) return UQ_ABI_EBADHANDLE;
    char src[2 * UQI_NAME_MAX + 2];
    const uint8_t *data = NULL;
    size_t n = 0;
    switch (field) {
    case UQ_FIELD_SOURCE: uqi_addr_format(&m->source, src, sizeof src); data = (uint8_t *)src; n = strlen(src); break;
    case UQ_FIELD_BODY: data = m->body; n = m->body_len; break;
    case UQ_FIELD_METADATA: data = (uint8_t *)m->metadata; n = m->metadata ? strlen(m->metadata) : 0; break;
    case UQ_FIELD_CONTEXT: data = m->context; n = m->context_len; break;
    case UQ_FIELD_PAYLOAD: data = m->payload ? m->payload->data : NULL; n = m->payload ? m->payload->len : 0; break;
    case UQ_FIELD_MIME: data = m->payload ? (uint8_t *)m->payload->mime : NULL; n = m->payload ? strlen(m->payload->mime) : 0; break;
    default: return UQ_ABI_EINVAL;
    }
    if (offset >= n) return 0;
    size_t take = n - offset < len ? n - offset : len;
    if (take > INT32_MAX) take = INT32_MAX;
    uint8_t *dst = uqi_guest_ptr(p, buf, (u32)take);
    if (!dst) return UQ_ABI_EFAULT;
    memcpy(dst, data + offset, take);
    return (int32_t)take;
}

int32_t Z_uqbarZ_msg_free(abi_ctx *p, u32 handle)
{
    uqi_kproc *kp = p->user;
    if (!kp || !held(kp, handle)) return UQ_ABI_EBADHANDLE;
    uqi_msg_free(kp->held[handle - 1]);
    kp->held[handle - 1] = NULL;
    return 0;
}

/* Copy a guest byte range; NULL with *err set on a bad pointer. */
static uint8_t *copy_in(abi_ctx *p, u32 ptr, u32 len, int32_t *err)
{
    const uint8_t *s = uqi_guest_ptr(p, ptr, len);
    if (!s) {
        *err = UQ_ABI_EFAULT;
        return NULL;
    }
    uint8_t *d = uqi_xmalloc((size_t)len + 1);
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

static int64_t map_err(uq_err e)
{
    switch (e) {
    case UQ_ENOENT: return UQ_ABI_ENOPROC;
    case UQ_ELIMIT: return UQ_ABI_EFULL;
    case UQ_EPERM: return UQ_ABI_EPERM;
    default: return UQ_ABI_EINVAL;
    }
}

/* send(descriptor*) -> message id (> 0) or a negative UQ_ABI_* code. */
int64_t Z_uqbarZ_send(abi_ctx *p, u32 desc)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    const uint8_t *d = uqi_guest_ptr(p, desc, UQ_ABI_SEND_SIZE);
    if (!d) return UQ_ABI_EFAULT;
    u32 kind = get32(d + 0), handle = get32(d + 4), flags = get32(d + 60), expects = get32(d + 56);
    if (kind != UQI_MSG_REQUEST && kind != UQI_MSG_RESPONSE) return UQ_ABI_EINVAL;
    uqi_msg *prompt = NULL;
    if (handle && !(prompt = held(kp, handle))) return UQ_ABI_EBADHANDLE;
    if (kind == UQI_MSG_RESPONSE && !prompt) return UQ_ABI_EINVAL;
    int32_t err = 0;
    const uint8_t *body = uqi_guest_ptr(p, get32(d + 16), get32(d + 20));
    if (!body) return UQ_ABI_EFAULT;
    uqi_msg *m = uqi_msg_new((uqi_msg_kind)kind, body, get32(d + 20));
    uint8_t *ctx = NULL;
    if (flags & UQ_ABI_HAS_METADATA) {
        m->metadata = (char *)copy_in(p, get32(d + 24), get32(d + 28), &err);
        if (err) goto fail;
    }
    if (flags & UQ_ABI_HAS_PAYLOAD) {
        const uint8_t *pl = uqi_guest_ptr(p, get32(d + 40), get32(d + 44));
        char *mime = (char *)copy_in(p, get32(d + 48), get32(d + 52) > 127 ? 127 : get32(d + 52), &err);
        if (!pl || err) {
            free(mime);
            err = UQ_ABI_EFAULT;
            goto fail;
        }
        m->payload = uqi_payload_new(pl, get32(d + 44), mime);
        free(mime);
        if (!m->payload) { err = UQ_ABI_ENOMEM; goto fail; }
    } else if ((flags & UQ_ABI_INHERIT_PAYLOAD) && prompt) {
        m->payload = uqi_payload_hold(prompt->payload); /* by reference, no copy */
    }
    if (kind == UQI_MSG_REQUEST) {
        u32 tlen = get32(d + 12);
        const char *target = (const char *)uqi_guest_ptr(p, get32(d + 8), tlen);
        if (!target) { err = UQ_ABI_EFAULT; goto fail; }
        uq_errmsg em;
        uqi_last_target *lt = kp->last_target;
        if (lt && tlen && tlen == lt->len && memcmp(target, lt->text, tlen) == 0) {
            m->target = lt->addr;
        } else {
            if (tlen > 2 * UQI_NAME_MAX + 1 || uqi_addr_parse_n(target, tlen, uqi_node_name(kp->node), &m->target, &em)) {
                err = UQ_ABI_EINVAL;
                goto fail;
            }
            if (!lt) lt = kp->last_target = uqi_xmalloc(sizeof *lt);
            memcpy(lt->text, target, tlen);
            lt->len = tlen;
            lt->addr = m->target;
        }
        m->expects_response_s = expects;
        if (expects && get32(d + 36)) {
            ctx = copy_in(p, get32(d + 32), get32(d + 36), &err);
            if (err) goto fail;
        }
        if (prompt) {
            /* A subsidiary request inherits the prompting request: same id,
             * and if it expects no response itself, the response it leads
             * to goes where the prompting request's response would go. */
            m->id = prompt->id;
            if (!expects && prompt->has_rsvp) {
                m->rsvp = prompt->rsvp;
                m->has_rsvp = true;
            }
        }
    } else {
        if (!prompt->has_rsvp) { err = UQ_ABI_ENORESPONSE; goto fail; }
        m->target = prompt->rsvp;
        m->id = prompt->id;
    }
    uint64_t id = 0;
    uq_errmsg em;
    uq_err e = uqi_kernel_send(kp, m, ctx, ctx ? get32(d + 36) : 0, &id, &em);
    if (!e) return (int64_t)(id & INT64_MAX); /* the kernel owns m and ctx now */
    err = (int32_t)map_err(e);
fail:
    free(ctx);
    uqi_msg_free(m);
    return err;
}

/* our(buf, cap) -> length of "node@process" (copied up to cap). */
int32_t Z_uqbarZ_our(abi_ctx *p, u32 buf, u32 cap)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    char a[2 * UQI_NAME_MAX + 2];
    uqi_addr_format(&kp->addr, a, sizeof a);
    u32 n = (u32)strlen(a);
    uint8_t *d = uqi_guest_ptr(p, buf, n < cap ? n : cap);
    if (!d) return UQ_ABI_EFAULT;
    memcpy(d, a, n < cap ? n : cap);
    return (int32_t)n;
}
