/* Three real nodes (uqbar boot, one OS process each) on loopback talking
 * through their terminals: a.local, b.local, c.local each run a public echo
 * with the network capability. c.local is killed (-9) and restarted. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "tboot.h"
#include "util/util.h"

/* a.local, b.local and c.local up, each with a public echo that has the
 * network capability. */
static void echo_nodes(bnode nodes[3])
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300];
    tboot_manifest(manifest, sizeof manifest, "echo.json", "t", &(tboot_proc){"echo", "echo", "None", true, true}, 1);
    bn_init_all(nodes, (const char *[]){"a.local", "b.local", "c.local"}, 3, NULL);
    bn_up_all(nodes, 3, manifest);
}

TEST_T(net_boot_three_nodes_kill_and_restart, 120)
{
    bnode nodes[3];
    echo_nodes(nodes);
    /* the directory: every node's record, in every node's peers file (reread when it changes) */
    for (int i = 0; i < 3; i++) bn_peers(&nodes[i], (bnode *[]){&nodes[0], &nodes[1], &nodes[2]}, 3);
    uint64_t t0 = uqi_now_ns();
    bn_ask(&nodes[0], "m b.local@echo {\"from\":\"a\"}\n", "response from b.local@echo: {\"from\":\"a\"}", 10000);
    test_log("first remote round trip (with link setup) from a terminal: %.1f ms", (double)(uqi_now_ns() - t0) / 1e6);
    bn_ask(&nodes[0], "m c.local@echo {\"from\":\"a\"}\n", "response from c.local@echo: {\"from\":\"a\"}", 10000);
    bn_ask(&nodes[1], "m c.local@echo {\"from\":\"b\"}\n", "response from c.local@echo: {\"from\":\"b\"}", 10000);
    bn_ask(&nodes[2], "m a.local@echo {\"from\":\"c\"}\n", "response from a.local@echo: {\"from\":\"c\"}", 10000);
    /* the terminal of b is not public: a cannot reach it */
    bn_ask(&nodes[0], "m b.local@terminal {}\n", "error Refused from b.local@terminal", 10000);
    /* an unknown node */
    bn_ask(&nodes[0], "m nobody.local@echo {}\n", "error Offline from nobody.local@echo", 10000);
    /* c killed: Offline */
    bn_kill(&nodes[2], SIGKILL);
    bn_ask(&nodes[0], "m c.local@echo {\"after\":\"kill\"}\n", "error Offline from c.local@echo", 10000);
    /* c restarted (its echo is restored from its store): it comes back */
    bn_boot(&nodes[2], NULL);
    /* said before "is up" (a process that cannot come back is named there too) */
    if (!bn_expect(&nodes[2], "restored 1 process", 30000))
        test_fail(__FILE__, __LINE__, "c.local did not restore its echo; it said:\n%s", nodes[2].buf);
    BN_EXPECT(&nodes[2], "is up", 60000);
    bool back = bn_retry(&nodes[0], "m c.local@echo {\"after\":\"restart\"}\n",
                         "response from c.local@echo: {\"after\":\"restart\"}", 40, 500);
    ASSERT(back);
    bn_ask(&nodes[1], "m c.local@echo {\"b\":\"again\"}\n", "response from c.local@echo: {\"b\":\"again\"}", 10000);
    for (int i = 0; i < 3; i++) bn_exit(&nodes[i], SIGTERM);
}

/* The example app: a chat between two nodes; the history survives a restart
 * of the node, and a message to a node that is down is recorded as failed. */
TEST_T(net_boot_chat_two_nodes_history_persisted, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300];
    tboot_manifest(manifest, sizeof manifest, "chat.json", "chat", &(tboot_proc){"chat", "chat", "Restart", true, true},
                   1);
    bnode nodes[2];
    const char *names[2] = {"alice.chat", "bob.chat"};
    bn_init_all(nodes, names, 2, NULL);
    for (int i = 0; i < 2; i++) bn_up(&nodes[i], manifest);
    for (int i = 0; i < 2; i++) bn_peers(&nodes[i], (bnode *[]){&nodes[0], &nodes[1]}, 2);
    bn_ask(&nodes[0], "m chat {\"send\":{\"to\":\"bob.chat\",\"text\":\"hello bob\"}}\n", "\"rc\":0}", 10000);
    bool arrived = bn_retry(&nodes[1], "m chat {\"history\":1}\n",
                            "{\"history\":[\"alice.chat: hello bob\"]}", 50, 200);
    ASSERT(arrived);
    bn_ask(&nodes[1], "m chat {\"send\":{\"to\":\"alice.chat\",\"text\":\"hi alice\"}}\n", "\"rc\":0}", 10000);
    usleep(300000);
    bn_ask(&nodes[1], "m chat {\"history\":1}\n",
           "{\"history\":[\"alice.chat: hello bob\",\"me -> alice.chat: hi alice\"]}", 10000);
    /* bob's node restarts: the history is still there */
    bn_exit(&nodes[1], SIGTERM);
    /* meanwhile alice writes to a node that is down: recorded as failed */
    bn_ask(&nodes[0], "m chat {\"send\":{\"to\":\"bob.chat\",\"text\":\"are you there\"}}\n", "\"rc\":0}", 10000);
    usleep(500000);
    bn_ask(&nodes[0], "m chat {\"history\":1}\n", "\"failed (Offline) me -> bob.chat: are you there\"", 10000);
    bn_boot(&nodes[1], NULL);
    BN_EXPECT(&nodes[1], "is up", 60000);
    bn_ask(&nodes[1], "m chat {\"history\":1}\n",
           "{\"history\":[\"alice.chat: hello bob\",\"me -> alice.chat: hi alice\"]}", 10000);
    for (int i = 0; i < 2; i++) bn_exit(&nodes[i], SIGTERM);
}

/* Look-ups (PROTOCOL.md §8) with three real nodes: a.local knows only
 * b.local, b.local knows both, c.local knows only b.local. A process on a
 * (its echo, asked from the terminal) reaches c's echo and gets its
 * response: a asks b for c's record, c asks b for a's when a's link
 * arrives. An unknown name fails Offline and the terminal says why. What
 * a learned is in <home>/learned and serves after a restart with b gone. */
TEST_T(net_boot_lookup_a_reaches_c_through_b, 120)
{
    bnode nodes[3];
    echo_nodes(nodes);
    bnode *a = &nodes[0], *b = &nodes[1], *c = &nodes[2];
    bn_peers(a, (bnode *[]){b}, 1);
    bn_peers(b, (bnode *[]){a, b, c}, 3);
    bn_peers(c, (bnode *[]){b}, 1);
    uint64_t t0 = uqi_now_ns();
    bn_ask(a, "m c.local@echo {\"from\":\"a\",\"via\":\"lookup\"}\n",
           "response from c.local@echo: {\"from\":\"a\",\"via\":\"lookup\"}", 10000);
    test_log("a -> c through a look-up at b (terminal round trip, three link set-ups): %.1f ms",
             (double)(uqi_now_ns() - t0) / 1e6);
    /* c answers a's own echo too: it learned a */
    bn_ask(c, "m a.local@echo {\"from\":\"c\"}\n", "response from a.local@echo: {\"from\":\"c\"}", 10000);
    /* an unknown name: Offline, and why */
    bn_ask(a, "m nobody.local@echo {}\n", "error Offline from nobody.local@echo", 10000);
    BN_EXPECT(a, "why: nobody.local is unknown: not in the directory, and no peer knew it", 2000);
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
    bn_exit(b, SIGTERM);
    bn_exit(a, SIGTERM);
    bn_boot(a, NULL);
    BN_EXPECT(a, "is up", 60000);
    bn_ask(a, "m c.local@echo {\"after\":\"restart\"}\n", "response from c.local@echo: {\"after\":\"restart\"}", 10000);
    for (int i = 0; i < 3; i += 2) bn_exit(&nodes[i], SIGTERM);
}
