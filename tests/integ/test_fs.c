/* The filesystem module (src/kernel/fsmod.c) on a real node with a real
 * store, driven by real wasm apps (tests/guests/filer.c). Each test quotes
 * the sentence of issue 5 (and of ../shared/seeds/processes.md, "access to
 * files") it checks. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>

#include "kernel/fsmod.h"
#include "knode.h"
#include "sdk_abi.h"
#include "store/files.h"

typedef struct fsnode {
    uqi_node *n;
    uqs_store *s;
    uqs_files *files;
    uqi_fsmod *fs;
    uqi_kproc *port;  /* the tester: a root port */
    char home[1024];
} fsnode;

/* A node as `uqbar boot` makes it: its store (the process table persists),
 * the filesystem and the fs module in home; then either a filer app for
 * each id, or (apps NULL) the processes of the store brought back. */
static void up_opt(fsnode *t, const char *home, const char *const *apps, const uqs_options *opt)
{
    uq_errmsg em = {{0}};
    snprintf(t->home, sizeof t->home, "%s", home);
    if (uqs_open(home, opt, &t->s, &em)) test_fail(__FILE__, __LINE__, "store: %s", em.text);
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    uqi_node_config c = {.name = "test.node", .cache_dir = cache, .workers = 2, .store = t->s};
    if (uqi_node_start(&c, &t->n, &em)) test_fail(__FILE__, __LINE__, "node: %s", em.text);
    uqi_node_engine(t->n)->progress = false;
    if (uqs_files_open(t->s, home, &t->files, &em)) test_fail(__FILE__, __LINE__, "files: %s", em.text);
    if (uqi_fsmod_start(t->n, t->files, &t->fs, &em)) test_fail(__FILE__, __LINE__, "fsmod: %s", em.text);
    if (apps) {
        for (; *apps; apps++) {
            kn_spawn_guest(t->n, "filer", *apps);
            /* "read and write its own files": as an installer grants it */
            ASSERT_EQ(uqi_node_grant_messaging(t->n, *apps, "fs", NULL), UQ_OK);
        }
    } else {
        uint32_t restored, failed;
        ASSERT_EQ(uqi_node_restore(t->n, &restored, &failed, &em), UQ_OK);
        ASSERT_EQ(failed, 0);
    }
    ASSERT_EQ(uqi_node_port(t->n, "tester", &t->port, NULL), UQ_OK);
}

static void up(fsnode *t, const char *home, const char *const *apps) { up_opt(t, home, apps, NULL); }

static void down(fsnode *t)
{
    uqi_fsmod_stop(t->fs);
    uqi_node_stop(t->n);
    uqs_files_close(t->files);
    uqs_close(t->s);
}

/* A request from the tester to app; returns the answer's body, and its
 * payload in *data (NUL-terminated; NULL when none) if data is given. */
static char *ask(fsnode *t, const char *app, const char *body, const char *payload, char **data)
{
    uqi_payload *p = payload ? uqi_payload_new(payload, strlen(payload), "text/plain") : NULL;
    return kn_ask(t->port, app, body, p, data);
}

/* app asks fs: "fs\n" + json, with payload; the body of fs's answer. */
static char *fs(fsnode *t, const char *app, const char *json, const char *payload, char **data)
{
    char body[2048];
    snprintf(body, sizeof body, "fs\n%s", json);
    return ask(t, app, body, payload, data);
}

/* The same with the handle hex substituted for %s in json. */
static char *fsh(fsnode *t, const char *app, const char *json_fmt, const char *hex, const char *payload, char **data)
{
    char json[1024];
    snprintf(json, sizeof json, json_fmt, hex);
    return fs(t, app, json, payload, data);
}

static long long rc_of(const char *json)
{
    const char *p = strstr(json, "\"rc\":");
    if (!p) test_fail(__FILE__, __LINE__, "no rc in %s", json);
    return atoll(p + 5);
}

/* The handle of an {"Ok":{"handle":..,"rights":..}} answer (static, rotating over 32). */
static const char *handle_of(const char *body, const char *want_rights)
{
    static char buf[32][UQS_HANDLE_HEX + 1];
    static int k;
    json_t *v = json_loads(body, 0, NULL);
    const char *h = json_string_value(json_object_get(json_object_get(v, "Ok"), "handle"));
    const char *r = json_string_value(json_object_get(json_object_get(v, "Ok"), "rights"));
    if (!h || strlen(h) != UQS_HANDLE_HEX) test_fail(__FILE__, __LINE__, "no handle in %s", body);
    if (!r || strcmp(r, want_rights) != 0) test_fail(__FILE__, __LINE__, "rights %s, not %s, in %s", r, want_rights, body);
    char *out = buf[k++ % 32];
    snprintf(out, UQS_HANDLE_HEX + 1, "%s", h);
    json_decref(v);
    return out;
}

/* Does holder hold the fs capability of hex with rights? */
static int holds(fsnode *t, const char *holder, const char *hex, unsigned rights)
{
    char params[UQI_FS_PARAMS_MAX];
    uqi_fsmod_cap_params(hex, rights, params);
    uqi_capref c = {.params = params};
    snprintf(c.issuer.node, sizeof c.issuer.node, "test.node");
    snprintf(c.issuer.process, sizeof c.issuer.process, "fs");
    return uqi_node_has_cap(t->n, holder, &c);
}

/* from gives `to` the fs capability of hex with rights, attached to a message. */
static long long give(fsnode *t, const char *from, const char *to, const char *hex, const char *rights)
{
    char body[512];
    snprintf(body, sizeof body, "attach\n%s\n[{\"issuer\":\"fs\",\"params\":{\"handle\":\"%s\",\"rights\":\"%s\"}}]", to,
             hex, rights);
    char *r = ask(t, from, body, NULL, NULL);
    long long rc = rc_of(r);
    free(r);
    return rc;
}

/* body is exactly want (then freed). */
#define EXPECT_BODY(expr, want) do { char *b_ = (expr); \
    if (strcmp(b_, want) != 0) { test_fail(__FILE__, __LINE__, "expected exactly %s, got %s", want, b_); } \
    free(b_); } while (0)
/* an {"Err":...} answer containing `why` */
#define EXPECT_ERR(expr, why) do { char *b_ = (expr); ASSERT_STR_HAS(b_, "{\"Err\":\""); ASSERT_STR_HAS(b_, why); \
    free(b_); } while (0)

/* The capability format, canonical as the kernel keeps it. */
TEST(fs_capability_params_are_canonical)
{
    const char *hex = "00112233445566778899aabbccddeeff";
    const unsigned rights[3] = {UQS_RIGHT_READ, UQS_RIGHT_WRITE, UQS_RIGHTS_ALL};
    for (int i = 0; i < 3; i++) {
        char p[UQI_FS_PARAMS_MAX];
        uqi_fsmod_cap_params(hex, rights[i], p);
        json_t *v = json_pack("{s:s,s:s}", "rights", uqi_fsmod_rights_text(rights[i]), "handle", hex);
        char *c = uqi_cap_canon(v);
        ASSERT_STR_HAS(p, c);
        ASSERT_EQ(strlen(p), strlen(c));
        free(c);
        json_decref(v);
    }
}

/* "A filesystem module: each app gets its own space in the node's home."
 * "The usual file operations an app needs (create, write, append, read,
 * read a range, list, remove, size, hash), with the data in the payload." */
TEST(fs_file_operations)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", "bob", NULL});
    char *data;
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"notes.txt\"}}", "hello", NULL);
    const char *h = handle_of(r, "read-write");
    free(r);
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 1);
    /* fs is a plain process, not root: it holds no kernel capability */
    uqi_capref kc = {.params = (char *)"\"messaging\""};
    snprintf(kc.issuer.node, sizeof kc.issuer.node, "test.node");
    snprintf(kc.issuer.process, sizeof kc.issuer.process, "kernel");
    ASSERT_EQ(uqi_node_has_cap(t.n, "fs", &kc), 0);
    /* its own space in the node's home: <home>/files/<process id>/ */
    char path[1200];
    struct stat st;
    snprintf(path, sizeof path, "%s/files/alice/notes.txt.v1", t.home);
    ASSERT_EQ(stat(path, &st), 0);
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, &data), "{\"Ok\":{\"length\":5}}");
    ASSERT_STR_HAS(data, "hello");
    free(data);
    EXPECT_BODY(fsh(&t, "alice", "{\"Append\":{\"handle\":\"%s\"}}", h, ", world", NULL), "{\"Ok\":null}");
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, &data), "{\"Ok\":{\"length\":12}}");
    ASSERT(strcmp(data, "hello, world") == 0);
    free(data);
    EXPECT_BODY(fsh(&t, "alice", "{\"ReadRange\":{\"handle\":\"%s\",\"offset\":7,\"length\":3}}", h, NULL, &data),
                "{\"Ok\":{\"length\":3}}");
    ASSERT(strcmp(data, "wor") == 0);
    free(data);
    /* a range past the end is clipped, and empty at the end */
    EXPECT_BODY(fsh(&t, "alice", "{\"ReadRange\":{\"handle\":\"%s\",\"offset\":10,\"length\":100}}", h, NULL, &data),
                "{\"Ok\":{\"length\":2}}");
    ASSERT(strcmp(data, "ld") == 0);
    free(data);
    EXPECT_BODY(fsh(&t, "alice", "{\"ReadRange\":{\"handle\":\"%s\",\"offset\":99,\"length\":5}}", h, NULL, &data),
                "{\"Ok\":{\"length\":0}}");
    free(data);
    EXPECT_BODY(fsh(&t, "alice", "{\"Size\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":{\"size\":12}}");
    /* BLAKE2b-256 of "hello, world" */
    unsigned char dg[32];
    char want[100], dhex[65];
    crypto_generichash(dg, 32, (const unsigned char *)"hello, world", 12, NULL, 0);
    sodium_bin2hex(dhex, sizeof dhex, dg, 32);
    snprintf(want, sizeof want, "{\"Ok\":{\"hash\":\"%s\"}}", dhex);
    EXPECT_BODY(fsh(&t, "alice", "{\"Hash\":{\"handle\":\"%s\"}}", h, NULL, NULL), want);
    /* write replaces the content */
    EXPECT_BODY(fsh(&t, "alice", "{\"Write\":{\"handle\":\"%s\"}}", h, "new text", NULL), "{\"Ok\":null}");
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, &data), "{\"Ok\":{\"length\":8}}");
    ASSERT(strcmp(data, "new text") == 0);
    free(data);
    /* an empty file (no payload), list, info */
    r = fs(&t, "alice", "{\"Create\":{\"name\":\"empty\"}}", NULL, NULL);
    const char *e = handle_of(r, "read-write");
    free(r);
    EXPECT_BODY(fsh(&t, "alice", "{\"Size\":{\"handle\":\"%s\"}}", e, NULL, NULL), "{\"Ok\":{\"size\":0}}");
    EXPECT_BODY(fs(&t, "alice", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[\"empty\",\"notes.txt\"]}}");
    EXPECT_BODY(fs(&t, "alice", "\"List\"", NULL, NULL), "{\"Ok\":{\"files\":[\"empty\",\"notes.txt\"]}}");
    EXPECT_BODY(fsh(&t, "alice", "{\"Info\":{\"handle\":\"%s\"}}", h, NULL, NULL),
                "{\"Ok\":{\"app\":\"alice\",\"name\":\"notes.txt\",\"rights\":\"read-write\"}}");
    /* each app its own space: bob sees none of alice's files, and may use the same name */
    EXPECT_BODY(fs(&t, "bob", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[]}}");
    EXPECT_ERR(fs(&t, "bob", "{\"Open\":{\"name\":\"notes.txt\"}}", NULL, NULL), "bob has no file named \\\"notes.txt\\\"");
    r = fs(&t, "bob", "{\"Create\":{\"name\":\"notes.txt\"}}", "bob's", NULL);
    const char *bh = handle_of(r, "read-write");
    free(r);
    EXPECT_BODY(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", bh, NULL, &data), "{\"Ok\":{\"length\":5}}");
    ASSERT(strcmp(data, "bob's") == 0);
    free(data);
    /* create an existing name */
    EXPECT_ERR(fs(&t, "alice", "{\"Create\":{\"name\":\"notes.txt\"}}", "x", NULL), "file alice/notes.txt exists");
    /* Open gives the owner a fresh read+write handle */
    r = fs(&t, "alice", "{\"Open\":{\"name\":\"notes.txt\"}}", NULL, NULL);
    const char *o = handle_of(r, "read-write");
    free(r);
    ASSERT(strcmp(o, h) != 0);
    EXPECT_BODY(fsh(&t, "alice", "{\"Size\":{\"handle\":\"%s\"}}", o, NULL, NULL), "{\"Ok\":{\"size\":8}}");
    /* remove: the file and every handle of it go, and their capabilities */
    EXPECT_BODY(fsh(&t, "alice", "{\"Remove\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":null}");
    EXPECT_BODY(fs(&t, "alice", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[\"empty\"]}}");
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 0);
    ASSERT_EQ(holds(&t, "alice", o, UQS_RIGHTS_ALL), 0);
    EXPECT_ERR(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", o, NULL, NULL), "holds no capability for file handle");
    ASSERT(stat(path, &st) != 0);
    EXPECT_BODY(fsh(&t, "bob", "{\"Size\":{\"handle\":\"%s\"}}", bh, NULL, NULL), "{\"Ok\":{\"size\":5}}");
    down(&t);
}

/* "Saving a file returns a handle, and the handle is the only way to read
 * or write that file: it is a capability." A second process without the
 * handle cannot read it, and is told why. */
TEST(fs_other_process_without_handle_is_refused)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", "bob", NULL});
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"secret\"}}", "top secret", NULL);
    const char *h = handle_of(r, "read-write");
    free(r);
    EXPECT_ERR(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, NULL),
               "bob holds no capability for file handle");
    EXPECT_ERR(fsh(&t, "bob", "{\"Write\":{\"handle\":\"%s\"}}", h, "mine now", NULL),
               "bob holds no capability for file handle");
    EXPECT_ERR(fs(&t, "bob", "{\"Open\":{\"name\":\"secret\"}}", NULL, NULL), "bob has no file named");
    char *data;
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, &data), "{\"Ok\":{\"length\":10}}");
    ASSERT(strcmp(data, "top secret") == 0);
    free(data);
    down(&t);
}

/* "A process can clone a handle and send it in a message, or split it and
 * share only its read or only its write half." (processes.md: "The process
 * can clone the handle and share it via message with another process, or
 * split the handle and only clone and share the 'read' or 'write' aspect.") */
TEST(fs_share_split_and_cloned_handles)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", "bob", "carol", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "alice", "bob", NULL), UQ_OK);
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "alice", "carol", NULL), UQ_OK);
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"shared\"}}", "v1", NULL), *data;
    const char *h = handle_of(r, "read-write");
    free(r);
    /* the read half, given to bob */
    r = fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}", h, NULL, NULL);
    const char *rd = handle_of(r, "read");
    free(r);
    ASSERT_EQ(holds(&t, "alice", rd, UQS_RIGHT_READ), 1);
    ASSERT_EQ(holds(&t, "bob", rd, UQS_RIGHT_READ), 0);
    ASSERT(give(&t, "alice", "bob", rd, "read") > 0);
    ASSERT_EQ(holds(&t, "bob", rd, UQS_RIGHT_READ), 1);
    r = ask(&t, "bob", "last", NULL, NULL);
    ASSERT_STR_HAS(r, "\"issuer\":\"test.node@fs\"");
    ASSERT_STR_HAS(r, rd);
    free(r);
    EXPECT_BODY(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, &data), "{\"Ok\":{\"length\":2}}");
    ASSERT(strcmp(data, "v1") == 0);
    free(data);
    EXPECT_BODY(fsh(&t, "bob", "{\"Size\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "{\"Ok\":{\"size\":2}}");
    /* ... but not write: neither through the read half, nor by claiming more */
    EXPECT_ERR(fsh(&t, "bob", "{\"Write\":{\"handle\":\"%s\"}}", rd, "v2", NULL),
               "bob's capability for file handle");
    EXPECT_ERR(fsh(&t, "bob", "{\"Append\":{\"handle\":\"%s\"}}", rd, "v2", NULL), "gives read only; Append needs write");
    EXPECT_ERR(fsh(&t, "bob", "{\"Remove\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "gives read only; Remove needs write");
    EXPECT_ERR(fsh(&t, "bob", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"write\"}}", rd, NULL, NULL),
               "gives read only; Split needs write");
    EXPECT_ERR(fsh(&t, "bob", "{\"Write\":{\"handle\":\"%s\"}}", h, "v2", NULL), "bob holds no capability");
    /* bob cannot pass on what he does not hold: alice's read+write handle */
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "bob", "carol", NULL), UQ_OK);
    ASSERT_EQ(give(&t, "bob", "carol", h, "read-write"), UQ_ABI_EPERM);
    ASSERT_EQ(give(&t, "bob", "carol", rd, "read-write"), UQ_ABI_EPERM);
    ASSERT_EQ(holds(&t, "carol", h, UQS_RIGHTS_ALL), 0);
    /* the write half, given to carol: she may write but not read */
    r = fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"write\"}}", h, NULL, NULL);
    const char *wr = handle_of(r, "write");
    free(r);
    ASSERT(give(&t, "alice", "carol", wr, "write") > 0);
    EXPECT_BODY(fsh(&t, "carol", "{\"Append\":{\"handle\":\"%s\"}}", wr, "+carol", NULL), "{\"Ok\":null}");
    EXPECT_ERR(fsh(&t, "carol", "{\"Read\":{\"handle\":\"%s\"}}", wr, NULL, NULL), "gives write only; Read needs read");
    EXPECT_BODY(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, &data), "{\"Ok\":{\"length\":8}}");
    ASSERT(strcmp(data, "v1+carol") == 0); /* bob reads what carol wrote */
    free(data);
    /* a clone: the same rights, a handle of its own, sent to carol */
    r = fsh(&t, "alice", "{\"Clone\":{\"handle\":\"%s\"}}", h, NULL, NULL);
    const char *cl = handle_of(r, "read-write");
    free(r);
    ASSERT(strcmp(cl, h) != 0);
    ASSERT(give(&t, "alice", "carol", cl, "read-write") > 0);
    EXPECT_BODY(fsh(&t, "carol", "{\"Write\":{\"handle\":\"%s\"}}", cl, "v3", NULL), "{\"Ok\":null}");
    EXPECT_BODY(fsh(&t, "carol", "{\"Read\":{\"handle\":\"%s\"}}", cl, NULL, &data), "{\"Ok\":{\"length\":2}}");
    ASSERT(strcmp(data, "v3") == 0);
    free(data);
    EXPECT_BODY(fsh(&t, "carol", "{\"Info\":{\"handle\":\"%s\"}}", cl, NULL, NULL),
                "{\"Ok\":{\"app\":\"alice\",\"name\":\"shared\",\"rights\":\"read-write\"}}");
    /* sharing adds, never moves: alice still holds what she gave */
    ASSERT_EQ(holds(&t, "alice", rd, UQS_RIGHT_READ), 1);
    ASSERT_EQ(holds(&t, "alice", cl, UQS_RIGHTS_ALL), 1);
    down(&t);
}

/* "Handles can be revoked." Revoking a handle takes it, and what was
 * derived from it, away from every holder; the owner keeps the file. */
TEST(fs_revoke_removes_access_from_every_holder)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", "bob", "carol", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "alice", "bob", NULL), UQ_OK);
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "alice", "carol", NULL), UQ_OK);
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"doc\"}}", "draft", NULL), *data;
    const char *h = handle_of(r, "read-write");
    free(r);
    r = fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}", h, NULL, NULL);
    const char *rd = handle_of(r, "read");
    free(r);
    ASSERT(give(&t, "alice", "bob", rd, "read") > 0);
    /* bob derives a handle of his own from the read half */
    r = fsh(&t, "bob", "{\"Clone\":{\"handle\":\"%s\"}}", rd, NULL, NULL);
    const char *bc = handle_of(r, "read");
    free(r);
    EXPECT_BODY(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", bc, NULL, NULL), "{\"Ok\":{\"length\":5}}");
    /* a reader may not revoke (only the owner app or a holder of write) */
    EXPECT_ERR(fsh(&t, "bob", "{\"Revoke\":{\"handle\":\"%s\"}}", rd, NULL, NULL),
               "bob may not revoke file handle");
    EXPECT_BODY(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "{\"Ok\":{\"length\":5}}");
    /* the owner revokes the half it gave: bob loses it and what he derived;
     * alice and both her copies of the read half lose it too; her root stays */
    EXPECT_BODY(fsh(&t, "alice", "{\"Revoke\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "{\"Ok\":{\"revoked\":2}}");
    ASSERT_EQ(holds(&t, "bob", rd, UQS_RIGHT_READ), 0);
    ASSERT_EQ(holds(&t, "bob", bc, UQS_RIGHT_READ), 0);
    ASSERT_EQ(holds(&t, "alice", rd, UQS_RIGHT_READ), 0);
    EXPECT_ERR(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "bob holds no capability");
    EXPECT_ERR(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", bc, NULL, NULL), "bob holds no capability");
    r = ask(&t, "bob", "list", NULL, NULL);
    ASSERT_STR_LACKS(r, rd); /* bob still holds fs's messaging capability, but no handle */
    ASSERT_STR_LACKS(r, bc);
    free(r);
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, &data), "{\"Ok\":{\"length\":5}}");
    ASSERT(strcmp(data, "draft") == 0);
    free(data);
    /* a holder of write may revoke: carol, given a clone, revokes it */
    r = fsh(&t, "alice", "{\"Clone\":{\"handle\":\"%s\"}}", h, NULL, NULL);
    const char *cl = handle_of(r, "read-write");
    free(r);
    ASSERT(give(&t, "alice", "carol", cl, "read-write") > 0);
    EXPECT_BODY(fsh(&t, "carol", "{\"Revoke\":{\"handle\":\"%s\"}}", cl, NULL, NULL), "{\"Ok\":{\"revoked\":1}}");
    ASSERT_EQ(holds(&t, "carol", cl, UQS_RIGHTS_ALL), 0);
    ASSERT_EQ(holds(&t, "alice", cl, UQS_RIGHTS_ALL), 0);
    /* revoking the root: access goes from both processes, and the store
     * refuses the handle whoever holds what */
    r = fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}", h, NULL, NULL);
    const char *rd2 = handle_of(r, "read");
    free(r);
    ASSERT(give(&t, "alice", "bob", rd2, "read") > 0);
    EXPECT_BODY(fsh(&t, "alice", "{\"Revoke\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":{\"revoked\":2}}");
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 0);
    ASSERT_EQ(holds(&t, "bob", rd2, UQS_RIGHT_READ), 0);
    EXPECT_ERR(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, NULL), "alice holds no capability");
    EXPECT_ERR(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd2, NULL, NULL), "bob holds no capability");
    uqs_handle hh;
    ASSERT_EQ(uqs_handle_parse(h, &hh, NULL), UQ_OK);
    uqs_handle_info info;
    ASSERT_EQ(uqs_handle_info_get(t.files, hh, &info, NULL), UQ_EPERM);
    /* the file stays: its owner opens it again */
    r = fs(&t, "alice", "{\"Open\":{\"name\":\"doc\"}}", NULL, NULL);
    const char *o = handle_of(r, "read-write");
    free(r);
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", o, NULL, NULL), "{\"Ok\":{\"length\":5}}");
    /* the terminal (a root port) sees the fs capabilities of nobody left */
    ASSERT_EQ(holds(&t, "bob", o, UQS_RIGHTS_ALL), 0);
    down(&t);
}

/* "the handle is the only way to read or write that file: it is a
 * capability": knowing a handle's hex gives nothing; the capability cannot
 * be forged, minted or attached by a process that was not given it. */
TEST(fs_handle_cannot_be_forged)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", "mallory", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "mallory", "mallory", NULL), UQ_OK);
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"vault\"}}", "gold", NULL), *data;
    const char *h = handle_of(r, "read-write");
    free(r);
    const char *ops[] = {
        "{\"Read\":{\"handle\":\"%s\"}}",
        "{\"ReadRange\":{\"handle\":\"%s\",\"offset\":0,\"length\":2}}",
        "{\"Size\":{\"handle\":\"%s\"}}",
        "{\"Hash\":{\"handle\":\"%s\"}}",
        "{\"Info\":{\"handle\":\"%s\"}}",
        "{\"Write\":{\"handle\":\"%s\"}}",
        "{\"Append\":{\"handle\":\"%s\"}}",
        "{\"Remove\":{\"handle\":\"%s\"}}",
        "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}",
        "{\"Clone\":{\"handle\":\"%s\"}}",
        NULL,
    };
    for (int i = 0; ops[i]; i++)
        EXPECT_ERR(fsh(&t, "mallory", ops[i], h, "stolen", NULL), "mallory holds no capability for file handle");
    /* the same hex in upper case is the same handle, and refused alike */
    char up_hex[UQS_HANDLE_HEX + 1];
    for (int i = 0; i <= UQS_HANDLE_HEX; i++) up_hex[i] = (char)(h[i] >= 'a' && h[i] <= 'f' ? h[i] - 32 : h[i]);
    EXPECT_ERR(fsh(&t, "mallory", "{\"Read\":{\"handle\":\"%s\"}}", up_hex, NULL, NULL), "mallory holds no capability");
    EXPECT_ERR(fsh(&t, "mallory", "{\"Revoke\":{\"handle\":\"%s\"}}", h, NULL, NULL), "mallory may not revoke");
    /* attaching the capability without holding it, or minting one as fs */
    ASSERT_EQ(give(&t, "mallory", "mallory", h, "read-write"), UQ_ABI_EPERM);
    ASSERT_EQ(give(&t, "mallory", "mallory", h, "read"), UQ_ABI_EPERM);
    char body[512];
    snprintf(body, sizeof body,
             "attach\nmallory\n[{\"issuer\":\"test.node@fs\",\"params\":{\"handle\":\"%s\",\"rights\":\"read\"}}]", h);
    r = ask(&t, "mallory", body, NULL, NULL);
    ASSERT_EQ(rc_of(r), UQ_ABI_EPERM);
    free(r);
    /* a capability mallory mints under its own name is not one of fs */
    snprintf(body, sizeof body, "attach\nmallory\n[{\"params\":{\"handle\":\"%s\",\"rights\":\"read-write\"}}]", h);
    r = ask(&t, "mallory", body, NULL, NULL);
    ASSERT(rc_of(r) > 0);
    free(r);
    EXPECT_ERR(fsh(&t, "mallory", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, NULL), "mallory holds no capability");
    ASSERT_EQ(holds(&t, "mallory", h, UQS_RIGHTS_ALL), 0);
    /* nothing changed */
    EXPECT_BODY(fsh(&t, "alice", "{\"Read\":{\"handle\":\"%s\"}}", h, NULL, &data), "{\"Ok\":{\"length\":4}}");
    ASSERT(strcmp(data, "gold") == 0);
    free(data);
    EXPECT_BODY(fs(&t, "alice", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[\"vault\"]}}");
    EXPECT_BODY(fs(&t, "mallory", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[]}}");
    down(&t);
}

/* Malformed requests get a clear {"Err":...}, and change nothing. */
TEST(fs_bad_requests_are_explained)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", NULL});
    EXPECT_ERR(fs(&t, "alice", "not json", NULL, NULL), "bad request: the body must be JSON");
    EXPECT_ERR(fs(&t, "alice", "{\"Read\":{},\"Write\":{}}", NULL, NULL), "bad request");
    EXPECT_ERR(fs(&t, "alice", "{\"Frobnicate\":{}}", NULL, NULL), "unknown request \\\"Frobnicate\\\"");
    EXPECT_ERR(fs(&t, "alice", "{\"Create\":{}}", NULL, NULL), "Create needs {\\\"name\\\"");
    EXPECT_ERR(fs(&t, "alice", "{\"Read\":{}}", NULL, NULL), "Read needs {\\\"handle\\\"");
    EXPECT_ERR(fs(&t, "alice", "{\"Read\":{\"handle\":\"xyz\"}}", NULL, NULL), "is malformed: expected 32 hex digits");
    EXPECT_ERR(fs(&t, "alice", "{\"Create\":{\"name\":\"../escape\"}}", "x", NULL), "bad file name");
    EXPECT_ERR(fs(&t, "alice", "{\"Create\":{\"name\":\".hidden\"}}", "x", NULL), "bad file name");
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"f\"}}", "x", NULL);
    const char *h = handle_of(r, "read-write");
    free(r);
    EXPECT_ERR(fsh(&t, "alice", "{\"ReadRange\":{\"handle\":\"%s\",\"offset\":-1,\"length\":2}}", h, NULL, NULL),
               "ReadRange needs \\\"offset\\\": a whole number");
    EXPECT_ERR(fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"all\"}}", h, NULL, NULL),
               "Split needs \\\"rights\\\"");
    EXPECT_BODY(fs(&t, "alice", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[\"f\"]}}");
    down(&t);
}

/* "each app gets its own space in the node's home": files and handle
 * records survive a node stop and a new node on the same home; with the
 * process table brought back by the kernel, the app's capabilities come
 * back too, and fs takes over what its predecessor issued. */
TEST(fs_files_survive_a_new_node_on_the_same_home)
{
    const char *home = tb_tmpdir();
    fsnode t;
    up(&t, home, (const char *[]){"alice", "bob", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "alice", "bob", NULL), UQ_OK);
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"diary\"}}", "day one", NULL), *data;
    char h[UQS_HANDLE_HEX + 1];
    snprintf(h, sizeof h, "%s", handle_of(r, "read-write"));
    free(r);
    EXPECT_BODY(fsh(&t, "alice", "{\"Append\":{\"handle\":\"%s\"}}", h, ", day two", NULL), "{\"Ok\":null}");
    r = fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}", h, NULL, NULL);
    char rd[UQS_HANDLE_HEX + 1];
    snprintf(rd, sizeof rd, "%s", handle_of(r, "read"));
    free(r);
    ASSERT(give(&t, "alice", "bob", rd, "read") > 0);
    char *hash1 = fsh(&t, "alice", "{\"Hash\":{\"handle\":\"%s\"}}", h, NULL, NULL);
    ASSERT_STR_HAS(hash1, "{\"Ok\":{\"hash\":\"");
    down(&t);

    up(&t, home, NULL); /* alice and bob come back from the store */
    ASSERT(uqi_node_has(t.n, "alice") && uqi_node_has(t.n, "bob"));
    /* the handle records are back, with their rights and derivation */
    uqs_handle hh, rh;
    uqs_handle_info info;
    ASSERT_EQ(uqs_handle_parse(h, &hh, NULL), UQ_OK);
    ASSERT_EQ(uqs_handle_parse(rd, &rh, NULL), UQ_OK);
    ASSERT_EQ(uqs_handle_info_get(t.files, hh, &info, NULL), UQ_OK);
    ASSERT(strcmp(info.app, "alice") == 0 && strcmp(info.name, "diary") == 0 && info.rights == UQS_RIGHTS_ALL);
    ASSERT_EQ(uqs_handle_info_get(t.files, rh, &info, NULL), UQ_OK);
    ASSERT(info.derived && info.rights == UQS_RIGHT_READ && memcmp(info.parent.id, hh.id, 16) == 0);
    /* the capabilities are back with the processes (the kernel's records) */
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 1);
    ASSERT_EQ(holds(&t, "bob", rd, UQS_RIGHT_READ), 1);
    /* the file is back: through the old handles, and by name for its owner */
    char *hash2 = fsh(&t, "alice", "{\"Hash\":{\"handle\":\"%s\"}}", h, NULL, NULL);
    ASSERT(strcmp(hash1, hash2) == 0);
    free(hash1);
    free(hash2);
    EXPECT_BODY(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, &data), "{\"Ok\":{\"length\":16}}");
    ASSERT(strcmp(data, "day one, day two") == 0);
    free(data);
    EXPECT_ERR(fsh(&t, "bob", "{\"Append\":{\"handle\":\"%s\"}}", rd, "!", NULL), "gives read only");
    EXPECT_BODY(fs(&t, "alice", "{\"List\":null}", NULL, NULL), "{\"Ok\":{\"files\":[\"diary\"]}}");
    r = fs(&t, "alice", "{\"Open\":{\"name\":\"diary\"}}", NULL, NULL);
    const char *o = handle_of(r, "read-write");
    free(r);
    EXPECT_BODY(fsh(&t, "alice", "{\"Append\":{\"handle\":\"%s\"}}", h, ", day three", NULL), "{\"Ok\":null}");
    EXPECT_BODY(fsh(&t, "alice", "{\"Size\":{\"handle\":\"%s\"}}", o, NULL, NULL), "{\"Ok\":{\"size\":27}}");
    /* the new fs revokes what the old one issued, from every holder */
    EXPECT_BODY(fsh(&t, "alice", "{\"Revoke\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "{\"Ok\":{\"revoked\":1}}");
    ASSERT_EQ(holds(&t, "bob", rd, UQS_RIGHT_READ), 0);
    EXPECT_ERR(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "bob holds no capability");
    down(&t);
    /* ... and the revocation is what the next node finds */
    up(&t, home, NULL);
    ASSERT_EQ(holds(&t, "bob", rd, UQS_RIGHT_READ), 0);
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 1);
    EXPECT_ERR(fsh(&t, "bob", "{\"Read\":{\"handle\":\"%s\"}}", rd, NULL, NULL), "bob holds no capability");
    down(&t);
}

/* The module stops and starts again on a running node: fs's capabilities
 * are kept across (the kernel holds them for the next fs). */
TEST(fs_module_restart_keeps_capabilities)
{
    fsnode t;
    up(&t, tb_tmpdir(), (const char *[]){"alice", NULL});
    char *r = fs(&t, "alice", "{\"Create\":{\"name\":\"a\"}}", "abc", NULL);
    const char *h = handle_of(r, "read-write");
    free(r);
    uqi_fsmod_stop(t.fs);
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 1);
    r = fs(&t, "alice", "\"List\"", NULL, NULL);
    ASSERT_STR_HAS(r, "{\"error\":3}"); /* no fs: NoSuchProcess */
    free(r);
    ASSERT_EQ(uqi_fsmod_start(t.n, t.files, &t.fs, NULL), UQ_OK);
    EXPECT_BODY(fsh(&t, "alice", "{\"Size\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":{\"size\":3}}");
    /* the new fs revokes what the old one issued */
    EXPECT_BODY(fsh(&t, "alice", "{\"Revoke\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":{\"revoked\":1}}");
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 0);
    /* a second fs on the same node is refused */
    uqi_fsmod *dup;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_fsmod_start(t.n, t.files, &dup, &em), UQ_EEXIST);
    down(&t);
}

/* "wasm_bytes_handle in InitializeProcess names a stored file": a process
 * installed from a file in the store, by an installer that may read it. */
TEST(fs_wasm_bytes_handle_names_a_stored_file)
{
    fsnode t;
    char home[1100];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    up(&t, home, (const char *const[]){"alice", NULL});
    /* alice stores a module */
    uqi_payload *wasm = kn_app_payload("echo");
    uint64_t id = kn_request(t.port, "alice", "fs\n{\"Create\":{\"name\":\"echo.wasm\"}}", 30, NULL, wasm);
    uqi_msg *r = uqi_port_receive(t.port, 30000);
    ASSERT(r && r->id == id && r->kind == UQI_MSG_RESPONSE);
    char *b = kn_str(r->body, r->body_len);
    uqi_msg_free(r);
    const char *hex = handle_of(b, "read-write");
    free(b);
    /* an installer with the kernel capability, but no right to read the file */
    uqi_kproc *inst;
    ASSERT_EQ(uqi_node_port_plain(t.n, "installer", &inst, NULL), UQ_OK);
    uqi_capref kc = {.params = (char *)"\"messaging\""};
    snprintf(kc.issuer.node, sizeof kc.issuer.node, "test.node");
    snprintf(kc.issuer.process, sizeof kc.issuer.process, "kernel");
    ASSERT_EQ(uqi_node_grant(t.n, NULL, "installer", &kc, 1, NULL), UQ_OK);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "{\"InitializeProcess\":{\"id\":\"stored-echo\",\"wasm_bytes_handle\":\"%s\",\"on_exit\":\"None\","
             "\"initial_capabilities\":[],\"public\":true}}", hex);
    r = kn_kcall(inst, cmd, NULL);
    ASSERT(kn_body_is(r, "\"InitializeProcessError\""));
    ASSERT_STR_HAS(r->metadata, "installer may not read the file of wasm_bytes_handle");
    uqi_msg_free(r);
    ASSERT(!uqi_node_has(t.n, "stored-echo"));
    /* alice gives it the read half: now it installs from the stored file */
    char *s = fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}", hex, NULL, NULL);
    const char *rd = handle_of(s, "read");
    free(s);
    char body[512];
    snprintf(body, sizeof body, "attach\ninstaller\n[{\"issuer\":\"fs\",\"params\":{\"handle\":\"%s\",\"rights\":\"read\"}}]", rd);
    ASSERT_EQ(uqi_node_grant_messaging(t.n, "alice", "installer", NULL), UQ_OK);
    s = ask(&t, "alice", body, NULL, NULL);
    ASSERT(rc_of(s) > 0);
    free(s);
    uqi_msg *gift = uqi_port_receive(inst, 10000); /* the message that carried it */
    ASSERT(gift && gift->caps);
    uqi_msg_free(gift);
    snprintf(cmd, sizeof cmd,
             "{\"InitializeProcess\":{\"id\":\"stored-echo\",\"wasm_bytes_handle\":\"%s\",\"on_exit\":\"None\","
             "\"initial_capabilities\":[],\"public\":true}}", rd);
    r = kn_kcall(inst, cmd, NULL);
    ASSERT(kn_body_is(r, "\"InitializedProcess\""));
    uqi_msg_free(r);
    r = kn_kcall(inst, "{\"RunProcess\":\"stored-echo\"}", NULL);
    ASSERT(kn_body_is(r, "\"StartedProcess\""));
    uqi_msg_free(r);
    EXPECT_BODY(ask(&t, "stored-echo", "{\"from\":\"the store\"}", NULL, NULL), "{\"from\":\"the store\"}");
    down(&t);
}

/* Fill store s with records "fill<N>" (state database) until even a small
 * one no longer fits; how many were written. */
static int fill_store(uqs_store *s)
{
    static char buf[4096];
    int n = 0, refused = 0;
    size_t len = sizeof buf;
    while (refused < 3) {
        char key[32];
        snprintf(key, sizeof key, "fill%d", n);
        uqs_op op = {.db = UQS_DB_STATE, .key = key, .klen = strlen(key), .val = buf, .vlen = len};
        uq_err e = uqs_write(s, &op, 1, NULL);
        if (e == UQ_OK) {
            n++;
            continue;
        }
        ASSERT_EQ(e, UQ_ELIMIT);
        if (len > 16) len /= 4;
        else refused++;
    }
    return n;
}

static void unfill_store(uqs_store *s, int n)
{
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "fill%d", i);
        uqs_op op = {.db = UQS_DB_STATE, .key = key, .klen = strlen(key), .del = true};
        ASSERT_EQ(uqs_write(s, &op, 1, NULL), UQ_OK);
    }
}

/* The stored record of process id (malloc'ed). */
static char *stored_record(fsnode *t, const char *id)
{
    char key[200];
    snprintf(key, sizeof key, "p/%s", id);
    uint8_t *b;
    size_t n;
    uq_errmsg em = {{0}};
    if (uqs_get(t->s, UQS_DB_PROCS, key, strlen(key), &b, &n, &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    return (char *)b;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A capability list (a JSON array, or an object holding one) as a
 * canonical string: each element with sorted keys, the elements sorted. A
 * capability taken and given back keeps its token but not its place. */
static char *caps_canonical(const char *json)
{
    json_t *v = json_loads(json, 0, NULL), *a = v;
    ASSERT(v != NULL);
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        a = NULL;
        json_object_foreach(v, k, x) if (json_is_array(x)) a = x;
    }
    ASSERT(json_is_array(a));
    size_t n = json_array_size(a), len = 1;
    char **el = calloc(n ? n : 1, sizeof *el);
    for (size_t i = 0; i < n; i++) {
        el[i] = json_dumps(json_array_get(a, i), JSON_SORT_KEYS | JSON_COMPACT);
        len += strlen(el[i]) + 1;
    }
    qsort(el, n, sizeof *el, cmp_str);
    char *out = malloc(len), *o = out;
    for (size_t i = 0; i < n; i++) {
        o += sprintf(o, "%s\n", el[i]);
        free(el[i]);
    }
    *o = '\0';
    free(el);
    json_decref(v);
    return out;
}

/* The grant of a new handle's capability and the handle's records are one
 * transaction: when the store cannot take them (full), fs answers the
 * store's error and the app holds nothing new, in memory or in its stored
 * record (no capability for a handle that does not exist), and Create
 * leaves no file. The same for Revoke and Remove: the deletion of the
 * handles' records and the holders' rewritten records are one transaction;
 * when it fails, the handle, the file and the app's capability (the same
 * token) stay. Once there is room again, the same requests work. */
TEST(fs_store_full_grants_nothing)
{
    fsnode t;
    char home[1100];
    snprintf(home, sizeof home, "%s/full", tb_tmpdir());
    const char *apps[] = {"alice", NULL};
    uqs_options opt = {.map_size = 2u << 20};
    up_opt(&t, home, apps, &opt);
    const char *h = handle_of(fs(&t, "alice", "{\"Create\":{\"name\":\"a\"}}", "one", NULL), "read-write");
    /* A large record (1000 capabilities of the tester, about 70 KB): its
     * rewrite needs more pages than the fill below leaves free. */
    static char params[1000][16];
    static uqi_capref many[1000];
    for (int i = 0; i < 1000; i++) {
        snprintf(params[i], sizeof params[i], "{\"n\":%d}", i);
        many[i] = (uqi_capref){.issuer = t.port->addr, .params = params[i]};
    }
    ASSERT_EQ(uqi_node_grant(t.n, NULL, "alice", many, 1000, NULL), UQ_OK); /* one record write */
    ASSERT_EQ(uqs_flush(t.s, NULL), UQ_OK);
    char *caps0 = ask(&t, "alice", "list", NULL, NULL), *rec0 = stored_record(&t, "alice");
    ASSERT_STR_HAS(rec0, h);
    int filled = fill_store(t.s);
    test_log("%d records fill the store", filled);

    EXPECT_ERR(fs(&t, "alice", "{\"Create\":{\"name\":\"b\"}}", "two", NULL), "is full");
    EXPECT_ERR(fs(&t, "alice", "{\"Open\":{\"name\":\"a\"}}", NULL, NULL), "is full");
    EXPECT_ERR(fsh(&t, "alice", "{\"Split\":{\"handle\":\"%s\",\"rights\":\"read\"}}", h, NULL, NULL), "is full");
    EXPECT_ERR(fsh(&t, "alice", "{\"Clone\":{\"handle\":\"%s\"}}", h, NULL, NULL), "is full");
    EXPECT_ERR(fsh(&t, "alice", "{\"Revoke\":{\"handle\":\"%s\"}}", h, NULL, NULL), "is full");
    EXPECT_ERR(fsh(&t, "alice", "{\"Remove\":{\"handle\":\"%s\"}}", h, NULL, NULL), "is full");
    EXPECT_BODY(fsh(&t, "alice", "{\"Size\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":{\"size\":3}}");
    char *caps1 = ask(&t, "alice", "list", NULL, NULL), *rec1 = stored_record(&t, "alice");
    char *set0 = caps_canonical(caps0), *set1 = caps_canonical(caps1);
    ASSERT(strcmp(set0, set1) == 0); /* the grants were taken back, the revoked capability given back */
    free(set0);
    free(set1);
    ASSERT(strcmp(rec0, rec1) == 0);   /* and never written */
    EXPECT_BODY(fs(&t, "alice", "\"List\"", NULL, NULL), "{\"Ok\":{\"files\":[\"a\"]}}");
    char path[1300];
    struct stat st;
    snprintf(path, sizeof path, "%s/files/alice/b.v1", home);
    ASSERT(stat(path, &st) != 0);

    unfill_store(t.s, filled);
    const char *b = handle_of(fs(&t, "alice", "{\"Create\":{\"name\":\"b\"}}", "two", NULL), "read-write");
    ASSERT_EQ(holds(&t, "alice", b, UQS_RIGHTS_ALL), 1);
    EXPECT_BODY(fsh(&t, "alice", "{\"Revoke\":{\"handle\":\"%s\"}}", b, NULL, NULL), "{\"Ok\":{\"revoked\":1}}");
    ASSERT_EQ(holds(&t, "alice", b, UQS_RIGHTS_ALL), 0);
    EXPECT_BODY(fsh(&t, "alice", "{\"Remove\":{\"handle\":\"%s\"}}", h, NULL, NULL), "{\"Ok\":null}");
    ASSERT_EQ(holds(&t, "alice", h, UQS_RIGHTS_ALL), 0);
    snprintf(path, sizeof path, "%s/files/alice/a.v1", home);
    ASSERT(stat(path, &st) != 0);
    uqs_flush(t.s, NULL);
    char *rec2 = stored_record(&t, "alice");
    ASSERT(strstr(rec2, h) == NULL && strstr(rec2, b) == NULL);
    free(rec2);
    free(caps0);
    free(caps1);
    free(rec0);
    free(rec1);
    down(&t);
}
