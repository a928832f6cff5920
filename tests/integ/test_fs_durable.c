/* A file handle that fs (src/kernel/fsmod.c) gives an app is durable when
 * fs answers: the handle's record and the grant of its capability (in the
 * app's process record) are committed in one transaction before the
 * answer. The node is a real `uqbar boot` whose store commits are slowed by
 * UQBAR_TEST_STORE_DELAY_MS (as a loaded disk makes them), killed with
 * SIGKILL as soon as the app reports its handle; after the reboot the app
 * still holds the capability and uses the handle. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "runner.h"
#include "tboot.h"
#include "util/util.h"

#define SLOW_COMMIT_MS "400"

/* Booted again with fast commits: the filer is back. */
static void fd_reboot(bnode *d, const char *home)
{
    bn_boot_home(d, "d.local", home, NULL, NULL);
    BN_EXPECT(d, "restored 1 process", 60000);
    BN_EXPECT(d, "is up", 20000);
}

/* The handle of the filer's last answer, {"Ok":{"handle":"<hex>",...}}, as
 * the terminal printed it (the node's output seen so far; matched up to its
 * "rights", so the hex is whole). The other lines of the output (the log)
 * name handles by their first 8 digits only. */
static void last_handle(bnode *d, char hex[33])
{
    const char *key = "\"handle\":\"", *p = NULL;
    for (const char *q = d->seen; (q = strstr(q, key)); q++) p = q;
    ASSERT(p != NULL);
    p += strlen(key);
    ASSERT(strspn(p, "0123456789abcdef") >= 32);
    memcpy(hex, p, 32);
    hex[32] = '\0';
}

/* The filer holds fs's capability {"handle":hex,"rights":rights}. */
static void expect_held(bnode *d, const char *hex, const char *rights)
{
    char line[400];
    snprintf(line, sizeof line,
             "m kernel {\"Debug\":{\"HasCap\":{\"on\":\"filer\",\"cap\":{\"issuer\":\"fs\",\"params\":"
             "{\"handle\":\"%s\",\"rights\":\"%s\"}}}}}\n",
             hex, rights);
    bn_ask(d, line, "response from d.local@kernel: {\"Debug\":{\"HasCap\":true}}", 10000);
}

/* The filer holds no capability {"handle":hex,"rights":rights} of fs. */
static void expect_not_held(bnode *d, const char *hex, const char *rights)
{
    char line[400];
    snprintf(line, sizeof line,
             "m kernel {\"Debug\":{\"HasCap\":{\"on\":\"filer\",\"cap\":{\"issuer\":\"fs\",\"params\":"
             "{\"handle\":\"%s\",\"rights\":\"%s\"}}}}}\n",
             hex, rights);
    bn_ask(d, line, "response from d.local@kernel: {\"Debug\":{\"HasCap\":false}}", 10000);
}

/* Through handle hex, the filer asks fs `op` and gets `want`. */
static void use_handle(bnode *d, const char *op, const char *hex, const char *payload, const char *want)
{
    char line[1600], resp[300];
    snprintf(line, sizeof line, "m filer fs {\"%s\":{\"handle\":\"%s\"}} -t 30%s%s\n", op, hex,
             payload ? " -p " : "", payload ? payload : "");
    snprintf(resp, sizeof resp, "response from d.local@filer: %s", want);
    bn_ask(d, line, resp, 30000);
}

/* A home at <tmp>/<dir> where the filer is installed (the node stopped);
 * data: a file of 5 bytes to send as a payload. */
static void fd_install(bnode *d, const char *dir, char *home, size_t hcap, char *data, size_t dcap)
{
    char shared[1024], manifest[1300], text[2400];
    ASSERT(realpath(tb_shared(), shared) != NULL);
    snprintf(manifest, sizeof manifest, "%s/filer.json", tb_tmpdir());
    snprintf(text, sizeof text,
             "{\"package\":\"t\",\"processes\":[{\"process_name\":\"filer\",\"process_wasm_path\":"
             "\"%s/guests/filer.wasm\",\"on_exit\":\"None\",\"public\":true,\"request_files\":true}]}",
             shared);
    ASSERT_EQ(uqi_write_file_atomic(manifest, text, strlen(text), NULL), UQ_OK);
    snprintf(data, dcap, "%s/hello.txt", tb_tmpdir());
    ASSERT_EQ(uqi_write_file_atomic(data, "hello", 5, NULL), UQ_OK);
    snprintf(home, hcap, "%s/%s", tb_tmpdir(), dir);
    bn_boot_home(d, "d.local", home, manifest, NULL);
    BN_EXPECT(d, "is up", 120000);
    bn_exit(d, 0);
}

/* Create, Open and Split each answered on a node with slow commits, which
 * is killed as soon as the answer shows: the next boot has the filer
 * holding the handle's capability, and the handle reads and writes. */
TEST_T(boot_kill9_right_after_fs_answers_keeps_the_handle, 300)
{
    signal(SIGPIPE, SIG_IGN);
    char home[1100], data[1200], line[2600];
    bnode d;
    fd_install(&d, "fs", home, sizeof home, data, sizeof data);

    /* Create */
    char made[33], opened[33], half[33];
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    snprintf(line, sizeof line, "m filer fs {\"Create\":{\"name\":\"notes\"}} -t 30 -p %s\n", data);
    bn_ask(&d, line, "\",\"rights\":\"read-write\"}}", 60000); /* the filer's answer, whole */
    last_handle(&d, made);
    bn_kill9(&d);
    fd_reboot(&d, home);
    expect_held(&d, made, "read-write");
    use_handle(&d, "Size", made, NULL, "{\"Ok\":{\"size\":5}}");
    use_handle(&d, "Append", made, data, "{\"Ok\":null}");
    use_handle(&d, "Size", made, NULL, "{\"Ok\":{\"size\":10}}");
    bn_exit(&d, 0);

    /* Open: a fresh handle of the same file */
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    bn_ask(&d, "m filer fs {\"Open\":{\"name\":\"notes\"}} -t 30\n", "\",\"rights\":\"read-write\"}}", 60000);
    last_handle(&d, opened);
    bn_kill9(&d);
    ASSERT(strcmp(opened, made) != 0);
    fd_reboot(&d, home);
    expect_held(&d, opened, "read-write");
    use_handle(&d, "Size", opened, NULL, "{\"Ok\":{\"size\":10}}");
    bn_exit(&d, 0);

    /* Split: a read-only handle derived from it */
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    snprintf(line, sizeof line, "m filer fs {\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}} -t 30\n", opened);
    bn_ask(&d, line, "\",\"rights\":\"read\"}}", 60000);
    last_handle(&d, half);
    bn_kill9(&d);
    fd_reboot(&d, home);
    expect_held(&d, half, "read");
    use_handle(&d, "Size", half, NULL, "{\"Ok\":{\"size\":10}}");
    bn_exit(&d, 0);
}

/* Revoke and Remove each answered on a node with slow commits, which is
 * killed as soon as the answer shows: the next boot has the filer without
 * the capabilities of the handles that went (the holders' records are
 * committed with the deletion of the handles' records, before fs answers),
 * and with those of the handles that stay. */
TEST_T(boot_kill9_right_after_fs_revokes_drops_the_capability, 300)
{
    signal(SIGPIPE, SIG_IGN);
    char home[1100], data[1200], line[2600];
    char made[33], half[33], opened[33];
    bnode d;
    fd_install(&d, "fsrev", home, sizeof home, data, sizeof data);

    /* a file, a second handle of it, a read-only one derived from the first
     * (fast commits: nothing is killed here) */
    bn_boot_home(&d, "d.local", home, NULL, NULL);
    bn_wait_up(&d);
    snprintf(line, sizeof line, "m filer fs {\"Create\":{\"name\":\"doomed\"}} -t 30 -p %s\n", data);
    bn_ask(&d, line, "\",\"rights\":\"read-write\"}}", 60000);
    last_handle(&d, made);
    bn_ask(&d, "m filer fs {\"Open\":{\"name\":\"doomed\"}} -t 30\n", "\",\"rights\":\"read-write\"}}", 60000);
    last_handle(&d, opened);
    snprintf(line, sizeof line, "m filer fs {\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}} -t 30\n", made);
    bn_ask(&d, line, "\",\"rights\":\"read\"}}", 60000);
    last_handle(&d, half);
    bn_exit(&d, 0);

    /* Revoke the read-only handle: gone after the kill, the others kept */
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    expect_held(&d, half, "read");
    snprintf(line, sizeof line, "m filer fs {\"Revoke\":{\"handle\":\"%s\"}} -t 30\n", half);
    bn_ask(&d, line, "response from d.local@filer: {\"Ok\":{\"revoked\":1}}", 60000);
    bn_kill9(&d);
    fd_reboot(&d, home);
    expect_not_held(&d, half, "read");
    expect_held(&d, made, "read-write");
    expect_held(&d, opened, "read-write");
    use_handle(&d, "Size", made, NULL, "{\"Ok\":{\"size\":5}}");
    bn_exit(&d, 0);

    /* Remove the file: every handle of it gone after the kill */
    bn_boot_home(&d, "d.local", home, NULL, SLOW_COMMIT_MS);
    bn_wait_up(&d);
    snprintf(line, sizeof line, "m filer fs {\"Remove\":{\"handle\":\"%s\"}} -t 30\n", made);
    bn_ask(&d, line, "response from d.local@filer: {\"Ok\":null}", 60000);
    bn_kill9(&d);
    fd_reboot(&d, home);
    expect_not_held(&d, made, "read-write");
    expect_not_held(&d, opened, "read-write");
    bn_ask(&d, "m filer fs {\"List\":null} -t 30\n", "response from d.local@filer: {\"Ok\":{\"files\":[]}}",
           30000);
    bn_exit(&d, 0);
}
