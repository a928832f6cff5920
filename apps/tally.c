/* tally: a counter that survives restarts and reboots. {"add":N} adds N and
 * persists the total (answering once it is durable); {"get":1} answers the
 * total; {"crash":1} traps (to show a restart). When it starts again, the
 * kernel hands back the persisted total as its first message. Answers
 * {"count":TOTAL,"rc":R} (R: the result of uq_state_set, 0 when durable). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uqbar.h"

int main(void)
{
    long long count = 0;
    int rc = 0;
    uq_msg m;
    for (;;) {
        if (uq_receive_request(&m) < 0) continue;
        char *body = uq_body(&m);
        if (strcmp(body, "\"RestoredState\"") == 0) {
            char *st = uq_payload(&m); /* the state, as this process persisted it */
            if (st) count = strtoll(st, NULL, 10);
            free(st);
        } else if (strncmp(body, "{\"add\":", 7) == 0) {
            count += strtoll(body + 7, NULL, 10);
            char st[32];
            int n = snprintf(st, sizeof st, "%lld", count);
            rc = uq_state_set(st, (uint32_t)n);
        } else if (strncmp(body, "{\"crash\"", 8) == 0) {
            __builtin_trap();
        }
        if (m.flags & UQ_ABI_AWAITED) {
            char out[96];
            snprintf(out, sizeof out, "{\"count\":%lld,\"rc\":%d}", count, rc);
            uq_respond(&m, out, NULL);
        }
        free(body);
        uq_msg_free(&m);
    }
}
