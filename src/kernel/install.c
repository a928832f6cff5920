/* Packages: manifest, plain-words description, all-or-nothing install. */
#include "kernel/install.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PKG_MAX_PROCS 64

typedef struct pkg_proc {
    char name[UQI_NAME_MAX + 1];
    char *wasm_path;
    bool public, restart, networking, files;
    uqi_capref *caps;            /* requested, networking included */
    uint32_t ncaps;
} pkg_proc;

struct uqi_pkg {
    char name[128];
    pkg_proc procs[PKG_MAX_PROCS];
    uint32_t n;
};

void uqi_pkg_free(uqi_pkg *p)
{
    if (!p) return;
    for (uint32_t i = 0; i < p->n; i++) {
        free(p->procs[i].wasm_path);
        uqi_caprefs_free(p->procs[i].caps, p->procs[i].ncaps);
    }
    free(p);
}

/* One requested capability: "process" (send it messages) or a full
 * {"issuer","params"} object. */
static uq_err req_cap(json_t *v, const char *node, uqi_capref *out, uq_errmsg *em)
{
    if (json_is_string(v)) {
        if (uqi_addr_parse(json_string_value(v), node, &out->issuer, em)) return UQ_EINVAL;
        out->params = uqi_xstrdup("\"messaging\"");
        return UQ_OK;
    }
    return uqi_capref_from_json(v, node, out, em);
}

static uq_err load_proc(json_t *o, const char *dir, const char *node, pkg_proc *pp, uq_errmsg *em)
{
    const char *name = NULL, *wasm = NULL;
    json_t *onexit = json_object_get(o, "on_exit"), *reqs = json_object_get(o, "request_capabilities");
    if (!json_is_object(o) || json_unpack(o, "{s:s,s:s}", "process_name", &name, "process_wasm_path", &wasm) != 0)
        return uqi_errf(em, UQ_EINVAL, "each process needs \"process_name\" and \"process_wasm_path\"");
    if (!uqi_process_name_valid(name) || strcmp(name, "kernel") == 0)
        return uqi_errf(em, UQ_EINVAL, "bad process name \"%s\": 1-%d characters of a-z, 0-9 and '-'", name, UQI_NAME_MAX);
    snprintf(pp->name, sizeof pp->name, "%s", name);
    size_t len = strlen(dir) + strlen(wasm) + 2;
    pp->wasm_path = uqi_xmalloc(len);
    if (wasm[0] == '/') snprintf(pp->wasm_path, len, "%s", wasm);
    else snprintf(pp->wasm_path, len, "%s/%s", dir, wasm);
    pp->public = json_is_true(json_object_get(o, "public"));
    pp->networking = json_is_true(json_object_get(o, "request_networking"));
    pp->files = json_is_true(json_object_get(o, "request_files"));
    if (onexit && !(json_is_string(onexit) && (strcmp(json_string_value(onexit), "None") == 0 ||
                                               strcmp(json_string_value(onexit), "Restart") == 0)))
        return uqi_errf(em, UQ_EINVAL, "%s: on_exit in a manifest is \"None\" or \"Restart\"", name);
    pp->restart = onexit && strcmp(json_string_value(onexit), "Restart") == 0;
    if (reqs && (!json_is_array(reqs) || json_array_size(reqs) > 200))
        return uqi_errf(em, UQ_EINVAL, "%s: request_capabilities is an array (at most 200)", name);
    size_t k = json_array_size(reqs);
    pp->caps = uqi_xcalloc(k + 2, sizeof *pp->caps);
    for (size_t i = 0; i < k; i++) {
        uq_err e = req_cap(json_array_get(reqs, i), node, &pp->caps[pp->ncaps], em);
        if (e) {
            free(pp->caps[pp->ncaps].params);
            return uqi_errf(em, e, "%s: requested capability %zu: %s", name, i, em->text);
        }
        pp->ncaps++;
    }
    if (pp->files) { /* its own space in the node's files: the messaging capability of fs */
        snprintf(pp->caps[pp->ncaps].issuer.node, UQI_NAME_MAX + 1, "%s", node);
        snprintf(pp->caps[pp->ncaps].issuer.process, UQI_NAME_MAX + 1, "fs");
        pp->caps[pp->ncaps++].params = uqi_xstrdup("\"messaging\"");
    }
    if (pp->networking) {
        snprintf(pp->caps[pp->ncaps].issuer.node, UQI_NAME_MAX + 1, "%s", node);
        snprintf(pp->caps[pp->ncaps].issuer.process, UQI_NAME_MAX + 1, "kernel");
        pp->caps[pp->ncaps++].params = uqi_xstrdup("\"network\"");
    }
    return UQ_OK;
}

uq_err uqi_pkg_load(const char *path, const char *node, uqi_pkg **out, uq_errmsg *em)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return uqi_errf(em, UQ_EINVAL, "manifest %s: %s (line %d column %d)", path, je.text, je.line, je.column);
    /* {"package": name, "processes": [...]} or, as kinode writes it, the bare array */
    json_t *procs = json_is_array(root) ? root : json_object_get(root, "processes");
    json_t *pname = json_is_object(root) ? json_object_get(root, "package") : NULL;
    uqi_pkg *p = uqi_xcalloc(1, sizeof *p);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    snprintf(p->name, sizeof p->name, "%s", json_is_string(pname) ? json_string_value(pname) : path);
    uq_err err = UQ_OK;
    if (!json_is_array(procs) || json_array_size(procs) == 0 || json_array_size(procs) > PKG_MAX_PROCS) {
        err = uqi_errf(em, UQ_EINVAL, "manifest %s: \"processes\" must list 1-%d processes", path, PKG_MAX_PROCS);
    }
    for (size_t i = 0; !err && i < json_array_size(procs); i++) {
        err = load_proc(json_array_get(procs, i), dir, node, &p->procs[p->n], em);
        p->n++;
        for (uint32_t j = 0; !err && j + 1 < p->n; j++)
            if (strcmp(p->procs[j].name, p->procs[p->n - 1].name) == 0)
                err = uqi_errf(em, UQ_EINVAL, "manifest %s: process %s is listed twice", path, p->procs[j].name);
    }
    json_decref(root);
    if (err) {
        if (!strstr(em->text, path)) {
            char t[sizeof em->text];
            snprintf(t, sizeof t, "%s", em->text);
            uqi_errf(em, err, "manifest %s: %s", path, t);
        }
        uqi_pkg_free(p);
        return err;
    }
    *out = p;
    return UQ_OK;
}

static bool in_pkg(const uqi_pkg *p, const uqi_addr *a, const char *node)
{
    if (strcmp(a->node, node) != 0) return false;
    for (uint32_t i = 0; i < p->n; i++)
        if (strcmp(p->procs[i].name, a->process) == 0) return true;
    return false;
}

typedef struct sbuf { char *b; size_t k, cap; } sbuf;

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(s->b + s->k, s->cap - s->k, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if ((size_t)w < s->cap - s->k) {
            s->k += (size_t)w;
            return;
        }
        char *nb = realloc(s->b, s->cap *= 2);
        UQ_VERIFY(nb != NULL);
        s->b = nb;
    }
}

char *uqi_pkg_describe(const uqi_pkg *p)
{
    sbuf s = {uqi_xmalloc(1024), 0, 1024};
    s.b[0] = '\0';
    sb_printf(&s, "Package %s installs %u process%s:\n", p->name, p->n, p->n == 1 ? "" : "es");
    for (uint32_t i = 0; i < p->n; i++) {
        const pkg_proc *pp = &p->procs[i];
        const char *base = strrchr(pp->wasm_path, '/');
        sb_printf(&s, "  %s (%s)%s%s\n", pp->name, base ? base + 1 : pp->wasm_path,
                  pp->public ? ", public: any process may send it messages" : "",
                  pp->restart ? ", restarted when it exits" : "");
        if (pp->ncaps == 0) sb_printf(&s, "    asks for nothing else\n");
        for (uint32_t j = 0; j < pp->ncaps; j++) {
            const uqi_capref *c = &pp->caps[j];
            bool kernel = strcmp(c->issuer.process, "kernel") == 0;
            if (kernel && strcmp(c->params, "\"messaging\"") == 0)
                sb_printf(&s, "    - control the node: start and stop any process (the kernel capability)\n");
            else if (kernel && strcmp(c->params, "\"network\"") == 0)
                sb_printf(&s, "    - reach the network: talk to other nodes\n");
            else if (strcmp(c->params, "\"messaging\"") == 0 && strcmp(c->issuer.process, "fs") == 0)
                sb_printf(&s, "    - read and write its own files\n");
            else if (strcmp(c->params, "\"messaging\"") == 0)
                sb_printf(&s, "    - send messages to %s\n", c->issuer.process);
            else
                sb_printf(&s, "    - use %s's capability %.200s\n", c->issuer.process, c->params);
        }
    }
    return s.b;
}

uq_err uqi_pkg_install(uqi_node *n, uqi_kproc *installer, const uqi_pkg *p, uq_errmsg *em)
{
    const char *node = uqi_node_name(n);
    /* Check before changing anything. */
    for (uint32_t i = 0; i < p->n; i++) {
        if (uqi_node_has(n, p->procs[i].name))
            return uqi_errf(em, UQ_EEXIST, "package %s: a process named %s already exists", p->name, p->procs[i].name);
        for (uint32_t j = 0; j < p->procs[i].ncaps; j++) {
            const uqi_capref *c = &p->procs[i].caps[j];
            if (strcmp(c->issuer.node, node) == 0 && strcmp(c->issuer.process, "kernel") != 0 && !in_pkg(p, &c->issuer, node) &&
                !uqi_node_has(n, c->issuer.process))
                return uqi_errf(em, UQ_ENOENT, "package %s: %s asks for a capability of %s, which is not installed",
                                p->name, p->procs[i].name, c->issuer.process);
        }
    }
    uint32_t done = 0;
    uq_err err = UQ_OK;
    for (; done < p->n; done++) {
        const pkg_proc *pp = &p->procs[done];
        uint8_t *b;
        size_t len;
        if ((err = uqi_read_file(pp->wasm_path, &b, &len, em))) break;
        err = uqi_node_init_process(n, pp->name, b, len, pp->public, NULL, em);
        free(b);
        if (err) break;
        if (pp->restart && (err = uqi_node_set_on_exit(n, pp->name, UQI_ON_EXIT_RESTART, NULL, 0, em))) {
            done++;
            break;
        }
    }
    /* Grants after every process exists: they may message one another. */
    for (uint32_t i = 0; !err && i < p->n; i++)
        err = uqi_node_grant(n, installer, p->procs[i].name, p->procs[i].caps, p->procs[i].ncaps, em);
    for (uint32_t i = 0; !err && i < p->n; i++) err = uqi_node_run_process(n, p->procs[i].name, em);
    /* Durable before we say "installed and running": the records are written
     * asynchronously, and a node killed right after must bring them back. */
    if (!err) err = uqi_node_sync(n, em);
    if (err) {
        char t[sizeof em->text];
        snprintf(t, sizeof t, "%s", em->text);
        for (uint32_t i = 0; i < done; i++) uqi_node_kill(n, p->procs[i].name, NULL);
        return uqi_errf(em, err, "package %s not installed (nothing was left behind): %s", p->name, t);
    }
    return UQ_OK;
}

bool uqi_pkg_installed(uqi_node *n, const uqi_pkg *p)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (!uqi_node_has(n, p->procs[i].name)) return false;
    return true;
}

const char *uqi_pkg_name(const uqi_pkg *p) { return p->name; }
