/* filer: an app that uses the node's filesystem module (process "fs") as
 * its requests say, for tests/integ/test_fs.c. A request's body is lines:
 *   fs JSON              send JSON to fs (with this request's payload, if any),
 *                        wait for fs's answer and answer with its body and
 *                        payload; {"rc":N} if the send itself failed
 *   fs JSON (one line)   the same, as a node's terminal types it
 *   attach, drop, list, last and gifts: see cmdguest.h (attach's CAPS
 *                        e.g. [{"issuer":"fs","params":{...}}]) */
#include "cmdguest.h"

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
        if (r.kind == UQ_KIND_REQUEST) keep_gift(&r); /* a gift meanwhile */
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
        if (uq_receive_request(&m) < 0) continue;
        char *body = uq_body(&m), *rest = body;
        char *cmd = line(&rest);
        if (strcmp(cmd, "fs") == 0) {
            fs_call(&m, rest ? rest : "");
        } else if (strncmp(cmd, "fs ", 3) == 0) { /* one line, as a terminal types it */
            fs_call(&m, cmd + 3);
        } else {
            cap_command(&m, cmd, rest);
        }
        free(body);
        uq_msg_free(&m);
    }
}
