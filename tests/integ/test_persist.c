/* Persistence in the kernel: the process table, process state, and a node
 * that comes back with its processes (issue 5; ../shared/seeds/processes.md,
 * "Process State"). A real store in the test's directory, real wasm. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "knode.h"
#include "sdk_abi.h"
#include "store/store.h"
#include "tboot.h"

typedef struct pnode {
    uqs_store *store;
    uqi_node *node;
    uqi_kproc *port;
} pnode;

static pnode pboot(const char *home)
{
    pnode p;
    uq_errmsg em = {{0}};
    if (uqs_open(home, NULL, &p.store, &em)) test_fail(__FILE__, __LINE__, "store: %s", em.text);
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    uqi_node_config c = {.name = "test.node", .cache_dir = cache, .workers = 2, .store = p.store,
                         .restart_base_ms = 50};
    if (uqi_node_start(&c, &p.node, &em)) test_fail(__FILE__, __LINE__, "node: %s", em.text);
    uqi_node_engine(p.node)->progress = false;
    ASSERT_EQ(uqi_node_port(p.node, "tester", &p.port, NULL), UQ_OK);
    return p;
}

static void pstop(pnode *p)
{
    uqi_node_stop(p->node);
    uqs_close(p->store);
}

static char *ask(pnode *p, const char *target, const char *body)
{
    uint64_t id = kn_request(p->port, target, body, 30, NULL, NULL);
    for (;;) {
        uqi_msg *r = uqi_port_receive(p->port, 30000);
        if (!r) test_fail(__FILE__, __LINE__, "no answer from %s", target);
        if (r->id != id) {
            uqi_msg_free(r);
            continue;
        }
        char *s = r->kind == UQI_MSG_RESPONSE ? kn_str(r->body, r->body_len) : uqi_xstrdup("error");
        uqi_msg_free(r);
        return s;
    }
}

static void spawn_app(pnode *p, const char *app, const char *id)
{
    kn_spawn(p->node, app, id);
}

/* "When the process is started again, the kernel hands the persisted state
 * over in a special first message." -- a crash and a restart (on_exit
 * Restart) bring the count back. */
TEST(persist_process_restarts_with_its_state)
{
    char home[1200];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    pnode p = pboot(home);
    spawn_app(&p, "tally", "tally");
    ASSERT_EQ(uqi_node_set_on_exit(p.node, "tally", UQI_ON_EXIT_RESTART, NULL, 0, NULL), UQ_OK);
    char *r = ask(&p, "tally", "{\"add\":5}");
    ASSERT(strcmp(r, "{\"count\":5,\"rc\":0}") == 0); /* rc 0: durable */
    free(r);
    r = ask(&p, "tally", "{\"add\":7}");
    ASSERT(strcmp(r, "{\"count\":12,\"rc\":0}") == 0);
    free(r);
    kn_request(p.port, "tally", "{\"crash\":1}", 0, NULL, NULL);
    r = ask(&p, "tally", "{\"get\":1}"); /* waits in its mailbox for the restart */
    ASSERT_STR_HAS(r, "\"count\":12");
    free(r);
    pstop(&p);
}

/* "Booting a node again with the same home restarts the processes that
 * were running before, with their capabilities and state, without
 * recompiling their code." -- ten of them. */
TEST(persist_reboot_brings_back_ten_processes)
{
    char home[1200], id[32];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    pnode p = pboot(home);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "tally-%d", i);
        spawn_app(&p, "tally", id);
        char add[32];
        snprintf(add, sizeof add, "{\"add\":%d}", 100 + i);
        free(ask(&p, id, add));
    }
    spawn_app(&p, "middleware", "mw");
    spawn_app(&p, "echo", "echo");
    ASSERT_EQ(uqi_node_grant_messaging(p.node, "mw", "echo", NULL), UQ_OK);
    /* installed but never run: comes back installed, not running */
    uqi_msg *r0 = kn_kcall(p.port, "{\"InitializeProcess\":{\"id\":\"idle\",\"public\":false}}", kn_app_payload("echo"));
    ASSERT(kn_body_is(r0, "\"InitializedProcess\""));
    uqi_msg_free(r0);
    /* killed: does not come back, nor its state */
    spawn_app(&p, "tally", "gone");
    free(ask(&p, "gone", "{\"add\":1}"));
    ASSERT_EQ(uqi_node_kill(p.node, "gone", NULL), UQ_OK);
    pstop(&p);

    p = pboot(home);
    uint32_t restored, failed;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_node_restore(p.node, &restored, &failed, &em), UQ_OK);
    ASSERT_EQ(restored, 13); /* 10 tallies, mw, echo, idle */
    ASSERT_EQ(failed, 0);
    ASSERT_EQ(uqi_node_engine(p.node)->compiles, 0); /* from the compile cache */
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "tally-%d", i);
        char *r = ask(&p, id, "{\"get\":1}");
        char want[64];
        snprintf(want, sizeof want, "\"count\":%d", 100 + i);
        ASSERT_STR_HAS(r, want);
        free(r);
    }
    char *r = ask(&p, "mw", "{\"through\":\"mw\"}"); /* mw's capability came back with it */
    ASSERT_STR_HAS(r, "{\"through\":\"mw\"}");
    free(r);
    ASSERT(!uqi_node_has(p.node, "gone"));
    char *dj = uqi_node_debug_json(p.node, "idle");
    ASSERT_STR_HAS(dj, "\"running\":false");
    free(dj);
    pstop(&p);
}

/* "A process persists data when it chooses": a node without a home has
 * nowhere to keep it, and says so. */
TEST(persist_no_store_says_so)
{
    uqi_node *n = kn_boot(0);
    kn_spawn(n, "tally", "tally");
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    kn_request(port, "tally", "{\"add\":1}", 10, NULL, NULL);
    uqi_msg *r = uqi_port_receive(port, 10000);
    ASSERT(r != NULL);
    char *b = kn_str(r->body, r->body_len);
    char want[64];
    snprintf(want, sizeof want, "\"rc\":%d", UQ_ABI_ENOSTORE);
    ASSERT_STR_HAS(b, want);
    free(b);
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "A state write ... that was acknowledged survives kill -9 of the node at
 * any instant, and the store never ends up unreadable." The node under
 * steady state writes (tally: each "add" is answered once durable) is
 * killed at a random moment, again and again; each time the next boot must
 * open the store and the count must be at least the last acknowledged one. */

typedef struct child {
    pid_t pid;
    int in, out;
} child;

static child boot_node(const char *home, const char *manifest)
{
    char exe[1100];
    snprintf(exe, sizeof exe, "%s/uqbar", tb_build());
    const char *argv[] = {exe, "boot", "--home", home, "--name", "c.local", "--install", manifest, "--yes", NULL};
    if (!manifest) argv[6] = NULL;
    child c;
    c.pid = tboot_spawn(argv, NULL, 0, &c.in, &c.out);
    return c;
}

/* Read what the child printed until `want` shows up or ms pass; returns the
 * largest count acknowledged ("rc":0) seen, or -1. */
static long long read_acks(child *c, char *buf, size_t cap, size_t *have, int ms, const char *want, bool *seen)
{
    long long best = -1;
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    while (uqi_now_ns() < end && !(want && *seen)) {
        struct pollfd pf = {c->out, POLLIN, 0};
        if (poll(&pf, 1, 5) <= 0) continue;
        ssize_t n = read(c->out, buf + *have, cap - 1 - *have);
        if (n <= 0) break;
        if (getenv("UQ_CRASH_DEBUG")) fprintf(stderr, "%.*s", (int)n, buf + *have);
        *have += (size_t)n;
        buf[*have] = '\0';
        char *line, *save = NULL, *copy = uqi_xstrdup(buf);
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            const char *p = strstr(line, "{\"count\":");
            if (p && strstr(line, "\"rc\":0}")) {
                long long v = atoll(p + 9);
                if (v > best) best = v;
            }
            if (want && strstr(line, want)) *seen = true;
        }
        free(copy);
        char *last = strrchr(buf, '\n'); /* keep only an unfinished line */
        if (last) {
            size_t rest = strlen(last + 1);
            memmove(buf, last + 1, rest + 1);
            *have = rest;
        }
    }
    return best;
}

TEST(persist_crash_loop_kill9_keeps_acknowledged_state)
{
    char home[1200], manifest[1300];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    snprintf(manifest, sizeof manifest, "%s/tally.json", tb_tmpdir());
    char text[2048], shared[1024];
    ASSERT(realpath(tb_shared(), shared) != NULL); /* the manifest's paths are relative to its own directory */
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":[{\"process_name\":\"tally\",\"process_wasm_path\":\"%s/apps/tally.wasm\","
             "\"on_exit\":\"Restart\"}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    signal(SIGPIPE, SIG_IGN);
    const char *it = getenv("UQ_CRASH_ITERS");
    int rounds = it ? atoi(it) : 100;
    long long acked = 0;
    char buf[65536];
    for (int round = 0; round < rounds; round++) {
        child c = boot_node(home, round == 0 ? manifest : NULL);
        size_t have = 0;
        bool up = false;
        read_acks(&c, buf, sizeof buf, &have, 20000, "is up", &up);
        if (!up) test_fail(__FILE__, __LINE__, "round %d: the node did not come up; last output: %s", round, buf);
        /* the count survived the last kill */
        const char *get = "m tally {\"get\":1}\n";
        ASSERT(write(c.in, get, strlen(get)) == (ssize_t)strlen(get));
        bool got = false;
        long long now = -1;
        uint64_t end = uqi_now_ns() + 10000000000ull;
        while (!got && uqi_now_ns() < end) {
            long long v = read_acks(&c, buf, sizeof buf, &have, 50, "response from c.local@tally", &got);
            if (v > now) now = v;
        }
        if (!got) test_fail(__FILE__, __LINE__, "round %d: no answer to get; last output: %s", round, buf);
        if (now < acked) test_fail(__FILE__, __LINE__, "round %d: count %lld after the kill, %lld was acknowledged", round, now, acked);
        /* steady writes, then kill -9 at a random moment */
        int ms = 5 + (int)(random() % 40);
        uint64_t stop = uqi_now_ns() + (uint64_t)ms * 1000000ull;
        const char *add = "m tally {\"add\":1}\n";
        while (uqi_now_ns() < stop) {
            if (write(c.in, add, strlen(add)) < 0) break;
            long long v = read_acks(&c, buf, sizeof buf, &have, 2, NULL, NULL);
            if (v > acked) acked = v;
        }
        kill(c.pid, SIGKILL);
        long long v = read_acks(&c, buf, sizeof buf, &have, 20, NULL, NULL); /* acknowledged before it died */
        if (v > acked) acked = v;
        waitpid(c.pid, NULL, 0);
        close(c.in);
        close(c.out);
    }
    test_log("%d kills; %lld increments acknowledged, none lost", rounds, acked);
    ASSERT(acked > rounds); /* the loop really wrote */
}
