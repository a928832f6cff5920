/* Packages (src/kernel/install.c): a manifest that cannot be installed in
 * full is not installed at all. */
#include <stdio.h>

#include "kernel/install.h"
#include "knode.h"

static void write_manifest(const char *path, const char *apps, const char *third)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{\"package\":\"p\",\"processes\":["
             "{\"process_name\":\"e1\",\"process_wasm_path\":\"%s/echo.wasm\",\"public\":true},"
             "{\"process_name\":\"m1\",\"process_wasm_path\":\"%s/middleware.wasm\",\"request_capabilities\":[\"e1\"],"
             "\"request_networking\":true},"
             "%s]}",
             apps, apps, third);
    ASSERT_EQ(uqi_write_file_atomic(path, text, strlen(text), NULL), UQ_OK);
}

/* "A refusal leaves nothing behind": a failure half-way rolls back. */
TEST(install_all_or_nothing)
{
    uqi_node *n = kn_boot(0);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    char apps[1100], path[1200];
    snprintf(apps, sizeof apps, "%s/apps", tb_shared());
    snprintf(path, sizeof path, "%s/manifest.json", tb_tmpdir());
    /* the third process's file is missing: found only when installing */
    write_manifest(path, apps, "{\"process_name\":\"x1\",\"process_wasm_path\":\"/nonexistent/x.wasm\"}");
    uqi_pkg *p;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_pkg_load(path, "test.node", &p, &em), UQ_OK);
    char *d = uqi_pkg_describe(p);
    ASSERT_STR_HAS(d, "m1 (middleware.wasm)");
    ASSERT_STR_HAS(d, "- send messages to e1");
    ASSERT_STR_HAS(d, "- reach the network: talk to other nodes");
    free(d);
    ASSERT(uqi_pkg_install(n, port, p, &em) != UQ_OK);
    ASSERT_STR_HAS(em.text, "nothing was left behind");
    ASSERT(!uqi_node_has(n, "e1") && !uqi_node_has(n, "m1") && !uqi_node_has(n, "x1"));
    uqi_pkg_free(p);
    /* a capability of a process that is not installed */
    write_manifest(path, apps, "{\"process_name\":\"x1\",\"process_wasm_path\":\"echo.wasm\",\"request_capabilities\":[\"ghost\"]}");
    ASSERT_EQ(uqi_pkg_load(path, "test.node", &p, &em), UQ_OK);
    ASSERT_EQ(uqi_pkg_install(n, port, p, &em), UQ_ENOENT);
    ASSERT_STR_HAS(em.text, "x1 asks for a capability of ghost, which is not installed");
    ASSERT(!uqi_node_has(n, "e1"));
    uqi_pkg_free(p);
    /* malformed manifests name the file and the problem */
    const char *bad = "{\"processes\":[{\"process_name\":\"Bad Name\",\"process_wasm_path\":\"a\"}]}";
    ASSERT_EQ(uqi_write_file_atomic(path, bad, strlen(bad), NULL), UQ_OK);
    ASSERT_EQ(uqi_pkg_load(path, "test.node", &p, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "manifest.json");
    ASSERT_STR_HAS(em.text, "bad process name");
    uqi_node_stop(n);
}

TEST(install_grants_requested_capabilities)
{
    uqi_node *n = kn_boot(0);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "installer", &port, NULL), UQ_OK);
    char path[1200];
    snprintf(path, sizeof path, "%s/apps/demo.json", tb_shared());
    uqi_pkg *p;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_pkg_load(path, "test.node", &p, &em), UQ_OK);
    ASSERT_EQ(uqi_pkg_install(n, port, p, &em), UQ_OK);
    uqi_pkg_free(p);
    uqi_capref c = {.params = (char *)"\"messaging\""};
    snprintf(c.issuer.node, sizeof c.issuer.node, "test.node");
    snprintf(c.issuer.process, sizeof c.issuer.process, "echo");
    ASSERT_EQ(uqi_node_has_cap(n, "mw", &c), 1);
    ASSERT_EQ(uqi_node_has_cap(n, "sink", &c), 0);
    /* and the middleware reaches echo through it */
    kn_request(port, "mw", "{\"via\":\"mw\"}", 5, NULL, NULL);
    uqi_msg *r = uqi_port_receive(port, 10000);
    ASSERT(r && r->kind == UQI_MSG_RESPONSE && strcmp(r->source.process, "echo") == 0);
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* "Installing shows the user, in plain words, what the app asks for ('send
 * messages to X and Y, reach the network, read and write its own files')" */
TEST(install_describes_in_plain_words)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/m.json", tb_tmpdir());
    const char *m = "{\"package\":\"notes\",\"processes\":[{\"process_name\":\"notes\",\"process_wasm_path\":\"n.wasm\","
                    "\"request_capabilities\":[\"x\",\"y\",{\"issuer\":\"kernel\",\"params\":\"messaging\"},"
                    "{\"issuer\":\"vault\",\"params\":{\"role\":\"reader\"}}],"
                    "\"request_networking\":true,\"request_files\":true}]}";
    ASSERT_EQ(uqi_write_file_atomic(path, m, strlen(m), NULL), UQ_OK);
    uqi_pkg *p;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_pkg_load(path, "test.node", &p, &em), UQ_OK);
    char *d = uqi_pkg_describe(p);
    test_log("%s", d);
    ASSERT_STR_HAS(d, "Package notes installs 1 process:");
    ASSERT_STR_HAS(d, "- send messages to x");
    ASSERT_STR_HAS(d, "- send messages to y");
    ASSERT_STR_HAS(d, "- control the node: start and stop any process (the kernel capability)");
    ASSERT_STR_HAS(d, "- use vault's capability {\"role\":\"reader\"}");
    ASSERT_STR_HAS(d, "- reach the network: talk to other nodes");
    ASSERT_STR_HAS(d, "- read and write its own files");
    free(d);
    uqi_pkg_free(p);
}
