/* capper: a process that does what its requests say, for the capability
 * tests (tests/integ/test_caps.c): a would-be attacker, a victim, an issuer.
 * A request's body is lines: a command, then its arguments:
 *   send TARGET               request TARGET (no response expected)  -> {"rc":N}
 *   kernel COMMAND            a kernel command with this request's payload, wait for
 *                             the kernel's answer -> {"rc":N,"body":...,"meta":...}
 *   list, attach, drop, last  and gifts: see cmdguest.h
 *   verify HOLDER TOKEN       uq_cap_verify                          -> {"rc":N}
 *   has HOLDER CAP            uq_cap_has                             -> {"rc":N}
 *   spawn ID CAPS             spawn a child from this request's payload -> {"rc":N,"id":"..."} */
#include "cmdguest.h"

/* Send a kernel command and wait for its answer (other messages are dropped). */
static void kernel_call(const uq_msg *m, const char *cmd)
{
    uq_opts o = {0};
    o.expects_response_s = 30;
    char *payload = m->payload_len ? uq_payload(m) : NULL;
    if (payload) {
        o.payload = payload;
        o.payload_len = m->payload_len;
        o.mime = "application/wasm";
    }
    int64_t id = uq_request("kernel", cmd, &o);
    free(payload);
    if (id < 0) {
        reply_rc(m, id);
        return;
    }
    uq_msg r;
    for (;;) {
        if (uq_receive(&r) < 0) continue;
        if (r.id == (uint64_t)id && r.kind != UQ_KIND_REQUEST) break;
        uq_msg_free(&r);
    }
    char *body = uq_body(&r), *meta = r.metadata_len ? uq_metadata(&r) : NULL;
    size_t n = strlen(body) + (meta ? strlen(meta) : 4) + 64;
    char *out = malloc(n);
    snprintf(out, n, "{\"rc\":%lld,\"body\":%s,\"meta\":%s}", (long long)id, r.kind == UQ_KIND_ERROR ? "\"error\"" : body,
             meta ? meta : "null");
    uq_respond(m, out, NULL);
    free(out);
    free(body);
    free(meta);
    uq_msg_free(&r);
}

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive_request(&m) < 0) continue;
        char *body = uq_body(&m), *rest = body;
        char *cmd = line(&rest);
        if (strcmp(cmd, "send") == 0) {
            reply_rc(&m, uq_request(line(&rest), "{\"hello\":1}", NULL));
        } else if (strcmp(cmd, "kernel") == 0) {
            kernel_call(&m, rest);
        } else if (strcmp(cmd, "verify") == 0) {
            char *holder = line(&rest);
            reply_rc(&m, uq_cap_verify(rest, holder));
        } else if (strcmp(cmd, "has") == 0) {
            char *holder = line(&rest);
            reply_rc(&m, uq_cap_has(holder, rest));
        } else if (strcmp(cmd, "spawn") == 0) {
            char *id = line(&rest), *wasm = uq_payload(&m), out[80] = "";
            int32_t rc = uq_spawn(id, wasm, m.payload_len, rest && *rest ? rest : NULL, 0, out, sizeof out);
            char b[160];
            snprintf(b, sizeof b, "{\"rc\":%d,\"id\":\"%s\"}", rc, rc > 0 ? out : "");
            uq_respond(&m, b, NULL);
            free(wasm);
        } else {
            cap_command(&m, cmd, rest);
        }
        free(body);
        uq_msg_free(&m);
    }
}
