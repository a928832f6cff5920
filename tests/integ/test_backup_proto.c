/* The backup messages (PROTOCOL.md §9) against a real keeper: keeper.node
 * runs the backup process on its store; owner.node and other.node are bare
 * net modules driven by the test, sending as their process `backup` (or
 * another) whatever the test wants, hostile or not. Every bad request gets a clear Err and the
 * keeper goes on; sequences never go back; a node sees its own entries
 * only; the quota holds. */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "kernel/backup.h"
#include "kernel/remote.h"
#include "knode.h"
#include "net/netmod.h"
#include "store/store.h"
#include "tpeer.h"

/* ---- a bare peer (tpeer.h) the test speaks through ------------------------- */
static void peer_start(rawpeer *rp, const char *name, const char *dir)
{
    rp_init(rp, name, 0);
    rp->next_id = 1000;
    rp_start(rp, NULL, dir);
}

/* Send body (and payload) from process `from` of the raw peer to
 * keeper.node@backup; the answer (a response or a refusal), or NULL. */
static uqi_msg *ask_from(rawpeer *rp, const char *from, const char *body, const void *data, size_t len)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    m->id = ++rp->next_id;
    snprintf(m->source.node, sizeof m->source.node, "%s", rp->id.name);
    snprintf(m->source.process, sizeof m->source.process, "%s", from);
    snprintf(m->target.node, sizeof m->target.node, "keeper.node");
    snprintf(m->target.process, sizeof m->target.process, "backup");
    m->expects_response_s = 10;
    if (data) m->payload = uqi_payload_new(data, len, "application/octet-stream");
    rp_send(rp, "keeper.node", m, false, 0);
    uint64_t id = m->id;
    uqi_msg_free(m);
    return rp_wait_id(rp, id, 5000);
}

static uqi_msg *ask(rawpeer *rp, const char *body, const void *data, size_t len)
{
    return ask_from(rp, "backup", body, data, len);
}

/* The answer's body must contain want. */
static void ask_has_from(rawpeer *rp, const char *from, const char *body, const void *data, size_t len,
                         const char *want, int line)
{
    uqi_msg *r = ask_from(rp, from, body, data, len);
    if (!r) test_fail(__FILE__, line, "%s: no answer", body);
    char *b = kn_str(r->body, r->body_len);
    if (r->kind != UQI_MSG_RESPONSE || !strstr(b, want))
        test_fail(__FILE__, line, "%s: answered %s (kind %d), wanted %s", body, b, (int)r->kind, want);
    free(b);
    uqi_msg_free(r);
}
#define ask_has(rp, body, data, len, want) ask_has_from(rp, "backup", body, data, len, want, __LINE__)

TEST_T(backup_protocol_hostile_requests_and_owner_only, 60)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/peers", tb_tmpdir());
    ASSERT_EQ(uqi_write_file_atomic(dir, "", 0, NULL), UQ_OK);
    /* the keeper: a real node with its store and the backup process */
    uqn_identity kid;
    tn_identity("keeper.node", 0, &kid);
    char cache[1100], home[1200];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    snprintf(home, sizeof home, "%s/keeper", tb_tmpdir());
    uq_errmsg em = {{0}};
    uqs_store *store;
    ASSERT_EQ(uqs_open(home, NULL, &store, &em), UQ_OK);
    uqi_node_config c = {.name = "keeper.node", .cache_dir = cache, .workers = 1, .identity_sk = kid.sk, .store = store};
    uqi_node *kn;
    if (uqi_node_start(&c, &kn, &em)) test_fail(__FILE__, __LINE__, "node: %s", em.text);
    uqn_net_cfg nc = {.id = &kid, .listen = "127.0.0.1:0", .dir_path = dir, .send_timeout_ms = 2000,
                      .backoff_min_ms = 20, .backoff_max_ms = 100};
    uqi_node_net_hooks(kn, &nc);
    uqn_net *knet;
    if (uqn_net_start(&nc, &knet, &em)) test_fail(__FILE__, __LINE__, "net: %s", em.text);
    uqi_node_set_net(kn, knet);
    uqi_backup *bk;
    uqi_backup_cfg bc = {.sk = kid.sk, .quota = 64 << 10};
    if (uqi_backup_start(kn, store, &bc, &bk, &em)) test_fail(__FILE__, __LINE__, "backup: %s", em.text);
    rawpeer o, x;
    peer_start(&o, "owner.node", dir);
    peer_start(&x, "other.node", dir);
    uqn_dir *d = uqn_dir_new();
    tn_dir_add(d, &kid, uqn_net_listen_addr(knet));
    tn_dir_add(d, &o.id, uqn_net_listen_addr(o.net));
    tn_dir_add(d, &x.id, uqn_net_listen_addr(x.net));
    ASSERT_EQ(uqn_dir_save(d, dir, NULL), UQ_OK);
    uqn_dir_free(d);

    const char *id = "00112233445566778899aabbccddeeff";
    uint8_t sealed[100];
    for (int i = 0; i < 100; i++) sealed[i] = (uint8_t)(i * 13);
    /* the link may take a moment to come up after the directory is written */
    uqi_msg *first = NULL;
    for (int i = 0; i < 50 && !first; i++) {
        first = ask(&o, "\"List\"", NULL, 0);
        if (first && first->kind != UQI_MSG_RESPONSE) {
            uqi_msg_free(first);
            first = NULL;
        }
        if (!first) usleep(100000);
    }
    ASSERT(first != NULL);
    uqi_msg_free(first);
    /* hostile or broken requests: each a clear Err */
    ask_has(&o, "not json", NULL, 0, "bad request: the body must be JSON");
    ask_has(&o, "{\"Frob\":1}", NULL, 0, "unknown request \\\"Frob\\\": backup understands Put, List, Get");
    ask_has(&o, "{\"Put\":{\"id\":\"XYZ\",\"seq\":1}}", sealed, 100, "Put needs");
    ask_has(&o, "{\"Put\":{\"id\":\"00112233445566778899AABBCCDDEEFF\",\"seq\":1}}", sealed, 100, "Put needs");
    char body[200];
    snprintf(body, sizeof body, "{\"Put\":{\"id\":\"%s\",\"seq\":-4}}", id);
    ask_has(&o, body, sealed, 100, "Put needs");
    snprintf(body, sizeof body, "{\"Put\":{\"id\":\"%s\",\"seq\":5}}", id);
    ask_has(&o, body, NULL, 0, "the payload must be the sealed entry");
    ask_has(&o, body, sealed, 10, "too short");
    ask_has(&o, "{\"Get\":{\"id\":7}}", NULL, 0, "Get needs");
    snprintf(body, sizeof body, "{\"Get\":{\"id\":\"%s\"}}", id);
    ask_has(&o, body, NULL, 0, "no entry 00112233445566778899aabbccddeeff is kept here for owner.node");
    /* a good Put, then an older one: the newer stays */
    snprintf(body, sizeof body, "{\"Put\":{\"id\":\"%s\",\"seq\":5}}", id);
    ask_has(&o, body, sealed, 100, "{\"Ok\":{\"seq\":5}}");
    snprintf(body, sizeof body, "{\"Put\":{\"id\":\"%s\",\"seq\":3}}", id);
    uint8_t older[100] = {0};
    ask_has(&o, body, older, 100, "{\"Ok\":{\"seq\":5}}");
    ask_has(&o, "\"List\"", NULL, 0, "\"entries\":[[\"00112233445566778899aabbccddeeff\",5]]");
    snprintf(body, sizeof body, "{\"Get\":{\"id\":\"%s\"}}", id);
    uqi_msg *r = ask(&o, body, NULL, 0);
    ASSERT(r != NULL);
    ASSERT(r->payload && r->payload->len == 100 && memcmp(r->payload->data, sealed, 100) == 0);
    char *rb = kn_str(r->body, r->body_len);
    ASSERT_STR_HAS(rb, "{\"Ok\":{\"seq\":5}}");
    free(rb);
    uqi_msg_free(r);
    /* another node sees nothing of owner's; a process other than backup is refused */
    ask_has(&x, "\"List\"", NULL, 0, "{\"Ok\":{\"entries\":[],\"bytes\":0}}");
    ask_has(&x, body, NULL, 0, "no entry 00112233445566778899aabbccddeeff is kept here for other.node");
    ask_has_from(&o, "tester", "\"List\"", NULL, 0, "backup keeps entries for the backup process of other nodes only",
                 __LINE__);
    /* the quota (64 KiB per owner here) */
    static uint8_t big[80 << 10];
    snprintf(body, sizeof body, "{\"Put\":{\"id\":\"%s\",\"seq\":9}}", "ffeeddccbbaa99887766554433221100");
    ask_has(&o, body, big, sizeof big, "would pass its quota of 65536 bytes (--backup-quota)");
    ask_has(&o, "\"List\"", NULL, 0, "\"entries\":[[\"00112233445566778899aabbccddeeff\",5]]");
    rp_fini(&x);
    rp_fini(&o);
    uqi_backup_stop(bk);
    uqi_node_set_net(kn, NULL);
    uqn_net_stop(knet);
    uqi_node_stop(kn);
    uqs_close(store);
}
