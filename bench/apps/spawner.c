/* spawner: measures spawn-and-exit from inside a process, as Erlang's
 * spawn_monitor loop does. Driven by a request {"spawn":N} whose payload is
 * the child's wasm (bench/guests/spawnee.wat: its _start sends one one-way
 * request to "spawner" and returns). N times: spawn a child with the guest
 * `spawn` call, wait for its message; the median over 10 batches of N/10 of
 * the time per child, after N/10 children of warm-up. The node runs one
 * worker, so the child has run to its end before this process runs again.
 * Answers {"ns_per_spawn":X,"ok":B}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* "c" and i in decimal: snprintf was 3-4 % of a spawn, and Erlang's
 * spawn names nothing. */
static void child_id(char *id, unsigned i)
{
    char d[16];
    int k = 0;
    do d[k++] = (char)('0' + i % 10); while ((i /= 10));
    *id++ = 'c';
    while (k) *id++ = d[--k];
    *id = '\0';
}

/* Spawn one child and wait for its message; 0 on success. */
static int one(const uint8_t *wasm, uint32_t len, unsigned i)
{
    char id[32], got[64];
    child_id(id, i);
    if (uq_spawn(id, wasm, len, NULL, 0, got, sizeof got) < 0) return -1;
    uq_msg r;
    for (;;) {
        if (uq_receive(&r) < 0) continue;
        int kind = (int)r.kind;
        uq_msg_free(&r);
        if (kind == UQ_KIND_REQUEST) return 0;
    }
}

static void run_spawn(const uq_msg *req, unsigned n)
{
    uint32_t len = req->payload_len;
    uint8_t *wasm = malloc(len ? len : 1);
    int bad = !len || uq__msg_read((int32_t)req->handle, UQ_FIELD_PAYLOAD, 0, wasm, len) != (int32_t)len;
    enum { BATCHES = 10 };
    unsigned batch = n / BATCHES ? n / BATCHES : 1, k = 0;
    uint64_t t[BATCHES];
    for (unsigned i = 0; i < batch && !bad; i++) bad |= one(wasm, len, k++); /* warm-up */
    for (int b = 0; b < BATCHES; b++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < batch && !bad; i++) bad |= one(wasm, len, k++);
        t[b] = (now_ns() - t0) / batch;
    }
    qsort(t, BATCHES, sizeof t[0], cmp_u64);
    char out[200];
    snprintf(out, sizeof out, "{\"ns_per_spawn\":%llu,\"min_ns\":%llu,\"max_ns\":%llu,\"ok\":%s}",
             (unsigned long long)(t[BATCHES / 2 - 1] + t[BATCHES / 2]) / 2, (unsigned long long)t[0],
             (unsigned long long)t[BATCHES - 1], bad ? "false" : "true");
    uq_respond(req, out, NULL);
    free(wasm);
}

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST && (m.flags & UQ_ABI_AWAITED)) {
            char *body = uq_body(&m);
            unsigned n = 0;
            if (body && sscanf(body, "{\"spawn\":%u}", &n) == 1 && n > 0) run_spawn(&m, n);
            else uq_respond(&m, "{\"error\":\"unknown benchmark\"}", NULL);
            free(body);
        }
        uq_msg_free(&m);
    }
}
