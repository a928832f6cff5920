/* The kernel's persistent process table (docs/PERSISTENCE.md): one record
 * per process, "p/<id>" -> JSON, and each module's bytes once, "w/<hash>"
 * (BLAKE2b-256 of the wasm), in the store's procs database. Records are
 * written asynchronously (the store's group commit keeps their order) when
 * a process is installed, run, changes on_exit or capabilities, and removed
 * when it ends; shutdown leaves them, so the next boot brings the processes
 * back (uqi_node_restore). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "kernel/kernel_int.h"
#include "store/store.h"

#define RECORD_VERSION 1

static void async_done(void *arg, uq_err err, const uq_errmsg *em)
{
    if (err) uq_log(UQ_LOG_ERROR, "kernel", "process table: writing %s failed: %s", (const char *)arg, em ? em->text : "");
    free(arg);
}

static void put_async(uqs_store *s, const char *key, const void *val, size_t vlen)
{
    uqs_op op = {.db = UQS_DB_PROCS, .key = key, .klen = strlen(key), .val = val, .vlen = vlen, .del = val == NULL};
    uq_errmsg em;
    char *k = uqi_xstrdup(key);
    if (uqs_write_async(s, &op, 1, async_done, k, &em)) {
        uq_log(UQ_LOG_ERROR, "kernel", "process table: cannot queue %s: %s", key, em.text);
        free(k);
    }
}

static json_t *bytes_json(const uint8_t *b, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(b[i]));
    return a;
}

/* OnExit in the JSON shape of the kernel API (uqi_parse_on_exit reads it). */
static json_t *on_exit_json(const uqi_kproc *kp)
{
    if (kp->on_exit == UQI_ON_EXIT_NONE) return json_string("None");
    if (kp->on_exit == UQI_ON_EXIT_RESTART) return json_string("Restart");
    json_t *list = json_array();
    for (uint32_t i = 0; i < kp->n_exit_reqs; i++) {
        const uqi_exit_request *r = &kp->exit_reqs[i];
        char a[2 * UQI_NAME_MAX + 2];
        uqi_addr_format(&r->target, a, sizeof a);
        json_t *req = json_pack("{s:o,s:o}", "body", bytes_json(r->body, r->body_len), "metadata",
                                r->metadata ? json_string(r->metadata) : json_null());
        json_t *blob = r->payload ? json_pack("{s:s,s:o}", "mime", r->payload->mime, "bytes",
                                              bytes_json(r->payload->data, r->payload->len))
                                  : json_null();
        json_array_append_new(list, json_pack("[s,o,o]", a, req, blob));
    }
    return json_pack("{s:o}", "Requests", list);
}

/* kp's record: its key "p/<id>" into key, its JSON (malloc'ed) returned. */
static char *proc_record(uqi_kproc *kp, char key[UQI_NAME_MAX + 3])
{
    json_t *caps = json_array();
    for (uint32_t i = 0; i < kp->caps.nb; i++) {
        for (uqi_cap *c = kp->caps.b[i]; c; c = c->hnext) {
            char is[2 * UQI_NAME_MAX + 2];
            uqi_addr_format(&c->issuer, is, sizeof is);
            json_array_append_new(caps, json_pack("{s:s,s:s}", "issuer", is, "params", c->params));
        }
    }
    json_t *rec = json_pack("{s:i,s:s,s:s,s:b,s:b,s:o,s:o}", "v", RECORD_VERSION, "id", kp->addr.process, "wasm",
                            kp->wasm_key, "public", kp->public, "running", kp->running, "on_exit", on_exit_json(kp),
                            "caps", caps);
    char *text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    snprintf(key, UQI_NAME_MAX + 3, "p/%s", kp->addr.process);
    return text;
}

void uqi_persist_proc(uqs_store *s, uqi_kproc *kp)
{
    char key[UQI_NAME_MAX + 3];
    char *text = proc_record(kp, key);
    put_async(s, key, text, strlen(text));
    free(text);
}

uq_err uqi_persist_proc_with(uqs_store *s, uqi_kproc *kp, const uqs_op *ops, size_t nops, uqs_done_fn done,
                             void *arg, uq_errmsg *em)
{
    return uqi_persist_procs_with(s, &kp, 1, ops, nops, done, arg, em);
}

uq_err uqi_persist_procs_with(uqs_store *s, uqi_kproc *const *kps, size_t nkps, const uqs_op *ops, size_t nops,
                              uqs_done_fn done, void *arg, uq_errmsg *em)
{
    typedef char pkey[UQI_NAME_MAX + 3];
    pkey *keys = uqi_xmalloc((nkps ? nkps : 1) * sizeof *keys);
    char **texts = uqi_xcalloc(nkps ? nkps : 1, sizeof *texts);
    uqs_op *all = uqi_xmalloc((nops + nkps) * sizeof *all);
    memcpy(all, ops, nops * sizeof *all);
    for (size_t i = 0; i < nkps; i++) {
        texts[i] = proc_record(kps[i], keys[i]);
        all[nops + i] = (uqs_op){.db = UQS_DB_PROCS, .key = keys[i], .klen = strlen(keys[i]), .val = texts[i],
                                 .vlen = strlen(texts[i])};
    }
    uq_err e = uqs_write_async(s, all, nops + nkps, done, arg, em); /* copies them */
    for (size_t i = 0; i < nkps; i++) free(texts[i]);
    free(texts);
    free(keys);
    free(all);
    return e;
}

void uqi_persist_forget(uqs_store *s, const char *id)
{
    char key[UQI_NAME_MAX + 3];
    snprintf(key, sizeof key, "p/%s", id);
    put_async(s, key, NULL, 0);
    uqs_op op = {.db = UQS_DB_STATE, .key = id, .klen = strlen(id), .del = true};
    uq_errmsg em;
    char *k = uqi_xstrdup(id);
    if (uqs_write_async(s, &op, 1, async_done, k, &em)) free(k);
}

void uqi_persist_wasm(uqs_store *s, const char *key, const uint8_t *wasm, size_t len)
{
    put_async(s, key, wasm, len);
}

/* ---- restore ------------------------------------------------------------- */
typedef struct recs {
    json_t *arr;
    uint32_t bad;
    uqi_restore_fn report;
    void *arg;
} recs;

static void report(uqi_restore_fn fn, void *arg, const char *id, const char *why)
{
    if (fn) fn(arg, id, why);
}

static int collect(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    recs *r = arg;
    json_error_t je;
    json_t *v = json_loadb(val, vlen, 0, &je);
    if (!json_is_object(v) || json_integer_value(json_object_get(v, "v")) != RECORD_VERSION) {
        uq_log(UQ_LOG_ERROR, "kernel", "process record %.*s is not one this version reads: kept, not restored",
               (int)klen, (const char *)key);
        char id[UQS_KEY_MAX + 1];
        snprintf(id, sizeof id, "%.*s", klen > 2 ? (int)klen - 2 : 0, (const char *)key + 2);
        report(r->report, r->arg, id, "its record is not one this version reads (kept, not restored)");
        r->bad++;
        json_decref(v);
        return 0;
    }
    json_array_append_new(r->arr, v);
    return 0;
}

uq_err uqi_node_restore(uqi_node *n, uint32_t *restored, uint32_t *failed, uq_errmsg *em)
{
    return uqi_node_restore_ex(n, restored, failed, NULL, NULL, em);
}

uq_err uqi_node_restore_ex(uqi_node *n, uint32_t *restored, uint32_t *failed, uqi_restore_fn fn, void *arg,
                           uq_errmsg *em)
{
    *restored = *failed = 0;
    uqs_store *s = uqi_node_store(n);
    if (!s) return UQ_OK;
    recs r = {json_array(), 0, fn, arg};
    uq_err err = uqs_each(s, UQS_DB_PROCS, "p/", 2, collect, &r, em);
    if (err) {
        json_decref(r.arr);
        return err;
    }
    *failed = r.bad;
    size_t k = json_array_size(r.arr);
    bool *ok = uqi_xcalloc(k ? k : 1, sizeof *ok);
    uqi_node_freeze(n, true);
    /* 1. install each (a cached module is loaded, not compiled) */
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(r.arr, i);
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *wkey = json_string_value(json_object_get(v, "wasm"));
        uint8_t *wasm = NULL;
        size_t len = 0;
        uq_errmsg e2 = {{0}};
        uq_err e = !id || !wkey ? uqi_errf(&e2, UQ_ECORRUPT, "the record lacks its id or module")
                                : uqs_get(s, UQS_DB_PROCS, wkey, strlen(wkey), &wasm, &len, &e2);
        if (!e) e = uqi_node_init_process(n, id, wasm, len, json_is_true(json_object_get(v, "public")), NULL, &e2);
        free(wasm);
        uqi_on_exit how;
        uqi_exit_request *reqs;
        uint32_t nreqs;
        char why[300];
        if (!e && !uqi_parse_on_exit(n, json_object_get(v, "on_exit"), &how, &reqs, &nreqs, why, sizeof why)) {
            uqi_exit_requests_free(reqs, nreqs);
            e = uqi_errf(&e2, UQ_ECORRUPT, "on_exit: %s", why);
        } else if (!e) {
            e = uqi_node_set_on_exit(n, id, how, reqs, nreqs, &e2);
        }
        if (e) {
            uq_log(UQ_LOG_ERROR, "kernel", "process %s cannot come back: %s (its record is kept)", id ? id : "?", e2.text);
            char line[sizeof e2.text + 32];
            snprintf(line, sizeof line, "%s (its record is kept)", e2.text);
            report(fn, arg, id ? id : "?", line);
            (*failed)++;
            continue;
        }
        ok[i] = true;
    }
    /* 2. capabilities, once every issuer is back */
    for (size_t i = 0; i < k; i++) {
        if (!ok[i]) continue;
        json_t *v = json_array_get(r.arr, i);
        const char *id = json_string_value(json_object_get(v, "id"));
        json_t *caps = json_object_get(v, "caps");
        for (size_t j = 0; j < json_array_size(caps); j++) {
            json_t *c = json_array_get(caps, j);
            const char *is = json_string_value(json_object_get(c, "issuer"));
            const char *params = json_string_value(json_object_get(c, "params"));
            uqi_capref ref = {.params = (char *)params};
            uq_errmsg e2 = {{0}};
            if (!is || !params) uqi_errf(&e2, UQ_ECORRUPT, "a capability in the record lacks its issuer or params");
            if (!is || !params || uqi_addr_parse(is, NULL, &ref.issuer, &e2) ||
                uqi_node_grant(n, NULL, id, &ref, 1, &e2)) {
                uq_log(UQ_LOG_ERROR, "kernel", "process %s: a capability cannot come back: %s", id, e2.text);
                char why[sizeof e2.text + 200];
                snprintf(why, sizeof why, "its capability %.60s from %.60s cannot come back: %s (it runs without it)",
                         params ? params : "?", is ? is : "?", e2.text);
                report(fn, arg, id, why);
            }
        }
    }
    uqi_node_freeze(n, false);
    /* 3. run what was running; each gets its state first */
    for (size_t i = 0; i < k; i++) {
        if (!ok[i]) continue;
        json_t *v = json_array_get(r.arr, i);
        const char *id = json_string_value(json_object_get(v, "id"));
        uq_errmsg e2;
        if (json_is_true(json_object_get(v, "running")) && uqi_node_run_process(n, id, &e2)) {
            uq_log(UQ_LOG_ERROR, "kernel", "process %s cannot run again: %s", id, e2.text);
            char why[sizeof e2.text + 32];
            snprintf(why, sizeof why, "it cannot run again: %s", e2.text);
            report(fn, arg, id, why);
            (*failed)++;
            continue;
        }
        (*restored)++;
    }
    free(ok);
    json_decref(r.arr);
    return UQ_OK;
}

uq_err uqi_node_sync(uqi_node *n, uq_errmsg *em)
{
    uqs_store *s = uqi_node_store(n);
    if (!s) return UQ_OK;
    uq_errmsg e2 = {{0}};
    if (uqs_flush(s, &e2)) return uqi_errf(em, UQ_EIO, "the process table could not be written: %s", e2.text);
    return UQ_OK;
}
