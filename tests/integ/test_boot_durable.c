/* A node killed with SIGKILL right after it said a process is installed and
 * running brings that process back (the process table is written
 * asynchronously; the installer waits until it is durable before it says
 * so). The store's commits are made slow with UQBAR_TEST_STORE_DELAY_MS, as
 * a loaded disk makes them, so the kill always lands while the records
 * would still be queued if nobody waited for them. And a stored process
 * that cannot come back is named, with the reason, on the terminal. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "runner.h"
#include "store/store.h"
#include "tboot.h"
#include "util/util.h"

#define SLOW_COMMIT_MS "400"

/* After a reboot: it says it restored one process, then "is up". */
static void expect_restored_one(bnode *d)
{
    BN_EXPECT(d, "restored 1 process", 60000);
    BN_EXPECT(d, "is up", 20000);
}

static void write_manifest(char *path, size_t cap)
{
    tboot_manifest(path, cap, "echo.json", "t", &(tboot_proc){"echo", "echo", "None", true, true}, 1);
}

/* --install, "is up", kill -9 at once; the next boot brings echo back
 * (three rounds, each on a new home). */
TEST_T(boot_kill9_right_after_install_keeps_the_process, 240)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300], home[1100], line[1600];
    write_manifest(manifest, sizeof manifest);
    bnode d;
    for (int round = 0; round < 3; round++) {
        snprintf(home, sizeof home, "%s/round%d", tb_tmpdir(), round);
        bn_boot_home(&d, "d.local", home, manifest, SLOW_COMMIT_MS);
        BN_EXPECT(&d, "installed and running", 120000);
        BN_EXPECT(&d, "is up", 20000);
        bn_kill9(&d);
        bn_boot_home(&d, "d.local", home, NULL, NULL);
        expect_restored_one(&d);
        snprintf(line, sizeof line, "m echo {\"round\":%d}\n", round);
        bn_say(&d, line);
        snprintf(line, sizeof line, "response from d.local@echo: {\"round\":%d}", round);
        BN_EXPECT(&d, line, 10000);
        bn_exit(&d, 0);
    }
}

/* The kernel API's way (the terminal's start: InitializeProcess, then
 * RunProcess), killed as soon as RunProcess is answered. */
TEST_T(boot_kill9_right_after_run_process_keeps_the_process, 180)
{
    signal(SIGPIPE, SIG_IGN);
    char shared[1024], home[1100], line[1600];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    bnode d;
    snprintf(home, sizeof home, "%s/api", tb_tmpdir());
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    snprintf(line, sizeof line, "start echo2 %s/apps/echo.wasm --public\n", shared);
    bn_ask(&d, line, "StartedProcess", 120000);
    bn_kill9(&d);
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    expect_restored_one(&d);
    bn_ask(&d, "m echo2 {\"api\":true}\n", "response from d.local@echo2: {\"api\":true}", 10000);
    bn_exit(&d, 0);
}

/* Records that cannot come back are named on the terminal with the reason,
 * and kept; the others come back. */
TEST_T(boot_says_which_process_was_not_restored_and_why, 120)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300], home[1100];
    write_manifest(manifest, sizeof manifest);
    snprintf(home, sizeof home, "%s/node", tb_tmpdir());
    bnode d;
    bn_boot_home(&d, "d.local", home, manifest, NULL);
    BN_EXPECT(&d, "installed and running", 120000);
    BN_EXPECT(&d, "is up", 20000);
    bn_exit(&d, 0);
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
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    BN_EXPECT(&d, "process future was not restored as it was: its record is not one this version reads", 60000);
    BN_EXPECT(&d, "process ghost was not restored as it was:", 60000);
    BN_EXPECT(&d, "restored 1 process (some could not come back: see above)", 60000);
    BN_EXPECT(&d, "is up", 20000);
    bn_ask(&d, "m echo {\"still\":\"here\"}\n", "response from d.local@echo: {\"still\":\"here\"}", 10000);
    bn_exit(&d, 0);
    /* kept: the next boot says so again */
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    BN_EXPECT(&d, "process ghost was not restored as it was:", 60000);
    BN_EXPECT(&d, "is up", 20000);
    bn_exit(&d, 0);
}

/* A child spawned by a process (the guest call spawn) is durable when the
 * call returns: the parent's answer comes after it, the node is killed
 * with SIGKILL as soon as the answer shows, and the child comes back, with
 * the on_exit its parent set (Restart). The terminal sends the child's
 * module as the request's payload (m -p). */
TEST_T(boot_kill9_right_after_guest_spawn_keeps_the_child, 180)
{
    signal(SIGPIPE, SIG_IGN);
    char shared[1024], manifest[1300], home[1100], line[2400], text[2048];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(manifest, sizeof manifest, "%s/nursery.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":[{\"process_name\":\"nursery\",\"process_wasm_path\":"
             "\"%s/guests/nursery.wasm\",\"on_exit\":\"None\",\"public\":true}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    snprintf(home, sizeof home, "%s/spawn", tb_tmpdir());
    bnode d;
    bn_boot_home(&d, "d.local", home, manifest, NULL);
    BN_EXPECT(&d, "is up", 120000);
    bn_exit(&d, 0);
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS); /* slow commits from here on */
    bn_wait_up(&d);
    snprintf(line, sizeof line, "m nursery {\"id\":\"kid\",\"restart\":true} -t 30 -p %s/apps/echo.wasm\n", shared);
    bn_ask(&d, line, "response from d.local@nursery: {\"rc\":3,\"id\":\"kid\"}", 60000);
    bn_kill9(&d);
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    BN_EXPECT(&d, "restored 2 processes", 60000);
    BN_EXPECT(&d, "is up", 20000);
    bn_ask(&d, "m kid {\"back\":true}\n", "response from d.local@kid: {\"back\":true}", 10000);
    bn_ask(&d, "m kernel {\"Debug\":{\"Process\":\"kid\"}}\n", "\"on_exit\":\"Restart\"", 10000);
    bn_exit(&d, 0);
}

/* A node d.local at home running two granters (tests/guests/granter.c),
 * giver and taker, booted once with fast commits and shut down. */
static void granters_installed(bnode *d, const char *home)
{
    char shared[1024], manifest[1300], text[3000];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(manifest, sizeof manifest, "%s/granters.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":["
             "{\"process_name\":\"giver\",\"process_wasm_path\":\"%s/guests/granter.wasm\",\"on_exit\":\"None\","
             "\"public\":true},"
             "{\"process_name\":\"taker\",\"process_wasm_path\":\"%s/guests/granter.wasm\",\"on_exit\":\"None\","
             "\"public\":true}]}",
             shared, shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    bn_boot_home(d, "d.local", home, manifest, NULL);
    BN_EXPECT(d, "is up", 120000);
    bn_exit(d, 0);
}

#define DOOR_HELD "m kernel {\"Debug\":{\"HasCap\":{\"on\":\"taker\",\"cap\":{\"issuer\":\"giver\",\"params\":{\"door\":1}}}}}\n"

/* The grant a process makes by attaching a capability to a message
 * (send_caps), and the revocation it makes by dropping one it issued
 * (cap_drop), are durable when the call returns: the process answers the
 * terminal after it, the node is killed with SIGKILL as soon as the answer
 * shows, and the next boot still has the grant, then still lacks the
 * revoked capability. */
TEST_T(boot_kill9_right_after_guest_grant_or_drop_keeps_it, 240)
{
    signal(SIGPIPE, SIG_IGN);
    char home[1100];
    snprintf(home, sizeof home, "%s/grant", tb_tmpdir());
    bnode d;
    granters_installed(&d, home);
    /* the grant: giver mints {"door":1} for taker */
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    bn_ask(&d, "m giver {\"give\":\"taker\",\"caps\":[{\"params\":{\"door\":1}}]} -t 30\n", "response from d.local@giver: {\"rc\":", 60000);
    bn_kill9(&d);
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    BN_EXPECT(&d, "restored 2 processes", 60000);
    BN_EXPECT(&d, "is up", 20000);
    bn_ask(&d, DOOR_HELD, "response from d.local@kernel: {\"Debug\":{\"HasCap\":true}}", 10000);
    bn_exit(&d, 0);
    /* the revocation: giver drops what it issued, so taker loses it */
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    bn_ask(&d, "m giver {\"drop\":{\"params\":{\"door\":1}}} -t 30\n", "response from d.local@giver: {\"rc\":1}", 60000);
    bn_kill9(&d);
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    BN_EXPECT(&d, "restored 2 processes", 60000);
    BN_EXPECT(&d, "is up", 20000);
    bn_ask(&d, DOOR_HELD, "response from d.local@kernel: {\"Debug\":{\"HasCap\":false}}", 10000);
    bn_exit(&d, 0);
}
