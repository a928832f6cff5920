/* `uqbar boot`: a node with a terminal on standard input. The terminal is a
 * process of the node (a host port named "terminal") that talks to the
 * kernel API like any installer would. */
#define _GNU_SOURCE
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/boot_net.h"
#include "cli/cli.h"
#include "kernel/backup.h"
#include "kernel/fsmod.h"
#include "kernel/install.h"
#include "kernel/kernel.h"
#include "store/files.h"
#include "store/store.h"

#define EXIT_FAILED 123

static const char *help_text =
    "commands:\n"
    "  m ADDRESS JSON [-t SECONDS] [-p FILE]\n"
    "                                send a request (ADDRESS: process or node@process), print the answer;\n"
    "                                -p: FILE's bytes as its payload (MIME from the name: .wasm, .json, .txt)\n"
    "  start ID FILE.wasm [--public] install and run a process (via the kernel API)\n"
    "  install MANIFEST.json [--yes] install a package: shows what it asks for, asks you to approve\n"
    "  kill ID                       kill a process (its queued messages are dropped)\n"
    "  ps                            processes with mailbox depth and message counts\n"
    "  debug [ID]                    the kernel's Debug output (process map, or one process)\n"
    "  backup                        what the backup peers acknowledged, what waits\n"
    "  help                          this text\n"
    "  exit                          shut the node down (so does end of input)\n";

typedef struct term {
    uqi_node *node;
    uqi_kproc *port;
    bool tty;
    uqi_backup *backup;
} term;

static uqn_net *term_net; /* for why a node is Offline (uqn_net_why) */

static void print_msg(const uqi_msg *r)
{
    static const char *errs[] = {"", "Offline", "Timeout", "NoSuchProcess", "Refused"};
    char src[160];
    uqi_addr_format(&r->source, src, sizeof src);
    if (r->kind == UQI_MSG_ERROR) {
        printf("error %s from %s for message %llu: %.*s\n", r->error < 5 ? errs[r->error] : "?", src,
               (unsigned long long)r->id, (int)r->body_len, (const char *)r->body);
        char why[256] = "";
        if (r->error == UQI_SEND_OFFLINE && term_net) uqn_net_why(term_net, r->source.node, why, sizeof why);
        if (why[0]) printf("  why: %s\n", why);
    } else {
        printf("%s from %s: %.*s\n", r->kind == UQI_MSG_RESPONSE ? "response" : "request", src, (int)r->body_len,
               (const char *)r->body);
    }
    if (r->metadata) printf("  metadata: %s\n", r->metadata);
    if (r->payload) printf("  payload: %zu bytes%s%s\n", r->payload->len, r->payload->mime[0] ? " of " : "", r->payload->mime);
    fflush(stdout);
}

/* A stored process that did not come back, on the terminal (not only in
 * the log): which and why. */
static void print_restore_problem(void *arg, const char *id, const char *why)
{
    printf("process %s was not restored as it was: %s\n", id, why);
    fflush(stdout);
}

/* Send body to target and wait for the answer with that id. */
static void send_and_wait(term *t, const char *target, const char *body, unsigned timeout_s, uqi_payload *payload)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    uq_errmsg em = {{0}};
    if (uqi_addr_parse(target, uqi_node_name(t->node), &m->target, &em)) {
        printf("error: %s\n", em.text);
        uqi_msg_free(m);
        uqi_payload_rele(payload);
        return;
    }
    m->expects_response_s = timeout_s;
    m->payload = payload;
    uint64_t id = 0;
    if (uqi_kernel_send(t->port, m, NULL, 0, &id, &em)) {
        printf("error: %s\n", em.text);
        uqi_msg_free(m);
        return;
    }
    uint64_t deadline = uqi_now_ns() + ((uint64_t)timeout_s + 2) * 1000000000ull;
    while (uqi_now_ns() < deadline) {
        uqi_msg *r = uqi_port_receive(t->port, 100);
        if (!r) continue;
        print_msg(r);
        bool done = r->id == id;
        uqi_msg_free(r);
        if (done) return;
    }
    printf("no answer within %u s\n", timeout_s + 2);
}

static char *next_word(char **s)
{
    while (**s == ' ' || **s == '\t') (*s)++;
    if (!**s) return NULL;
    char *w = *s;
    while (**s && **s != ' ' && **s != '\t') (*s)++;
    if (**s) *(*s)++ = '\0';
    return w;
}

/* A file's bytes as a payload, its MIME type guessed from the name. */
static uqi_payload *file_payload(const char *file)
{
    static const char *types[][2] = {{".wasm", "application/wasm"}, {".json", "application/json"},
                                     {".txt", "text/plain"}};
    uint8_t *b;
    size_t len;
    uq_errmsg em = {{0}};
    if (uqi_read_file(file, &b, &len, &em)) {
        printf("error: %s\n", em.text);
        return NULL;
    }
    const char *mime = "application/octet-stream", *dot = strrchr(file, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0) mime = types[i][1];
    uqi_payload *p = uqi_payload_new(b, len, mime);
    free(b);
    return p;
}

/* The start of the options " -t SECONDS" / " -p FILE" behind a body, or NULL. */
static char *options_start(char *rest)
{
    char *t = strstr(rest, " -t "), *p = strstr(rest, " -p ");
    return t && p ? (t < p ? t : p) : t ? t : p;
}

static void cmd_m(term *t, char *rest)
{
    char *addr = next_word(&rest);
    while (rest && (*rest == ' ' || *rest == '\t')) rest++;
    if (!addr || !rest || !*rest) {
        printf("usage: m ADDRESS JSON [-t SECONDS] [-p FILE]   e.g.  m echo {\"hello\":\"world\"}\n");
        return;
    }
    unsigned timeout = 5;
    const char *file = NULL;
    char *opts = options_start(rest);
    if (opts) {
        *opts++ = '\0';
        for (char *w; (w = next_word(&opts));) {
            char *v = next_word(&opts);
            if (v && strcmp(w, "-t") == 0) {
                timeout = (unsigned)atoi(v);
            } else if (v && strcmp(w, "-p") == 0) {
                file = v;
            } else {
                printf("usage: m ADDRESS JSON [-t SECONDS] [-p FILE]  (%s?)\n", w);
                return;
            }
        }
        if (timeout == 0) timeout = 5;
    }
    uqi_payload *p = file ? file_payload(file) : NULL;
    if (!file || p) send_and_wait(t, addr, rest, timeout, p);
}

static void cmd_start(term *t, char *rest)
{
    char *id = next_word(&rest), *file = next_word(&rest), *flag = next_word(&rest);
    if (!id || !file) {
        printf("usage: start ID FILE.wasm [--public]\n");
        return;
    }
    uint8_t *b;
    size_t len;
    uq_errmsg em = {{0}};
    if (uqi_read_file(file, &b, &len, &em)) {
        printf("error: %s\n", em.text);
        return;
    }
    uqi_payload *p = uqi_payload_new(b, len, "application/wasm");
    free(b);
    json_t *cmd = json_pack("{s:{s:s,s:s,s:n,s:s,s:[],s:b}}", "InitializeProcess", "id", id, "wasm_bytes_handle", file,
                            "wit_version", "on_exit", "None", "initial_capabilities", "public",
                            flag && strcmp(flag, "--public") == 0);
    char *body = cmd ? json_dumps(cmd, JSON_COMPACT) : NULL;
    json_decref(cmd);
    if (!body) {
        printf("error: the id and file name must be UTF-8 text\n");
        uqi_payload_rele(p);
        return;
    }
    send_and_wait(t, "kernel", body, 600, p); /* a first compile may take a while */
    free(body);
    cmd = json_pack("{s:s}", "RunProcess", id);
    body = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    send_and_wait(t, "kernel", body, 5, NULL);
    free(body);
}

/* Send a kernel command built by json_pack (takes the reference). */
static void kernel_cmd(term *t, json_t *cmd)
{
    char *body = cmd ? json_dumps(cmd, JSON_COMPACT) : NULL;
    json_decref(cmd);
    if (!body) {
        printf("error: ids must be UTF-8 text\n");
        return;
    }
    send_and_wait(t, "kernel", body, 5, NULL);
    free(body);
}

/* Install a package after the user approves what it asks for. */
static void cmd_install(term *t, const char *path, bool yes)
{
    uqi_pkg *p;
    uq_errmsg em = {{0}};
    if (uqi_pkg_load(path, uqi_node_name(t->node), &p, &em)) {
        printf("error: %s\n", em.text);
        return;
    }
    if (uqi_pkg_installed(t->node, p)) {
        printf("package %s is installed already (its processes came back with the node)\n", uqi_pkg_name(p));
        uqi_pkg_free(p);
        return;
    }
    char *d = uqi_pkg_describe(p);
    fputs(d, stdout);
    fflush(stdout); /* before any compile progress on stderr */
    free(d);
    bool ok = yes;
    if (!yes) {
        printf("Install %s? [y/N] ", path);
        fflush(stdout);
        char ans[64];
        ok = fgets(ans, sizeof ans, stdin) && (ans[0] == 'y' || ans[0] == 'Y');
        if (!t->tty) printf("\n");
    }
    if (!ok) printf("not installed: nothing was changed\n");
    else if (uqi_pkg_install(t->node, t->port, p, &em)) printf("error: %s\n", em.text);
    else printf("installed and running\n");
    fflush(stdout);
    uqi_pkg_free(p);
}

static bool handle_line(term *t, char *line)
{
    line[strcspn(line, "\r\n")] = '\0';
    char *rest = line;
    char *cmd = next_word(&rest);
    if (!cmd) return true;
    if (strcmp(cmd, "exit") == 0 || strcmp(cmd, "quit") == 0) return false;
    else if (strcmp(cmd, "help") == 0) fputs(help_text, stdout);
    else if (strcmp(cmd, "m") == 0) cmd_m(t, rest);
    else if (strcmp(cmd, "start") == 0) cmd_start(t, rest);
    else if (strcmp(cmd, "install") == 0) {
        char *path = next_word(&rest), *flag = next_word(&rest);
        if (!path) printf("usage: install MANIFEST.json [--yes]\n");
        else cmd_install(t, path, flag && strcmp(flag, "--yes") == 0);
    }
    else if (strcmp(cmd, "ps") == 0 || strcmp(cmd, "top") == 0) {
        char buf[65536];
        uqi_node_list(t->node, buf, sizeof buf);
        fputs(buf, stdout);
    } else if (strcmp(cmd, "kill") == 0) {
        char *id = next_word(&rest);
        if (!id) printf("usage: kill ID\n");
        else kernel_cmd(t, json_pack("{s:s}", "KillProcess", id));
    } else if (strcmp(cmd, "backup") == 0) {
        char buf[4096];
        if (t->backup) uqi_backup_status(t->backup, buf, sizeof buf);
        else snprintf(buf, sizeof buf, "backup: off (the node is not networked: --listen)\n");
        fputs(buf, stdout);
    } else if (strcmp(cmd, "debug") == 0) {
        char *id = next_word(&rest);
        kernel_cmd(t, id ? json_pack("{s:{s:s}}", "Debug", "Process", id) : json_pack("{s:s}", "Debug", "ProcessMap"));
    } else {
        printf("unknown command '%s' (type help)\n", cmd);
    }
    fflush(stdout);
    return true;
}

int uq_cmd_boot(int argc, char **argv)
{
    const char *home = NULL, *name = "dev.local";
    const char *starts[64], *installs[16];
    int nstarts = 0, ninstalls = 0, workers = 0;
    bool yes = false, name_given = false;
    uq_netopts nopt = {0}; /* networking: cli/boot_net.c */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--home") == 0 && i + 1 < argc) home = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i], name_given = true;
        else if (uq_netopts_parse(&nopt, argc, argv, &i)) continue;
        else if (strcmp(argv[i], "--start") == 0 && i + 1 < argc && nstarts < 64) starts[nstarts++] = argv[++i];
        else if (strcmp(argv[i], "--install") == 0 && i + 1 < argc && ninstalls < 16) installs[ninstalls++] = argv[++i];
        else if (strcmp(argv[i], "--yes") == 0) yes = true;
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "-v") == 0) uqi_log_level = UQ_LOG_INFO;
        else {
            fprintf(stderr, "uqbar boot: unknown option '%s' (see uqbar help)\n", argv[i]);
            return 2;
        }
    }
    if (!home) {
        fprintf(stderr, "uqbar boot: --home DIR is required (the node keeps its state there)\n");
        return 2;
    }
    if ((nopt.restore || nopt.backup_peers) && !nopt.on) {
        fprintf(stderr, "uqbar boot: backups travel over the network: --restore and --backup-peers need --listen\n");
        return 2;
    }
    /* Compiled modules: <home>/cache, or $UQBAR_CACHE (shared by nodes, as
     * `uqbar run` shares it; the cache is content-addressed). */
    char cache[4096];
    const char *ec = getenv("UQBAR_CACHE");
    if (ec && *ec) snprintf(cache, sizeof cache, "%s", ec);
    else snprintf(cache, sizeof cache, "%s/cache", home);
    uq_errmsg em = {{0}};
    if (uqi_mkdirs(home, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        return EXIT_FAILED;
    }
    /* The node's store: its process table and the state of its processes. */
    uqs_store *store;
    if (uqs_open(home, NULL, &store, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        return EXIT_FAILED;
    }
    /* From here on every failure ends at fail:, which stops what was started. */
    int rc = EXIT_FAILED;
    uqi_node_config cfg = {.name = name, .cache_dir = cache, .workers = workers, .store = store};
    uqn_identity ident = {0}; /* networking: the node's key from its keyfile */
    uqn_net *net = NULL;
    uqi_node *node = NULL;
    term t = {0};
    uqs_files *files = NULL;
    uqi_fsmod *fsmod = NULL;
    if (nopt.on) {
        if (uq_boot_identity(home, &name, name_given, &nopt, &ident, &em)) {
            fprintf(stderr, "uqbar: %s\n", em.text);
            goto fail;
        }
        cfg.name = name;
        cfg.identity_sk = ident.sk;
    }
    if (uqi_node_start(&cfg, &node, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        goto fail;
    }
    if (nopt.on && uq_boot_net(node, home, &nopt, &ident, &net, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        goto fail;
    }
    term_net = net;
    t = (term){node, NULL, isatty(0) == 1, NULL};
    if (uqi_node_port(node, "terminal", &t.port, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        goto fail;
    }
    /* The files module (fs), before the processes that may use it. */
    if (uqs_files_open(store, home, &files, &em) || uqi_fsmod_start(node, files, &fsmod, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        goto fail;
    }
    /* Backups (restored first with --restore), before the processes come back. */
    if (nopt.on && uq_boot_backup(node, store, &nopt, &ident, &t.backup, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        goto fail;
    }
    /* The processes that ran before the node went down come back. */
    uint64_t t0 = uqi_now_ns();
    uint32_t restored, failed;
    if (uqi_node_restore_ex(node, &restored, &failed, print_restore_problem, NULL, &em)) {
        fprintf(stderr, "uqbar: the process table in %s cannot be read: %s\n", uqs_path(store), em.text);
        goto fail;
    }
    if (restored || failed)
        printf("restored %u process%s%s in %.1f ms\n", restored, restored == 1 ? "" : "es",
               failed ? " (some could not come back: see above)" : "", (double)(uqi_now_ns() - t0) / 1e6);
    for (int i = 0; i < nstarts; i++) {
        char spec[4096];
        snprintf(spec, sizeof spec, "%s", starts[i]);
        char *eq = strchr(spec, '=');
        if (!eq) {
            fprintf(stderr, "uqbar boot: --start wants ID=FILE.wasm, not '%s'\n", starts[i]);
            continue;
        }
        *eq = '\0';
        uint8_t *b;
        size_t len;
        if (uqi_read_file(eq + 1, &b, &len, &em) || uqi_node_spawn(node, spec, b, len, false, NULL, &em))
            fprintf(stderr, "uqbar: cannot start %s: %s\n", spec, em.text);
        else
            free(b);
    }
    for (int i = 0; i < ninstalls; i++) cmd_install(&t, installs[i], yes);
    /* What runs now is durable before we say so (the restored processes'
     * "running" records, --start): a kill -9 after "is up" loses nothing. */
    if (uqi_node_sync(node, &em)) printf("warning: %s: a kill now may lose processes\n", em.text);
    printf("uqbar node %s is up (home %s). Type help for commands; end of input or exit shuts it down.\n", name, home);
    fflush(stdout);
    char line[65536];
    for (;;) {
        if (t.tty) {
            printf("uqbar> ");
            fflush(stdout);
        }
        /* Wait for input, but notice a Shutdown sent by a process. */
        struct pollfd pf = {0, POLLIN, 0};
        int pr;
        while ((pr = poll(&pf, 1, 200)) == 0) {
            if (uqi_node_wait_shutdown(node, 0)) goto shutdown;
            uqi_msg *late;
            while ((late = uqi_port_receive(t.port, 0))) { /* answers that arrived after their wait */
                print_msg(late);
                uqi_msg_free(late);
            }
        }
        if (pr < 0 || !fgets(line, sizeof line, stdin)) break;
        if (!handle_line(&t, line)) break;
    }
shutdown:
    printf("shutting down\n");
    fflush(stdout);
    rc = 0;
fail: /* also the way out when all went well: one teardown, in this order */
    uqi_backup_stop(t.backup);
    term_net = NULL;
    uq_boot_net_stop(node, net);
    uqn_identity_wipe(&ident);
    uqi_fsmod_stop(fsmod);
    if (node) uqi_node_stop(node);
    uqs_files_close(files);
    uqs_close(store); /* after the node: pending writes are finished first */
    return rc;
}
