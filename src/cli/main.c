/* The uqbar command: `uqbar run FILE.wasm [ARGS...]` runs one WASI command
 * module as a process; `uqbar help` explains. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/module.h"
#include "engine/proc.h"
#include "engine/rt.h"
#include "uqbar/uqbar.h"

#define EXIT_USAGE 2
#define EXIT_TRAP 121      /* the guest trapped */
#define EXIT_BADMODULE 122 /* not a module we can run: invalid, refused import, compile failure */
#define EXIT_FAILED 123    /* could not start: a resource limit, host trouble */

static void usage(FILE *f)
{
    fprintf(f,
            "uqbar %s: a microkernel for peer-to-peer apps\n"
            "\n"
            "usage:\n"
            "  uqbar boot --home DIR [--name NAME] [--start ID=FILE.wasm]... [--install MANIFEST.json]... [--yes]\n"
            "                                             boot a node with a terminal on standard input;\n"
            "                                             --install shows what a package asks for and asks\n"
            "                                             you to approve (--yes: approve, for scripts);\n"
            "                                             compiled code goes to DIR/cache, or $UQBAR_CACHE\n"
            "  uqbar restore --home DIR --backup-peers A,B [--peers FILE] [--password-file FILE]\n"
            "                                             bring a node back on a fresh machine: DIR holds only\n"
            "                                             its identity.key; its process table and state come\n"
            "                                             from its backup peers (then uqbar boot it)\n"
            "  uqbar run [options] FILE.wasm [ARGS...]   run a WASI command module as one process\n"
            "  uqbar help                                 this text\n"
            "  uqbar version                              print the version\n"
            "\n"
            "boot options (networking: docs/PROTOCOL.md; README, \"Two nodes that talk\"):\n"
            "  --listen HOST:PORT       talk to other nodes; this node's identity is DIR/identity.key\n"
            "  --peers FILE             the directory of peers (default DIR/peers, one record per line)\n"
            "  --password-file FILE     the password of the identity key (or $UQBAR_PASSWORD)\n"
            "  --dev-unencrypted-key    a development node: the identity key is not encrypted\n"
            "  --net-timeout MS         Timeout for a message not sent in time (default 5000)\n"
            "  --net-keepalive MS, --net-idle MS   link keepalive and idle limits\n"
            "  --backup-peers A,B       send this node's process table and state, encrypted, to these nodes\n"
            "                           (docs/PERSISTENCE.md, \"Backups\"); every networked node keeps\n"
            "                           others' backups, --backup-quota MB each (default 64)\n"
            "  --restore                first fetch the store from the backup peers (a fresh home)\n"
            "  --lookup-timeout MS      how long peers are asked about an unknown node (default 3000)\n"
            "  --no-lookup              neither ask peers about unknown nodes nor answer them\n"
            "  --workers N              scheduler threads (default: one per CPU)\n"
            "  -v                       log what the kernel refuses and why\n"
            "\n"
            "run options:\n"
            "  --cache DIR        where compiled modules are kept (default $UQBAR_CACHE,\n"
            "                     else $XDG_CACHE_HOME/uqbar, else ~/.cache/uqbar)\n"
            "  --max-memory SIZE  cap on the module's linear memory, e.g. 64M, 1G (default 1G)\n"
            "  --env NAME=VALUE   pass an environment variable (none are passed otherwise)\n"
            "  --workers N        scheduler threads (default 1 for run)\n"
            "  -v, --verbose      say what the engine does (cache hits, compile times)\n"
            "\n"
            "exit status: the module's own exit code; %d if it trapped; %d if the file is\n"
            "not a module uqbar can run; %d if it could not start; %d for a usage error.\n",
            UQ_VERSION, EXIT_TRAP, EXIT_BADMODULE, EXIT_FAILED, EXIT_USAGE);
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return false;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1ull << 30, end++;
    if (*end == 'i' && end[1] == 'B') end += 2;
    else if (*end == 'B') end++;
    if (*end) return false;
    *out = v * mul;
    return *out > 0;
}

static int cmd_run(int argc, char **argv)
{
    const char *cache = NULL;
    uint64_t max_mem = 1ull << 30;
    int workers = 1;
    char *envv[256];
    int envc = 0;
    int i = 0;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--cache") == 0 && i + 1 < argc) cache = argv[++i];
        else if (strcmp(a, "--max-memory") == 0 && i + 1 < argc) {
            if (!parse_size(argv[++i], &max_mem)) {
                fprintf(stderr, "uqbar: --max-memory: bad size '%s' (try 64M or 1G)\n", argv[i]);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--env") == 0 && i + 1 < argc) {
            if (!strchr(argv[i + 1], '=') || envc == 255) {
                fprintf(stderr, "uqbar: --env wants NAME=VALUE\n");
                return EXIT_USAGE;
            }
            envv[envc++] = argv[++i];
        } else if (strcmp(a, "--workers") == 0 && i + 1 < argc) {
            workers = atoi(argv[++i]);
            if (workers < 1 || workers > 256) {
                fprintf(stderr, "uqbar: --workers wants a number from 1 to 256\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) uqi_log_level = UQ_LOG_INFO;
        else if (strcmp(a, "--") == 0) { i++; break; }
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "uqbar run: unknown option '%s' (see uqbar help)\n", a);
            return EXIT_USAGE;
        } else break;
    }
    envv[envc] = NULL;
    if (i >= argc) {
        fprintf(stderr, "uqbar run: which .wasm file? (usage: uqbar run FILE.wasm [ARGS...])\n");
        return EXIT_USAGE;
    }
    const char *file = argv[i];
    uq_errmsg em = {{0}};
    uint8_t *wasm;
    size_t len;
    if (uqi_read_file(file, &wasm, &len, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        return EXIT_BADMODULE;
    }
    char *cdir = cache ? uqi_xstrdup(cache) : uqi_default_cache_dir();
    uqi_engine eng;
    uq_err err = uqi_engine_init(&eng, cdir, &em);
    free(cdir);
    if (err) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        free(wasm);
        return EXIT_FAILED;
    }
    uqi_module *mod;
    err = uqi_engine_load(&eng, wasm, len, file, &mod, &em);
    free(wasm);
    if (err) {
        fprintf(stderr, "uqbar: %s: %s\n", file, em.text);
        uqi_engine_fini(&eng);
        return err == UQ_ECOMPILE || err == UQ_EBADMODULE || err == UQ_EIMPORT || err == UQ_EEXPORT ? EXIT_BADMODULE
                                                                                                 : EXIT_FAILED;
    }
    uqi_sched_config sc = {.workers = workers, .slice_ns = 0};
    if (uqi_sched_start(&sc)) {
        fprintf(stderr, "uqbar: cannot start the scheduler\n");
        return EXIT_FAILED;
    }
    uqi_proc *p = uqi_proc_new(mod, argv + i, envv);
    p->mem_cap_bytes = max_mem;
    p->stdin_ok = true;
    uint64_t t0 = uqi_now_ns();
    if (uqi_proc_start(p, 0)) {
        fprintf(stderr, "uqbar: cannot start the process\n");
        return EXIT_FAILED;
    }
    uqi_proc_wait(p);
    uint64_t t1 = uqi_now_ns();
    fflush(stdout);
    const char *tm = getenv("UQBAR_TIME");
    if (tm && *tm == '1') fprintf(stderr, "run_ms %.3f\n", (double)(t1 - t0) / 1e6);
    int rc;
    char what[300];
    uqi_proc_outcome(p, what, sizeof what);
    switch (p->status) {
    case UQI_PROC_EXITED: rc = p->exit_code & 0xff; break;
    case UQI_PROC_TRAPPED:
        fprintf(stderr, "uqbar: %s: %s\n", file, what);
        rc = EXIT_TRAP;
        break;
    default:
        fprintf(stderr, "uqbar: %s: %s\n", file, what);
        rc = EXIT_FAILED;
        break;
    }
    uqi_sched_stop();
    uqi_proc_free(p);
    uqi_engine_fini(&eng);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "boot") == 0) return uq_cmd_boot(argc - 2, argv + 2);
    if (strcmp(cmd, "restore") == 0) return uq_cmd_restore(argc - 2, argv + 2);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("uqbar %s\n", UQ_VERSION);
        return 0;
    }
    fprintf(stderr, "uqbar: unknown command '%s' (try: uqbar help)\n", cmd);
    return EXIT_USAGE;
}
