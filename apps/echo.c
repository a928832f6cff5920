/* echo: answers every request with its own body (and payload, by
 * reference), prefixing nothing: the simplest server. */
#include "uqbar.h"

int main(void)
{
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        if (m.kind == UQ_KIND_REQUEST && (m.flags & UQ_ABI_AWAITED)) {
            char *body = uq_body(&m);
            uq_opts o = {0};
            o.inherit_payload = 1;
            o.inherit = &m;
            uq_respond(&m, body ? body : "", &o);
            free(body);
        }
        uq_msg_free(&m);
    }
}
