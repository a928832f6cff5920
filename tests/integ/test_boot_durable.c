/* A node killed with SIGKILL right after it said a process is installed and
 * running brings that process back (the process table is written
 * asynchronously; the installer waits until it is durable before it says
 * so). The store's commits are made slow with UQBAR_TEST_STORE_DELAY_MS, as
 * a loaded disk makes them, so the kill always lands while the records
 * would still be queued if nobody waited for them. And a stored process
 * that cannot come back is named, with the reason, on the terminal. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"
#include "store/store.h"
#include "util/util.h"

#define SLOW_COMMIT_MS "400"

typedef struct dnode {
    pid_t pid;
    int in, out;
    char buf[65536], seen[65536]; /* unread output; everything read (for failures) */
    size_t have, nseen;
} dnode;

/* uqbar boot --home home --name d.local [--install manifest --yes], its
 * commits delayed by delay_ms (NULL: not). */
static void dn_boot(dnode *d, const char *home, const char *manifest, const char *delay_ms)
{
    int pin[2], pout[2];
    ASSERT(pipe(pin) == 0 && pipe(pout) == 0);
    char exe[1100];
    snprintf(exe, sizeof exe, "%s/uqbar", tb_build());
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(pout[1], 2);
        close(pin[1]);
        close(pout[0]);
        if (delay_ms) setenv("UQBAR_TEST_STORE_DELAY_MS", delay_ms, 1);
        else unsetenv("UQBAR_TEST_STORE_DELAY_MS");
        const char *argv[12] = {exe, "boot", "--home", home, "--name", "d.local", "--workers", "1"};
        int k = 8;
        if (manifest) argv[k++] = "--install", argv[k++] = manifest, argv[k++] = "--yes";
        argv[k] = NULL;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    memset(d, 0, sizeof *d);
    d->pid = pid;
    d->in = pin[1];
    d->out = pout[0];
}

/* Read until a line holds want (true, consumed through that line) or ms pass. */
static bool dn_expect(dnode *d, const char *want, int ms)
{
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        d->buf[d->have] = '\0';
        char *hit = strstr(d->buf, want);
        if (hit) {
            char *nl = strchr(hit, '\n');
            size_t cut = nl ? (size_t)(nl + 1 - d->buf) : d->have;
            memmove(d->buf, d->buf + cut, d->have - cut + 1);
            d->have -= cut;
            return true;
        }
        if (uqi_now_ns() >= end) return false;
        struct pollfd pf = {d->out, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        if (d->have > sizeof d->buf - 4096) {
            memmove(d->buf, d->buf + d->have - 2048, 2048);
            d->have = 2048;
        }
        ssize_t n = read(d->out, d->buf + d->have, sizeof d->buf - 1 - d->have);
        if (n <= 0) return false;
        size_t room = sizeof d->seen - 1 - d->nseen, c = (size_t)n < room ? (size_t)n : room;
        memcpy(d->seen + d->nseen, d->buf + d->have, c);
        d->nseen += c;
        d->seen[d->nseen] = '\0';
        d->have += (size_t)n;
    }
}

#define EXPECT(d, want, ms)                                                                        \
    do {                                                                                           \
        if (!dn_expect((d), (want), (ms)))                                                         \
            test_fail(__FILE__, __LINE__, "no \"%s\" from the node; its output:\n%s", (want), (d)->seen); \
    } while (0)

static void dn_say(dnode *d, const char *line)
{
    ASSERT(write(d->in, line, strlen(line)) == (ssize_t)strlen(line));
}

static void dn_kill9(dnode *d)
{
    ASSERT(kill(d->pid, SIGKILL) == 0);
    int st = 0;
    ASSERT(waitpid(d->pid, &st, 0) == d->pid);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL); /* it was alive until the kill */
    close(d->in);
    close(d->out);
}

static void dn_exit(dnode *d)
{
    dn_say(d, "exit\n");
    EXPECT(d, "shutting down", 20000);
    waitpid(d->pid, NULL, 0);
    close(d->in);
    close(d->out);
}

/* After a reboot: "is up", having said it restored one process. */
#define EXPECT_RESTORED_ONE(d)                                                                     \
    do {                                                                                           \
        EXPECT((d), "is up", 60000);                                                               \
        if (!strstr((d)->seen, "restored 1 process"))                                              \
            test_fail(__FILE__, __LINE__, "the process did not come back; the node said:\n%s", (d)->seen); \
    } while (0)

static void write_manifest(char *path, size_t cap, const char *shared)
{
    char text[2048];
    snprintf(path, cap, "%s/echo.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":[{\"process_name\":\"echo\",\"process_wasm_path\":\"%s/apps/echo.wasm\","
             "\"on_exit\":\"None\",\"public\":true,\"request_networking\":true}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(path, text, strlen(text), NULL), UQ_OK);
}

/* --install, "is up", kill -9 at once; the next boot brings echo back
 * (three rounds, each on a new home). */
TEST_T(boot_kill9_right_after_install_keeps_the_process, 240)
{
    signal(SIGPIPE, SIG_IGN);
    char shared[1024], manifest[1300], home[1300], line[1600];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    write_manifest(manifest, sizeof manifest, shared);
    dnode d;
    for (int round = 0; round < 3; round++) {
        snprintf(home, sizeof home, "%s/round%d", tb_tmpdir(), round);
        dn_boot(&d, home, manifest, SLOW_COMMIT_MS);
        EXPECT(&d, "installed and running", 120000);
        EXPECT(&d, "is up", 20000);
        dn_kill9(&d);
        dn_boot(&d, home, NULL, NULL);
        EXPECT_RESTORED_ONE(&d);
        snprintf(line, sizeof line, "m echo {\"round\":%d}\n", round);
        dn_say(&d, line);
        snprintf(line, sizeof line, "response from d.local@echo: {\"round\":%d}", round);
        EXPECT(&d, line, 10000);
        dn_exit(&d);
    }
}

/* The kernel API's way (the terminal's start: InitializeProcess, then
 * RunProcess), killed as soon as RunProcess is answered. */
TEST_T(boot_kill9_right_after_run_process_keeps_the_process, 180)
{
    signal(SIGPIPE, SIG_IGN);
    char shared[1024], home[1300], line[1600];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    dnode d;
    snprintf(home, sizeof home, "%s/api", tb_tmpdir());
    dn_boot(&d, home, NULL, SLOW_COMMIT_MS);
    EXPECT(&d, "is up", 60000);
    snprintf(line, sizeof line, "start echo2 %s/apps/echo.wasm --public\n", shared);
    dn_say(&d, line);
    EXPECT(&d, "StartedProcess", 120000);
    dn_kill9(&d);
    dn_boot(&d, home, NULL, NULL);
    EXPECT_RESTORED_ONE(&d);
    dn_say(&d, "m echo2 {\"api\":true}\n");
    EXPECT(&d, "response from d.local@echo2: {\"api\":true}", 10000);
    dn_exit(&d);
}

/* Records that cannot come back are named on the terminal with the reason,
 * and kept; the others come back. */
TEST_T(boot_says_which_process_was_not_restored_and_why, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char shared[1024], manifest[1300], home[1300];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    write_manifest(manifest, sizeof manifest, shared);
    snprintf(home, sizeof home, "%s/node", tb_tmpdir());
    dnode d;
    dn_boot(&d, home, manifest, NULL);
    EXPECT(&d, "installed and running", 120000);
    EXPECT(&d, "is up", 20000);
    dn_exit(&d);
    /* two bad records: a module that is not stored, a record of another version */
    uqs_store *s;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_open(home, NULL, &s, &em), UQ_OK);
    const char *ghost = "{\"v\":1,\"id\":\"ghost\",\"wasm\":\"w/00\",\"public\":false,\"running\":true,"
                        "\"on_exit\":\"None\",\"caps\":[]}";
    const char *future = "{\"v\":99,\"id\":\"future\"}";
    uqs_op ops[2] = {{.db = UQS_DB_PROCS, .key = "p/ghost", .klen = 7, .val = ghost, .vlen = strlen(ghost)},
                     {.db = UQS_DB_PROCS, .key = "p/future", .klen = 8, .val = future, .vlen = strlen(future)}};
    ASSERT_EQ(uqs_write(s, ops, 2, &em), UQ_OK);
    uqs_close(s);
    dn_boot(&d, home, NULL, NULL);
    EXPECT(&d, "process future was not restored as it was: its record is not one this version reads", 60000);
    EXPECT(&d, "process ghost was not restored as it was:", 60000);
    EXPECT(&d, "restored 1 process (some could not come back: see above)", 60000);
    EXPECT(&d, "is up", 20000);
    dn_say(&d, "m echo {\"still\":\"here\"}\n");
    EXPECT(&d, "response from d.local@echo: {\"still\":\"here\"}", 10000);
    dn_exit(&d);
    /* kept: the next boot says so again */
    dn_boot(&d, home, NULL, NULL);
    EXPECT(&d, "process ghost was not restored as it was:", 60000);
    EXPECT(&d, "is up", 20000);
    dn_exit(&d);
}
