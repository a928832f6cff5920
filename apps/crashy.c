/* crashy: answers {"seen":N} (messages seen by this instance); a request
 * {"crash":1} makes it trap: a process for on_exit tests and demos. */
#include <stdio.h>
#include <string.h>

#include "uqbar.h"

int main(void)
{
    int seen = 0;
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST) {
            seen++;
            char body[64];
            int32_t n = uq__msg_read((int32_t)m.handle, UQ_FIELD_BODY, 0, body, sizeof body - 1);
            body[n > 0 ? n : 0] = '\0';
            if (strcmp(body, "{\"crash\":1}") == 0) __builtin_trap();
            if (m.flags & UQ_ABI_AWAITED) {
                char out[48];
                snprintf(out, sizeof out, "{\"seen\":%d}", seen);
                uq_respond(&m, out, NULL);
            }
        }
        uq_msg_free(&m);
    }
}
