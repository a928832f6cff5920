/* filer: an app that uses the node's filesystem module (process "fs") as
 * its requests say, for tests/integ/test_fs.c. A request's body is lines:
 *   fs JSON              send JSON to fs (with this request's payload, if any),
 *                        wait for fs's answer and answer with its body and
 *                        payload; {"rc":N} if the send itself failed
 *   attach TARGET CAPS   a request to TARGET carrying capabilities CAPS
 *                        (e.g. [{"issuer":"fs","params":{...}}]) -> {"rc":N}
 *   drop CAP             uq_cap_drop                             -> {"rc":N}
 *   list                 this process's tokens                   -> [...]
 *   last                 the tokens that came with the last gift -> [...] or null
 * Anything else is a gift: its capabilities (if any) are remembered. */
#include <stdio.h>
#include <string.h>

#include "uqbar.h"

static char *last_caps;

static char *line(char **s)
{
    char *l = *s;
    if (!l) return NULL;
    char *nl = strchr(l, '\n');
    if (nl) {
        *nl = '\0';
        *s = nl + 1;
    } else {
        *s = NULL;
    }
    return l;
}

static void reply_rc(const uq_msg *m, long long rc)
{
    char b[64];
    snprintf(b, sizeof b, "{\"rc\":%lld}", rc);
    uq_respond(m, b, NULL);
}

/* A request to fs, and its answer passed on (body and payload). */
static void fs_call(const uq_msg *m, const char *json)
{
    uq_opts o = {0};
    o.expects_response_s = 30;
    char *payload = m->payload_len ? uq_payload(m) : NULL;
    if (payload) {
        o.payload = payload;
        o.payload_len = m->payload_len;
    }
    int64_t id = uq_request("fs", json, &o);
    free(payload);
    if (id < 0) {
        reply_rc(m, id);
        return;
    }
    uq_msg r;
    for (;;) {
        if (uq_receive(&r) < 0) continue;
        if (r.id == (uint64_t)id && r.kind != UQ_KIND_REQUEST) break;
        if (r.kind == UQ_KIND_REQUEST && r.caps_len) { /* a gift meanwhile */
            free(last_caps);
            last_caps = uq_msg_caps(&r);
        }
        uq_msg_free(&r);
    }
    if (r.kind == UQ_KIND_ERROR) {
        char b[64];
        snprintf(b, sizeof b, "{\"error\":%u}", r.error);
        uq_respond(m, b, NULL);
    } else {
        char *body = uq_body(&r), *data = r.payload_len ? uq_payload(&r) : NULL;
        uq_opts ro = {0};
        if (data) {
            ro.payload = data;
            ro.payload_len = r.payload_len;
        }
        uq_respond(m, body, &ro);
        free(body);
        free(data);
    }
    uq_msg_free(&r);
}

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind != UQ_KIND_REQUEST) {
            uq_msg_free(&m);
            continue;
        }
        char *body = uq_body(&m), *rest = body;
        char *cmd = line(&rest);
        int awaited = (m.flags & UQ_ABI_AWAITED) != 0;
        if (strcmp(cmd, "fs") == 0) {
            fs_call(&m, rest ? rest : "");
        } else if (strcmp(cmd, "attach") == 0) {
            char *target = line(&rest);
            uq_opts o = {0};
            o.caps = rest;
            reply_rc(&m, uq_request(target, "gift", &o));
        } else if (strcmp(cmd, "drop") == 0) {
            reply_rc(&m, uq_cap_drop(rest));
        } else if (strcmp(cmd, "list") == 0) {
            char *l = uq_caps_list();
            uq_respond(&m, l ? l : "null", NULL);
            free(l);
        } else if (strcmp(cmd, "last") == 0) {
            uq_respond(&m, last_caps ? last_caps : "null", NULL);
        } else {
            if (m.caps_len) {
                free(last_caps);
                last_caps = uq_msg_caps(&m);
            }
            if (awaited) uq_respond(&m, "\"thanks\"", NULL);
        }
        free(body);
        uq_msg_free(&m);
    }
}
