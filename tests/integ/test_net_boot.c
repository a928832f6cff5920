/* Three real nodes (uqbar boot, one OS process each) on loopback talking
 * through their terminals: a.local, b.local, c.local each run a public echo
 * with the network capability. c.local is killed (-9) and restarted. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"
#include "util/util.h"

typedef struct bnode {
    pid_t pid;
    int in, out;
    char name[32], home[1200], listen[64];
    char buf[65536];
    size_t have;
} bnode;

static int any_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

static void bn_boot(bnode *b, const char *manifest)
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
        const char *argv[20] = {exe, "boot", "--home", b->home, "--name", b->name, "--listen", b->listen,
                                "--dev-unencrypted-key", "--net-timeout", "2000", "--workers", "1"};
        int k = 13;
        if (manifest) argv[k++] = "--install", argv[k++] = manifest, argv[k++] = "--yes";
        argv[k] = NULL;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    b->pid = pid;
    b->in = pin[1];
    b->out = pout[0];
    b->have = 0;
}

/* Read the node's output until a line holds want (true) or ms pass. */
static bool bn_expect(bnode *b, const char *want, int ms)
{
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        b->buf[b->have] = '\0';
        char *hit = strstr(b->buf, want);
        if (hit) {
            char *nl = strchr(hit, '\n');
            size_t cut = nl ? (size_t)(nl + 1 - b->buf) : b->have;
            memmove(b->buf, b->buf + cut, b->have - cut + 1);
            b->have -= cut;
            return true;
        }
        if (uqi_now_ns() >= end) return false;
        struct pollfd pf = {b->out, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        if (b->have > sizeof b->buf - 4096) { /* keep the tail */
            memmove(b->buf, b->buf + b->have - 2048, 2048);
            b->have = 2048;
        }
        ssize_t n = read(b->out, b->buf + b->have, sizeof b->buf - 1 - b->have);
        if (n <= 0) return false;
        if (getenv("UQ_NET_DEBUG")) fprintf(stderr, "[%s] %.*s", b->name, (int)n, b->buf + b->have);
        b->have += (size_t)n;
    }
}

static void bn_say(bnode *b, const char *line)
{
    ASSERT(write(b->in, line, strlen(line)) == (ssize_t)strlen(line));
}

static void bn_kill(bnode *b, int sig)
{
    kill(b->pid, sig);
    waitpid(b->pid, NULL, 0);
    close(b->in);
    close(b->out);
}

TEST_T(net_boot_three_nodes_kill_and_restart, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300], shared[1024], text[2048];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(manifest, sizeof manifest, "%s/echo.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":[{\"process_name\":\"echo\",\"process_wasm_path\":\"%s/apps/echo.wasm\","
             "\"on_exit\":\"None\",\"public\":true,\"request_networking\":true}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    bnode nodes[3];
    const char *names[3] = {"a.local", "b.local", "c.local"};
    for (int i = 0; i < 3; i++) {
        bnode *b = &nodes[i];
        memset(b, 0, sizeof *b);
        snprintf(b->name, sizeof b->name, "%s", names[i]);
        snprintf(b->home, sizeof b->home, "%s/%s", tb_tmpdir(), names[i]);
        snprintf(b->listen, sizeof b->listen, "127.0.0.1:%d", any_port());
        bn_boot(b, manifest);
    }
    for (int i = 0; i < 3; i++)
        if (!bn_expect(&nodes[i], "is up", 60000)) test_fail(__FILE__, __LINE__, "%s did not come up: %s", names[i], nodes[i].buf);
    /* the directory: every node's record, in every node's peers file (reread when it changes) */
    char dir[8192] = "";
    for (int i = 0; i < 3; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/record", nodes[i].home);
        uint8_t *rec;
        size_t len;
        ASSERT_EQ(uqi_read_file(path, &rec, &len, NULL), UQ_OK);
        strncat(dir, (char *)rec, len);
        free(rec);
    }
    for (int i = 0; i < 3; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/peers", nodes[i].home);
        ASSERT_EQ(uqi_write_file_atomic(path, dir, strlen(dir), NULL), UQ_OK);
    }
    uint64_t t0 = uqi_now_ns();
    bn_say(&nodes[0], "m b.local@echo {\"from\":\"a\"}\n");
    ASSERT(bn_expect(&nodes[0], "response from b.local@echo: {\"from\":\"a\"}", 10000));
    test_log("first remote round trip (with link setup) from a terminal: %.1f ms", (double)(uqi_now_ns() - t0) / 1e6);
    bn_say(&nodes[0], "m c.local@echo {\"from\":\"a\"}\n");
    ASSERT(bn_expect(&nodes[0], "response from c.local@echo: {\"from\":\"a\"}", 10000));
    bn_say(&nodes[1], "m c.local@echo {\"from\":\"b\"}\n");
    ASSERT(bn_expect(&nodes[1], "response from c.local@echo: {\"from\":\"b\"}", 10000));
    bn_say(&nodes[2], "m a.local@echo {\"from\":\"c\"}\n");
    ASSERT(bn_expect(&nodes[2], "response from a.local@echo: {\"from\":\"c\"}", 10000));
    /* the terminal of b is not public: a cannot reach it */
    bn_say(&nodes[0], "m b.local@terminal {}\n");
    ASSERT(bn_expect(&nodes[0], "error Refused from b.local@terminal", 10000));
    /* an unknown node */
    bn_say(&nodes[0], "m nobody.local@echo {}\n");
    ASSERT(bn_expect(&nodes[0], "error Offline from nobody.local@echo", 10000));
    /* c killed: Offline */
    bn_kill(&nodes[2], SIGKILL);
    bn_say(&nodes[0], "m c.local@echo {\"after\":\"kill\"}\n");
    ASSERT(bn_expect(&nodes[0], "error Offline from c.local@echo", 10000));
    /* c restarted (its echo is restored from its store): it comes back */
    bn_boot(&nodes[2], NULL);
    /* said before "is up" (a process that cannot come back is named there too) */
    if (!bn_expect(&nodes[2], "restored 1 process", 30000))
        test_fail(__FILE__, __LINE__, "c.local did not restore its echo; it said:\n%s", nodes[2].buf);
    ASSERT(bn_expect(&nodes[2], "is up", 60000));
    bool back = false;
    for (int tries = 0; tries < 40 && !back; tries++) {
        bn_say(&nodes[0], "m c.local@echo {\"after\":\"restart\"}\n");
        back = bn_expect(&nodes[0], "response from c.local@echo: {\"after\":\"restart\"}", 500);
    }
    ASSERT(back);
    bn_say(&nodes[1], "m c.local@echo {\"b\":\"again\"}\n");
    ASSERT(bn_expect(&nodes[1], "response from c.local@echo: {\"b\":\"again\"}", 10000));
    for (int i = 0; i < 3; i++) {
        bn_say(&nodes[i], "exit\n");
        ASSERT(bn_expect(&nodes[i], "shutting down", 10000));
        bn_kill(&nodes[i], SIGTERM);
    }
}

/* The example app: a chat between two nodes; the history survives a restart
 * of the node, and a message to a node that is down is recorded as failed. */
TEST_T(net_boot_chat_two_nodes_history_persisted, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300], shared[1024], text[2048];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(manifest, sizeof manifest, "%s/chat.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"chat\",\"processes\":[{\"process_name\":\"chat\",\"process_wasm_path\":\"%s/apps/chat.wasm\","
             "\"on_exit\":\"Restart\",\"public\":true,\"request_networking\":true}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    bnode nodes[2];
    const char *names[2] = {"alice.chat", "bob.chat"};
    char dir[4096] = "";
    for (int i = 0; i < 2; i++) {
        bnode *b = &nodes[i];
        memset(b, 0, sizeof *b);
        snprintf(b->name, sizeof b->name, "%s", names[i]);
        snprintf(b->home, sizeof b->home, "%s/%s", tb_tmpdir(), names[i]);
        snprintf(b->listen, sizeof b->listen, "127.0.0.1:%d", any_port());
        bn_boot(b, manifest);
        if (!bn_expect(b, "is up", 60000)) test_fail(__FILE__, __LINE__, "%s did not come up: %s", names[i], b->buf);
        char path[1300];
        snprintf(path, sizeof path, "%s/record", b->home);
        uint8_t *rec;
        size_t len;
        ASSERT_EQ(uqi_read_file(path, &rec, &len, NULL), UQ_OK);
        strncat(dir, (char *)rec, len);
        free(rec);
    }
    for (int i = 0; i < 2; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/peers", nodes[i].home);
        ASSERT_EQ(uqi_write_file_atomic(path, dir, strlen(dir), NULL), UQ_OK);
    }
    bn_say(&nodes[0], "m chat {\"send\":{\"to\":\"bob.chat\",\"text\":\"hello bob\"}}\n");
    ASSERT(bn_expect(&nodes[0], "\"rc\":0}", 10000));
    bool arrived = false;
    for (int i = 0; i < 50 && !arrived; i++) {
        bn_say(&nodes[1], "m chat {\"history\":1}\n");
        arrived = bn_expect(&nodes[1], "{\"history\":[\"alice.chat: hello bob\"]}", 200);
    }
    ASSERT(arrived);
    bn_say(&nodes[1], "m chat {\"send\":{\"to\":\"alice.chat\",\"text\":\"hi alice\"}}\n");
    ASSERT(bn_expect(&nodes[1], "\"rc\":0}", 10000));
    usleep(300000);
    bn_say(&nodes[1], "m chat {\"history\":1}\n");
    ASSERT(bn_expect(&nodes[1], "{\"history\":[\"alice.chat: hello bob\",\"me -> alice.chat: hi alice\"]}", 10000));
    /* bob's node restarts: the history is still there */
    bn_say(&nodes[1], "exit\n");
    ASSERT(bn_expect(&nodes[1], "shutting down", 10000));
    bn_kill(&nodes[1], SIGTERM);
    /* meanwhile alice writes to a node that is down: recorded as failed */
    bn_say(&nodes[0], "m chat {\"send\":{\"to\":\"bob.chat\",\"text\":\"are you there\"}}\n");
    ASSERT(bn_expect(&nodes[0], "\"rc\":0}", 10000));
    usleep(500000);
    bn_say(&nodes[0], "m chat {\"history\":1}\n");
    ASSERT(bn_expect(&nodes[0], "\"failed (Offline) me -> bob.chat: are you there\"", 10000));
    bn_boot(&nodes[1], NULL);
    ASSERT(bn_expect(&nodes[1], "is up", 60000));
    bn_say(&nodes[1], "m chat {\"history\":1}\n");
    ASSERT(bn_expect(&nodes[1], "{\"history\":[\"alice.chat: hello bob\",\"me -> alice.chat: hi alice\"]}", 10000));
    for (int i = 0; i < 2; i++) {
        bn_say(&nodes[i], "exit\n");
        ASSERT(bn_expect(&nodes[i], "shutting down", 10000));
        bn_kill(&nodes[i], SIGTERM);
    }
}

/* Look-ups (PROTOCOL.md §8) with three real nodes: a.local knows only
 * b.local, b.local knows both, c.local knows only b.local. A process on a
 * (its echo, asked from the terminal) reaches c's echo and gets its
 * response: a asks b for c's record, c asks b for a's when a's link
 * arrives. An unknown name fails Offline and the terminal says why. What
 * a learned is in <home>/learned and serves after a restart with b gone. */
static void bn_peers(bnode *b, bnode *const *knows, int n)
{
    char dir[8192] = "", path[1300];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/record", knows[i]->home);
        uint8_t *rec;
        size_t len;
        ASSERT_EQ(uqi_read_file(path, &rec, &len, NULL), UQ_OK);
        strncat(dir, (char *)rec, len);
        free(rec);
    }
    snprintf(path, sizeof path, "%s/peers", b->home);
    ASSERT_EQ(uqi_write_file_atomic(path, dir, strlen(dir), NULL), UQ_OK);
}

TEST_T(net_boot_lookup_a_reaches_c_through_b, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300], shared[1024], text[2048];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(manifest, sizeof manifest, "%s/echo.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":[{\"process_name\":\"echo\",\"process_wasm_path\":\"%s/apps/echo.wasm\","
             "\"on_exit\":\"None\",\"public\":true,\"request_networking\":true}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    bnode nodes[3];
    const char *names[3] = {"a.local", "b.local", "c.local"};
    for (int i = 0; i < 3; i++) {
        bnode *b = &nodes[i];
        memset(b, 0, sizeof *b);
        snprintf(b->name, sizeof b->name, "%s", names[i]);
        snprintf(b->home, sizeof b->home, "%s/%s", tb_tmpdir(), names[i]);
        snprintf(b->listen, sizeof b->listen, "127.0.0.1:%d", any_port());
        bn_boot(b, manifest);
    }
    for (int i = 0; i < 3; i++)
        if (!bn_expect(&nodes[i], "is up", 60000)) test_fail(__FILE__, __LINE__, "%s did not come up: %s", names[i], nodes[i].buf);
    bnode *a = &nodes[0], *b = &nodes[1], *c = &nodes[2];
    bn_peers(a, (bnode *[]){b}, 1);
    bn_peers(b, (bnode *[]){a, b, c}, 3);
    bn_peers(c, (bnode *[]){b}, 1);
    uint64_t t0 = uqi_now_ns();
    bn_say(a, "m c.local@echo {\"from\":\"a\",\"via\":\"lookup\"}\n");
    ASSERT(bn_expect(a, "response from c.local@echo: {\"from\":\"a\",\"via\":\"lookup\"}", 10000));
    test_log("a -> c through a look-up at b (terminal round trip, three link set-ups): %.1f ms",
             (double)(uqi_now_ns() - t0) / 1e6);
    /* c answers a's own echo too: it learned a */
    bn_say(c, "m a.local@echo {\"from\":\"c\"}\n");
    ASSERT(bn_expect(c, "response from a.local@echo: {\"from\":\"c\"}", 10000));
    /* an unknown name: Offline, and why */
    bn_say(a, "m nobody.local@echo {}\n");
    ASSERT(bn_expect(a, "error Offline from nobody.local@echo", 10000));
    ASSERT(bn_expect(a, "why: nobody.local is unknown: not in the directory, and no peer knew it", 2000));
    char path[1300];
    snprintf(path, sizeof path, "%s/learned", a->home);
    uint8_t *lf;
    size_t ln;
    ASSERT_EQ(uqi_read_file(path, &lf, &ln, NULL), UQ_OK);
    char *learned = strndup((char *)lf, ln);
    free(lf);
    ASSERT_STR_HAS(learned, "# c.local key ");
    ASSERT_STR_HAS(learned, "learned-from b.local");
    free(learned);
    snprintf(path, sizeof path, "%s/peers", a->home);
    ASSERT_EQ(uqi_read_file(path, &lf, &ln, NULL), UQ_OK);
    ASSERT(memmem(lf, ln, "c.local", 7) == NULL); /* the operator's file is a's alone */
    free(lf);
    /* b gone, a restarted: what it learned still takes it to c */
    bn_say(b, "exit\n");
    ASSERT(bn_expect(b, "shutting down", 10000));
    bn_kill(b, SIGTERM);
    bn_say(a, "exit\n");
    ASSERT(bn_expect(a, "shutting down", 10000));
    bn_kill(a, SIGTERM);
    bn_boot(a, NULL);
    ASSERT(bn_expect(a, "is up", 60000));
    bn_say(a, "m c.local@echo {\"after\":\"restart\"}\n");
    ASSERT(bn_expect(a, "response from c.local@echo: {\"after\":\"restart\"}", 10000));
    for (int i = 0; i < 3; i += 2) {
        bn_say(&nodes[i], "exit\n");
        ASSERT(bn_expect(&nodes[i], "shutting down", 10000));
        bn_kill(&nodes[i], SIGTERM);
    }
}
