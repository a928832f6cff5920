/* chat: a chat between nodes, with the history persisted. Install it public
 * with the network capability on each node (see README, "Two nodes").
 *   {"send":{"to":"NODE","text":"TEXT"}}  from this node: sends TEXT to NODE@chat
 *   {"say":"TEXT"}                        from another node's chat: a message for us
 *   {"history":1}                         the history, oldest first
 * Every line (sent, received, failed with Offline/Timeout) is appended to
 * the history and persisted (uq_state_set) before the answer; the kernel
 * hands the history back as the first message after a restart or reboot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uqbar.h"

#define HIST_MAX 16384

static char hist[HIST_MAX];
static size_t hlen;

/* The string value after key ("key":"...") in body, unescaped into out. */
static int field(const char *body, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(body, pat);
    if (!p) return 0;
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1]) p++;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return *p == '"';
}

/* Append a line and persist the history (dropping the oldest lines if full). */
static int add_line(const char *line)
{
    size_t l = strlen(line);
    if (l + 1 > HIST_MAX / 2) l = HIST_MAX / 2 - 1;
    while (hlen + l + 1 > HIST_MAX) {
        char *nl = memchr(hist, '\n', hlen);
        size_t cut = nl ? (size_t)(nl - hist) + 1 : hlen;
        memmove(hist, hist + cut, hlen - cut);
        hlen -= cut;
    }
    memcpy(hist + hlen, line, l);
    hlen += l;
    hist[hlen++] = '\n';
    return uq_state_set(hist, (uint32_t)hlen);
}

/* JSON string of s (escaping quotes, backslashes and control bytes). */
static size_t json_str(const char *s, size_t n, char *out)
{
    size_t k = 0;
    out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') out[k++] = '\\', out[k++] = (char)c;
        else if (c < 0x20) k += (size_t)sprintf(out + k, "\\u%04x", c);
        else out[k++] = (char)c;
    }
    out[k++] = '"';
    return k;
}

static void answer(const uq_msg *m, const char *body)
{
    if (m->kind == UQ_KIND_REQUEST && (m->flags & UQ_ABI_AWAITED)) uq_respond(m, body, NULL);
}

int main(void)
{
    static char out[HIST_MAX * 6 + 64], line[1024], text[600], to[80];
    uq_msg m;
    for (;;) {
        if (uq_receive(&m) < 0) continue;
        char *body = uq_body(&m);
        char *src = uq_source(&m);
        if (m.kind == UQ_KIND_ERROR) {
            /* our message to another node failed: its text is our context */
            char *ctx = uq_context(&m);
            snprintf(line, sizeof line, "failed (%s) %s", m.error == 1 ? "Offline" : m.error == 2 ? "Timeout" : "Refused",
                     ctx ? ctx : "?");
            add_line(line);
            free(ctx);
        } else if (m.kind == UQ_KIND_RESPONSE) {
            /* delivered: nothing to add */
        } else if (strcmp(body, "\"RestoredState\"") == 0) {
            char *st = uq_payload(&m);
            if (st && m.payload_len <= HIST_MAX) {
                memcpy(hist, st, m.payload_len);
                hlen = m.payload_len;
            }
            free(st);
        } else if (strstr(body, "{\"send\":") == body && field(body, "to", to, sizeof to) &&
                   field(body, "text", text, sizeof text)) {
            char target[128], req[1400];
            snprintf(target, sizeof target, "%s@chat", to);
            size_t k = (size_t)snprintf(req, sizeof req, "{\"say\":");
            k += json_str(text, strlen(text), req + k);
            snprintf(req + k, sizeof req - k, "}");
            snprintf(line, sizeof line, "me -> %s: %s", to, text);
            int rc = add_line(line);
            uq_opts o = {0};
            o.expects_response_s = 5;
            o.context = line;
            o.context_len = (uint32_t)strlen(line) + 1;
            int64_t id = uq_request(target, req, &o);
            snprintf(out, sizeof out, "{\"sent\":%lld,\"rc\":%d}", (long long)id, rc);
            answer(&m, out);
        } else if (strstr(body, "{\"say\":") == body && (m.flags & UQ_ABI_REMOTE) && field(body, "say", text, sizeof text)) {
            /* from another node: its source is node@process as the link authenticated it */
            char *at = strchr(src, '@');
            if (at) *at = '\0';
            snprintf(line, sizeof line, "%s: %s", src, text);
            int rc = add_line(line);
            snprintf(out, sizeof out, "{\"ok\":1,\"rc\":%d}", rc);
            answer(&m, out);
        } else if (strstr(body, "{\"history\"") == body) {
            size_t k = (size_t)sprintf(out, "{\"history\":[");
            size_t start = 0;
            for (size_t i = 0; i < hlen; i++) {
                if (hist[i] != '\n') continue;
                if (start) out[k++] = ',';
                k += json_str(hist + start, i - start, out + k);
                start = i + 1;
                if (k + 1 > sizeof out - 8) break;
            }
            sprintf(out + k, "]}");
            answer(&m, out);
        } else {
            answer(&m, "{\"error\":\"unknown request: send, say (from another node) or history\"}");
        }
        free(src);
        free(body);
        uq_msg_free(&m);
    }
}
