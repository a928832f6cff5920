/* counter: keeps a count in memory. {"add":N} adds N; any request that
 * someone awaits is answered with {"count":TOTAL,"requests":R}. Requests
 * that expect no answer are just counted (one-way traffic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uqbar.h"

int main(void)
{
    long long count = 0, requests = 0;
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST) {
            requests++;
            char body[64];
            int32_t n = uq__msg_read((int32_t)m.handle, UQ_FIELD_BODY, 0, body, sizeof body - 1);
            body[n > 0 ? n : 0] = '\0';
            if (strncmp(body, "{\"add\":", 7) == 0) count += strtoll(body + 7, NULL, 10); /* cheap: no sscanf */
            if (m.flags & UQ_ABI_AWAITED) {
                char out[96];
                snprintf(out, sizeof out, "{\"count\":%lld,\"requests\":%lld}", count, requests);
                uq_respond(&m, out, NULL);
            }
        }
        uq_msg_free(&m);
    }
}
