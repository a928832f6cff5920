/* relay-K forwards every request with inherit (payload by reference) to
 * relay-(K-1); relay-1 forwards to echo. A chain of middleware for the
 * forwarding benchmark; quiet, unlike apps/middleware.c. */
#include <stdio.h>
#include <string.h>

#include "uqbar.h"

int main(int argc, char **argv)
{
    int k = 1;
    if (argc > 0) sscanf(argv[0], "relay-%d", &k);
    char next[32];
    if (k <= 1) snprintf(next, sizeof next, "echo");
    else snprintf(next, sizeof next, "relay-%d", k - 1);
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST) {
            char body[256];
            int32_t n = uq__msg_read((int32_t)m.handle, UQ_FIELD_BODY, 0, body, sizeof body - 1);
            body[n > 0 ? n : 0] = '\0';
            uq_opts o = {0};
            o.inherit = &m;
            o.inherit_payload = 1;
            uq_request(next, body, &o);
        }
        uq_msg_free(&m);
    }
}
