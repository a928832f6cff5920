/* The host side of the guest ABI, import module "uqbar" (docs/ABI.md).
 * The current message is explicit: receive returns a handle, and reading,
 * answering or inheriting always names a handle. Every guest pointer goes
 * through uqi_guest_ptr; every failure is a negative UQ_ABI_* code. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "kernel/kernel.h"
#include "store/store.h"
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
    return h >= 1 && h <= UQI_MAX_HELD && (kp->held_mask >> (h - 1) & 1) ? kp->held[h - 1] : NULL;
}

/* receive(header*) -> handle: waits for the next message. */
int32_t Z_uqbarZ_receive(abi_ctx *p, u32 hdr)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    uint8_t *h = uqi_guest_ptr(p, hdr, UQ_ABI_HEADER_SIZE);
    if (!h) return UQ_ABI_EFAULT;
    if (kp->held_mask == UINT64_MAX) return UQ_ABI_ETOOMANY;
    int slot = __builtin_ctzll(~kp->held_mask); /* the lowest free handle */
    uqi_msg *m;
    while (!(m = uqi_mailbox_take(&kp->mbox, uqi_task_current()))) { /* marked waiting: the next sender wakes us */
        uqi_task_check_kill();
        uqi_task_block();
        uqi_task_check_kill();
    }
    kp->held[slot] = m;
    kp->held_mask |= 1ull << slot;
    memset(h, 0, UQ_ABI_HEADER_SIZE);
    put32(h + 0, (u32)slot + 1);
    put32(h + 4, (u32)m->kind);
    put64(h + 8, m->id);
    /* "node@process"; a local source's length comes with the message */
    put32(h + 16, m->source_len ? m->source_len : (u32)(strlen(m->source.node) + 1 + strlen(m->source.process)));
    put32(h + 20, (u32)m->body_len);
    put32(h + 24, m->metadata ? (u32)strlen(m->metadata) : 0);
    put32(h + 28, (u32)m->context_len);
    put32(h + 32, m->payload ? (u32)m->payload->len : 0);
    put32(h + 36, m->payload ? (u32)strlen(m->payload->mime) : 0);
    put32(h + 40, m->expects_response_s);
    put32(h + 44, m->error);
    u32 flags = (m->payload ? UQ_ABI_HAS_PAYLOAD : 0) | (m->metadata ? UQ_ABI_HAS_METADATA : 0) |
                (m->kind == UQI_MSG_REQUEST && m->has_rsvp ? UQ_ABI_AWAITED : 0) |
                (!m->source_len && strcmp(m->source.node, kp->node ? uqi_node_name(kp->node) : "") != 0 ? UQ_ABI_REMOTE : 0);
    if (m->caps) {
        flags |= UQ_ABI_HAS_CAPS;
        put32(h + 52, (u32)strlen(m->caps));
    }
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
    case UQ_FIELD_CAPS: data = (uint8_t *)m->caps; n = m->caps ? strlen(m->caps) : 0; break;
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
    kp->held_mask &= ~(1ull << (handle - 1));
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

/* Parse a JSON capability (array) from guest memory; issuers default to
 * this node. NULL with *err set on failure. */
static json_t *guest_json(abi_ctx *p, u32 ptr, u32 len, int32_t *err)
{
    const char *s = (const char *)uqi_guest_ptr(p, ptr, len);
    if (!s) {
        *err = UQ_ABI_EFAULT;
        return NULL;
    }
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY, NULL);
    if (!v) *err = UQ_ABI_EINVAL;
    return v;
}

static int64_t send_common(abi_ctx *p, u32 desc, uqi_capref *attach, uint32_t n_attach);
static int32_t records_wait(uqi_kproc *kp, bool wait, const char *why);

/* send(descriptor*) -> message id (> 0) or a negative UQ_ABI_* code. */
int64_t Z_uqbarZ_send(abi_ctx *p, u32 desc)
{
    return send_common(p, desc, NULL, 0);
}

/* send_caps(descriptor*, caps_json, len): send, attaching capabilities
 * [{"issuer": "node@process" | "process", "params": JSON}, ...] that the
 * sender holds or issues (its own address as issuer: it mints one). On a
 * node with a store the call returns once the receiver's record (which now
 * lists them) is durable, unless the descriptor has UQ_ABI_NOWAIT. */
int64_t Z_uqbarZ_send_caps(abi_ctx *p, u32 desc, u32 caps, u32 caps_len)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    int32_t err = 0;
    json_t *v = guest_json(p, caps, caps_len, &err);
    if (!v) return err;
    char self[2 * UQI_NAME_MAX + 2];
    uqi_addr_format(&kp->addr, self, sizeof self);
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        json_t *c = json_array_get(v, i);
        if (json_is_object(c) && !json_object_get(c, "issuer")) json_object_set_new(c, "issuer", json_string(self));
    }
    uqi_capref *refs;
    uint32_t n;
    uq_errmsg em;
    uq_err e = uqi_caprefs_from_json(v, uqi_node_name(kp->node), &refs, &n, &em);
    json_decref(v);
    if (e) return UQ_ABI_EINVAL;
    return send_common(p, desc, refs, n); /* takes refs */
}

static int64_t send_common(abi_ctx *p, u32 desc, uqi_capref *attach, uint32_t n_attach)
{
    uqi_kproc *kp = p->user;
    if (!kp) {
        uqi_caprefs_free(attach, n_attach);
        return UQ_ABI_EINVAL;
    }
    const uint8_t *d = uqi_guest_ptr(p, desc, UQ_ABI_SEND_SIZE);
    int32_t err = 0;
    uqi_msg *prompt = NULL;
    u32 kind = d ? get32(d + 0) : 0, handle = d ? get32(d + 4) : 0;
    const uint8_t *body = d ? uqi_guest_ptr(p, get32(d + 16), get32(d + 20)) : NULL;
    if (!d || !body) err = UQ_ABI_EFAULT;
    else if (kind != UQI_MSG_REQUEST && kind != UQI_MSG_RESPONSE) err = UQ_ABI_EINVAL;
    else if (handle && !(prompt = held(kp, handle))) err = UQ_ABI_EBADHANDLE;
    else if (kind == UQI_MSG_RESPONSE && !prompt) err = UQ_ABI_EINVAL;
    if (err) {
        uqi_caprefs_free(attach, n_attach);
        return err;
    }
    u32 flags = get32(d + 60), expects = get32(d + 56);
    uqi_msg *m = uqi_msg_new((uqi_msg_kind)kind, body, get32(d + 20));
    m->attach = attach;
    m->n_attach = n_attach;
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
            if (!lt) {
                lt = kp->last_target = uqi_block_get(sizeof *lt);
                memset(lt, 0, sizeof *lt);
            }
            memcpy(lt->text, target, tlen);
            lt->len = tlen;
            lt->addr = m->target;
            uqi_last_target_clear(lt);
        }
        m->target_cached = true;
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
    if (!e) { /* the kernel owns m and ctx now */
        int32_t rc = 0;
        if (UQ_UNLIKELY(kp->records_due)) /* it granted the receiver capabilities */
            rc = records_wait(kp, !(flags & UQ_ABI_NOWAIT),
                              "granted capabilities, but the holder's record is not on disk: "
                              "they will not come back after a restart");
        return rc ? rc : (int64_t)(id & INT64_MAX);
    }
    if (e == UQ_EPERM) uq_log(UQ_LOG_INFO, "kernel", "refused: %s", em.text);
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

/* caps_list(buf, cap) -> length of the JSON array of this process's tokens
 * (copied up to cap). */
int32_t Z_uqbarZ_caps_list(abi_ctx *p, u32 buf, u32 cap)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    char *s = uqi_node_caps_json(kp->node, kp);
    size_t n = strlen(s);
    u32 take = n < cap ? (u32)n : cap;
    uint8_t *d = uqi_guest_ptr(p, buf, take);
    if (d) memcpy(d, s, take);
    free(s);
    return d ? (int32_t)n : UQ_ABI_EFAULT;
}

/* A capability object {"issuer"?, "params"} from guest memory (issuer
 * defaults to the caller). */
static int32_t guest_capref(abi_ctx *p, u32 ptr, u32 len, uqi_capref *out)
{
    uqi_kproc *kp = p->user;
    int32_t err = 0;
    json_t *v = guest_json(p, ptr, len, &err);
    if (!v) return err;
    if (json_is_object(v) && !json_object_get(v, "issuer")) {
        char a[2 * UQI_NAME_MAX + 2];
        uqi_addr_format(&kp->addr, a, sizeof a);
        json_object_set_new(v, "issuer", json_string(a));
    }
    uq_errmsg em;
    uq_err e = uqi_capref_from_json(v, uqi_node_name(kp->node), out, &em);
    json_decref(v);
    return e ? UQ_ABI_EINVAL : 0;
}

/* cap_has(holder, holder_len, cap, cap_len) -> 1 held, 0 not. A process
 * may ask only about capabilities it issued. */
int32_t Z_uqbarZ_cap_has(abi_ctx *p, u32 holder, u32 holder_len, u32 cap, u32 cap_len)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    const char *h = (const char *)uqi_guest_ptr(p, holder, holder_len);
    if (!h) return UQ_ABI_EFAULT;
    uqi_addr ha;
    uq_errmsg em;
    if (holder_len > 2 * UQI_NAME_MAX + 1 || uqi_addr_parse_n(h, holder_len, uqi_node_name(kp->node), &ha, &em))
        return UQ_ABI_EINVAL;
    uqi_capref c;
    int32_t err = guest_capref(p, cap, cap_len, &c);
    if (err) return err;
    int32_t r;
    if (!uqi_addr_eq(&c.issuer, &kp->addr)) r = UQ_ABI_EPERM;
    else if (strcmp(ha.node, uqi_node_name(kp->node)) != 0) r = 0; /* remote holders: with networking */
    else if ((r = uqi_node_has_cap(kp->node, ha.process, &c)) < 0) r = UQ_ABI_ENOPROC;
    free(c.params);
    return r;
}

/* cap_verify(token, len, holder, len) -> 0 if the token is valid for holder. */
int32_t Z_uqbarZ_cap_verify(abi_ctx *p, u32 token, u32 token_len, u32 holder, u32 holder_len)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    const char *t = (const char *)uqi_guest_ptr(p, token, token_len);
    const char *h = (const char *)uqi_guest_ptr(p, holder, holder_len);
    if (!t || !h) return UQ_ABI_EFAULT;
    uqi_addr ha;
    uq_errmsg em;
    if (holder_len > 2 * UQI_NAME_MAX + 1 || uqi_addr_parse_n(h, holder_len, uqi_node_name(kp->node), &ha, &em))
        return UQ_ABI_EINVAL;
    switch (uqi_node_cap_verify(kp->node, t, token_len, &ha, &em)) {
    case UQ_OK: return 0;
    case UQ_ECRYPTO: return UQ_ABI_EBADSIG;
    case UQ_EPERM: return UQ_ABI_ENOTHOLDER;
    case UQ_ENOENT: return UQ_ABI_EREVOKED;
    default: return UQ_ABI_EINVAL;
    }
}

/* cap_drop(cap, len) -> how many were removed: one it issued is revoked from
 * every holder; any other is dropped from its own set. On a node with a
 * store the call returns once the holders' records are durable (a kill -9
 * after it cannot bring the capability back). */
int32_t Z_uqbarZ_cap_drop(abi_ctx *p, u32 cap, u32 cap_len)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    uqi_capref c;
    int32_t err = guest_capref(p, cap, cap_len, &c);
    if (err) return err;
    uint32_t k = uqi_kproc_cap_drop(kp, &c);
    free(c.params);
    int32_t rc = 0;
    if (kp->records_due)
        rc = records_wait(kp, true,
                          "dropped capabilities, but the holders' records are not on disk: "
                          "they may come back after a restart");
    return rc ? rc : (int32_t)k;
}

static int32_t durable_wait(uqi_kproc *kp, uq_errmsg *em);

/* spawn(descriptor, out_id, out_cap) -> length of the child's id (written to
 * out_id, up to out_cap bytes) or a negative code. The child starts at once;
 * its capabilities must be held or issued by the parent (EPERM names none:
 * nothing is started); the parent may message it. Compiling a module the
 * node has not seen runs in this call (cached afterwards). On a node with a
 * store the call returns once the child's records are durable (a kill -9
 * after it cannot lose the child), unless UQ_SPAWN_NOWAIT. */
int32_t Z_uqbarZ_spawn(abi_ctx *p, u32 desc, u32 out_id, u32 out_cap)
{
    uqi_kproc *kp = p->user;
    if (!kp) return UQ_ABI_EINVAL;
    const uint8_t *d = uqi_guest_ptr(p, desc, UQ_ABI_SPAWN_SIZE);
    if (!d) return UQ_ABI_EFAULT;
    u32 id_len = get32(d + 4), wasm_len = get32(d + 12), caps_len = get32(d + 20), flags = get32(d + 24);
    const char *idp = id_len ? (const char *)uqi_guest_ptr(p, get32(d + 0), id_len) : "";
    const uint8_t *wasm = uqi_guest_ptr(p, get32(d + 8), wasm_len);
    if (!idp || !wasm) return UQ_ABI_EFAULT;
    if (id_len > UQI_NAME_MAX || wasm_len == 0 || (flags & ~UQ_SPAWN_FLAGS)) return UQ_ABI_EINVAL;
    char id[UQI_NAME_MAX + 1];
    memcpy(id, idp, id_len);
    id[id_len] = '\0';
    uqi_capref *caps = NULL;
    uint32_t ncaps = 0;
    uq_errmsg em;
    if (caps_len) {
        int32_t err = 0;
        json_t *v = guest_json(p, get32(d + 16), caps_len, &err);
        if (!v) return err;
        uq_err e = uqi_caprefs_from_json(v, uqi_node_name(kp->node), &caps, &ncaps, &em);
        json_decref(v);
        if (e) return UQ_ABI_EINVAL;
    }
    char got[UQI_NAME_MAX + 1];
    uq_err e = uqi_node_spawn_child(kp->node, kp, id, wasm, wasm_len, (flags & UQ_SPAWN_PUBLIC) != 0,
                                    (flags & UQ_SPAWN_RESTART) != 0, caps, ncaps, got, &em);
    uqi_caprefs_free(caps, ncaps);
    if (e) {
        uq_log(UQ_LOG_INFO, "kernel", "%s could not spawn %s: %s", kp->addr.process, id[0] ? id : "a child", em.text);
        switch (e) {
        case UQ_EPERM: return UQ_ABI_EPERM;
        case UQ_EEXIST: return UQ_ABI_EEXIST;
        case UQ_ELIMIT: return UQ_ABI_EFULL;
        case UQ_EINVAL: return UQ_ABI_EINVAL;
        default: return UQ_ABI_EBADMODULE;
        }
    }
    u32 n = (u32)strlen(got), w = n + 1 < out_cap ? n + 1 : out_cap; /* with its NUL when it fits */
    uint8_t *o = uqi_guest_ptr(p, out_id, w);
    if (o) memcpy(o, got, w);
    if (!(flags & UQ_SPAWN_NOWAIT) && durable_wait(kp, &em)) {
        uq_log(UQ_LOG_WARN, "kernel", "%s spawned %s, but its record is not on disk: it will not come back after a "
               "restart (%s)", kp->addr.process, got, em.text);
        return UQ_ABI_EIO;
    }
    return (int32_t)n;
}

/* ---- process state (docs/PERSISTENCE.md) ---------------------------------- */
typedef struct state_wait {
    uqi_task *task;
    _Atomic int done;
    uq_err err;
    uq_errmsg em;                /* why, when err (not initialized otherwise) */
} state_wait;

/* A store callback (committer thread): the outcome to w, its task woken. */
static void wait_done(void *arg, uq_err err, const uq_errmsg *em)
{
    state_wait *w = arg;
    w->err = err;
    if (err) snprintf(w->em.text, sizeof w->em.text, "%s", em ? em->text : "the store could not write");
    atomic_store_explicit(&w->done, 1, memory_order_release);
    uqi_task_wake(w->task);
}

/* Block the calling task until wait_done ran for w (the callback writes to
 * w: wait for it whatever happens, a kill included). */
static void wait_for(state_wait *w)
{
    while (!atomic_load_explicit(&w->done, memory_order_acquire)) uqi_task_block();
}

static void state_done(void *arg, uq_err err, const uq_errmsg *em)
{
    if (err) uq_log(UQ_LOG_WARN, "kernel", "a state write failed: %s", em ? em->text : "");
    wait_done(arg, err, em);
}

/* Write (data) or clear (NULL) the caller's state and wait, off the worker,
 * until it is durable: other processes of the worker run meanwhile. */
static int32_t state_write(abi_ctx *p, const uint8_t *data, size_t len)
{
    uqi_kproc *kp = p->user;
    uqs_store *s = kp ? uqi_node_store(kp->node) : NULL;
    if (!kp) return UQ_ABI_EINVAL;
    if (!s || !kp->wasm_key[0]) return UQ_ABI_ENOSTORE;
    state_wait w = {.task = uqi_task_current()};
    uq_errmsg em;
    uq_err e;
    if (data) {
        e = uqs_state_set_async(s, kp->addr.process, data, len, state_done, &w, &em);
    } else {
        uqs_op op = {.db = UQS_DB_STATE, .del = true, .key = kp->addr.process, .klen = strlen(kp->addr.process)};
        e = uqs_write_async(s, &op, 1, state_done, &w, &em);
    }
    if (e) return e == UQ_ELIMIT ? UQ_ABI_EFULL : UQ_ABI_EIO;
    wait_for(&w);
    return w.err == UQ_OK ? 0 : w.err == UQ_ELIMIT ? UQ_ABI_EFULL : UQ_ABI_EIO;
}

/* Wait, off the worker, until every store write queued so far (the
 * records the caller's change queued among them) is durable: the node lock
 * is not held, and the worker runs other processes meanwhile. 0, or EIO
 * with *em set: the change is made, but a restart would not see it.
 * Nothing to wait for without a store. */
static int32_t durable_wait(uqi_kproc *kp, uq_errmsg *em)
{
    uqs_store *s = uqi_node_store(kp->node);
    if (!s) return 0;
    state_wait w = {.task = uqi_task_current()};
    if (uqs_flush_async(s, wait_done, &w, em)) return 0; /* closing: the node is going down */
    wait_for(&w);
    if (w.err == UQ_OK) return 0;
    *em = w.em;
    return UQ_ABI_EIO;
}

/* After a host call whose kernel step queued process records (kp->records_due:
 * a grant or a drop): wait until they are durable (durable_wait), unless
 * the guest asked not to; a failure is logged with why. */
static int32_t records_wait(uqi_kproc *kp, bool wait, const char *why)
{
    kp->records_due = false;
    uq_errmsg em;
    if (!wait || !durable_wait(kp, &em)) return 0;
    uq_log(UQ_LOG_WARN, "kernel", "%s %s (%s)", kp->addr.process, why, em.text);
    return UQ_ABI_EIO;
}

/* state_set(ptr, len) -> 0 once durable. */
#define STATE_MAX (16u << 20) /* per process: the store is shared by every process of the node */

int32_t Z_uqbarZ_state_set(abi_ctx *p, u32 ptr, u32 len)
{
    const uint8_t *d = uqi_guest_ptr(p, ptr, len);
    if (!d) return UQ_ABI_EFAULT;
    if (len > STATE_MAX) return UQ_ABI_EFULL;
    return state_write(p, d, len);
}

/* state_clear() -> 0 once durable. */
int32_t Z_uqbarZ_state_clear(abi_ctx *p)
{
    return state_write(p, NULL, 0);
}

/* state_get(buf, cap) -> length of the state (copied up to cap). */
int32_t Z_uqbarZ_state_get(abi_ctx *p, u32 buf, u32 cap)
{
    uqi_kproc *kp = p->user;
    uqs_store *s = kp ? uqi_node_store(kp->node) : NULL;
    if (!kp) return UQ_ABI_EINVAL;
    if (!s || !kp->wasm_key[0]) return UQ_ABI_ENOSTORE;
    uint8_t *st;
    size_t n;
    uq_errmsg em;
    uq_err e = uqs_state_get(s, kp->addr.process, &st, &n, &em);
    if (e == UQ_ENOENT) return UQ_ABI_ENOSTATE;
    if (e) return UQ_ABI_EIO;
    if (n > INT32_MAX) n = INT32_MAX;
    u32 take = n < cap ? (u32)n : cap;
    uint8_t *d = uqi_guest_ptr(p, buf, take);
    if (d) memcpy(d, st, take);
    free(st);
    return d ? (int32_t)n : UQ_ABI_EFAULT;
}
