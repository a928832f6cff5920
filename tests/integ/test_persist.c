/* Persistence in the kernel: the process table, process state, and a node
 * that comes back with its processes (issue 5; ../shared/seeds/processes.md,
 * "Process State"). A real store in the test's directory, real wasm. */
#include <stdio.h>
#include <unistd.h>

#include "knode.h"
#include "sdk_abi.h"
#include "store/store.h"

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
