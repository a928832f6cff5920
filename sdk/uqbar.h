/* uqbar.h: write uqbar processes in C (clang --target=wasm32-wasi).
 *
 * A process is a WASI command whose main() loops on uq_receive(). Each
 * received message is a handle: read its parts with uq_body()/uq_payload()
 * (the payload is copied into the process only then), answer with
 * uq_respond(), forward with uq_request() naming it as `inherit`, and free it
 * with uq_msg_free(). Contracts and error codes: docs/ABI.md. */
#ifndef UQBAR_H_GUEST
#define UQBAR_H_GUEST

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdk_abi.h"

#define UQ_IMPORT(n) __attribute__((import_module("uqbar"), import_name(n)))
int32_t uq__receive(void *hdr) UQ_IMPORT("receive");
int32_t uq__msg_read(int32_t h, int32_t field, uint32_t off, void *buf, uint32_t len) UQ_IMPORT("msg_read");
int32_t uq__msg_free(int32_t h) UQ_IMPORT("msg_free");
int64_t uq__send(const void *desc) UQ_IMPORT("send");
int32_t uq__our(char *buf, uint32_t cap) UQ_IMPORT("our");
int64_t uq__send_caps(const void *desc, const char *caps, uint32_t len) UQ_IMPORT("send_caps");
int32_t uq__caps_list(char *buf, uint32_t cap) UQ_IMPORT("caps_list");
int32_t uq__cap_has(const char *holder, uint32_t hl, const char *cap, uint32_t cl) UQ_IMPORT("cap_has");
int32_t uq__cap_verify(const char *token, uint32_t tl, const char *holder, uint32_t hl) UQ_IMPORT("cap_verify");
int32_t uq__cap_drop(const char *cap, uint32_t cl) UQ_IMPORT("cap_drop");
int32_t uq__spawn(const void *desc, char *out_id, uint32_t out_cap) UQ_IMPORT("spawn");
int32_t uq__state_set(const void *data, uint32_t len) UQ_IMPORT("state_set");
int32_t uq__state_get(void *buf, uint32_t cap) UQ_IMPORT("state_get");
int32_t uq__state_clear(void) UQ_IMPORT("state_clear");

typedef struct uq_msg {
    uint32_t handle, kind;
    uint64_t id;
    uint32_t source_len, body_len, metadata_len, context_len, payload_len, mime_len;
    uint32_t expects_response_s, error, flags, caps_len;
} uq_msg;
_Static_assert(sizeof(uq_msg) == UQ_ABI_HEADER_SIZE, "uq_msg layout");

typedef struct uq_send_desc {
    uint32_t kind, handle;
    uint32_t target_ptr, target_len, body_ptr, body_len, metadata_ptr, metadata_len;
    uint32_t context_ptr, context_len, payload_ptr, payload_len, mime_ptr, mime_len;
    uint32_t expects_response_s, flags;
} uq_send_desc;
_Static_assert(sizeof(uq_send_desc) == UQ_ABI_SEND_SIZE, "uq_send_desc layout");

/* Wait for the next message; returns its handle (> 0) or a UQ_ABI_* code. */
static inline int32_t uq_receive(uq_msg *m) { return uq__receive(m); }
static inline int32_t uq_msg_free(const uq_msg *m) { return uq__msg_free((int32_t)m->handle); }
/* The next request: anything else received meanwhile (a response or error
 * nobody waits for) is freed. The result of uq_receive. */
static inline int32_t uq_receive_request(uq_msg *m)
{
    for (;;) {
        int32_t rc = uq_receive(m);
        if (rc < 0 || m->kind == UQ_KIND_REQUEST) return rc;
        uq_msg_free(m);
    }
}

/* Copy a field into a fresh NUL-terminated buffer (caller frees); NULL if empty. */
static inline char *uq_read_field(const uq_msg *m, int field, uint32_t len)
{
    char *b = (char *)malloc((size_t)len + 1);
    if (!b) return NULL;
    int32_t n = len ? uq__msg_read((int32_t)m->handle, field, 0, b, len) : 0;
    if (n < 0) { free(b); return NULL; }
    b[n] = '\0';
    return b;
}
static inline char *uq_body(const uq_msg *m) { return uq_read_field(m, UQ_FIELD_BODY, m->body_len); }
static inline char *uq_source(const uq_msg *m) { return uq_read_field(m, UQ_FIELD_SOURCE, m->source_len); }
static inline char *uq_context(const uq_msg *m) { return uq_read_field(m, UQ_FIELD_CONTEXT, m->context_len); }
static inline char *uq_metadata(const uq_msg *m) { return uq_read_field(m, UQ_FIELD_METADATA, m->metadata_len); }
/* The payload: only this call copies its bytes into the process. */
static inline char *uq_payload(const uq_msg *m) { return uq_read_field(m, UQ_FIELD_PAYLOAD, m->payload_len); }
/* The capabilities that came with m (already added to this process's set):
 * a JSON array of tokens, or NULL. */
static inline char *uq_msg_caps(const uq_msg *m) { return uq_read_field(m, UQ_FIELD_CAPS, m->caps_len); }

/* Options of a request or response; zero-initialise and set what you need. */
typedef struct uq_opts {
    const uq_msg *inherit;      /* request: prompting message to inherit from */
    uint32_t expects_response_s;/* request: seconds to wait for a response (0: none) */
    const void *context;        /* request: kept by the kernel, returned with the response */
    uint32_t context_len;
    const char *metadata;       /* for middleware; NULL: none */
    const void *payload;        /* bytes to attach; NULL: none */
    uint32_t payload_len;
    const char *mime;
    int inherit_payload;        /* forward inherit's payload by reference */
    const char *caps;           /* capabilities to attach, JSON: [{"issuer": "process" or
                                   "node@process" (omitted: this process mints it),
                                   "params": JSON}, ...]; each held or issued by us. On a node
                                   with a store the call returns once the receiver's record
                                   lists them durably (UQ_ABI_EIO: sent and granted, but that
                                   record could not be written) ... */
    int nowait;                 /* ... unless set: return before that (UQ_ABI_NOWAIT) */
} uq_opts;

static inline int64_t uq__send_common(uint32_t kind, uint32_t handle, const char *target, const void *body,
                                      uint32_t body_len, const uq_opts *o)
{
    uq_send_desc d;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.handle = handle;
    d.target_ptr = (uint32_t)(uintptr_t)target;
    d.target_len = target ? (uint32_t)strlen(target) : 0;
    d.body_ptr = (uint32_t)(uintptr_t)body;
    d.body_len = body_len;
    if (o) {
        if (o->metadata) {
            d.metadata_ptr = (uint32_t)(uintptr_t)o->metadata;
            d.metadata_len = (uint32_t)strlen(o->metadata);
            d.flags |= UQ_ABI_HAS_METADATA;
        }
        d.context_ptr = (uint32_t)(uintptr_t)o->context;
        d.context_len = o->context_len;
        if (o->payload) {
            d.payload_ptr = (uint32_t)(uintptr_t)o->payload;
            d.payload_len = o->payload_len;
            d.mime_ptr = (uint32_t)(uintptr_t)o->mime;
            d.mime_len = o->mime ? (uint32_t)strlen(o->mime) : 0;
            d.flags |= UQ_ABI_HAS_PAYLOAD;
        } else if (o->inherit_payload) {
            d.flags |= UQ_ABI_INHERIT_PAYLOAD;
        }
        d.expects_response_s = o->expects_response_s;
        if (o->nowait) d.flags |= UQ_ABI_NOWAIT;
        if (o->caps) return uq__send_caps(&d, o->caps, (uint32_t)strlen(o->caps));
    }
    return uq__send(&d);
}

/* Send a request to "node@process" (or "process" on this node). Returns the
 * message id (> 0) or a UQ_ABI_* code (UQ_ABI_EFULL: try again later). */
static inline int64_t uq_request(const char *target, const char *body, const uq_opts *o)
{
    uint32_t h = o && o->inherit ? o->inherit->handle : 0;
    return uq__send_common(UQ_KIND_REQUEST, h, target, body, (uint32_t)strlen(body), o);
}

/* Answer the request m; the response goes to whoever awaits it. */
static inline int64_t uq_respond(const uq_msg *m, const char *body, const uq_opts *o)
{
    return uq__send_common(UQ_KIND_RESPONSE, m->handle, NULL, body, (uint32_t)strlen(body), o);
}

/* ---- capabilities (docs/CAPABILITIES.md) ---- */
/* What this process holds: a JSON array of signed tokens (caller frees). */
static inline char *uq_caps_list(void)
{
    int32_t n = uq__caps_list(NULL, 0);
    if (n < 0) return NULL;
    char *b = (char *)malloc((size_t)n + 1);
    if (!b) return NULL;
    uq__caps_list(b, (uint32_t)n);
    b[n] = '\0';
    return b;
}
/* Does holder ("node@process" or "process") hold cap {"params": JSON}, one
 * that this process issued? 1 yes, 0 no, < 0 a UQ_ABI_* code. */
static inline int32_t uq_cap_has(const char *holder, const char *cap_json)
{
    return uq__cap_has(holder, (uint32_t)strlen(holder), cap_json, (uint32_t)strlen(cap_json));
}
/* Is token (one element of a caps list) valid and held by holder? 0 yes;
 * UQ_ABI_EBADSIG, UQ_ABI_ENOTHOLDER, UQ_ABI_EREVOKED or UQ_ABI_EINVAL. */
static inline int32_t uq_cap_verify(const char *token, const char *holder)
{
    return uq__cap_verify(token, (uint32_t)strlen(token), holder, (uint32_t)strlen(holder));
}
/* Give up a capability {"issuer"?, "params"}: one this process issued
 * (issuer omitted or ours) is revoked from every holder; returns how many,
 * on a node with a store once the holders' records are durable (UQ_ABI_EIO:
 * removed, but a record could not be written). */
static inline int32_t uq_cap_drop(const char *cap_json) { return uq__cap_drop(cap_json, (uint32_t)strlen(cap_json)); }

/* Spawn a child from wasm bytes: id NULL or "" for a fresh UUID; caps a JSON
 * array of capabilities to give it (each held or issued by us), or NULL;
 * flags UQ_SPAWN_PUBLIC, UQ_SPAWN_RESTART, UQ_SPAWN_NOWAIT. The child runs at
 * once and we may message it; on a node with a store this returns once the
 * child's record is durable (it comes back after a crash), unless
 * UQ_SPAWN_NOWAIT (for children that end soon: no wait for the disk).
 * Returns the length of its id (written to out_id, NUL-terminated when it
 * fits) or a UQ_ABI_* code (EPERM: a capability we lack; EIO: the child runs
 * and out_id holds its id, but its record could not be written). */
static inline int32_t uq_spawn(const char *id, const void *wasm, uint32_t wasm_len, const char *caps, uint32_t flags,
                               char *out_id, uint32_t out_cap)
{
    uint32_t d[8] = {(uint32_t)(uintptr_t)id, id ? (uint32_t)strlen(id) : 0, (uint32_t)(uintptr_t)wasm, wasm_len,
                     (uint32_t)(uintptr_t)caps, caps ? (uint32_t)strlen(caps) : 0, flags, 0};
    int32_t n = uq__spawn(d, out_id, out_cap);
    if (n >= 0 && (uint32_t)n < out_cap) out_id[n] = '\0';
    return n;
}

/* ---- persistence (docs/PERSISTENCE.md) ---- */
/* Persist this process's state: returns 0 once it is durable (it survives a
 * crash of the node from then on); UQ_ABI_EFULL if the disk or store is
 * full (the old state is kept). A restarted process gets its state as its
 * first message: a request from node@kernel, body "RestoredState", the
 * state as payload. */
static inline int32_t uq_state_set(const void *data, uint32_t len) { return uq__state_set(data, len); }
static inline int32_t uq_state_clear(void) { return uq__state_clear(); }
/* The persisted state (malloc'ed, *len set), or NULL when there is none. */
static inline void *uq_state_get(uint32_t *len)
{
    int32_t n = uq__state_get(NULL, 0);
    if (n < 0) return NULL;
    char *b = (char *)malloc((size_t)n + 1);
    if (!b) return NULL;
    uq__state_get(b, (uint32_t)n);
    b[n] = '\0';
    if (len) *len = (uint32_t)n;
    return b;
}

/* This process's own address into buf; returns its length. */
static inline int32_t uq_our(char *buf, uint32_t cap) { return uq__our(buf, cap); }

#endif
