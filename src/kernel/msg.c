/* Addresses, payloads, messages and bounded mailboxes for the kernel. */
#include "kernel/msg.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define PAYLOAD_MAX ((size_t)1 << 32) /* 4 GiB: a guest could not address more */

static bool name_ok_n(const char *s, size_t n, bool dots)
{
    if (n == 0 || n > UQI_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (dots && c == '.');
        if (!ok) return false;
    }
    if (s[0] == '-' || s[n - 1] == '-' || s[0] == '.' || s[n - 1] == '.') return false;
    return true;
}

bool uqi_node_name_valid(const char *s) { return name_ok_n(s, strlen(s), true); }
bool uqi_process_name_valid(const char *s) { return name_ok_n(s, strlen(s), false); }

uq_err uqi_addr_parse_n(const char *text, size_t len, const char *local_node, uqi_addr *out, uq_errmsg *em)
{
    const char *at = memchr(text, '@', len);
    const char *proc = at ? at + 1 : text;
    size_t plen = len - (size_t)(proc - text);
    if (at) {
        size_t n = (size_t)(at - text);
        if (!name_ok_n(text, n, true))
            return uqi_errf(em, UQ_EINVAL, "bad address \"%.*s\": node name must be 1-%d characters of a-z, 0-9, '.' and '-'",
                            (int)(len < 200 ? len : 200), text, UQI_NAME_MAX);
        memcpy(out->node, text, n);
        out->node[n] = '\0';
    } else {
        if (!local_node)
            return uqi_errf(em, UQ_EINVAL, "bad address \"%.*s\": expected node@process", (int)(len < 200 ? len : 200), text);
        size_t n = strlen(local_node);
        memcpy(out->node, local_node, n + 1 <= sizeof out->node ? n + 1 : sizeof out->node);
        out->node[sizeof out->node - 1] = '\0';
    }
    if (!name_ok_n(proc, plen, false))
        return uqi_errf(em, UQ_EINVAL, "bad address \"%.*s\": process id must be 1-%d characters of a-z, 0-9 and '-'",
                        (int)(len < 200 ? len : 200), text, UQI_NAME_MAX);
    memcpy(out->process, proc, plen);
    out->process[plen] = '\0';
    return UQ_OK;
}

uq_err uqi_addr_parse(const char *text, const char *local_node, uqi_addr *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    return uqi_addr_parse_n(text, strlen(text), local_node, out, em);
}

void uqi_addr_format(const uqi_addr *a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s@%s", a->node, a->process);
}

bool uqi_addr_eq(const uqi_addr *a, const uqi_addr *b)
{
    return strcmp(a->node, b->node) == 0 && strcmp(a->process, b->process) == 0;
}

void uqi_uuid_new(char out[37])
{
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

uqi_payload *uqi_payload_new(const void *data, size_t len, const char *mime)
{
    if (len > PAYLOAD_MAX) return NULL;
    uqi_payload *p = malloc(sizeof *p + len);
    if (!p) return NULL;
    atomic_init(&p->refs, 1);
    p->len = len;
    snprintf(p->mime, sizeof p->mime, "%s", mime ? mime : "");
    if (len) memcpy(p->data, data, len);
    return p;
}

uqi_payload *uqi_payload_hold(uqi_payload *p)
{
    if (p) atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void uqi_payload_rele(uqi_payload *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) free(p);
}

/* One allocation: the body lives right after the message. */
uqi_msg *uqi_msg_new(uqi_msg_kind kind, const void *body, size_t body_len)
{
    uqi_msg *m = uqi_xmalloc(sizeof *m + body_len);
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->body = (uint8_t *)(m + 1);
    if (body_len) memcpy(m->body, body, body_len);
    m->body_len = body_len;
    return m;
}

void uqi_msg_free(uqi_msg *m)
{
    if (!m) return;
    free(m->metadata);
    free(m->context);
    uqi_payload_rele(m->payload);
    for (uint32_t i = 0; i < m->n_attach; i++) free(m->attach[i].params);
    free(m->attach);
    free(m->caps);
    free(m);
}

void uqi_mailbox_init(uqi_mailbox *mb, uint32_t cap)
{
    memset(mb, 0, sizeof *mb);
    pthread_mutex_init(&mb->lock, NULL);
    mb->cap = cap ? cap : 1;
}

void uqi_mailbox_fini(uqi_mailbox *mb)
{
    for (uqi_msg *m = mb->head, *n; m; m = n) {
        n = m->next;
        uqi_msg_free(m);
    }
    mb->head = mb->tail = NULL;
    mb->depth = 0;
    pthread_mutex_destroy(&mb->lock);
}

uq_err uqi_mailbox_push(uqi_mailbox *mb, uqi_msg *m)
{
    pthread_mutex_lock(&mb->lock);
    if (mb->depth >= mb->cap) {
        mb->refused++;
        pthread_mutex_unlock(&mb->lock);
        return UQ_ELIMIT;
    }
    m->next = NULL;
    if (mb->tail) mb->tail->next = m;
    else mb->head = m;
    mb->tail = m;
    mb->depth++;
    mb->delivered++;
    pthread_mutex_unlock(&mb->lock);
    return UQ_OK;
}

uqi_msg *uqi_mailbox_pop(uqi_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    uqi_msg *m = mb->head;
    if (m) {
        mb->head = m->next;
        if (!mb->head) mb->tail = NULL;
        mb->depth--;
        m->next = NULL;
    }
    pthread_mutex_unlock(&mb->lock);
    return m;
}

uint32_t uqi_mailbox_depth(uqi_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    uint32_t d = mb->depth;
    pthread_mutex_unlock(&mb->lock);
    return d;
}
