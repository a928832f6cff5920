/* middleware: logs each request and forwards it to the process named in its
 * first argument... for now, "echo", with inherit: the response goes straight
 * back to the original requester with the original context, and the payload
 * travels by reference. */
#include <stdio.h>

#include "uqbar.h"

int main(int argc, char **argv)
{
    const char *next = argc > 1 ? argv[1] : "echo";
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST) {
            char *body = uq_body(&m);
            char *src = uq_source(&m);
            printf("forwarding %s from %s (payload %u bytes, not copied)\n", body ? body : "", src ? src : "?",
                   m.payload_len);
            fflush(stdout);
            uq_opts o = {0};
            o.inherit = &m;
            o.inherit_payload = 1;
            o.metadata = "via-middleware";
            uq_request(next, body ? body : "", &o);
            free(body);
            free(src);
        }
        uq_msg_free(&m);
    }
}
