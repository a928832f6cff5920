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

#include "kernel/kernel_int.h"

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
    if (!m->payload || m->payload->len == 0) {
        set(r, "\"InitializeProcessError\"", "InitializeProcess must carry the .wasm bytes in its payload");
        return;
    }
    json_t *caps = json_object_get(args, "initial_capabilities");
    if (caps && json_is_array(caps) && json_array_size(caps) > 0) {
        set(r, "\"InitializeProcessError\"",
            "initial_capabilities are not supported yet (capabilities arrive with their own issue): send []");
        return;
    }
    json_t *on_exit = json_object_get(args, "on_exit");
    if (on_exit && !(json_is_string(on_exit) && strcmp(json_string_value(on_exit), "None") == 0)) {
        set(r, "\"InitializeProcessError\"", "on_exit other than \"None\" is not supported yet");
        return;
    }
    uq_errmsg em = {{0}};
    uq_err e = uqi_node_init_process(n, id, m->payload->data, m->payload->len, json_is_true(jpub), NULL, &em);
    if (e) set(r, "\"InitializeProcessError\"", em.text);
    else set(r, "\"InitializedProcess\"", NULL);
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

static void cmd_kill(uqi_kproc *from, json_t *args, reply *r)
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
    else if (uqi_node_kill(from->node, id, &em)) set(r, body, em.text);
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
        const char *inner = "null";
        char *body;
        if (one) {
            /* {"x":{...}} -> {...} */
            char *brace = strchr(one + 1, '{');
            size_t ln = strlen(brace);
            brace[ln - 1] = '\0';
            inner = brace;
        }
        size_t len = strlen(inner) + 64;
        body = uqi_xmalloc(len);
        snprintf(body, len, "{\"Debug\":{\"Process\":%s}}", inner);
        free(one);
        r->body = body;
        return;
    }
    set(r, "{\"Debug\":null}", "Debug takes \"ProcessMap\" or {\"Process\":\"id\"}");
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
        else if (strcmp(key, "KillProcess") == 0) cmd_kill(from, args, &r);
        else if (strcmp(key, "Debug") == 0) cmd_debug(from, args, &r);
        else if (strcmp(key, "GrantCapabilities") == 0)
            set(&r, "\"CommandError\"", "GrantCapabilities arrives with the capabilities issue");
        else {
            snprintf(why, sizeof why, "unknown kernel command \"%.100s\"", key);
            set(&r, "\"CommandError\"", why);
        }
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
