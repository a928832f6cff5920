/* granter: grants and drops capabilities through its host calls, driven by
 * JSON bodies (the terminal's "m" sends one line), for
 * tests/integ/test_boot_durable.c:
 *   {"give":"TARGET","caps":[...]}   a request to TARGET carrying caps
 *                                    (send_caps; "nowait":true adds
 *                                    UQ_ABI_NOWAIT)          -> {"rc":N}
 *   {"drop":{"params":...}}          uq_cap_drop             -> {"rc":N}
 *   {"time":N,"to":"TARGET"}         N grants to TARGET, each of a fresh
 *                                    capability {"n":i,"t":start} ("nowait":true as
 *                                    above)     -> {"rc":N,"ns_per_grant":X}
 * Anything else is a gift: thanked if awaited. Each answer is sent once
 * the host call returned. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "uqbar.h"

/* The JSON array or object that starts at s (its brackets balanced,
 * strings skipped), copied into a fresh string; NULL if s starts none. */
static char *balanced(const char *s)
{
    if (!s || (*s != '[' && *s != '{')) return NULL;
    int depth = 0;
    bool str = false;
    for (const char *c = s; *c; c++) {
        if (str) {
            if (*c == '\\' && c[1]) c++;
            else if (*c == '"') str = false;
        } else if (*c == '"') {
            str = true;
        } else if (*c == '[' || *c == '{') {
            depth++;
        } else if ((*c == ']' || *c == '}') && --depth == 0) {
            size_t n = (size_t)(c - s) + 1;
            char *out = malloc(n + 1);
            memcpy(out, s, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

static void reply_rc(const uq_msg *m, long long rc)
{
    char b[64];
    snprintf(b, sizeof b, "{\"rc\":%lld}", rc);
    uq_respond(m, b, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* n grants of fresh capabilities to target: the mean time of one. */
static void time_grants(const uq_msg *m, const char *target, int n, bool nowait)
{
    uq_opts o = {0};
    o.nowait = nowait;
    char caps[96], b[96];
    int64_t rc = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < n && rc >= 0; i++) {
        snprintf(caps, sizeof caps, "[{\"params\":{\"n\":%d,\"t\":%llu}}]", i, (unsigned long long)t0);
        o.caps = caps;
        rc = uq_request(target, "\"gift\"", &o);
    }
    uint64_t dt = now_ns() - t0;
    snprintf(b, sizeof b, "{\"rc\":%lld,\"ns_per_grant\":%llu}", (long long)(rc < 0 ? rc : n),
             (unsigned long long)(n > 0 ? dt / (uint64_t)n : 0));
    uq_respond(m, b, NULL);
}

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive_request(&m) < 0) continue;
        char *body = uq_body(&m);
        const char *give = body ? strstr(body, "\"give\":\"") : NULL, *drop = body ? strstr(body, "\"drop\":") : NULL;
        if (give) {
            char target[128] = "";
            sscanf(give + 8, "%127[^\"]", target);
            const char *c = strstr(body, "\"caps\":");
            char *caps = c ? balanced(c + 7) : NULL;
            uq_opts o = {0};
            o.caps = caps;
            o.nowait = strstr(body, "\"nowait\":true") != NULL;
            reply_rc(&m, caps ? uq_request(target, "\"gift\"", &o) : UQ_ABI_EINVAL);
            free(caps);
        } else if (drop) {
            char *cap = balanced(drop + 7);
            reply_rc(&m, cap ? uq_cap_drop(cap) : UQ_ABI_EINVAL);
            free(cap);
        } else if (body && strstr(body, "\"time\":")) {
            char target[128] = "";
            const char *to = strstr(body, "\"to\":\"");
            if (to) sscanf(to + 6, "%127[^\"]", target);
            time_grants(&m, target, atoi(strstr(body, "\"time\":") + 7), strstr(body, "\"nowait\":true") != NULL);
        } else if (m.flags & UQ_ABI_AWAITED) {
            uq_respond(&m, "\"thanks\"", NULL);
        }
        free(body);
        uq_msg_free(&m);
    }
}
