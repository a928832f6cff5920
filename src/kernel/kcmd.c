/* The kernel API: KernelCommand requests as JSON in the body of a request to
 * node@kernel, in the shapes serde gives the Rust enums of
 * ../shared/seeds/kernel-api.md (externally tagged: "Booted",
 * {"RunProcess":"id"}, {"InitializeProcess":{...}}), answered with the
 * KernelResponse values listed there. Where the seeds say the kernel refuses
 * "silently for now", we answer with the seeds' error value and say why in
 * the response's metadata: {"reason":"..."}. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "kernel/fsmod.h"
#include "kernel/kernel_int.h"
#include "store/files.h"

static char *reason_json(const char *why)
{
    json_t *o = json_pack("{s:s}", "reason", why);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

typedef struct reply {
    char *body;      /* JSON text */
    char *why;       /* refusal reason, or NULL */
} reply;

static void set(reply *r, const char *body, const char *why)
{
    r->body = uqi_xstrdup(body);
    r->why = why ? uqi_xstrdup(why) : NULL;
}

/* serde's Vec<u8> is an array of numbers; we also take a string. */
static bool bytes_of(json_t *v, uint8_t **out, size_t *len)
{
    if (json_is_string(v)) {
        *len = json_string_length(v);
        *out = uqi_xmalloc(*len + 1);
        memcpy(*out, json_string_value(v), *len);
        return true;
    }
    if (!json_is_array(v)) return false;
    *len = json_array_size(v);
    *out = uqi_xmalloc(*len + 1);
    for (size_t i = 0; i < *len; i++) {
        json_t *b = json_array_get(v, i);
        if (!json_is_integer(b) || json_integer_value(b) < 0 || json_integer_value(b) > 255) {
            free(*out);
            return false;
        }
        (*out)[i] = (uint8_t)json_integer_value(b);
    }
    return true;
}

/* OnExit: "None" | "Restart" | {"Requests":[[address, request, blob|null], ...]}
 * with request = {"body": bytes, "metadata": string|null, ...} and
 * blob = {"mime": string|null, "bytes": bytes}. */
bool uqi_parse_on_exit(uqi_node *n, json_t *v, uqi_on_exit *how, uqi_exit_request **reqs, uint32_t *nreqs, char *why,
                       size_t cap)
{
    *reqs = NULL;
    *nreqs = 0;
    if (!v || (json_is_string(v) && strcmp(json_string_value(v), "None") == 0)) {
        *how = UQI_ON_EXIT_NONE;
        return true;
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "Restart") == 0) {
        *how = UQI_ON_EXIT_RESTART;
        return true;
    }
    json_t *list = json_is_object(v) ? json_object_get(v, "Requests") : NULL;
    if (!json_is_array(list) || json_array_size(list) > 64) {
        snprintf(why, cap, "on_exit must be \"None\", \"Restart\" or {\"Requests\":[...]} (at most 64)");
        return false;
    }
    size_t k = json_array_size(list);
    uqi_exit_request *rs = uqi_xcalloc(k ? k : 1, sizeof *rs);
    for (size_t i = 0; i < k; i++) {
        json_t *t = json_array_get(list, i);
        json_t *addr = json_array_get(t, 0), *req = json_array_get(t, 1), *blob = json_array_get(t, 2);
        uq_errmsg em;
        bool ok = json_is_array(t) && json_is_string(addr) && json_is_object(req) &&
                  uqi_addr_parse(json_string_value(addr), uqi_node_name(n), &rs[i].target, &em) == UQ_OK &&
                  bytes_of(json_object_get(req, "body"), &rs[i].body, &rs[i].body_len);
        json_t *meta = ok ? json_object_get(req, "metadata") : NULL;
        if (ok && json_is_string(meta)) rs[i].metadata = uqi_xstrdup(json_string_value(meta));
        if (ok && json_is_object(blob)) {
            uint8_t *bb;
            size_t bl;
            json_t *mime = json_object_get(blob, "mime");
            ok = bytes_of(json_object_get(blob, "bytes"), &bb, &bl);
            if (ok) {
                rs[i].payload = uqi_payload_new(bb, bl, json_is_string(mime) ? json_string_value(mime) : NULL);
                free(bb);
            }
        }
        if (!ok) {
            snprintf(why, cap, "on_exit request %zu must be [\"node@process\", {\"body\": bytes, ...}, blob or null]", i);
            *reqs = rs;
            *nreqs = (uint32_t)i + 1;
            return false;
        }
    }
    *how = UQI_ON_EXIT_REQUESTS;
    *reqs = rs;
    *nreqs = (uint32_t)k;
    return true;
}

/* The module named by wasm_bytes_handle: a stored file (an fs handle) that
 * the source of the command may read. *out is malloc'ed. */
static uq_err wasm_from_handle(uqi_kproc *from, const char *hex, uint8_t **out, size_t *len, uq_errmsg *em)
{
    uqi_node *n = from->node;
    uqs_files *files = uqi_node_files(n);
    uqs_handle h;
    if (!files) return uqi_errf(em, UQ_ENOENT, "this node keeps no files (no home)");
    if (uqs_handle_parse(hex, &h, em)) return UQ_EINVAL;
    uqi_capref c = {.params = NULL};
    char params[UQI_FS_PARAMS_MAX];
    snprintf(c.issuer.node, sizeof c.issuer.node, "%s", uqi_node_name(n));
    snprintf(c.issuer.process, sizeof c.issuer.process, "fs");
    c.params = params;
    uqi_fsmod_cap_params(hex, UQS_RIGHT_READ, params);
    if (uqi_node_check_held(n, from, &c, 1, em)) {
        uqi_fsmod_cap_params(hex, UQS_RIGHTS_ALL, params);
        if (uqi_node_check_held(n, from, &c, 1, em))
            return uqi_errf(em, UQ_EPERM, "%s may not read the file of wasm_bytes_handle %s: it holds no read capability for it",
                            from->addr.process, hex);
    }
    return uqs_file_read(files, h, out, len, em);
}

static void cmd_initialize(uqi_kproc *from, const uqi_msg *m, json_t *args, reply *r)
{
    uqi_node *n = from->node;
    json_t *jid = json_object_get(args, "id");
    json_t *jpub = json_object_get(args, "public");
    const char *id = json_is_string(jid) ? json_string_value(jid) : NULL;
    if (!json_is_object(args) || !id) {
        set(r, "\"InitializeProcessError\"", "InitializeProcess needs an object with a string \"id\"");
        return;
    }
    /* The module: the payload, as the seeds say; without one, the stored
     * file that wasm_bytes_handle names. */
    const uint8_t *wasm = m->payload ? m->payload->data : NULL;
    size_t wasm_len = m->payload ? m->payload->len : 0;
    uint8_t *stored = NULL;
    if (!wasm_len) {
        json_t *wh = json_object_get(args, "wasm_bytes_handle");
        uq_errmsg we = {{0}};
        if (!json_is_string(wh) || !*json_string_value(wh)) {
            set(r, "\"InitializeProcessError\"",
                "InitializeProcess must carry the .wasm bytes in its payload, or name a stored file (an fs handle it "
                "may read) in wasm_bytes_handle");
            return;
        }
        if (wasm_from_handle(from, json_string_value(wh), &stored, &wasm_len, &we)) {
            char why[700];
            snprintf(why, sizeof why, "wasm_bytes_handle: %s", we.text);
            set(r, "\"InitializeProcessError\"", why);
            return;
        }
        wasm = stored;
    }
    /* initial_capabilities: all must be held (or issued) by the source;
     * otherwise nothing happens and the response names what was refused. */
    uqi_capref *caps;
    uint32_t ncaps;
    uq_errmsg em = {{0}};
    if (uqi_caprefs_from_json(json_object_get(args, "initial_capabilities"), uqi_node_name(n), &caps, &ncaps, &em) ||
        uqi_node_check_held(n, from, caps, ncaps, &em)) {
        char why[700];
        snprintf(why, sizeof why, "initial_capabilities refused: %s", em.text);
        set(r, "\"InitializeProcessError\"", why);
        uqi_caprefs_free(caps, ncaps);
        free(stored);
        return;
    }
    uqi_on_exit how;
    uqi_exit_request *reqs;
    uint32_t nreqs;
    char why[300];
    if (!uqi_parse_on_exit(n, json_object_get(args, "on_exit"), &how, &reqs, &nreqs, why, sizeof why)) {
        uqi_exit_requests_free(reqs, nreqs);
        uqi_caprefs_free(caps, ncaps);
        free(stored);
        set(r, "\"InitializeProcessError\"", why);
        return;
    }
    bool public = json_is_true(jpub);
    uq_err e = uqi_node_init_process(n, id, wasm, wasm_len, public, NULL, &em);
    free(stored);
    if (!e) e = uqi_node_set_on_exit(n, id, how, reqs, nreqs, &em);
    else uqi_exit_requests_free(reqs, nreqs);
    /* The capabilities, checked again atomically; and the source may message
     * its child (unless the child is public, when anyone may). */
    bool installed = !e;
    if (!e) e = uqi_node_grant(n, from, id, caps, ncaps, &em);
    if (!e && !public && !from->root) e = uqi_node_grant_messaging(n, from->addr.process, id, &em);
    if (e && installed) uqi_node_kill(n, id, NULL);
    uqi_caprefs_free(caps, ncaps);
    if (e) set(r, "\"InitializeProcessError\"", em.text);
    else set(r, "\"InitializedProcess\"", NULL);
}

/* GrantCapabilities {target, capabilities}: only what the granter holds or
 * issued, all or nothing. DropCapabilities {target, capabilities}. */
static void cmd_caps(uqi_kproc *from, json_t *args, bool grant, reply *r)
{
    uqi_node *n = from->node;
    const char *ok = grant ? "\"GrantedCapabilities\"" : "\"DroppedCapabilities\"";
    const char *bad = grant ? "\"GrantCapabilitiesError\"" : "\"DropCapabilitiesError\"";
    json_t *jt = json_is_object(args) ? json_object_get(args, "target") : NULL;
    json_t *jc = json_is_object(args) ? json_object_get(args, "capabilities") : NULL;
    if (!json_is_string(jt) || !json_is_array(jc)) {
        set(r, bad, "takes {\"target\": \"process id\", \"capabilities\": [{\"issuer\": ..., \"params\": ...}]}");
        return;
    }
    uqi_capref *caps;
    uint32_t ncaps, dropped = 0;
    uq_errmsg em = {{0}};
    uq_err e = uqi_caprefs_from_json(jc, uqi_node_name(n), &caps, &ncaps, &em);
    if (!e) e = grant ? uqi_node_grant(n, from, json_string_value(jt), caps, ncaps, &em)
                      : uqi_node_drop_caps(n, json_string_value(jt), caps, ncaps, &dropped, &em);
    uqi_caprefs_free(caps, ncaps);
    set(r, e ? bad : ok, e ? em.text : NULL);
}

static void cmd_run(uqi_kproc *from, json_t *args, reply *r)
{
    if (!json_is_string(args)) {
        set(r, "\"RunProcessError\"", "RunProcess takes a process id string");
        return;
    }
    uq_errmsg em = {{0}};
    if (uqi_node_run_process(from->node, json_string_value(args), &em)) set(r, "\"RunProcessError\"", em.text);
    else set(r, "\"StartedProcess\"", NULL);
}

static void cmd_kill(uqi_kproc *from, const uqi_msg *m, json_t *args, reply *r)
{
    if (!json_is_string(args)) {
        set(r, "\"KillProcessError\"", "KillProcess takes a process id string");
        return;
    }
    const char *id = json_string_value(args);
    uq_errmsg em = {{0}};
    json_t *o = json_pack("{s:s}", "KilledProcess", id);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (strcmp(id, from->addr.process) == 0) set(r, body, "a process may not kill itself through the kernel; exit instead");
    /* metadata "no-revoke" keeps what the process issued for its successor */
    else if (uqi_node_kill_ex(from->node, id, m->metadata && strstr(m->metadata, "no-revoke") != NULL, &em))
        set(r, body, em.text);
    else set(r, body, NULL);
    free(body);
}

static void cmd_debug(uqi_kproc *from, json_t *args, reply *r)
{
    uqi_node *n = from->node;
    if (json_is_string(args) && strcmp(json_string_value(args), "ProcessMap") == 0) {
        char *map = uqi_node_debug_json(n, NULL);
        size_t len = strlen(map) + 64;
        char *body = uqi_xmalloc(len);
        snprintf(body, len, "{\"Debug\":{\"ProcessMap\":%s}}", map);
        free(map);
        r->body = body;
        return;
    }
    json_t *p = json_is_object(args) ? json_object_get(args, "Process") : NULL;
    if (json_is_string(p)) {
        char *one = uqi_node_debug_json(n, json_string_value(p));
        size_t len = (one ? strlen(one) : 4) + 64;
        char *body = uqi_xmalloc(len);
        snprintf(body, len, "{\"Debug\":{\"Process\":%s}}", one ? one : "null");
        free(one);
        r->body = body;
        return;
    }
    json_t *hc = json_is_object(args) ? json_object_get(args, "HasCap") : NULL;
    json_t *on = json_is_object(hc) ? json_object_get(hc, "on") : NULL;
    uqi_capref c;
    uq_errmsg em;
    if (json_is_string(on) && uqi_capref_from_json(json_object_get(hc, "cap"), uqi_node_name(n), &c, &em) == UQ_OK) {
        int h = uqi_node_has_cap(n, json_string_value(on), &c);
        free(c.params);
        set(r, h < 0 ? "{\"Debug\":{\"HasCap\":null}}" : h ? "{\"Debug\":{\"HasCap\":true}}" : "{\"Debug\":{\"HasCap\":false}}",
            h < 0 ? "no such process" : NULL);
        return;
    }
    set(r, "{\"Debug\":null}",
        "Debug takes \"ProcessMap\", {\"Process\":\"id\"} or {\"HasCap\":{\"on\":\"id\",\"cap\":{\"issuer\":...,\"params\":...}}}");
}

/* A command that changed the process table is answered once its records
 * are durable: a node killed right after the answer brings the process back
 * (the records are written asynchronously, persist.c). Initialize and Run
 * fail if they cannot be; for the others the failure is logged and given as
 * the reason. */
static void durable(uqi_kproc *from, const char *key, reply *r)
{
    uq_errmsg em = {{0}};
    if (!uqi_node_sync(from->node, &em)) return;
    uq_log(UQ_LOG_ERROR, "kernel", "%s from %s: %s", key, from->addr.process, em.text);
    bool init = strcmp(key, "InitializeProcess") == 0, run = strcmp(key, "RunProcess") == 0;
    if (init || run) {
        free(r->body);
        r->body = uqi_xstrdup(init ? "\"InitializeProcessError\"" : "\"RunProcessError\"");
    }
    free(r->why);
    r->why = uqi_xstrdup(em.text);
}

void uqi_kcmd_handle(uqi_kproc *from, uqi_msg *m, uint8_t *ctx, size_t ctx_len)
{
    reply r = {0};
    json_error_t jerr;
    json_t *root = json_loadb((const char *)m->body, m->body_len, JSON_DECODE_ANY, &jerr);
    char why[300];
    if (!root) {
        snprintf(why, sizeof why, "the body is not JSON: %s at line %d column %d", jerr.text, jerr.line, jerr.column);
        set(&r, "\"CommandError\"", why);
    } else if (json_is_string(root)) {
        const char *c = json_string_value(root);
        if (strcmp(c, "Shutdown") == 0) {
            uqi_node_request_shutdown(from->node);
            set(&r, "\"ShuttingDown\"", NULL);
        } else if (strcmp(c, "Booted") == 0) {
            set(&r, "\"CommandError\"", "Booted is sent by the runtime only");
        } else {
            snprintf(why, sizeof why, "unknown kernel command \"%s\"", c);
            set(&r, "\"CommandError\"", why);
        }
    } else if (json_is_object(root) && json_object_size(root) == 1) {
        const char *key = json_object_iter_key(json_object_iter(root));
        json_t *args = json_object_iter_value(json_object_iter(root));
        if (strcmp(key, "InitializeProcess") == 0) cmd_initialize(from, m, args, &r);
        else if (strcmp(key, "RunProcess") == 0) cmd_run(from, args, &r);
        else if (strcmp(key, "KillProcess") == 0) cmd_kill(from, m, args, &r);
        else if (strcmp(key, "Debug") == 0) cmd_debug(from, args, &r);
        else if (strcmp(key, "GrantCapabilities") == 0) cmd_caps(from, args, true, &r);
        else if (strcmp(key, "DropCapabilities") == 0) cmd_caps(from, args, false, &r);
        else {
            snprintf(why, sizeof why, "unknown kernel command \"%.100s\"", key);
            set(&r, "\"CommandError\"", why);
        }
        if (!r.why && (strcmp(key, "InitializeProcess") == 0 || strcmp(key, "RunProcess") == 0 ||
                       strcmp(key, "KillProcess") == 0 || strcmp(key, "GrantCapabilities") == 0 ||
                       strcmp(key, "DropCapabilities") == 0))
            durable(from, key, &r);
    } else {
        set(&r, "\"CommandError\"", "a kernel command is a JSON string or an object with one key");
    }
    json_decref(root);
    if (r.why) uq_log(UQ_LOG_INFO, "kernel", "command from %s refused: %s", from->addr.process, r.why);
    if (m->expects_response_s) {
        char *meta = r.why ? reason_json(r.why) : NULL;
        uqi_kernel_reply(from, m, r.body, meta, ctx, ctx_len);
        free(meta);
    } else {
        free(ctx);
    }
    free(r.body);
    free(r.why);
    uqi_msg_free(m);
}
