/* fanout: a request {"fanout":N,"to":"PROCESS"} is answered only after N
 * requests to PROCESS came back. Each sub-request carries its index as
 * context, so the answers are gathered without any bookkeeping of our own:
 * the kernel hands each response back with its context. The original
 * request stays held (its handle) until the last answer arrives. */
#include <stdio.h>
#include <string.h>

#include "uqbar.h"

#define MAXN 31 /* one bit per index in `seen` */

int main(void)
{
    uq_msg m, orig;
    int pending = 0, got = 0, n = 0, failed = 0;
    unsigned seen = 0; /* one bit per index, to prove each came back once */
    long long sum = 0;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST && pending == 0) {
            char *body = uq_body(&m);
            char to[64] = "echo";
            n = 0;
            if (!body || sscanf(body, "{\"fanout\":%d,\"to\":\"%63[a-z0-9-]\"}", &n, to) < 1 || n < 1 || n > MAXN) {
                uq_respond(&m, "{\"error\":\"want {\\\"fanout\\\":N,\\\"to\\\":\\\"process\\\"} with 1 <= N <= 31\"}", NULL);
                free(body);
                uq_msg_free(&m);
                continue;
            }
            free(body);
            orig = m; /* keep holding it: answered at the end */
            got = failed = 0;
            seen = 0;
            sum = 0;
            for (int i = 0; i < n; i++) {
                char req[48], ctx[16];
                snprintf(req, sizeof req, "{\"part\":%d}", i);
                snprintf(ctx, sizeof ctx, "%d", i);
                uq_opts o = {0};
                o.expects_response_s = 5;
                o.context = ctx;
                o.context_len = (uint32_t)strlen(ctx);
                if (uq_request(to, req, &o) > 0) pending++;
                else failed++;
            }
            if (pending == 0) {
                uq_respond(&orig, "{\"error\":\"no sub-request could be sent\"}", NULL);
                uq_msg_free(&orig);
            }
            continue;
        }
        if (m.kind == UQ_KIND_RESPONSE || m.kind == UQ_KIND_ERROR) {
            char *ctx = uq_context(&m);
            int idx = ctx ? atoi(ctx) : -1;
            free(ctx);
            if (m.kind == UQ_KIND_ERROR) failed++;
            else if (idx >= 0 && idx < 32 && !(seen & (1u << idx))) {
                seen |= 1u << idx;
                sum += idx;
                got++;
            }
            uq_msg_free(&m);
            if (--pending == 0) {
                char out[128];
                snprintf(out, sizeof out, "{\"gathered\":%d,\"failed\":%d,\"index_sum\":%lld}", got, failed, sum);
                uq_respond(&orig, out, NULL);
                uq_msg_free(&orig);
            }
            continue;
        }
        /* a request while busy: say so */
        if (m.flags & UQ_ABI_AWAITED) uq_respond(&m, "{\"error\":\"busy\"}", NULL);
        uq_msg_free(&m);
    }
}
