/* Three real nodes (uqbar boot, one OS process each) on loopback talking
 * through their terminals: a.local, b.local, c.local each run a public echo
 * with the network capability. c.local is killed (-9) and restarted. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "tboot.h"
#include "util/util.h"

TEST_T(net_boot_three_nodes_kill_and_restart, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300];
    tboot_manifest(manifest, sizeof manifest, "echo.json", "t", &(tboot_proc){"echo", "echo", "None", true, true}, 1);
    bnode nodes[3];
    const char *names[3] = {"a.local", "b.local", "c.local"};
    for (int i = 0; i < 3; i++) {
        bn_init(&nodes[i], names[i]);
        bn_boot(&nodes[i], manifest);
    }
    for (int i = 0; i < 3; i++) bn_wait_up(&nodes[i]);
    /* the directory: every node's record, in every node's peers file (reread when it changes) */
    for (int i = 0; i < 3; i++) bn_peers(&nodes[i], (bnode *[]){&nodes[0], &nodes[1], &nodes[2]}, 3);
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
    ASSERT(bn_expect(&nodes[2], "is up", 60000));
    bool back = false;
    for (int tries = 0; tries < 40 && !back; tries++) {
        bn_say(&nodes[0], "m c.local@echo {\"after\":\"restart\"}\n");
        back = bn_expect(&nodes[0], "response from c.local@echo: {\"after\":\"restart\"}", 500);
    }
    ASSERT(back);
    bn_say(&nodes[1], "m c.local@echo {\"b\":\"again\"}\n");
    ASSERT(bn_expect(&nodes[1], "response from c.local@echo: {\"b\":\"again\"}", 10000));
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
    for (int i = 0; i < 2; i++) {
        bn_init(&nodes[i], names[i]);
        bn_up(&nodes[i], manifest);
    }
    for (int i = 0; i < 2; i++) bn_peers(&nodes[i], (bnode *[]){&nodes[0], &nodes[1]}, 2);
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
    bn_exit(&nodes[1], SIGTERM);
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
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300];
    tboot_manifest(manifest, sizeof manifest, "echo.json", "t", &(tboot_proc){"echo", "echo", "None", true, true}, 1);
    bnode nodes[3];
    const char *names[3] = {"a.local", "b.local", "c.local"};
    for (int i = 0; i < 3; i++) {
        bn_init(&nodes[i], names[i]);
        bn_boot(&nodes[i], manifest);
    }
    for (int i = 0; i < 3; i++) bn_wait_up(&nodes[i]);
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
    bn_exit(b, SIGTERM);
    bn_exit(a, SIGTERM);
    bn_boot(a, NULL);
    ASSERT(bn_expect(a, "is up", 60000));
    bn_say(a, "m c.local@echo {\"after\":\"restart\"}\n");
    ASSERT(bn_expect(a, "response from c.local@echo: {\"after\":\"restart\"}", 10000));
    for (int i = 0; i < 3; i += 2) bn_exit(&nodes[i], SIGTERM);
}
