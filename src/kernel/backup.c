/* Encrypted remote backups (backup.h): the process `backup`, its thread,
 * the keeping of others' entries, the sending of ours, and restore.
 *
 * Local records in the store's database "backup":
 *   h/<owner>/<entry id>   -> seq (u64 LE) || sealed entry   (kept for owner)
 *   a/<peer>/<db><key>     -> seq (u64 LE) || BLAKE2b-256 of the value
 *                             (what peer acknowledged of our store key) */
#include "kernel/backup.h"

#include <jansson.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "kernel/backup_crypt.h"
#include "net/netmod.h"
#include "store/store.h"

#define DSET_BUCKETS 1024
#define PUT_TIMEOUT_S 30
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 10000
#define SERVE_BATCH 64
#define OPS_TEXT "Put, List, Get"

/* ---- a set of store keys ("<db char><key>") ------------------------------------- */
typedef struct dnode {
    struct dnode *next;
    uint64_t seq;          /* resync: the acknowledged sequence */
    uint8_t digest[32];    /* resync: the acknowledged digest */
    bool seen;             /* resync: the key is in the store */
    size_t len;
    char key[];            /* db char, then the store key; NUL-terminated */
} dnode;

typedef struct dset {
    dnode *b[DSET_BUCKETS];
    size_t n;
    size_t cursor;
} dset;

static uint32_t dhash(const char *k, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
    return h % DSET_BUCKETS;
}

static dnode *dset_find(dset *s, const char *k, size_t len)
{
    for (dnode *d = s->b[dhash(k, len)]; d; d = d->next)
        if (d->len == len && memcmp(d->key, k, len) == 0) return d;
    return NULL;
}

/* Add (db, key); returns the node (existing or new). */
static dnode *dset_add2(dset *s, char db, const void *key, size_t klen)
{
    char tmp[UQS_KEY_MAX + 2];
    if (klen > UQS_KEY_MAX) return NULL;
    tmp[0] = db;
    memcpy(tmp + 1, key, klen);
    dnode *d = dset_find(s, tmp, klen + 1);
    if (d) return d;
    d = uqi_xcalloc(1, sizeof *d + klen + 2);
    d->len = klen + 1;
    memcpy(d->key, tmp, klen + 1);
    uint32_t h = dhash(d->key, d->len);
    d->next = s->b[h];
    s->b[h] = d;
    s->n++;
    return d;
}

/* Take one (the caller frees it), or NULL. */
static dnode *dset_pop(dset *s)
{
    if (!s->n) return NULL;
    for (size_t i = 0; i < DSET_BUCKETS; i++) {
        size_t k = (s->cursor + i) % DSET_BUCKETS;
        if (s->b[k]) {
            dnode *d = s->b[k];
            s->b[k] = d->next;
            s->n--;
            s->cursor = k;
            return d;
        }
    }
    return NULL;
}

static void dset_clear(dset *s)
{
    dnode *d;
    while ((d = dset_pop(s))) free(d);
}

/* ---- the module ------------------------------------------------------------------ */
typedef struct bpeer {
    char name[UQI_NAME_MAX + 1];
    dset dirty;            /* under b->mu */
    _Atomic uint32_t inflight;
    uint64_t retry_at_ns;
    uint32_t backoff_ms;
    atomic_bool down;      /* the last attempt failed (logged once) */
    char why[400];         /* why, under b->mu */
    _Atomic uint64_t acked, failures;
} bpeer;

typedef struct owner_use {
    struct owner_use *next;
    char name[UQI_NAME_MAX + 1];
    uint64_t bytes;        /* held for it (sealed bytes + keys) */
} owner_use;

struct uqi_backup {
    uqi_node *n;
    uqs_store *s;
    uqi_kproc *port;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool compared;  /* the comparison at start is done: pending counts are complete */
    uqi_bkeys keys;
    char self[UQI_NAME_MAX + 1];
    uint64_t quota;
    uint32_t window;
    uint64_t last_seq;
    pthread_mutex_t mu;    /* peers' dirty sets, status counters */
    bpeer peers[UQI_BACKUP_PEERS_MAX];
    uint32_t npeers;
    owner_use *owners;     /* the thread's only */
    /* acknowledgements of one round of answers, written together (thread only) */
    uqs_op ack_ops[2 * SERVE_BATCH];
    char ack_keys[2 * SERVE_BATCH][UQS_KEY_MAX + 1];
    uint8_t ack_recs[2 * SERVE_BATCH][40];
    size_t nacks;
    uint64_t ack_first_ns; /* when the oldest unwritten acknowledgement came */
};

/* What travels as the context of a Put (the kernel gives it back with the answer). */
typedef struct put_ctx {
    uint32_t peer;
    uint64_t seq;
    uint8_t digest[32];
    uint8_t deleted;
    uint16_t len;
    char key[];            /* dnode key: db char + store key */
} put_ctx;


static bool eid_valid(const char *s)
{
    if (!s || strlen(s) != UQI_BID_HEX) return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return false;
    return true;
}

uq_err uqi_backup_parse_peers(char *buf, const char **names, uint32_t max, uint32_t *n, uq_errmsg *em)
{
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        if (!*t) continue;
        if (!uqi_node_name_valid(t)) return uqi_errf(em, UQ_EINVAL, "backup peer \"%.64s\" is not a node name", t);
        if (*n >= max) return uqi_errf(em, UQ_EINVAL, "at most %u backup peers", max);
        for (uint32_t i = 0; i < *n; i++)
            if (strcmp(names[i], t) == 0) return uqi_errf(em, UQ_EINVAL, "backup peer %s is named twice", t);
        names[(*n)++] = t;
    }
    return UQ_OK;
}

/* A port named backup: public, with the network capability (both ways). */
uq_err uqi_backup_port(uqi_node *n, uqi_kproc **out, uq_errmsg *em)
{
    uq_err e = uqi_node_port_plain(n, UQI_BACKUP_PROCESS, out, em);
    if (e) return e;
    uqi_capref c = {.params = (char *)"\"network\""};
    snprintf(c.issuer.node, sizeof c.issuer.node, "%s", uqi_node_name(n));
    snprintf(c.issuer.process, sizeof c.issuer.process, "kernel");
    if ((e = uqi_node_grant(n, NULL, UQI_BACKUP_PROCESS, &c, 1, em))) {
        uqi_node_kill_ex(n, UQI_BACKUP_PROCESS, true, NULL);
        return e;
    }
    uqi_kproc_set_public(*out, true);
    return UQ_OK;
}

static void respond(uqi_kproc *port, const uqi_msg *m, json_t *body, uqi_payload *payload)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!m->has_rsvp || !text) {
        free(text);
        uqi_payload_rele(payload);
        return;
    }
    uqi_msg *r = uqi_msg_new(UQI_MSG_RESPONSE, text, strlen(text));
    free(text);
    r->id = m->id;
    r->target = m->rsvp;
    r->payload = payload;
    uq_errmsg em;
    if (uqi_kernel_send(port, r, NULL, 0, NULL, &em) != UQ_OK) {
        uq_log(UQ_LOG_INFO, "backup", "cannot answer %s@%s: %s", m->rsvp.node, m->rsvp.process, em.text);
        uqi_msg_free(r);
    }
}

static json_t *err_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *err_json(const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c >= 0x80) *c = '?';
    return json_pack("{s:s}", "Err", buf);
}

/* ---- keeping others' entries ------------------------------------------------------- */
static int sum_bytes(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    *(uint64_t *)arg += klen + vlen;
    return 0;
}

static owner_use *owner_of(uqi_backup *b, const char *owner)
{
    for (owner_use *o = b->owners; o; o = o->next)
        if (strcmp(o->name, owner) == 0) return o;
    owner_use *o = uqi_xcalloc(1, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", owner);
    char prefix[UQI_NAME_MAX + 4];
    int pl = snprintf(prefix, sizeof prefix, "h/%s/", owner);
    uq_errmsg em;
    if (uqs_each(b->s, UQS_DB_BACKUP, prefix, (size_t)pl, sum_bytes, &o->bytes, &em))
        uq_log(UQ_LOG_ERROR, "backup", "cannot count what is held for %s: %s", owner, em.text);
    o->next = b->owners;
    b->owners = o;
    return o;
}

typedef struct list_acc {
    json_t *arr;
    size_t plen;
} list_acc;

static int list_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    list_acc *a = arg;
    if (vlen < 8 || klen != a->plen + UQI_BID_HEX) return 0;
    json_array_append_new(a->arr, json_pack("[s#,I]", (const char *)key + a->plen, (int)UQI_BID_HEX,
                                            (json_int_t)uqi_get_le64(val)));
    return 0;
}

/* A Put waiting for the batch's write. */
typedef struct pending_put {
    const uqi_msg *m;
    uint64_t seq;
    json_t *answer;        /* set when decided before the write */
} pending_put;

/* Serve n requests (from other nodes' backup processes); Puts of the batch
 * go to the store in one durable write before any is answered. */
static void serve_batch(uqi_backup *b, uqi_msg **ms, size_t n)
{
    pending_put puts[SERVE_BATCH];
    uqs_op ops[SERVE_BATCH];
    uint8_t *vals[SERVE_BATCH];
    char keys[SERVE_BATCH][UQI_NAME_MAX + UQI_BID_HEX + 4];
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        const uqi_msg *m = ms[i];
        const char *owner = m->source.node;
        json_t *req = NULL, *ans = NULL;
        if (strcmp(owner, b->self) == 0 || strcmp(m->source.process, UQI_BACKUP_PROCESS) != 0) {
            ans = err_json("backup keeps entries for the backup process of other nodes only, not for %s@%s",
                           m->source.node, m->source.process);
            goto answer;
        }
        req = json_loadb((const char *)m->body, m->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        const char *op = json_is_string(req) ? json_string_value(req)
                         : json_is_object(req) && json_object_size(req) == 1 ? json_object_iter_key(json_object_iter(req))
                                                                             : NULL;
        json_t *arg = json_is_object(req) ? json_object_iter_value(json_object_iter(req)) : NULL;
        char prefix[UQI_NAME_MAX + 4];
        int pl = snprintf(prefix, sizeof prefix, "h/%s/", owner);
        if (!op) {
            ans = err_json("bad request: the body must be JSON \"List\", {\"Put\":{\"id\":ID,\"seq\":N}} (the "
                           "sealed entry in the payload) or {\"Get\":{\"id\":ID}}");
        } else if (strcmp(op, "List") == 0) {
            list_acc a = {json_array(), (size_t)pl};
            uq_errmsg em;
            if (uqs_each(b->s, UQS_DB_BACKUP, prefix, (size_t)pl, list_one, &a, &em)) {
                json_decref(a.arr);
                ans = err_json("cannot list: %s", em.text);
            } else {
                ans = json_pack("{s:{s:o,s:I}}", "Ok", "entries", a.arr, "bytes", (json_int_t)owner_of(b, owner)->bytes);
            }
        } else if (strcmp(op, "Get") == 0) {
            const char *id = json_string_value(json_object_get(arg, "id"));
            char key[UQI_NAME_MAX + UQI_BID_HEX + 4];
            uint8_t *v = NULL;
            size_t vl = 0;
            uq_errmsg em;
            if (!eid_valid(id)) {
                ans = err_json("Get needs {\"id\":\"<%d lower-case hex digits>\"}", UQI_BID_HEX);
            } else {
                snprintf(key, sizeof key, "%s%s", prefix, id);
                uq_err e = uqs_get(b->s, UQS_DB_BACKUP, key, strlen(key), &v, &vl, &em);
                if (e == UQ_ENOENT || (!e && vl < 8)) {
                    ans = err_json("no entry %s is kept here for %s", id, owner);
                } else if (e) {
                    ans = err_json("cannot read entry %s: %s", id, em.text);
                } else {
                    uqi_payload *p = uqi_payload_new(v + 8, vl - 8, "application/octet-stream");
                    json_t *ok = json_pack("{s:{s:I}}", "Ok", "seq", (json_int_t)uqi_get_le64(v));
                    free(v);
                    json_decref(req);
                    respond(b->port, m, ok, p);
                    continue;
                }
                free(v);
            }
        } else if (strcmp(op, "Put") == 0) {
            const char *id = json_string_value(json_object_get(arg, "id"));
            json_t *sq = json_object_get(arg, "seq");
            size_t len = m->payload ? m->payload->len : 0;
            if (!eid_valid(id) || !json_is_integer(sq) || json_integer_value(sq) <= 0) {
                ans = err_json("Put needs {\"id\":\"<%d lower-case hex digits>\",\"seq\":N} with N > 0", UQI_BID_HEX);
            } else if (len < UQI_BENTRY_OVERHEAD) {
                ans = err_json("Put of %s: the payload must be the sealed entry (%zu bytes is too short)", id, len);
            } else {
                uint64_t seq = (uint64_t)json_integer_value(sq);
                snprintf(keys[np], sizeof keys[np], "%s%s", prefix, id);
                uint8_t *old = NULL;
                size_t ol = 0;
                uq_errmsg em;
                uq_err e = uqs_get(b->s, UQS_DB_BACKUP, keys[np], strlen(keys[np]), &old, &ol, &em);
                uint64_t old_seq = !e && ol >= 8 ? uqi_get_le64(old) : 0;
                free(old);
                owner_use *o = owner_of(b, owner);
                uint64_t add = strlen(keys[np]) + 8 + len, sub = !e ? strlen(keys[np]) + ol : 0;
                if (sub > o->bytes) sub = o->bytes;
                if (e && e != UQ_ENOENT) {
                    ans = err_json("cannot read entry %s: %s", id, em.text);
                } else if (old_seq > seq) {
                    ans = json_pack("{s:{s:I}}", "Ok", "seq", (json_int_t)old_seq); /* the newer stays */
                } else if (o->bytes - sub + add > b->quota) {
                    ans = err_json("quota: node %s keeps %llu bytes of backups for %s; %llu more would pass its "
                                   "quota of %llu bytes (--backup-quota)",
                                   b->self, (unsigned long long)o->bytes, owner, (unsigned long long)(add - sub),
                                   (unsigned long long)b->quota);
                } else {
                    o->bytes = o->bytes - sub + add;
                    vals[np] = uqi_xmalloc(8 + len);
                    uqi_put_le64(vals[np], seq);
                    memcpy(vals[np] + 8, m->payload->data, len);
                    ops[np] = (uqs_op){.db = UQS_DB_BACKUP, .key = keys[np], .klen = strlen(keys[np]),
                                       .val = vals[np], .vlen = 8 + len};
                    puts[np] = (pending_put){.m = m, .seq = seq};
                    np++;
                    json_decref(req);
                    continue;
                }
            }
        } else {
            ans = err_json("unknown request \"%.40s\": backup understands " OPS_TEXT, op);
        }
    answer:
        json_decref(req);
        if (json_object_get(ans, "Err"))
            uq_log(UQ_LOG_INFO, "backup", "refused %s@%s: %s", m->source.node, m->source.process,
                   json_string_value(json_object_get(ans, "Err")));
        respond(b->port, m, ans, NULL);
    }
    if (!np) return;
    uq_errmsg em = {{0}};
    uq_err e = uqs_write(b->s, ops, np, &em);
    if (e) { /* recount: what was counted did not happen */
        owner_use *o;
        while ((o = b->owners)) {
            b->owners = o->next;
            free(o);
        }
    }
    for (size_t i = 0; i < np; i++) {
        respond(b->port, puts[i].m,
                e ? err_json("cannot keep the entry: %s", em.text)
                  : json_pack("{s:{s:I}}", "Ok", "seq", (json_int_t)puts[i].seq),
                NULL);
        free(vals[i]);
    }
}

/* ---- sending ours ----------------------------------------------------------------------- */
static uint64_t next_seq(uqi_backup *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_us = (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
    b->last_seq = now_us > b->last_seq ? now_us : b->last_seq + 1;
    return b->last_seq;
}

static void on_write(void *arg, uqs_db db, const void *key, size_t klen)
{
    uqi_backup *b = arg;
    if (db != UQS_DB_PROCS && db != UQS_DB_STATE) return;
    char c = db == UQS_DB_PROCS ? UQI_BDB_PROCS : UQI_BDB_STATE;
    pthread_mutex_lock(&b->mu);
    for (uint32_t i = 0; i < b->npeers; i++) dset_add2(&b->peers[i].dirty, c, key, klen);
    pthread_mutex_unlock(&b->mu);
}

static void redirty(uqi_backup *b, uint32_t peer, const char *dkey, size_t len)
{
    pthread_mutex_lock(&b->mu);
    dset_add2(&b->peers[peer].dirty, dkey[0], dkey + 1, len - 1);
    pthread_mutex_unlock(&b->mu);
}

static void peer_failed(uqi_backup *b, bpeer *p, const char *why)
{
    p->failures++;
    uint64_t now = uqi_now_ns();
    if (p->retry_at_ns > now) return; /* the rest of a window that failed together: one back-off */
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (p->backoff_ms > BACKOFF_MAX_MS) p->backoff_ms = BACKOFF_MAX_MS;
    p->retry_at_ns = now + (uint64_t)p->backoff_ms * 1000000ull;
    pthread_mutex_lock(&b->mu);
    snprintf(p->why, sizeof p->why, "%s", why);
    pthread_mutex_unlock(&b->mu);
    if (!p->down)
        uq_log(UQ_LOG_WARN, "backup", "backup peer %s: %s; trying again (every %u s at most)", p->name, why,
               BACKOFF_MAX_MS / 1000);
    p->down = true;
}

static void ack_done(void *arg, uq_err err, const uq_errmsg *em)
{
    if (err) uq_log(UQ_LOG_ERROR, "backup", "cannot record an acknowledged backup: %s", em ? em->text : "");
}

/* Seal the current value of dkey and Put it to peer i. */
static void send_one(uqi_backup *b, uint32_t pi, dnode *d)
{
    bpeer *p = &b->peers[pi];
    uqs_db db = d->key[0] == UQI_BDB_PROCS ? UQS_DB_PROCS : UQS_DB_STATE;
    uint8_t *val = NULL;
    size_t vlen = 0;
    uq_errmsg em = {{0}};
    uq_err e = uqs_get(b->s, db, d->key + 1, d->len - 1, &val, &vlen, &em);
    if (e && e != UQ_ENOENT) {
        uq_log(UQ_LOG_ERROR, "backup", "cannot read %s to back it up: %s", d->key + 1, em.text);
        redirty(b, pi, d->key, d->len);
        peer_failed(b, p, "a local read failed");
        return;
    }
    bool deleted = e == UQ_ENOENT;
    if (!deleted && vlen + d->len + 200 > UQN_NET_MSG_MAX) {
        uq_log(UQ_LOG_ERROR, "backup", "%s is %zu bytes: more than a message may carry; it is not backed up",
               d->key + 1, vlen);
        free(val);
        return;
    }
    char eid[UQI_BID_HEX + 1];
    uqi_bentry_id(&b->keys, d->key[0], d->key + 1, d->len - 1, eid);
    uint64_t seq = next_seq(b);
    size_t ctl;
    uint8_t *ct = uqi_bentry_seal(&b->keys, b->self, eid, seq, d->key[0], d->key + 1, d->len - 1, val, vlen, deleted,
                                  &ctl);
    size_t cl = sizeof(put_ctx) + d->len;
    put_ctx *c = uqi_xcalloc(1, cl);
    c->peer = pi;
    c->seq = seq;
    c->deleted = deleted;
    c->len = (uint16_t)d->len;
    memcpy(c->key, d->key, d->len);
    if (!deleted) crypto_generichash(c->digest, 32, val, vlen, NULL, 0);
    if (val) sodium_memzero(val, vlen);
    free(val);
    char body[160];
    snprintf(body, sizeof body, "{\"Put\":{\"id\":\"%s\",\"seq\":%llu}}", eid, (unsigned long long)seq);
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    snprintf(m->target.node, sizeof m->target.node, "%s", p->name);
    snprintf(m->target.process, sizeof m->target.process, UQI_BACKUP_PROCESS);
    m->expects_response_s = PUT_TIMEOUT_S;
    m->payload = uqi_payload_new(ct, ctl, "application/octet-stream");
    free(ct);
    if (!m->payload || uqi_kernel_send(b->port, m, (uint8_t *)c, cl, NULL, &em) != UQ_OK) {
        uqi_msg_free(m);
        free(c);
        redirty(b, pi, d->key, d->len);
        peer_failed(b, p, em.text[0] ? em.text : "the entry cannot be sent");
        return;
    }
    p->inflight++;
}

static void pump(uqi_backup *b)
{
    uint64_t now = uqi_now_ns();
    for (uint32_t i = 0; i < b->npeers; i++) {
        bpeer *p = &b->peers[i];
        if (p->retry_at_ns > now) continue;
        while (p->inflight < b->window) {
            pthread_mutex_lock(&b->mu);
            dnode *d = dset_pop(&p->dirty);
            pthread_mutex_unlock(&b->mu);
            if (!d) break;
            send_one(b, i, d);
            free(d);
            if (p->retry_at_ns > now) break;
        }
    }
}

/* An answer to one of our Puts (response or error, with its context). */
static void on_answer(uqi_backup *b, const uqi_msg *m)
{
    const put_ctx *c = (const put_ctx *)m->context;
    if (!c || m->context_len < sizeof *c || m->context_len != sizeof *c + c->len || c->peer >= b->npeers) return;
    bpeer *p = &b->peers[c->peer];
    if (p->inflight) p->inflight--;
    if (m->kind == UQI_MSG_ERROR) {
        static const char *errs[] = {"", "Offline", "Timeout", "no process backup there", "Refused"};
        char why[64];
        snprintf(why, sizeof why, "%s", m->error < 5 ? errs[m->error] : "error");
        redirty(b, c->peer, c->key, c->len);
        peer_failed(b, p, why);
        return;
    }
    json_t *v = json_loadb((const char *)m->body, m->body_len, 0, NULL);
    json_t *ok = json_object_get(v, "Ok");
    json_t *kept = json_object_get(ok, "seq");
    if (!ok || !json_is_integer(kept)) {
        const char *err = json_string_value(json_object_get(v, "Err"));
        char why[300];
        snprintf(why, sizeof why, "refused the entry of %.*s: %s", (int)c->len - 1, c->key + 1,
                 err ? err : "an answer it cannot read");
        redirty(b, c->peer, c->key, c->len);
        peer_failed(b, p, why);
        json_decref(v);
        return;
    }
    uint64_t ks = (uint64_t)json_integer_value(kept);
    json_decref(v);
    if (ks > c->seq) { /* the peer holds a later entry (a clock that went back): send again, later */
        if (ks > b->last_seq) b->last_seq = ks;
        redirty(b, c->peer, c->key, c->len);
        return;
    }
    if (p->down) uq_log(UQ_LOG_INFO, "backup", "backup peer %s answers again", p->name);
    p->down = false;
    p->backoff_ms = 0;
    p->retry_at_ns = 0;
    p->acked++;
    UQ_VERIFY(b->nacks < 2 * SERVE_BATCH);
    if (!b->nacks) b->ack_first_ns = uqi_now_ns();
    char *key = b->ack_keys[b->nacks], tmp[UQS_KEY_MAX + 1];
    uint8_t *rec = b->ack_recs[b->nacks];
    int kl = snprintf(tmp, sizeof tmp, "a/%s/%.*s", p->name, (int)c->len, c->key);
    if (kl <= 0 || kl > UQS_KEY_MAX) return;
    memcpy(key, tmp, (size_t)kl + 1);
    uqi_put_le64(rec, c->seq);
    memcpy(rec + 8, c->digest, 32);
    b->ack_ops[b->nacks++] =
        (uqs_op){.db = UQS_DB_BACKUP, .key = key, .klen = (size_t)kl, .val = rec, .vlen = 40, .del = c->deleted};
}

/* Record acknowledgements in one store write, at most every ACK_DELAY_MS
 * (so they do not add a commit to every state_set of a busy process), or
 * when many wait, or at stop (force). Asynchronous: if the node dies first,
 * the next start sends those entries again. */
#define ACK_DELAY_MS 200
static void flush_acks(uqi_backup *b, bool force)
{
    if (!b->nacks) return;
    if (!force && b->nacks < SERVE_BATCH && uqi_now_ns() - b->ack_first_ns < ACK_DELAY_MS * 1000000ull) return;
    uq_errmsg em;
    if (uqs_write_async(b->s, b->ack_ops, b->nacks, ack_done, NULL, &em))
        uq_log(UQ_LOG_ERROR, "backup", "cannot record acknowledged backups: %s", em.text);
    b->nacks = 0;
}

/* ---- resync at start: the store against what each peer acknowledged ---------------------- */
typedef struct resync {
    uqi_backup *b;
    dset acked;
    dset dirty;            /* merged into the peer's set after the scan */
    size_t plen;
    char db;
    uint32_t peer;
} resync;

static int load_acked(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    resync *r = arg;
    if (vlen != 40 || klen < r->plen + 2) return 0;
    dnode *d = dset_add2(&r->acked, ((const char *)key)[r->plen], (const char *)key + r->plen + 1, klen - r->plen - 1);
    if (!d) return 0;
    d->seq = uqi_get_le64(val);
    memcpy(d->digest, (const uint8_t *)val + 8, 32);
    if (d->seq > r->b->last_seq) r->b->last_seq = d->seq;
    return 0;
}

static int compare_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    resync *r = arg;
    char tmp[UQS_KEY_MAX + 2];
    if (klen > UQS_KEY_MAX) return 0;
    tmp[0] = r->db;
    memcpy(tmp + 1, key, klen);
    dnode *d = dset_find(&r->acked, tmp, klen + 1);
    uint8_t h[32];
    crypto_generichash(h, 32, val, vlen, NULL, 0);
    if (d) d->seen = true;
    if (!d || memcmp(d->digest, h, 32) != 0) dset_add2(&r->dirty, r->db, key, klen);
    return 0;
}

static void resync_all(uqi_backup *b)
{
    uint64_t t0 = uqi_now_ns();
    for (uint32_t i = 0; i < b->npeers; i++) {
        resync r = {.b = b, .peer = i};
        char prefix[UQI_NAME_MAX + 4];
        r.plen = (size_t)snprintf(prefix, sizeof prefix, "a/%s/", b->peers[i].name);
        uq_errmsg em;
        if (uqs_each(b->s, UQS_DB_BACKUP, prefix, r.plen, load_acked, &r, &em))
            uq_log(UQ_LOG_ERROR, "backup", "cannot read what %s acknowledged: %s", b->peers[i].name, em.text);
        r.db = UQI_BDB_PROCS;
        uq_err e = uqs_each(b->s, UQS_DB_PROCS, NULL, 0, compare_one, &r, &em);
        r.db = UQI_BDB_STATE;
        if (!e) e = uqs_each(b->s, UQS_DB_STATE, NULL, 0, compare_one, &r, &em);
        /* acknowledged, but gone from the store: the peer gets the deletion */
        for (size_t k = 0; k < DSET_BUCKETS; k++)
            for (dnode *d = r.acked.b[k]; d; d = d->next)
                if (!d->seen) dset_add2(&r.dirty, d->key[0], d->key + 1, d->len - 1);
        pthread_mutex_lock(&b->mu);
        for (dnode *d; (d = dset_pop(&r.dirty)); free(d)) dset_add2(&b->peers[i].dirty, d->key[0], d->key + 1, d->len - 1);
        size_t dirty = b->peers[i].dirty.n;
        pthread_mutex_unlock(&b->mu);
        if (e) uq_log(UQ_LOG_ERROR, "backup", "cannot compare the store with backups: %s", em.text);
        if (dirty)
            uq_log(UQ_LOG_INFO, "backup", "%zu entries to send to %s (%.1f ms to compare)", dirty, b->peers[i].name,
                   (double)(uqi_now_ns() - t0) / 1e6);
        dset_clear(&r.acked);
    }
}

/* ---- the thread -------------------------------------------------------------------------- */
static void *backup_main(void *arg)
{
    uqi_backup *b = arg;
    resync_all(b);
    atomic_store(&b->compared, true);
    uqi_msg *batch[SERVE_BATCH];
    while (!atomic_load(&b->stop)) {
        pump(b);
        uqi_msg *m = uqi_port_receive(b->port, 25);
        size_t n = 0;
        while (m) {
            if (m->kind == UQI_MSG_REQUEST) {
                if (uqi_addr_eq(&m->source, &b->port->addr)) uqi_msg_free(m); /* a wake-up */
                else batch[n++] = m;
            } else {
                on_answer(b, m);
                uqi_msg_free(m);
            }
            m = n < SERVE_BATCH ? uqi_port_receive(b->port, 0) : NULL;
        }
        flush_acks(b, false);
        if (n) serve_batch(b, batch, n);
        for (size_t i = 0; i < n; i++) uqi_msg_free(batch[i]);
    }
    flush_acks(b, true);
    return NULL;
}

uq_err uqi_backup_start(uqi_node *n, uqs_store *s, const uqi_backup_cfg *cfg, uqi_backup **out, uq_errmsg *em)
{
    if (cfg->npeers > UQI_BACKUP_PEERS_MAX) return uqi_errf(em, UQ_EINVAL, "at most %d backup peers", UQI_BACKUP_PEERS_MAX);
    for (uint32_t i = 0; i < cfg->npeers; i++) {
        if (!uqi_node_name_valid(cfg->peers[i]))
            return uqi_errf(em, UQ_EINVAL, "backup peer \"%.64s\" is not a node name", cfg->peers[i]);
        if (strcmp(cfg->peers[i], uqi_node_name(n)) == 0)
            return uqi_errf(em, UQ_EINVAL, "a node cannot be its own backup peer (%s)", cfg->peers[i]);
    }
    uqi_backup *b = uqi_xcalloc(1, sizeof *b);
    b->n = n;
    b->s = s;
    b->quota = cfg->quota ? cfg->quota : UQI_BACKUP_QUOTA_DEFAULT;
    b->window = cfg->window ? cfg->window : 32;
    snprintf(b->self, sizeof b->self, "%s", uqi_node_name(n));
    uqi_bkeys_derive(cfg->sk, &b->keys);
    pthread_mutex_init(&b->mu, NULL);
    for (uint32_t i = 0; i < cfg->npeers; i++) snprintf(b->peers[i].name, sizeof b->peers[i].name, "%s", cfg->peers[i]);
    b->npeers = cfg->npeers;
    uq_err e = uqi_backup_port(n, &b->port, em);
    if (e) goto fail;
    if (b->npeers) uqs_set_watch(s, on_write, b); /* before the resync: nothing falls between */
    int rc = pthread_create(&b->thread, NULL, backup_main, b);
    if (rc) {
        uqs_set_watch(s, NULL, NULL);
        uqi_node_kill_ex(n, UQI_BACKUP_PROCESS, true, NULL);
        e = uqi_errf(em, uqi_err_from_errno(rc), "cannot start the backup thread");
        goto fail;
    }
    *out = b;
    return UQ_OK;
fail:
    uqi_bkeys_wipe(&b->keys);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return e;
}

void uqi_backup_stop(uqi_backup *b)
{
    if (!b) return;
    if (b->npeers) uqs_set_watch(b->s, NULL, NULL);
    atomic_store(&b->stop, true);
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, "\"Stop\"", 6);
    m->target = b->port->addr;
    if (uqi_kernel_send(b->port, m, NULL, 0, NULL, NULL) != UQ_OK) uqi_msg_free(m);
    pthread_join(b->thread, NULL);
    uqi_node_kill_ex(b->n, UQI_BACKUP_PROCESS, true, NULL);
    for (uint32_t i = 0; i < b->npeers; i++) dset_clear(&b->peers[i].dirty);
    for (owner_use *o = b->owners, *nx; o; o = nx) {
        nx = o->next;
        free(o);
    }
    uqi_bkeys_wipe(&b->keys);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void uqi_backup_status(uqi_backup *b, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&b->mu);
    if (!b->npeers) at += (size_t)snprintf(buf, cap, "backup: no backup peers (--backup-peers)\n");
    for (uint32_t i = 0; i < b->npeers && at < cap; i++) {
        bpeer *p = &b->peers[i];
        at += (size_t)snprintf(buf + at, cap - at, "backup peer %s: %llu acknowledged, %zu waiting, %u in flight, %llu failures%s%s\n",
                               p->name, (unsigned long long)p->acked, p->dirty.n, (unsigned)p->inflight,
                               (unsigned long long)p->failures, p->down ? "; failing: " : "", p->down ? p->why : "");
    }
    uint64_t pending = 0;
    for (uint32_t i = 0; i < b->npeers; i++) pending += b->peers[i].dirty.n + b->peers[i].inflight;
    pthread_mutex_unlock(&b->mu);
    if (b->npeers && at < cap) {
        if (atomic_load(&b->compared)) snprintf(buf + at, cap - at, "backup: %llu pending\n", (unsigned long long)pending);
        else snprintf(buf + at, cap - at, "backup: comparing the store with what the peers acknowledged\n");
    }
}

uint64_t uqi_backup_pending(uqi_backup *b)
{
    uint64_t k = 0;
    pthread_mutex_lock(&b->mu);
    for (uint32_t i = 0; i < b->npeers; i++) k += b->peers[i].dirty.n + b->peers[i].inflight;
    pthread_mutex_unlock(&b->mu);
    return atomic_load(&b->compared) ? k : UINT64_MAX;
}
