/* nursery: spawns children from the module in a request's payload, for
 * tests/integ/test_boot_durable.c. Body: {"id":"NAME"} (or {"id":"NAME",
 * "nowait":true}, UQ_SPAWN_NOWAIT; "restart":true, UQ_SPAWN_RESTART); the
 * child is public. Answers
 * {"rc":N,"id":"..."} once uq_spawn returned. */
#include <stdio.h>
#include <string.h>

#include "uqbar.h"

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive_request(&m) < 0) continue;
        char *body = uq_body(&m), *wasm = m.payload_len ? uq_payload(&m) : NULL, id[64] = "", out[80] = "";
        const char *k = body ? strstr(body, "\"id\":\"") : NULL;
        if (k) sscanf(k + 6, "%63[^\"]", id);
        uint32_t flags = UQ_SPAWN_PUBLIC | (body && strstr(body, "\"nowait\":true") ? UQ_SPAWN_NOWAIT : 0) |
                         (body && strstr(body, "\"restart\":true") ? UQ_SPAWN_RESTART : 0);
        int32_t rc = wasm ? uq_spawn(id, wasm, m.payload_len, NULL, flags, out, sizeof out) : UQ_ABI_EINVAL;
        char b[160];
        snprintf(b, sizeof b, "{\"rc\":%d,\"id\":\"%s\"}", rc, rc > 0 ? out : "");
        uq_respond(&m, b, NULL);
        free(wasm);
        free(body);
        uq_msg_free(&m);
    }
}
