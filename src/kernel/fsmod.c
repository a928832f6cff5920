/* The filesystem module (fsmod.h): the process `fs`, a public host port
 * served by a thread of its own, answering JSON requests with the file
 * store, and wrapping handles into capabilities issued by node@fs.
 *
 * Authority: a handle operation needs the requesting process (the source of
 * the request) to hold the capability {"handle":H,"rights":R} issued by
 * node@fs, with R covering the right the operation needs; then the store
 * checks the handle itself (unknown, revoked, rights). Only fs issues
 * node@fs capabilities (a process mints only under its own address), so a
 * process that merely knows a handle's hex cannot use it. The app whose
 * space a request reaches is always its source: Create, Open and List take
 * no app name. */
#include "kernel/fsmod.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define OPS_TEXT "Create, Open, List, Write, Append, Read, ReadRange, Size, Hash, Remove, Split, Clone, Revoke, Info"

struct uqi_fsmod {
    uqi_node *n;
    uqs_files *files;
    uqi_kproc *port;
    pthread_t thread;
    atomic_bool stop;
};

/* One request being served. */
typedef struct fs_req {
    uqi_fsmod *f;
    const uqi_msg *m;
    const char *app;       /* the source process: its space, and the holder checked */
    const char *op;
    json_t *arg;           /* the operation's argument (borrowed), or NULL */
    json_t *ok;            /* the value of {"Ok": ...} (owned), NULL: null */
    uqi_payload *payload;  /* data of the response (owned), or NULL */
    uq_errmsg em;
} fs_req;

static const unsigned rights_all[3] = {UQS_RIGHTS_ALL, UQS_RIGHT_READ, UQS_RIGHT_WRITE};

const char *uqi_fsmod_rights_text(unsigned rights)
{
    switch (rights) {
    case UQS_RIGHT_READ: return "read";
    case UQS_RIGHT_WRITE: return "write";
    case UQS_RIGHTS_ALL: return "read-write";
    default: return NULL;
    }
}

static unsigned rights_parse(const char *s)
{
    if (!s) return 0;
    if (strcmp(s, "read") == 0) return UQS_RIGHT_READ;
    if (strcmp(s, "write") == 0) return UQS_RIGHT_WRITE;
    if (strcmp(s, "read-write") == 0) return UQS_RIGHTS_ALL;
    return 0;
}

void uqi_fsmod_cap_params(const char *hex, unsigned rights, char *out)
{
    /* canonical JSON: compact, keys sorted ("handle" < "rights") */
    snprintf(out, UQI_FS_PARAMS_MAX, "{\"handle\":\"%s\",\"rights\":\"%s\"}", hex, uqi_fsmod_rights_text(rights));
}

static void capref_of(uqi_fsmod *f, const char *hex, unsigned rights, uqi_capref *c, char *params)
{
    uqi_fsmod_cap_params(hex, rights, params);
    c->issuer = f->port->addr;
    c->params = params;
}

/* ---- authority ------------------------------------------------------------------ */
/* The rights of the fs capability for hex that the requester holds, 0 if none. */
static unsigned held_rights(fs_req *r, const char *hex)
{
    for (int i = 0; i < 3; i++) {
        char params[UQI_FS_PARAMS_MAX];
        uqi_capref c;
        capref_of(r->f, hex, rights_all[i], &c, params);
        if (uqi_node_has_cap(r->f->n, r->app, &c) == 1) return rights_all[i];
    }
    return 0;
}

/* The requester must hold the capability of hex with (at least) `need`. */
static uq_err need(fs_req *r, const char *hex, unsigned need_rights)
{
    unsigned held = held_rights(r, hex);
    if (!held)
        return uqi_errf(&r->em, UQ_EPERM,
                        "%s holds no capability for file handle %.8s...: a handle is usable only by a process "
                        "it was given to (fs grants it on Create, Open, Split and Clone; holders share it by "
                        "attaching it to a message)",
                        r->app, hex);
    if ((held & need_rights) != need_rights)
        return uqi_errf(&r->em, UQ_EPERM, "%s's capability for file handle %.8s... gives %s only; %s needs %s", r->app,
                        hex, uqi_fsmod_rights_text(held), r->op, uqi_fsmod_rights_text(need_rights));
    return UQ_OK;
}

/* The grant of a new handle's capability to the requester, committed in
 * one transaction with the handle's records (uqs_writer): the holder's
 * process record lists it and the handle exists, both durable before fs
 * answers, or neither (the store call fails, and the grant is taken back). */
typedef struct grant_ctx {
    fs_req *r;
    unsigned rights;
} grant_ctx;

static uq_err grant_write(void *arg, uqs_store *s, uqs_handle id, const uqs_op *ops, size_t n, uq_errmsg *em)
{
    grant_ctx *g = arg;
    char hex[UQS_HANDLE_HEX + 1], params[UQI_FS_PARAMS_MAX];
    uqs_handle_format(id, hex);
    uqi_capref c;
    capref_of(g->r->f, hex, g->rights, &c, params);
    return uqi_node_grant_with(g->r->f->n, g->r->app, &c, 1, s, ops, n, em);
}

/* The answer naming the handle granted. */
static uq_err granted(fs_req *r, uqs_handle h, unsigned rights)
{
    char hex[UQS_HANDLE_HEX + 1];
    uqs_handle_format(h, hex);
    r->ok = json_pack("{s:s,s:s}", "handle", hex, "rights", uqi_fsmod_rights_text(rights));
    return UQ_OK;
}

/* The handles ids[0..nids) go: their capabilities are revoked from every
 * holder, and the holders' rewritten process records are committed in one
 * transaction with the deletion of the handles' records (uqs_deleter), so
 * both are durable before fs answers, or neither (the store call fails,
 * and the capabilities are back with their holders). */
static uq_err revoke_write(void *arg, uqs_store *s, const uqs_handle *ids, size_t nids, const uqs_op *ops, size_t n,
                           uq_errmsg *em)
{
    uqi_fsmod *f = arg;
    size_t np = 3 * nids;
    char (*text)[UQI_FS_PARAMS_MAX] = uqi_xmalloc((np ? np : 1) * sizeof *text);
    const char **params = uqi_xmalloc((np ? np : 1) * sizeof *params);
    for (size_t i = 0; i < nids; i++) {
        char hex[UQS_HANDLE_HEX + 1];
        uqs_handle_format(ids[i], hex);
        for (int j = 0; j < 3; j++) {
            uqi_fsmod_cap_params(hex, rights_all[j], text[3 * i + j]);
            params[3 * i + j] = text[3 * i + j];
        }
    }
    uint32_t k = 0;
    uq_err e = uqi_node_revoke_with(f->n, f->port, params, np, s, ops, n, &k, em);
    if (!e && k) uq_log(UQ_LOG_INFO, "fs", "%zu handles gone: %u capabilities revoked from their holders", nids, k);
    free(params);
    free(text);
    return e;
}

/* ---- arguments ------------------------------------------------------------------ */
static const char *arg_str(fs_req *r, const char *key)
{
    return json_is_object(r->arg) ? json_string_value(json_object_get(r->arg, key)) : NULL;
}

static uq_err arg_handle(fs_req *r, uqs_handle *h, char hex[UQS_HANDLE_HEX + 1])
{
    const char *s = arg_str(r, "handle");
    if (!s) return uqi_errf(&r->em, UQ_EINVAL, "%s needs {\"handle\":\"<32 hex digits>\"}", r->op);
    uq_errmsg em;
    if (uqs_handle_parse(s, h, &em))
        return uqi_errf(&r->em, UQ_EINVAL, "%s: handle \"%.40s\" is malformed: expected 32 hex digits", r->op, s);
    uqs_handle_format(*h, hex); /* lowercase, as in the capability */
    return UQ_OK;
}

static uq_err arg_name(fs_req *r, const char **name)
{
    *name = arg_str(r, "name");
    if (!*name) return uqi_errf(&r->em, UQ_EINVAL, "%s needs {\"name\":\"<file name>\"}", r->op);
    return UQ_OK;
}

static uq_err arg_u64(fs_req *r, const char *key, uint64_t *out)
{
    json_t *v = json_is_object(r->arg) ? json_object_get(r->arg, key) : NULL;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return uqi_errf(&r->em, UQ_EINVAL, "%s needs \"%s\": a whole number, 0 or more", r->op, key);
    *out = (uint64_t)json_integer_value(v);
    return UQ_OK;
}

static const void *data_of(fs_req *r, size_t *len)
{
    *len = r->m->payload ? r->m->payload->len : 0;
    return r->m->payload ? (const void *)r->m->payload->data : "";
}

/* ---- operations ----------------------------------------------------------------- */
static uq_err op_create(fs_req *r)
{
    const char *name;
    uqs_handle h;
    size_t len;
    const void *data = data_of(r, &len);
    uq_err e = arg_name(r, &name);
    grant_ctx g = {r, UQS_RIGHTS_ALL};
    uqs_writer w = {grant_write, &g};
    if (!e) e = uqs_file_create_with(r->f->files, r->app, name, data, len, &w, &h, &r->em);
    return e ? e : granted(r, h, UQS_RIGHTS_ALL);
}

static uq_err op_open(fs_req *r)
{
    const char *name;
    uqs_handle h;
    uq_err e = arg_name(r, &name);
    grant_ctx g = {r, UQS_RIGHTS_ALL};
    uqs_writer w = {grant_write, &g};
    if (!e) e = uqs_file_open_with(r->f->files, r->app, name, &w, &h, &r->em);
    if (e == UQ_ENOENT) e = uqi_errf(&r->em, UQ_ENOENT, "%s has no file named \"%s\"", r->app, name);
    return e ? e : granted(r, h, UQS_RIGHTS_ALL);
}

static uq_err op_list(fs_req *r)
{
    char **names;
    size_t n;
    uq_err e = uqs_file_list(r->f->files, r->app, &names, &n, &r->em);
    if (e) return e;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(names[i]));
    free(names);
    r->ok = json_pack("{s:o}", "files", a);
    return UQ_OK;
}

static uq_err op_write(fs_req *r, bool append)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1];
    size_t len;
    const void *data = data_of(r, &len);
    uq_err e = arg_handle(r, &h, hex);
    if (!e) e = need(r, hex, UQS_RIGHT_WRITE);
    if (e) return e;
    return append ? uqs_file_append(r->f->files, h, data, len, &r->em) : uqs_file_write(r->f->files, h, data, len, &r->em);
}

static uq_err op_read(fs_req *r, bool range)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1];
    uint64_t off = 0, len = SIZE_MAX - 1;
    uq_err e = arg_handle(r, &h, hex);
    if (!e && range) e = arg_u64(r, "offset", &off);
    if (!e && range) e = arg_u64(r, "length", &len);
    if (!e) e = need(r, hex, UQS_RIGHT_READ);
    if (e) return e;
    uint8_t *buf;
    size_t n;
    e = uqs_file_read_range(r->f->files, h, off, len > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)len, &buf, &n, &r->em);
    if (e) return e;
    r->payload = uqi_payload_new(buf, n, "application/octet-stream");
    free(buf);
    if (!r->payload) return uqi_errf(&r->em, UQ_ELIMIT, "%s: %zu bytes are more than a payload may carry", r->op, n);
    r->ok = json_pack("{s:I}", "length", (json_int_t)n);
    return UQ_OK;
}

static uq_err op_size(fs_req *r)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1];
    uint64_t size;
    uq_err e = arg_handle(r, &h, hex);
    if (!e) e = need(r, hex, UQS_RIGHT_READ);
    if (!e) e = uqs_file_size(r->f->files, h, &size, &r->em);
    if (!e) r->ok = json_pack("{s:I}", "size", (json_int_t)size);
    return e;
}

static uq_err op_hash(fs_req *r)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1], digest[65];
    uq_err e = arg_handle(r, &h, hex);
    if (!e) e = need(r, hex, UQS_RIGHT_READ);
    if (!e) e = uqs_file_hash(r->f->files, h, digest, &r->em);
    if (!e) r->ok = json_pack("{s:s}", "hash", digest);
    return e;
}

static uq_err op_remove(fs_req *r)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1];
    size_t n;
    uq_err e = arg_handle(r, &h, hex);
    if (!e) e = need(r, hex, UQS_RIGHT_WRITE);
    uqs_deleter w = {revoke_write, r->f};
    if (!e) e = uqs_file_remove_with(r->f->files, h, &w, &n, &r->em);
    return e;
}

static uq_err op_split(fs_req *r, bool clone)
{
    uqs_handle h, nh;
    char hex[UQS_HANDLE_HEX + 1];
    uq_err e = arg_handle(r, &h, hex);
    if (e) return e;
    grant_ctx g = {r, 0};
    uqs_writer w = {grant_write, &g};
    if (clone) {
        if (!(g.rights = held_rights(r, hex))) return need(r, hex, UQS_RIGHT_READ); /* says why */
        e = uqs_handle_clone_with(r->f->files, h, &w, &nh, &r->em);
    } else {
        if (!(g.rights = rights_parse(arg_str(r, "rights"))))
            return uqi_errf(&r->em, UQ_EINVAL, "Split needs \"rights\": \"read\", \"write\" or \"read-write\"");
        if ((e = need(r, hex, g.rights))) return e;
        e = uqs_handle_split_with(r->f->files, h, g.rights, &w, &nh, &r->em);
    }
    return e ? e : granted(r, nh, g.rights);
}

static uq_err op_revoke(fs_req *r)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1];
    uq_err e = arg_handle(r, &h, hex);
    if (e) return e;
    if (!(held_rights(r, hex) & UQS_RIGHT_WRITE)) {
        uqs_handle_info info;
        if (uqs_handle_info_get(r->f->files, h, &info, NULL) != UQ_OK || strcmp(info.app, r->app) != 0)
            return uqi_errf(&r->em, UQ_EPERM,
                            "%s may not revoke file handle %.8s...: only the app whose file it is, or a holder of "
                            "the handle's write right, may",
                            r->app, hex);
    }
    size_t n;
    uqs_deleter w = {revoke_write, r->f};
    if ((e = uqs_handle_revoke_with(r->f->files, h, true, &w, &n, &r->em))) return e;
    r->ok = json_pack("{s:I}", "revoked", (json_int_t)n);
    return UQ_OK;
}

static uq_err op_info(fs_req *r)
{
    uqs_handle h;
    char hex[UQS_HANDLE_HEX + 1];
    uqs_handle_info info;
    uq_err e = arg_handle(r, &h, hex);
    if (!e && !held_rights(r, hex)) e = need(r, hex, UQS_RIGHT_READ); /* says why */
    if (!e) e = uqs_handle_info_get(r->f->files, h, &info, &r->em);
    if (!e)
        r->ok = json_pack("{s:s,s:s,s:s}", "app", info.app, "name", info.name, "rights",
                          uqi_fsmod_rights_text(info.rights));
    return e;
}

static uq_err dispatch(fs_req *r)
{
    const char *op = r->op;
    if (strcmp(op, "Create") == 0) return op_create(r);
    if (strcmp(op, "Open") == 0) return op_open(r);
    if (strcmp(op, "List") == 0) return op_list(r);
    if (strcmp(op, "Write") == 0) return op_write(r, false);
    if (strcmp(op, "Append") == 0) return op_write(r, true);
    if (strcmp(op, "Read") == 0) return op_read(r, false);
    if (strcmp(op, "ReadRange") == 0) return op_read(r, true);
    if (strcmp(op, "Size") == 0) return op_size(r);
    if (strcmp(op, "Hash") == 0) return op_hash(r);
    if (strcmp(op, "Remove") == 0) return op_remove(r);
    if (strcmp(op, "Split") == 0) return op_split(r, false);
    if (strcmp(op, "Clone") == 0) return op_split(r, true);
    if (strcmp(op, "Revoke") == 0) return op_revoke(r);
    if (strcmp(op, "Info") == 0) return op_info(r);
    return uqi_errf(&r->em, UQ_EINVAL, "unknown request \"%.40s\": fs understands " OPS_TEXT, op);
}

/* ---- serving ---------------------------------------------------------------------- */
static void respond(uqi_fsmod *f, const uqi_msg *m, const char *body, uqi_payload *payload)
{
    if (!m->has_rsvp) { /* nobody waits for an answer */
        uqi_payload_rele(payload);
        return;
    }
    uqi_msg *r = uqi_msg_new(UQI_MSG_RESPONSE, body, strlen(body));
    r->id = m->id;
    r->target = m->rsvp;
    r->payload = payload;
    uq_errmsg em;
    if (uqi_kernel_send(f->port, r, NULL, 0, NULL, &em) != UQ_OK) {
        uq_log(UQ_LOG_INFO, "fs", "cannot answer %s: %s", m->rsvp.process, em.text);
        uqi_msg_free(r);
    }
}

static void serve(uqi_fsmod *f, const uqi_msg *m)
{
    fs_req r = {.f = f, .m = m, .app = m->source.process, .op = "request"};
    uq_err e;
    json_t *req = NULL;
    if (strcmp(m->source.node, uqi_node_name(f->n)) != 0) {
        e = uqi_errf(&r.em, UQ_EPERM, "fs serves the processes of its own node only");
    } else if (!(req = json_loadb((const char *)m->body, m->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL)) ||
               !((json_is_object(req) && json_object_size(req) == 1) || json_is_string(req))) {
        e = uqi_errf(&r.em, UQ_EINVAL,
                     "bad request: the body must be JSON {\"<Op>\": {...}}, for example "
                     "{\"Create\":{\"name\":\"notes.txt\"}} (data in the payload); Op is one of " OPS_TEXT);
    } else {
        if (json_is_string(req)) {
            r.op = json_string_value(req);
        } else {
            void *it = json_object_iter(req);
            r.op = json_object_iter_key(it);
            r.arg = json_object_iter_value(it);
        }
        e = dispatch(&r);
    }
    json_t *out = e ? json_pack("{s:s}", "Err", r.em.text) : json_pack("{s:o}", "Ok", r.ok ? r.ok : json_null());
    r.ok = NULL;
    if (!out) { /* a message cut inside a UTF-8 sequence: say it in ASCII */
        for (char *c = r.em.text; *c; c++)
            if ((unsigned char)*c >= 0x80) *c = '?';
        out = json_pack("{s:s}", "Err", r.em.text);
        UQ_VERIFY(out);
    }
    if (e) {
        uq_log(UQ_LOG_INFO, "fs", "%s from %s: %s", r.op, r.app, r.em.text);
        uqi_payload_rele(r.payload);
        r.payload = NULL;
    }
    char *body = json_dumps(out, JSON_COMPACT);
    respond(f, m, body, r.payload);
    free(body);
    json_decref(out);
    json_decref(req);
}

static void *fs_main(void *arg)
{
    uqi_fsmod *f = arg;
    while (!atomic_load(&f->stop)) {
        uqi_msg *m = uqi_port_receive(f->port, 200);
        if (!m) continue;
        if (m->kind == UQI_MSG_REQUEST && !uqi_addr_eq(&m->source, &f->port->addr)) serve(f, m);
        uqi_msg_free(m);
    }
    return NULL;
}

uq_err uqi_fsmod_start(uqi_node *n, uqs_files *files, uqi_fsmod **out, uq_errmsg *em)
{
    uqi_fsmod *f = uqi_xcalloc(1, sizeof *f);
    f->n = n;
    f->files = files;
    uq_err e = uqi_node_port_plain(n, UQI_FS_PROCESS, &f->port, em);
    if (e) {
        free(f);
        return e;
    }
    /* Not public: reaching fs at all is the "read and write its own files"
     * permission, the messaging capability of fs, asked for at install. */
    int rc = pthread_create(&f->thread, NULL, fs_main, f);
    if (rc) {
        uqi_node_kill_ex(n, UQI_FS_PROCESS, true, NULL);
        free(f);
        return uqi_errf(em, uqi_err_from_errno(rc), "cannot start the fs thread");
    }
    uqi_node_set_files(n, files); /* wasm_bytes_handle reads through it */
    *out = f;
    return UQ_OK;
}

void uqi_fsmod_stop(uqi_fsmod *f)
{
    if (!f) return;
    atomic_store(&f->stop, true);
    /* Wake the thread now (if the mailbox is full, it notices within 200 ms). */
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, "\"Stop\"", 6);
    m->target = f->port->addr;
    if (uqi_kernel_send(f->port, m, NULL, 0, NULL, NULL) != UQ_OK) uqi_msg_free(m);
    pthread_join(f->thread, NULL);
    uqi_node_kill_ex(f->n, UQI_FS_PROCESS, true, NULL); /* what fs issued stays, for the next fs */
    uqi_node_set_files(f->n, NULL);
    free(f);
}
