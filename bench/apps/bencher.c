/* bencher: measures message passing from inside a process, driven by a
 * request whose body names the benchmark:
 *   {"rt":N}          N request/response round trips to echo: median, p99 ns
 *   {"oneway":N}      N one-way requests to counter, then one awaited: msgs/s
 *   {"chain":N,"kib":K}  N round trips through relay-5..relay-1 to echo with
 *                     the K KiB payload of this request, forwarded by
 *                     reference (inherit) at every hop: median ns
 *   {"direct":N,"kib":K} the same straight to echo (to subtract)
 * and answers with the figures as JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "uqbar.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One awaited request to target; waits for its answer. Returns 0 on success. */
static int roundtrip(const char *target, const char *body, const uq_opts *o)
{
    if (uq_request(target, body, o) < 0) return -1;
    uq_msg r;
    for (;;) {
        if (uq_receive(&r) < 0) continue;
        int kind = (int)r.kind;
        uq_msg_free(&r);
        if (kind == UQ_KIND_RESPONSE) return 0;
        if (kind == UQ_KIND_ERROR) return -1;
    }
}

static void run_rt(const uq_msg *req, int n, const char *target, uint32_t kib)
{
    uint64_t *t = malloc(sizeof *t * (size_t)n);
    uq_opts o = {0};
    o.expects_response_s = 30;
    int bad = 0;
    if (kib) {
        /* forward the request's own payload: no copy out of our memory */
        bad |= req->payload_len != kib * 1024;
        o.inherit = req;
        o.inherit_payload = 1;
    }
    for (int i = 0; i < n / 10 + 1; i++) bad |= roundtrip(target, "{\"ping\":1}", &o); /* warm-up */
    for (int i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        bad |= roundtrip(target, "{\"ping\":1}", &o);
        t[i] = now_ns() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_u64);
    char out[160];
    snprintf(out, sizeof out, "{\"median_ns\":%llu,\"p99_ns\":%llu,\"ok\":%s}", (unsigned long long)t[n / 2],
             (unsigned long long)t[(size_t)n * 99 / 100], bad ? "false" : "true");
    uq_respond(req, out, NULL);
    free(t);
}

static void run_oneway(const uq_msg *req, int n)
{
    uint64_t t0 = now_ns();
    int sent = 0, full = 0;
    while (sent < n) {
        int64_t r = uq_request("counter", "{\"add\":1}", NULL);
        if (r > 0) sent++;
        else if (r == UQ_ABI_EFULL) {
            full++;
            sched_yield(); /* backpressure: let the counter drain */
        } else break;
    }
    uq_opts o = {0};
    o.expects_response_s = 30;
    roundtrip("counter", "{\"get\":null}", &o);
    uint64_t dt = now_ns() - t0;
    char out[160];
    snprintf(out, sizeof out, "{\"msgs_per_s\":%.0f,\"sent\":%d,\"backpressure\":%d}", (double)sent * 1e9 / (double)dt,
             sent, full);
    uq_respond(req, out, NULL);
}

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST) {
            char *body = uq_body(&m);
            int n = 0, kib = 0;
            if (body && sscanf(body, "{\"rt\":%d}", &n) == 1 && n > 0) run_rt(&m, n, "echo", 0);
            else if (body && sscanf(body, "{\"oneway\":%d}", &n) == 1 && n > 0) run_oneway(&m, n);
            else if (body && sscanf(body, "{\"chain\":%d,\"kib\":%d}", &n, &kib) == 2 && n > 0) run_rt(&m, n, "relay-5", (uint32_t)kib);
            else if (body && sscanf(body, "{\"direct\":%d,\"kib\":%d}", &n, &kib) == 2 && n > 0) run_rt(&m, n, "echo", (uint32_t)kib);
            else uq_respond(&m, "{\"error\":\"unknown benchmark\"}", NULL);
            free(body);
        }
        uq_msg_free(&m);
    }
}
