/* Capabilities, attacked by real wasm processes (tests/guests/capper.c) on a
 * real node: every attempt is refused with a clear error and changes
 * nothing; every permitted path works. The seed sentence each test checks
 * is quoted (../shared/seeds/processes.md, kernel-api.md, and issue 4). */
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "knode.h"
#include "sdk_abi.h"

/* A request from the root port to a capper; returns the response body. */
static char *ask(uqi_kproc *port, const char *target, const char *body, uqi_payload *payload)
{
    return kn_ask(port, target, body, payload, NULL);
}

static long long rc_of(const char *json)
{
    const char *p = strstr(json, "\"rc\":");
    if (!p) test_fail(__FILE__, __LINE__, "no rc in %s", json);
    return atoll(p + 5);
}

static long long ask_rc(uqi_kproc *port, const char *target, const char *body)
{
    char *s = ask(port, target, body, NULL);
    long long rc = rc_of(s);
    free(s);
    return rc;
}

static int has(uqi_node *n, const char *holder, const char *issuer, const char *params)
{
    uqi_capref c = {.params = (char *)params};
    snprintf(c.issuer.node, sizeof c.issuer.node, "test.node");
    snprintf(c.issuer.process, sizeof c.issuer.process, "%s", issuer);
    return uqi_node_has_cap(n, holder, &c);
}

static uint64_t received(uqi_node *n, const char *id)
{
    char *j = uqi_node_debug_json(n, id);
    const char *p = j ? strstr(j, "\"received\":") : NULL;
    uint64_t v = p ? strtoull(p + 11, NULL, 10) : 0;
    free(j);
    return v;
}

/* The first token in a caps list whose params contain `needle`. */
static char *token_with(const char *list, const char *needle)
{
    json_t *a = json_loads(list, 0, NULL);
    char *out = NULL;
    for (size_t i = 0; a && i < json_array_size(a) && !out; i++) {
        json_t *t = json_array_get(a, i);
        if (strstr(json_string_value(json_object_get(t, "params")), needle))
            out = json_dumps(t, JSON_COMPACT);
    }
    json_decref(a);
    if (!out) test_fail(__FILE__, __LINE__, "no token with %s in %s", needle, list);
    return out;
}

/* Grant (as the node's owner) the kernel capability ("kernel") or the
 * network capability ("network"), both issued by node@kernel. */
static void grant_kernel_cap(uqi_node *n, const char *holder, const char *which)
{
    uqi_capref c = {.params = (char *)(strcmp(which, "kernel") == 0 ? "\"messaging\"" : "\"network\"")};
    snprintf(c.issuer.node, sizeof c.issuer.node, "test.node");
    snprintf(c.issuer.process, sizeof c.issuer.process, "kernel");
    ASSERT_EQ(uqi_node_grant(n, NULL, holder, &c, 1, NULL), UQ_OK);
}

static uqi_node *cappers(uqi_kproc **port, const char *const *ids)
{
    uqi_node *n = kn_boot(0);
    for (; *ids; ids++) kn_spawn_guest(n, "capper", *ids);
    ASSERT_EQ(uqi_node_port(n, "tester", port, NULL), UQ_OK);
    return n;
}

/* "a process must have a Capability in order to create a message directed
 * at another process" / "A send without it fails back to the sender with a
 * clear error; the target never sees it." */
TEST(caps_send_needs_messaging_capability)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"mallory", "alice", NULL});
    ASSERT_EQ(ask_rc(port, "mallory", "send\nalice"), UQ_ABI_EPERM);
    ASSERT_EQ(received(n, "alice"), 0); /* alice never saw it */
    /* the permitted path: once granted (as an installer would), it goes through */
    ASSERT_EQ(uqi_node_grant_messaging(n, "mallory", "alice", NULL), UQ_OK);
    ASSERT(ask_rc(port, "mallory", "send\nalice") > 0);
    /* a port of its own holds nothing either, and gets the reason in words */
    uqi_kproc *plain;
    ASSERT_EQ(uqi_node_port_plain(n, "stranger", &plain, NULL), UQ_OK);
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, "{}", 2);
    ASSERT_EQ(uqi_addr_parse("alice", "test.node", &m->target, NULL), UQ_OK);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_kernel_send(plain, m, NULL, 0, NULL, &em), UQ_EPERM);
    ASSERT_STR_HAS(em.text, "stranger may not message alice: it holds no messaging capability issued by alice");
    uqi_msg_free(m);
    uqi_node_stop(n);
}

/* "The public field specifies whether the process should be visible to
 * other processes *without* needing to grant a messaging capability." */
TEST(caps_public_process_needs_no_capability)
{
    uqi_node *n = kn_boot(0);
    char path[1100];
    snprintf(path, sizeof path, "%s/guests/capper.wasm", tb_shared());
    uint8_t *b;
    size_t len;
    ASSERT_EQ(uqi_read_file(path, &b, &len, NULL), UQ_OK);
    ASSERT_EQ(uqi_node_spawn(n, "open", b, len, true, NULL, NULL), UQ_OK);
    ASSERT_EQ(uqi_node_spawn(n, "mallory", b, len, false, NULL, NULL), UQ_OK);
    free(b);
    uqi_kproc *port;
    ASSERT_EQ(uqi_node_port(n, "tester", &port, NULL), UQ_OK);
    ASSERT(ask_rc(port, "mallory", "send\nopen") > 0);
    uqi_node_stop(n);
}

/* "Kernel: only holders of the kernel capability (the installer, the
 * terminal) may send kernel commands." / "Generally, userspace applications
 * will not have the capability to message the kernel." */
TEST(caps_kernel_needs_kernel_capability)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"mallory", "alice", NULL});
    ASSERT_EQ(ask_rc(port, "mallory", "kernel\n{\"KillProcess\":\"alice\"}"), UQ_ABI_EPERM);
    ASSERT(uqi_node_has(n, "alice")); /* nothing changed */
    ASSERT_EQ(ask_rc(port, "mallory", "kernel\n\"Shutdown\""), UQ_ABI_EPERM);
    ASSERT(!uqi_node_wait_shutdown(n, 0));
    /* granted the kernel capability, the same command works */
    grant_kernel_cap(n, "mallory", "kernel");
    char *r = ask(port, "mallory", "kernel\n{\"KillProcess\":\"alice\"}", NULL);
    ASSERT_STR_HAS(r, "\"body\":{\"KilledProcess\":\"alice\"}");
    ASSERT(!uqi_node_has(n, "alice"));
    free(r);
    uqi_node_stop(n);
}

/* "its guest call that saves capabilities adds any capability a process
 * names, root included ... Ours must not leak": a process cannot grant
 * itself a capability, by the kernel or by attaching it to a message. */
TEST(caps_process_cannot_grant_itself)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"mallory", "alice", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "mallory", "mallory", NULL), UQ_OK);
    /* attach alice's messaging capability (not held) to a message to itself */
    ASSERT_EQ(ask_rc(port, "mallory", "attach\nmallory\n[{\"issuer\":\"alice\",\"params\":\"messaging\"}]"),
              UQ_ABI_EPERM);
    /* the kernel capability, the network capability, likewise */
    ASSERT_EQ(ask_rc(port, "mallory", "attach\nmallory\n[{\"issuer\":\"kernel\",\"params\":\"messaging\"}]"),
              UQ_ABI_EPERM);
    ASSERT_EQ(ask_rc(port, "mallory", "attach\nmallory\n[{\"issuer\":\"kernel\",\"params\":\"network\"}]"),
              UQ_ABI_EPERM);
    /* GrantCapabilities without the kernel capability */
    ASSERT_EQ(ask_rc(port, "mallory",
                     "kernel\n{\"GrantCapabilities\":{\"target\":\"mallory\",\"capabilities\":"
                     "[{\"issuer\":\"alice\",\"params\":\"messaging\"}]}}"),
              UQ_ABI_EPERM);
    ASSERT_EQ(has(n, "mallory", "alice", "\"messaging\""), 0);
    ASSERT_EQ(has(n, "mallory", "kernel", "\"messaging\""), 0);
    ASSERT_EQ(ask_rc(port, "mallory", "send\nalice"), UQ_ABI_EPERM);
    /* what it may do: mint its own and give it */
    ASSERT(ask_rc(port, "mallory", "attach\nmallory\n[{\"params\":{\"mine\":true}}]") > 0);
    ASSERT_EQ(has(n, "mallory", "mallory", "{\"mine\":true}"), 1);
    uqi_node_stop(n);
}

/* "Processes mint capabilities issued by themselves, with parameters of
 * their own, give them to others by attaching them to messages, and ask the
 * kernel whether a sender holds a given capability." */
TEST(caps_mint_give_and_ask)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"vault", "bob", "mallory", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "vault", "bob", NULL), UQ_OK);
    ASSERT(ask_rc(port, "vault", "attach\nbob\n[{\"params\":{\"vault\":\"read\"}}]") > 0);
    char *last = NULL;
    for (int i = 0; i < 200 && (!last || strcmp(last, "null") == 0); i++) { /* the gift is on its way */
        free(last);
        usleep(5000);
        last = ask(port, "bob", "last", NULL);
    }
    ASSERT_STR_HAS(last, "\"issuer\":\"test.node@vault\"");
    ASSERT_STR_HAS(last, "\"holder\":\"test.node@bob\"");
    ASSERT_STR_HAS(last, "\"params\":\"{\\\"vault\\\":\\\"read\\\"}\"");
    free(last);
    ASSERT_EQ(ask_rc(port, "vault", "has\nbob\n{\"params\":{\"vault\":\"read\"}}"), 1);
    ASSERT_EQ(ask_rc(port, "vault", "has\nmallory\n{\"params\":{\"vault\":\"read\"}}"), 0);
    ASSERT_EQ(ask_rc(port, "vault", "has\nbob\n{\"params\":{\"vault\":\"write\"}}"), 0);
    /* a process may ask only about what it issued */
    ASSERT_EQ(ask_rc(port, "mallory", "has\nbob\n{\"issuer\":\"vault\",\"params\":{\"vault\":\"read\"}}"), UQ_ABI_EPERM);
    /* bob may pass on what he holds: it stays vault's capability */
    ASSERT_EQ(uqi_node_grant_messaging(n, "bob", "mallory", NULL), UQ_OK);
    ASSERT(ask_rc(port, "bob", "attach\nmallory\n[{\"issuer\":\"vault\",\"params\":{\"vault\":\"read\"}}]") > 0);
    for (int i = 0; i < 200 && ask_rc(port, "vault", "has\nmallory\n{\"params\":{\"vault\":\"read\"}}") != 1; i++)
        usleep(5000);
    ASSERT_EQ(ask_rc(port, "vault", "has\nmallory\n{\"params\":{\"vault\":\"read\"}}"), 1);
    uqi_node_stop(n);
}

/* "A capability is an issuer address plus parameters, signed by the issuing
 * node's Ed25519 key": forging or altering a signature is detected, and a
 * capability issued to someone else cannot be presented as one's own. */
TEST(caps_forged_altered_or_borrowed_tokens_refused)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"vault", "bob", "mallory", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "vault", "bob", NULL), UQ_OK);
    ASSERT_EQ(uqi_node_grant_messaging(n, "vault", "mallory", NULL), UQ_OK);
    ASSERT(ask_rc(port, "vault", "attach\nbob\n[{\"params\":{\"role\":\"admin\"}}]") > 0);
    ASSERT(ask_rc(port, "vault", "attach\nmallory\n[{\"params\":{\"role\":\"reader\"}}]") > 0);
    while (has(n, "mallory", "vault", "{\"role\":\"reader\"}") != 1) usleep(2000);
    char *ml = ask(port, "mallory", "list", NULL);
    char *tok = token_with(ml, "reader");
    char q[4096];
    /* the genuine token verifies */
    snprintf(q, sizeof q, "verify\ntest.node@mallory\n%s", tok);
    ASSERT_EQ(ask_rc(port, "vault", q), 0);
    /* altered parameters: reader -> writer, signature kept */
    char *alt = uqi_xstrdup(tok);
    memcpy(strstr(alt, "reader"), "writer", 6);
    snprintf(q, sizeof q, "verify\ntest.node@mallory\n%s", alt);
    ASSERT_EQ(ask_rc(port, "vault", q), UQ_ABI_EBADSIG);
    free(alt);
    /* a forged signature: one digit changed */
    alt = uqi_xstrdup(tok);
    char *sig = strstr(alt, "\"sig\":\"") + 7;
    sig[10] = sig[10] == '0' ? '1' : '0';
    snprintf(q, sizeof q, "verify\ntest.node@mallory\n%s", alt);
    ASSERT_EQ(ask_rc(port, "vault", q), UQ_ABI_EBADSIG);
    free(alt);
    /* a made-up token with a valid shape */
    ASSERT_EQ(ask_rc(port, "vault", "verify\ntest.node@mallory\n{\"issuer\":\"test.node@vault\",\"holder\":"
                                    "\"test.node@mallory\",\"params\":\"{\\\"role\\\":\\\"admin\\\"}\",\"serial\":"
                                    "\"0000000000000001\",\"sig\":\"" "00000000000000000000000000000000"
                                    "00000000000000000000000000000000" "00000000000000000000000000000000"
                                    "00000000000000000000000000000000\"}"),
              UQ_ABI_EBADSIG);
    /* bob's genuine admin token, presented by mallory as hers */
    ASSERT_EQ(uqi_node_grant_messaging(n, "bob", "mallory", NULL), UQ_OK);
    char *bl = ask(port, "bob", "list", NULL);
    char *btok = token_with(bl, "admin");
    snprintf(q, sizeof q, "verify\ntest.node@mallory\n%s", btok);
    ASSERT_EQ(ask_rc(port, "vault", q), UQ_ABI_ENOTHOLDER);
    snprintf(q, sizeof q, "verify\ntest.node@bob\n%s", btok);
    ASSERT_EQ(ask_rc(port, "vault", q), 0);
    ASSERT_EQ(has(n, "mallory", "vault", "{\"role\":\"admin\"}"), 0); /* nothing changed */
    free(bl);
    free(btok);
    free(ml);
    free(tok);
    uqi_node_stop(n);
}

/* "GrantCapabilities: only by kernel-capability holders and only
 * capabilities that the granter holds or issues." */
TEST(caps_grant_only_what_is_held)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"mallory", "alice", "bob", NULL});
    grant_kernel_cap(n, "mallory", "kernel");
    char *r = ask(port, "mallory",
                  "kernel\n{\"GrantCapabilities\":{\"target\":\"mallory\",\"capabilities\":"
                  "[{\"issuer\":\"alice\",\"params\":\"messaging\"}]}}",
                  NULL);
    ASSERT_STR_HAS(r, "\"body\":\"GrantCapabilitiesError\"");
    ASSERT_STR_HAS(r, "mallory may grant only capabilities it holds or issued; refused: test.node@alice \\\"messaging\\\"");
    free(r);
    ASSERT_EQ(has(n, "mallory", "alice", "\"messaging\""), 0);
    /* all or nothing: one held and one not grants neither */
    ASSERT_EQ(uqi_node_grant_messaging(n, "mallory", "bob", NULL), UQ_OK);
    r = ask(port, "mallory",
            "kernel\n{\"GrantCapabilities\":{\"target\":\"alice\",\"capabilities\":"
            "[{\"issuer\":\"bob\",\"params\":\"messaging\"},{\"issuer\":\"kernel\",\"params\":\"network\"}]}}",
            NULL);
    ASSERT_STR_HAS(r, "GrantCapabilitiesError");
    ASSERT_STR_HAS(r, "refused: test.node@kernel \\\"network\\\"");
    free(r);
    ASSERT_EQ(has(n, "alice", "bob", "\"messaging\""), 0);
    /* the permitted path: what it holds, and what it issues */
    r = ask(port, "mallory",
            "kernel\n{\"GrantCapabilities\":{\"target\":\"alice\",\"capabilities\":"
            "[{\"issuer\":\"bob\",\"params\":\"messaging\"},{\"issuer\":\"mallory\",\"params\":\"messaging\"}]}}",
            NULL);
    ASSERT_STR_HAS(r, "\"body\":\"GrantedCapabilities\"");
    free(r);
    ASSERT_EQ(has(n, "alice", "bob", "\"messaging\""), 1);
    ASSERT_EQ(has(n, "alice", "mallory", "\"messaging\""), 1);
    /* DropCapabilities takes it back */
    r = ask(port, "mallory",
            "kernel\n{\"DropCapabilities\":{\"target\":\"alice\",\"capabilities\":"
            "[{\"issuer\":\"bob\",\"params\":\"messaging\"}]}}",
            NULL);
    ASSERT_STR_HAS(r, "\"body\":\"DroppedCapabilities\"");
    free(r);
    ASSERT_EQ(has(n, "alice", "bob", "\"messaging\""), 0);
    uqi_node_stop(n);
}

/* "On KillProcess, capabilities the killed process issued are revoked
 * unless the command asks otherwise", and an issuer may revoke what it
 * issued: a revoked capability no longer works, and its old token fails. */
TEST(caps_revoked_capability_is_dead)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"alice", "mallory", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "alice", "mallory", NULL), UQ_OK);
    /* alice lets mallory message her by giving her own messaging capability */
    ASSERT(ask_rc(port, "alice", "attach\nmallory\n[{\"params\":\"messaging\"}]") > 0);
    while (has(n, "mallory", "alice", "\"messaging\"") != 1) usleep(2000);
    ASSERT(ask_rc(port, "mallory", "send\nalice") > 0);
    char *ml = ask(port, "mallory", "list", NULL);
    char *tok = token_with(ml, "messaging");
    ASSERT_EQ(ask_rc(port, "alice", "drop\n{\"params\":\"messaging\"}"), 1); /* revoked from every holder */
    ASSERT_EQ(ask_rc(port, "mallory", "send\nalice"), UQ_ABI_EPERM);
    char q[4096];
    snprintf(q, sizeof q, "verify\ntest.node@mallory\n%s", tok);
    ASSERT_EQ(ask_rc(port, "alice", q), UQ_ABI_EREVOKED);
    free(ml);
    free(tok);
    uqi_node_stop(n);
}

/* One-way requests to a process's last target go without the node lock
 * (kernel.c, send_fast) once a first one passed the checks: a revocation or
 * the target's end must still stop the next one, with a clear error. */
TEST(caps_oneway_fast_path_sees_revocation_and_exit)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"alice", "bob", "carol", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "alice", "bob", NULL), UQ_OK);
    ASSERT_EQ(uqi_node_grant_messaging(n, "alice", "carol", NULL), UQ_OK);
    uint64_t before = received(n, "bob");
    for (int i = 0; i < 3; i++) ASSERT(ask_rc(port, "alice", "send\nbob") > 0); /* the 2nd and 3rd: cached */
    while (received(n, "bob") < before + 3) usleep(2000);
    /* bob drops what he issued: alice's messaging capability over him */
    ASSERT_EQ(ask_rc(port, "bob", "drop\n{\"params\":\"messaging\"}"), 1);
    ASSERT_EQ(ask_rc(port, "alice", "send\nbob"), UQ_ABI_EPERM);
    ASSERT_EQ(ask_rc(port, "alice", "send\nbob"), UQ_ABI_EPERM);
    /* carol ends: the next one-way request to her fails, it is not lost silently */
    for (int i = 0; i < 3; i++) ASSERT(ask_rc(port, "alice", "send\ncarol") > 0);
    uqi_msg *r = kn_kcall(port, "{\"KillProcess\":\"carol\"}", NULL);
    ASSERT(kn_body_is(r, "{\"KilledProcess\":\"carol\"}"));
    uqi_msg_free(r);
    ASSERT_EQ(ask_rc(port, "alice", "send\ncarol"), UQ_ABI_ENOPROC);
    /* a new carol is a new process: alice needs a capability over it again */
    kn_spawn_guest(n, "capper", "carol");
    ASSERT_EQ(ask_rc(port, "alice", "send\ncarol"), UQ_ABI_EPERM);
    ASSERT_EQ(uqi_node_grant_messaging(n, "alice", "carol", NULL), UQ_OK);
    before = received(n, "carol");
    for (int i = 0; i < 3; i++) ASSERT(ask_rc(port, "alice", "send\ncarol") > 0);
    while (received(n, "carol") < before + 3) usleep(2000);
    uqi_node_stop(n);
}

TEST(caps_kill_revokes_unless_no_revoke)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"alice", "bob", "mallory", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "alice", "mallory", NULL), UQ_OK);
    ASSERT_EQ(uqi_node_grant_messaging(n, "bob", "mallory", NULL), UQ_OK);
    ASSERT(ask_rc(port, "alice", "attach\nmallory\n[{\"params\":{\"a\":1}}]") > 0);
    ASSERT(ask_rc(port, "bob", "attach\nmallory\n[{\"params\":{\"b\":1}}]") > 0);
    while (has(n, "mallory", "alice", "{\"a\":1}") != 1 || has(n, "mallory", "bob", "{\"b\":1}") != 1) usleep(2000);
    uqi_msg *r = kn_kcall(port, "{\"KillProcess\":\"alice\"}", NULL);
    ASSERT(kn_body_is(r, "{\"KilledProcess\":\"alice\"}"));
    uqi_msg_free(r);
    ASSERT_EQ(has(n, "mallory", "alice", "{\"a\":1}"), 0); /* revoked with its issuer */
    /* "no-revoke": bob's gift survives bob, for a successor of his name */
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, "{\"KillProcess\":\"bob\"}", strlen("{\"KillProcess\":\"bob\"}"));
    ASSERT_EQ(uqi_addr_parse("kernel", "test.node", &m->target, NULL), UQ_OK);
    m->expects_response_s = 5;
    m->metadata = uqi_xstrdup("no-revoke");
    ASSERT_EQ(uqi_kernel_send(port, m, NULL, 0, NULL, NULL), UQ_OK);
    r = uqi_port_receive(port, 10000);
    ASSERT(r && kn_body_is(r, "{\"KilledProcess\":\"bob\"}"));
    uqi_msg_free(r);
    ASSERT_EQ(has(n, "mallory", "bob", "{\"b\":1}"), 1);
    uqi_node_stop(n);
}

/* "All capabilities passed into initial_capabilities must be held by the
 * source of this message" -- and "any others are refused and named in the
 * response": no escalation through a child. */
TEST(caps_no_escalation_through_child)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"mallory", "alice", NULL});
    grant_kernel_cap(n, "mallory", "kernel");
    uqi_payload *wasm = kn_guest_payload("capper");
    char *r = ask(port, "mallory",
                  "kernel\n{\"InitializeProcess\":{\"id\":\"child\",\"wasm_bytes_handle\":\"x\",\"on_exit\":\"None\","
                  "\"initial_capabilities\":[{\"issuer\":\"alice\",\"params\":\"messaging\"},"
                  "{\"issuer\":\"kernel\",\"params\":\"network\"}],\"public\":false}}",
                  uqi_payload_hold(wasm));
    ASSERT_STR_HAS(r, "\"body\":\"InitializeProcessError\"");
    ASSERT_STR_HAS(r, "initial_capabilities refused: mallory does not hold: test.node@alice \\\"messaging\\\"; "
                      "test.node@kernel \\\"network\\\"");
    free(r);
    ASSERT(!uqi_node_has(n, "child")); /* nothing was installed */
    /* the permitted path: what it holds (and its own) */
    r = ask(port, "mallory",
            "kernel\n{\"InitializeProcess\":{\"id\":\"child\",\"wasm_bytes_handle\":\"x\",\"on_exit\":\"None\","
            "\"initial_capabilities\":[{\"issuer\":\"mallory\",\"params\":\"messaging\"}],\"public\":false}}",
            uqi_payload_hold(wasm));
    ASSERT_STR_HAS(r, "\"body\":\"InitializedProcess\"");
    free(r);
    ASSERT_EQ(has(n, "child", "mallory", "\"messaging\""), 1);
    ASSERT_EQ(has(n, "child", "alice", "\"messaging\""), 0);
    /* "The process that sends this command will be given messaging
     * capabilities for the new process if public is false." */
    ASSERT_EQ(has(n, "mallory", "child", "\"messaging\""), 1);
    uqi_payload_rele(wasm);
    uqi_node_stop(n);
}

/* "Network: reaching or being reached from another node needs the network
 * capability (... until then, checked and tested locally)." */
TEST(caps_network_needs_network_capability)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"mallory", NULL});
    ASSERT_EQ(ask_rc(port, "mallory", "send\nother.node@echo"), UQ_ABI_EPERM);
    grant_kernel_cap(n, "mallory", "network");
    /* with it, the send is allowed, and fails as the network does (unknown node) */
    ASSERT_EQ(ask_rc(port, "mallory", "send\nother.node@echo"), UQ_ABI_ENOPROC);
    uqi_node_stop(n);
}

/* Debug(HasCap) answers for the installer, like the original's KernelPrint. */
TEST(caps_debug_hascap)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"alice", "bob", NULL});
    ASSERT_EQ(uqi_node_grant_messaging(n, "alice", "bob", NULL), UQ_OK);
    uqi_msg *r = kn_kcall(port, "{\"Debug\":{\"HasCap\":{\"on\":\"alice\",\"cap\":{\"issuer\":\"bob\",\"params\":\"messaging\"}}}}",
                          NULL);
    ASSERT(kn_body_is(r, "{\"Debug\":{\"HasCap\":true}}"));
    uqi_msg_free(r);
    r = kn_kcall(port, "{\"Debug\":{\"HasCap\":{\"on\":\"bob\",\"cap\":{\"issuer\":\"alice\",\"params\":\"messaging\"}}}}",
                 NULL);
    ASSERT(kn_body_is(r, "{\"Debug\":{\"HasCap\":false}}"));
    uqi_msg_free(r);
    uqi_node_stop(n);
}

/* A parent holds messaging over the child it spawned (implicitly until
 * something needs the record: kernel.c, caps_materialize): it works, is
 * the only way in, is seen by the child, can be revoked by the child and
 * dropped, granted onward and listed by the parent, survives a "no-revoke"
 * kill of the child for its successor, and goes when the parent ends. */
TEST(caps_guest_spawn_parent_holds_messaging_over_child)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"parent", "alice", NULL});
    uqi_payload *wasm = kn_guest_payload("capper");
    const char *kids[] = {"kid1", "kid2", "kid3", "kid4", "kid5"};
    for (int i = 0; i < 5; i++) {
        char body[64];
        snprintf(body, sizeof body, "spawn\n%s\n", kids[i]);
        char *r = ask(port, "parent", body, uqi_payload_hold(wasm));
        ASSERT(rc_of(r) > 0);
        free(r);
    }
    uqi_payload_rele(wasm);
    /* it works, and only for the parent */
    ASSERT(ask_rc(port, "parent", "send\nkid1") > 0);
    ASSERT_EQ(ask_rc(port, "alice", "send\nkid1"), UQ_ABI_EPERM);
    /* the child sees it held; so does the node */
    ASSERT_EQ(ask_rc(port, "kid2", "has\nparent\n{\"params\":\"messaging\"}"), 1);
    ASSERT_EQ(ask_rc(port, "kid2", "has\nalice\n{\"params\":\"messaging\"}"), 0);
    ASSERT_EQ(has(n, "parent", "kid3", "\"messaging\""), 1);
    /* the child revokes it */
    ASSERT_EQ(ask_rc(port, "kid2", "drop\n{\"params\":\"messaging\"}"), 1);
    ASSERT_EQ(ask_rc(port, "parent", "send\nkid2"), UQ_ABI_EPERM);
    ASSERT_EQ(has(n, "parent", "kid2", "\"messaging\""), 0);
    /* the parent drops it */
    ASSERT_EQ(ask_rc(port, "parent", "drop\n{\"issuer\":\"kid3\",\"params\":\"messaging\"}"), 1);
    ASSERT_EQ(ask_rc(port, "parent", "send\nkid3"), UQ_ABI_EPERM);
    /* the parent grants it onward */
    ASSERT_EQ(uqi_node_grant_messaging(n, "parent", "alice", NULL), UQ_OK); /* to reach alice */
    ASSERT(ask_rc(port, "parent", "attach\nalice\n[{\"issuer\":\"kid4\",\"params\":\"messaging\"}]") > 0);
    for (int i = 0; i < 400 && has(n, "alice", "kid4", "\"messaging\"") != 1; i++) usleep(5000);
    ASSERT(ask_rc(port, "alice", "send\nkid4") > 0);
    /* listed as a token: kid1 and kid4, not the dropped and revoked ones */
    char *l = ask(port, "parent", "list", NULL);
    ASSERT_STR_HAS(l, "@kid1\"");
    ASSERT_STR_HAS(l, "@kid4\"");
    ASSERT(!strstr(l, "@kid2\"") && !strstr(l, "@kid3\""));
    free(l);
    /* a "no-revoke" kill of the child keeps it for a successor of its name */
    ASSERT_EQ(uqi_node_kill_ex(n, "kid5", true, NULL), UQ_OK);
    for (int i = 0; i < 400 && uqi_node_has(n, "kid5"); i++) usleep(5000);
    ASSERT(!uqi_node_has(n, "kid5"));
    kn_spawn_guest(n, "capper", "kid5");
    ASSERT(ask_rc(port, "parent", "send\nkid5") > 0);
    ASSERT_EQ(ask_rc(port, "alice", "send\nkid5"), UQ_ABI_EPERM);
    /* the parent ends: what it held goes, the children stay; a successor
     * of its name holds nothing over them */
    ASSERT_EQ(uqi_node_kill(n, "parent", NULL), UQ_OK);
    for (int i = 0; i < 400 && uqi_node_has(n, "parent"); i++) usleep(5000);
    ASSERT(uqi_node_has(n, "kid1"));
    ASSERT_EQ(ask_rc(port, "kid1", "has\nparent\n{\"params\":\"messaging\"}"), UQ_ABI_ENOPROC);
    kn_spawn_guest(n, "capper", "parent");
    ASSERT_EQ(ask_rc(port, "parent", "send\nkid1"), UQ_ABI_EPERM);
    ASSERT_EQ(ask_rc(port, "kid1", "has\nparent\n{\"params\":\"messaging\"}"), 0);
    uqi_node_stop(n);
}

/* "They may finish at once or run forever, spawn other processes" -- and a
 * child gets only what its parent holds: spawn(), the guest call. */
TEST(caps_guest_spawn_gives_only_what_it_holds)
{
    uqi_kproc *port;
    uqi_node *n = cappers(&port, (const char *[]){"parent", "alice", NULL});
    uqi_payload *wasm = kn_guest_payload("capper");
    /* escalation through the child: refused, nothing started */
    char *r = ask(port, "parent", "spawn\nkid\n[{\"issuer\":\"alice\",\"params\":\"messaging\"}]", uqi_payload_hold(wasm));
    ASSERT_EQ(rc_of(r), UQ_ABI_EPERM);
    free(r);
    ASSERT(!uqi_node_has(n, "kid"));
    /* with what it holds: the child runs, holds it, and the parent may message it */
    ASSERT_EQ(uqi_node_grant_messaging(n, "parent", "alice", NULL), UQ_OK);
    r = ask(port, "parent", "spawn\nkid\n[{\"issuer\":\"alice\",\"params\":\"messaging\"}]", uqi_payload_hold(wasm));
    ASSERT_STR_HAS(r, "\"id\":\"kid\"");
    free(r);
    ASSERT_EQ(has(n, "kid", "alice", "\"messaging\""), 1);
    ASSERT(ask_rc(port, "parent", "send\nkid") > 0);
    ASSERT(ask_rc(port, "kid", "send\nalice") > 0);
    /* the same id again, and an anonymous child (a UUID) */
    r = ask(port, "parent", "spawn\nkid\n", uqi_payload_hold(wasm));
    ASSERT_EQ(rc_of(r), UQ_ABI_EEXIST);
    free(r);
    r = ask(port, "parent", "spawn\n\n", uqi_payload_hold(wasm));
    ASSERT_EQ(rc_of(r), 36);
    free(r);
    /* not a module */
    uqi_payload *junk = uqi_payload_new("not wasm", 8, NULL);
    r = ask(port, "parent", "spawn\njunk\n", junk);
    ASSERT_EQ(rc_of(r), UQ_ABI_EBADMODULE);
    free(r);
    uqi_payload_rele(wasm);
    uqi_node_stop(n);
}
