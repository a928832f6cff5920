/* Restore from backup peers (backup.h, uqi_backup_restore): List at every
 * peer, then Get each entry from the peer holding its highest sequence,
 * verify and decrypt it; a copy that fails is refused by name and the next
 * copy (another peer, or an older sequence) is tried. What comes back is
 * written into the store in batches, with the "a/<peer>/..." records of the
 * copies verified, so the next boot sends peers only what they lack. */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/backup.h"
#include "kernel/backup_crypt.h"
#include "store/store.h"
#include "util/util.h"

#define LIST_TIMEOUT_S 30
#define GET_TIMEOUT_S 60
#define GET_WINDOW 16
#define WRITE_BATCH 64
#define WRITE_BYTES (4u << 20)

enum { REQ_LIST = 1, REQ_GET = 2 };

typedef struct rctx {
    uint32_t kind, peer, group, cand;
} rctx;

typedef struct triple {
    char eid[UQI_BID_HEX + 1];
    uint32_t peer;
    uint64_t seq;
} triple;

typedef struct group {
    char eid[UQI_BID_HEX + 1];
    uint32_t first, n;     /* its triples, highest sequence first */
    uint32_t next;         /* the next copy to try */
    bool done;
} group;

typedef struct rstate {
    uqi_node *n;
    uqs_store *s;
    uqi_kproc *port;
    uqi_bkeys keys;
    const char *const *peers;
    uint32_t npeers;
    FILE *out;
    uqi_restore_report *rep;
    triple *t;
    size_t nt, capt;
    group *g;
    size_t ng;
    uint32_t outstanding;
    size_t ndone;          /* groups done (restored, deleted or lost) */
    /* writes waiting for the next batch */
    uqs_op ops[WRITE_BATCH * 2];
    void *owned[WRITE_BATCH * 4];
    size_t nops, nowned, bytes;
    uq_err write_err;
    uq_errmsg write_em;
} rstate;

static int has_proc(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    *(bool *)arg = true;
    return 1;
}

static bool send_req(rstate *r, uint32_t peer, const char *body, rctx c, uint32_t timeout_s)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    snprintf(m->target.node, sizeof m->target.node, "%s", r->peers[peer]);
    snprintf(m->target.process, sizeof m->target.process, UQI_BACKUP_PROCESS);
    m->expects_response_s = timeout_s;
    uint8_t *ctx = uqi_xmalloc(sizeof c);
    memcpy(ctx, &c, sizeof c);
    uq_errmsg em = {{0}};
    if (uqi_kernel_send(r->port, m, ctx, sizeof c, NULL, &em) != UQ_OK) {
        fprintf(r->out, "restore: cannot ask %s: %s\n", r->peers[peer], em.text);
        uqi_msg_free(m);
        free(ctx);
        return false;
    }
    r->outstanding++;
    return true;
}

static const char *error_text(const uqi_msg *m)
{
    static const char *errs[] = {"", "Offline", "Timeout", "it runs no backup process", "Refused"};
    return m->error < 5 ? errs[m->error] : "error";
}

/* ---- List ---------------------------------------------------------------------------------- */
static void on_list(rstate *r, const rctx *c, const uqi_msg *m)
{
    const char *peer = r->peers[c->peer];
    if (m->kind == UQI_MSG_ERROR) {
        fprintf(r->out, "restore: backup peer %s does not answer (%s)\n", peer, error_text(m));
        return;
    }
    json_t *v = json_loadb((const char *)m->body, m->body_len, 0, NULL);
    json_t *entries = json_object_get(json_object_get(v, "Ok"), "entries");
    if (!json_is_array(entries)) {
        const char *err = json_string_value(json_object_get(v, "Err"));
        fprintf(r->out, "restore: backup peer %s refuses to list: %s\n", peer, err ? err : "an answer uqbar cannot read");
        json_decref(v);
        return;
    }
    r->rep->peers_ok++;
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(entries); i++) {
        json_t *e = json_array_get(entries, i);
        const char *id = json_string_value(json_array_get(e, 0));
        json_t *sq = json_array_get(e, 1);
        if (!id || strlen(id) != UQI_BID_HEX || !json_is_integer(sq) || json_integer_value(sq) <= 0) continue;
        if (r->nt == r->capt) {
            r->capt = r->capt ? 2 * r->capt : 256;
            r->t = realloc(r->t, r->capt * sizeof *r->t);
            UQ_VERIFY(r->t);
        }
        triple *t = &r->t[r->nt++];
        snprintf(t->eid, sizeof t->eid, "%s", id);
        t->peer = c->peer;
        t->seq = (uint64_t)json_integer_value(sq);
        k++;
    }
    fprintf(r->out, "restore: backup peer %s holds %zu entries for this node\n", peer, k);
    fflush(r->out);
    json_decref(v);
}

static int triple_cmp(const void *a, const void *b)
{
    const triple *x = a, *y = b;
    int c = strcmp(x->eid, y->eid);
    if (c) return c;
    return x->seq > y->seq ? -1 : x->seq < y->seq ? 1 : 0;
}

/* ---- Get ----------------------------------------------------------------------------------- */
static uq_err flush_writes(rstate *r)
{
    if (r->nops && !r->write_err) r->write_err = uqs_write(r->s, r->ops, r->nops, &r->write_em);
    for (size_t i = 0; i < r->nowned; i++) free(r->owned[i]);
    r->nops = r->nowned = r->bytes = 0;
    return r->write_err;
}

static void *own(rstate *r, void *p)
{
    r->owned[r->nowned++] = p;
    return p;
}

static void keep(rstate *r, const rctx *c, uint64_t seq, uqi_bentry *e)
{
    if (r->nops + 2 > WRITE_BATCH * 2 || r->bytes > WRITE_BYTES) flush_writes(r);
    if (e->deleted) {
        r->rep->deleted++;
        return;
    }
    uqs_db db = e->db == UQI_BDB_PROCS ? UQS_DB_PROCS : UQS_DB_STATE;
    r->ops[r->nops++] = (uqs_op){.db = db, .key = own(r, e->key), .klen = e->klen, .val = own(r, e->val), .vlen = e->vlen};
    r->bytes += e->vlen;
    r->rep->restored++;
    r->rep->bytes += e->vlen;
    /* the peer holds this copy: the node need not send it again */
    char *ak = uqi_xmalloc(UQS_KEY_MAX + 1);
    int kl = snprintf(ak, UQS_KEY_MAX + 1, "a/%s/%c%.*s", r->peers[c->peer], e->db, (int)e->klen, (const char *)e->key);
    if (kl > 0 && kl <= UQS_KEY_MAX) {
        uint8_t *rec = uqi_xmalloc(40);
        uqi_put_le64(rec, seq);
        crypto_generichash(rec + 8, 32, e->val, e->vlen, NULL, 0);
        r->ops[r->nops++] = (uqs_op){.db = UQS_DB_BACKUP, .key = own(r, ak), .klen = (size_t)kl, .val = own(r, rec), .vlen = 40};
    } else {
        free(ak);
    }
    e->key = e->val = NULL; /* owned by the batch now */
}

static void try_next(rstate *r, uint32_t gi)
{
    group *g = &r->g[gi];
    while (g->next < g->n) {
        uint32_t ci = g->next++;
        const triple *t = &r->t[g->first + ci];
        char body[120];
        snprintf(body, sizeof body, "{\"Get\":{\"id\":\"%s\"}}", g->eid);
        if (send_req(r, t->peer, body, (rctx){REQ_GET, t->peer, gi, ci}, GET_TIMEOUT_S)) return;
    }
    g->done = true;
    r->ndone++;
    r->rep->lost++;
    fprintf(r->out, "restore: entry %s: no good copy on any backup peer; it is lost\n", g->eid);
}

static void on_get(rstate *r, const rctx *c, const uqi_msg *m)
{
    if (c->group >= r->ng) return;
    group *g = &r->g[c->group];
    const char *peer = r->peers[c->peer];
    const triple *t = &r->t[g->first + c->cand];
    char why[800] = "";
    if (m->kind == UQI_MSG_ERROR) {
        snprintf(why, sizeof why, "backup peer %s does not answer (%s)", peer, error_text(m));
    } else {
        json_t *v = json_loadb((const char *)m->body, m->body_len, 0, NULL);
        json_t *sq = json_object_get(json_object_get(v, "Ok"), "seq");
        if (!json_is_integer(sq) || !m->payload) {
            const char *err = json_string_value(json_object_get(v, "Err"));
            snprintf(why, sizeof why, "backup peer %s: %s", peer, err ? err : "an answer uqbar cannot read");
        } else {
            uint64_t seq = (uint64_t)json_integer_value(sq);
            uqi_bentry e;
            uq_errmsg em = {{0}};
            /* the sequence the peer says is checked: it is in the associated data; and it must be
             * the one it listed (an older authentic entry in its place would be a rollback) */
            if (seq != t->seq) {
                r->rep->refused++;
                snprintf(why, sizeof why, "REFUSED the copy from backup peer %s: it listed sequence %llu but sent %llu",
                         peer, (unsigned long long)t->seq, (unsigned long long)seq);
            } else if (uqi_bentry_open(&r->keys, uqi_node_name(r->n), g->eid, seq, m->payload->data, m->payload->len, &e, &em)) {
                r->rep->refused++;
                snprintf(why, sizeof why, "REFUSED the copy from backup peer %s: %s", peer, em.text);
            } else {
                keep(r, c, seq, &e);
                uqi_bentry_free(&e);
                g->done = true;
                r->ndone++;
            }
        }
        json_decref(v);
    }
    if (g->done) return;
    bool more = g->next < g->n;
    fprintf(r->out, "restore: entry %s (seq %llu): %s%s\n", g->eid, (unsigned long long)t->seq, why,
            more ? "; trying another copy" : "");
    fflush(r->out);
    try_next(r, c->group);
}

/* Receive answers until none is outstanding. */
static void drain(rstate *r, size_t *next_group)
{
    uint64_t last_print = uqi_now_ns();
    uint32_t fetched = 0;
    while (r->outstanding || (next_group && *next_group < r->ng)) {
        while (next_group && *next_group < r->ng && r->outstanding < GET_WINDOW) try_next(r, (uint32_t)(*next_group)++);
        if (!r->outstanding) break;
        uqi_msg *m = uqi_port_receive(r->port, 200);
        if (m && m->kind != UQI_MSG_REQUEST && m->context && m->context_len == sizeof(rctx)) {
            rctx c;
            memcpy(&c, m->context, sizeof c);
            if (c.peer < r->npeers) {
                r->outstanding--;
                if (c.kind == REQ_LIST) on_list(r, &c, m);
                else if (c.kind == REQ_GET) on_get(r, &c, m), fetched++;
            }
        }
        uqi_msg_free(m);
        if (next_group && uqi_now_ns() - last_print > 500000000ull) {
            fprintf(r->out, "restore: %zu/%zu entries done (%.1f MB)\n", r->ndone, r->ng,
                    (double)r->rep->bytes / 1e6);
            fflush(r->out);
            last_print = uqi_now_ns();
        }
    }
}

uq_err uqi_backup_restore(uqi_node *n, uqs_store *s, const uint8_t sk[64], const char *const *peers, uint32_t npeers,
                          FILE *out, uqi_restore_report *rep, uq_errmsg *em)
{
    memset(rep, 0, sizeof *rep);
    if (!npeers) return uqi_errf(em, UQ_EINVAL, "restore needs the backup peers (--backup-peers a,b)");
    for (uint32_t i = 0; i < npeers; i++)
        if (strcmp(peers[i], uqi_node_name(n)) == 0)
            return uqi_errf(em, UQ_EINVAL, "%s is this node: its backups are on other nodes", peers[i]);
    bool any = false;
    uq_err e = uqs_each(s, UQS_DB_PROCS, "p/", 2, has_proc, &any, em);
    if (e) return e;
    if (any)
        return uqi_errf(em, UQ_EEXIST,
                        "the store %s holds processes already: restore wants a fresh home with only the node's "
                        "keyfile (identity.key)",
                        uqs_path(s));
    rstate *r = uqi_xcalloc(1, sizeof *r);
    r->n = n;
    r->s = s;
    r->peers = peers;
    r->npeers = npeers;
    r->out = out;
    r->rep = rep;
    uqi_bkeys_derive(sk, &r->keys);
    if ((e = uqi_backup_port(n, &r->port, em))) goto done;
    uint64_t t0 = uqi_now_ns();
    fprintf(out, "restore: node %s asks %u backup peer%s for its entries\n", uqi_node_name(n), npeers,
            npeers == 1 ? "" : "s");
    fflush(out);
    for (uint32_t i = 0; i < npeers; i++) send_req(r, i, "\"List\"", (rctx){REQ_LIST, i, 0, 0}, LIST_TIMEOUT_S);
    drain(r, NULL);
    if (!rep->peers_ok) {
        e = uqi_errf(em, UQ_ENOENT, "no backup peer answered (is the directory file right, and are they up?)");
        goto done;
    }
    /* one group per entry id, its copies highest sequence first */
    if (r->nt) qsort(r->t, r->nt, sizeof *r->t, triple_cmp);
    r->g = uqi_xcalloc(r->nt ? r->nt : 1, sizeof *r->g);
    for (size_t i = 0; i < r->nt; i++) {
        if (r->ng && strcmp(r->g[r->ng - 1].eid, r->t[i].eid) == 0) {
            r->g[r->ng - 1].n++;
            continue;
        }
        group *g = &r->g[r->ng++];
        snprintf(g->eid, sizeof g->eid, "%s", r->t[i].eid);
        g->first = (uint32_t)i;
        g->n = 1;
    }
    rep->listed = (uint32_t)r->ng;
    size_t next = 0;
    drain(r, &next);
    flush_writes(r);
    if (r->write_err) {
        e = r->write_err;
        *em = r->write_em;
        goto done;
    }
    fprintf(out, "restore: %u entries (%.1f MB) written to %s in %.1f s (%u recorded deletions); %u refused cop%s, %u lost\n",
            rep->restored, (double)rep->bytes / 1e6, uqs_path(s), (double)(uqi_now_ns() - t0) / 1e9, rep->deleted, rep->refused,
            rep->refused == 1 ? "y" : "ies", rep->lost);
    fflush(out);
    if (rep->lost)
        e = uqi_errf(em, UQ_ECRYPTO, "%u entr%s had no good copy on any backup peer (see above)", rep->lost,
                     rep->lost == 1 ? "y" : "ies");
done:
    if (r->port) uqi_node_kill_ex(n, UQI_BACKUP_PROCESS, true, NULL);
    for (size_t i = 0; i < r->nowned; i++) free(r->owned[i]);
    uqi_bkeys_wipe(&r->keys);
    free(r->t);
    free(r->g);
    free(r);
    return e;
}
