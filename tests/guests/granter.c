/* granter: grants and drops capabilities through its host calls, driven by
 * JSON bodies (the terminal's "m" sends one line), for
 * tests/integ/test_boot_durable.c:
 *   {"give":"TARGET","caps":[...]}   a request to TARGET carrying caps
 *                                    (send_caps; "nowait":true adds
 *                                    UQ_ABI_NOWAIT)          -> {"rc":N}
 *   {"drop":{"params":...}}          uq_cap_drop             -> {"rc":N}
 * Anything else is a gift: thanked if awaited. Each answer is sent once
 * the host call returned. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
        } else if (m.flags & UQ_ABI_AWAITED) {
            uq_respond(&m, "\"thanks\"", NULL);
        }
        free(body);
        uq_msg_free(&m);
    }
}
