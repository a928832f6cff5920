/* cmdguest.h: what the test guests driven by line commands share (capper.c,
 * filer.c). A request's body is lines: a command, then its arguments. The
 * capability commands below are the same in every such guest:
 *   attach TARGET CAPS   a request to TARGET carrying capabilities CAPS -> {"rc":N}
 *   drop CAP             uq_cap_drop                                  -> {"rc":N}
 *   list                 this process's tokens                        -> [...]
 *   last                 the tokens that came with the last gift      -> [...] or null
 * and anything no command matches is a gift: its capabilities (if any) are
 * remembered, and an awaited gift is thanked. Header-only: each guest is one
 * translation unit. */
#ifndef UQ_TEST_CMDGUEST_H
#define UQ_TEST_CMDGUEST_H

#include <stdio.h>
#include <string.h>

#include "uqbar.h"

static char *last_caps; /* owned: the capabilities of the last gift */

/* The next line of *s (NUL-terminated in place), or NULL at the end. */
static char *line(char **s)
{
    char *l = *s;
    if (!l) return NULL;
    char *nl = strchr(l, '\n');
    if (nl) {
        *nl = '\0';
        *s = nl + 1;
    } else {
        *s = NULL;
    }
    return l;
}

static void reply_rc(const uq_msg *m, long long rc)
{
    char b[64];
    snprintf(b, sizeof b, "{\"rc\":%lld}", rc);
    uq_respond(m, b, NULL);
}

/* Remember the capabilities a request carried (a gift). */
static void keep_gift(const uq_msg *m)
{
    if (!m->caps_len) return;
    free(last_caps);
    last_caps = uq_msg_caps(m);
}

/* The capability commands and gifts above; the caller has handled its own
 * commands first. */
static void cap_command(const uq_msg *m, const char *cmd, char *rest)
{
    if (strcmp(cmd, "attach") == 0) {
        char *target = line(&rest);
        uq_opts o = {0};
        o.caps = rest;
        reply_rc(m, uq_request(target, "gift", &o));
    } else if (strcmp(cmd, "drop") == 0) {
        reply_rc(m, uq_cap_drop(rest));
    } else if (strcmp(cmd, "list") == 0) {
        char *l = uq_caps_list();
        uq_respond(m, l ? l : "null", NULL);
        free(l);
    } else if (strcmp(cmd, "last") == 0) {
        uq_respond(m, last_caps ? last_caps : "null", NULL);
    } else {
        keep_gift(m);
        if (m->flags & UQ_ABI_AWAITED) uq_respond(m, "\"thanks\"", NULL);
    }
}

#endif
