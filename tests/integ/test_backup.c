/* Encrypted remote backups with real nodes (uqbar boot, one OS process
 * each) on loopback: x.local backs up to y.local and w.local, its tally
 * persists a count; x's home is wiped but for its keyfile; `uqbar restore`
 * brings the tally back with its count. Peers cannot read (the count is not
 * in their store files), a flipped byte in a peer's copy is refused by name
 * (and another peer's copy taken), and a peer answers only the owner. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "kernel/backup_crypt.h"
#include "net/identity.h"
#include "runner.h"
#include "store/store.h"
#include "tboot.h"
#include "util/util.h"

static char dir_path[1300];

/* The nodes of a test: all read the directory file dir_path (empty at first). */
static void init_nodes(bnode *nodes, const char *const *names, int n)
{
    snprintf(dir_path, sizeof dir_path, "%s/directory", tb_tmpdir());
    ASSERT_EQ(uqi_write_file_atomic(dir_path, "", 0, NULL), UQ_OK);
    bn_init_all(nodes, names, n, dir_path);
}

/* Wait until every entry is acknowledged by every backup peer. */
static void bn_backed_up(bnode *b)
{
    if (!bn_retry(b, "backup\n", "backup: 0 pending", 2000, 30))
        test_fail(__FILE__, __LINE__, "%s: backups still pending: %s", b->name, b->buf);
}

static bool file_has(const char *path, const char *needle)
{
    uint8_t *d;
    size_t n;
    ASSERT_EQ(uqi_read_file(path, &d, &n, NULL), UQ_OK);
    bool has = memmem(d, n, needle, strlen(needle)) != NULL;
    free(d);
    return has;
}

static cmd_result restore(const char *home, const char *peers)
{
    char exe[1100];
    snprintf(exe, sizeof exe, "%s/uqbar", tb_build());
    const char *argv[] = {exe, "restore", "--home", home, "--peers", dir_path, "--backup-peers", peers,
                          "--dev-unencrypted-key", NULL};
    cmd_result r = tb_run(argv, NULL, 120);
    if (getenv("UQ_NET_DEBUG")) fprintf(stderr, "[restore %s] %s%s", peers, r.out, r.err);
    return r;
}

static void rm_store(const char *home)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/store'", home);
    ASSERT_EQ(system(cmd), 0);
}

TEST_T(backup_restore_from_peers_tamper_and_privacy, 240)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300];
    tboot_manifest(manifest, sizeof manifest, "tally.json", "t",
                   (tboot_proc[]){{"tally", "tally", "None", false, false}, {"gone", "tally", "None", false, false}}, 2);
    bnode nodes[3];
    bnode *x = &nodes[0], *y = &nodes[1], *w = &nodes[2];
    const char *names[3] = {"x.local", "y.local", "w.local"};
    init_nodes(nodes, names, 3);
    snprintf(x->backup, sizeof x->backup, "y.local,w.local");
    bn_up(y, NULL);
    bn_up(w, NULL);
    bn_up(x, manifest);
    bn_directory(dir_path, (bnode *[]){x, y, w}, 3);

    /* x's tally persists a count; its backups reach both peers */
    bn_ask(x, "m tally {\"add\":987654321}\n", "{\"count\":987654321,\"rc\":0}", 20000);
    bn_ask(x, "m tally {\"add\":1}\n", "{\"count\":987654322,\"rc\":0}", 10000);
    /* a process that ends is gone from the backups too (its deletion is sent) */
    bn_ask(x, "m gone {\"add\":7}\n", "{\"count\":7,\"rc\":0}", 10000);
    bn_ask(x, "kill gone\n", "response from x.local@kernel", 10000);
    uint64_t t0 = uqi_now_ns();
    bn_backed_up(x);
    test_log("backed up to two peers %.0f ms after the last state write", (double)(uqi_now_ns() - t0) / 1e6);
    /* a node other than the owner (w's terminal) cannot list at y */
    bn_ask(w, "m y.local@backup \"List\"\n", "backup keeps entries for the backup process of other nodes only", 10000);
    for (int i = 0; i < 3; i++) bn_exit(&nodes[i], 0);

    /* peers cannot read: the count is in x's store, not in theirs (which do hold x's entries) */
    char path[1400];
    snprintf(path, sizeof path, "%s/store/data.mdb", x->home);
    ASSERT(file_has(path, "987654322"));
    for (int i = 1; i < 3; i++) {
        snprintf(path, sizeof path, "%s/store/data.mdb", nodes[i].home);
        ASSERT(file_has(path, "h/x.local/"));
        ASSERT(!file_has(path, "987654322"));
        ASSERT(!file_has(path, "\"id\":\"tally\"")); /* the process record */
    }

    /* w lies: its copy of the tally's state gets a flipped byte and claims the highest sequence */
    uqn_identity xid;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_identity_load(x->home, NULL, &xid, &em), UQ_OK);
    uqi_bkeys keys;
    uqi_bkeys_derive(xid.sk, &keys);
    char eid[UQI_BID_HEX + 1], hkey[128];
    uqi_bentry_id(&keys, UQI_BDB_STATE, "tally", 5, eid);
    snprintf(hkey, sizeof hkey, "h/x.local/%s", eid);
    uint64_t yseq = 0;
    {
        uqs_store *s;
        ASSERT_EQ(uqs_open(y->home, NULL, &s, &em), UQ_OK);
        uint8_t *v;
        size_t n;
        ASSERT_EQ(uqs_get(s, UQS_DB_BACKUP, hkey, strlen(hkey), &v, &n, &em), UQ_OK);
        memcpy(&yseq, v, 8); /* little-endian host */
        free(v);
        uqs_close(s);
    }
    {
        uqs_store *s;
        ASSERT_EQ(uqs_open(w->home, NULL, &s, &em), UQ_OK);
        uint8_t *v;
        size_t n;
        ASSERT_EQ(uqs_get(s, UQS_DB_BACKUP, hkey, strlen(hkey), &v, &n, &em), UQ_OK);
        ASSERT(n > 8 + UQI_BENTRY_OVERHEAD);
        uint64_t high = yseq + 1000;
        memcpy(v, &high, 8);
        v[n - 20] ^= 0x01; /* one byte of the ciphertext */
        uqs_op op = {.db = UQS_DB_BACKUP, .key = hkey, .klen = strlen(hkey), .val = v, .vlen = n};
        ASSERT_EQ(uqs_write(s, &op, 1, &em), UQ_OK);
        free(v);
        uqs_close(s);
    }

    /* x's machine is gone: its home is only its keyfile */
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -mindepth 1 -maxdepth 1 ! -name identity.key -exec rm -rf {} +", x->home);
    ASSERT_EQ(system(cmd), 0);
    bn_up(y, NULL);
    bn_up(w, NULL);

    /* from w alone: the tampered entry is refused, by name, and reported lost */
    cmd_result r = restore(x->home, "w.local");
    ASSERT_EQ(r.status, 1);
    ASSERT_STR_HAS(r.out, eid);
    ASSERT_STR_HAS(r.out, "REFUSED the copy from backup peer w.local");
    ASSERT_STR_HAS(r.out, "fails authentication");
    ASSERT_STR_HAS(r.out, "no good copy on any backup peer");
    tb_result_free(&r);
    rm_store(x->home);

    /* from both: w's copy is refused, y's taken */
    r = restore(x->home, "w.local,y.local");
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "REFUSED the copy from backup peer w.local");
    ASSERT_STR_HAS(r.out, "trying another copy");
    ASSERT_STR_HAS(r.out, "restore: 3 entries");
    ASSERT_STR_HAS(r.out, "(2 recorded deletions); 1 refused copy, 0 lost");
    test_log("restore: %.2f s", r.seconds);
    tb_result_free(&r);
    /* a second restore into a home with processes is refused */
    r = restore(x->home, "y.local");
    ASSERT(r.status != 0);
    ASSERT_STR_HAS(r.err, "holds processes already");
    tb_result_free(&r);

    /* the owner check: w's key, in a fresh home, lists nothing of x's at y */
    char wfresh[1300];
    snprintf(wfresh, sizeof wfresh, "%s/w-fresh", tb_tmpdir());
    bn_exit(w, 0); /* one w at a time */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/identity.key' '%s/'", wfresh, w->home, wfresh);
    ASSERT_EQ(system(cmd), 0);
    r = restore(wfresh, "y.local");
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "backup peer y.local holds 0 entries for this node");
    tb_result_free(&r);
    bn_up(w, NULL);

    /* x boots from the restored store: the tally is back with its count, gone is not */
    bn_boot(x, NULL);
    BN_EXPECT(x, "restored 1 process in", 30000);
    BN_EXPECT(x, "is up", 30000);
    bn_ask(x, "m gone {\"get\":1}\n", "error NoSuchProcess", 10000);
    bn_ask(x, "m tally {\"get\":1}\n", "{\"count\":987654322,", 10000);
    /* and its backups go on */
    bn_ask(x, "m tally {\"add\":1}\n", "{\"count\":987654323,\"rc\":0}", 10000);
    bn_backed_up(x);
    for (int i = 0; i < 3; i++) bn_exit(&nodes[i], 0);
    uqn_identity_wipe(&xid);
}

/* Median milliseconds of k tally adds from the terminal (each answered once durable). */
static double median_add_ms(bnode *b, int k)
{
    double t[64];
    for (int i = 0; i < k && i < 64; i++) {
        uint64_t t0 = uqi_now_ns();
        bn_ask(b, "m tally {\"add\":1}\n", "\"rc\":0}", 10000);
        t[i] = (double)(uqi_now_ns() - t0) / 1e6;
    }
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
            double v = t[j];
            t[j] = t[j - 1];
            t[j - 1] = v;
        }
    return t[k / 2];
}

/* Boot each node once to learn its record; write the directory. The first
 * (with manifest) times tally adds without backups into *plain_ms. */
static void make_directory(bnode *nodes, int n, const char *manifest, double *plain_ms)
{
    bnode *all[3];
    for (int i = 0; i < n && i < 3; i++) {
        bnode plain = nodes[i];
        plain.backup[0] = '\0';
        memset(plain.extra, 0, sizeof plain.extra);
        bn_up(&plain, i == 0 ? manifest : NULL);
        if (i == 0 && manifest) *plain_ms = median_add_ms(&plain, 30);
        bn_exit(&plain, 0);
        all[i] = &nodes[i];
    }
    bn_directory(dir_path, all, n);
}

/* "A peer that is offline gets the entries when it comes back", also after
 * the owner restarted meanwhile (the store is compared with what each peer
 * acknowledged); a peer over its quota refuses with a clear error; boot
 * --restore brings the node back in one step. */
TEST_T(backup_offline_peer_catches_up_and_quota, 240)
{
    signal(SIGPIPE, SIG_IGN);
    char manifest[1300];
    tboot_manifest(manifest, sizeof manifest, "tally.json", "t", &(tboot_proc){"tally", "tally", "None", false, false},
                   1);
    bnode nodes[3];
    bnode *x = &nodes[0], *y = &nodes[1], *q = &nodes[2];
    const char *names[3] = {"x.local", "y.local", "q.local"};
    init_nodes(nodes, names, 3);
    double plain_ms, backed_ms;
    make_directory(nodes, 3, manifest, &plain_ms); /* the tally counts 30 */
    snprintf(x->backup, sizeof x->backup, "y.local,q.local");
    q->extra[0] = "--backup-quota";
    q->extra[1] = "1K";
    bn_up(q, NULL);
    bn_up(x, NULL); /* y is down */
    bn_ask(x, "m tally {\"add\":5}\n", "{\"count\":35,\"rc\":0}", 20000);
    /* q's refusal names its quota; y is Offline */
    if (!bn_retry(x, "backup\n", "quota of 1024 bytes (--backup-quota)", 100, 300))
        test_fail(__FILE__, __LINE__, "q's quota refusal never showed; x said:\n%s", x->seen);
    /* y's attempt may still be in flight when q's refusal is seen: ask
     * until it has failed */
    if (!bn_retry(x, "backup\n", "backup peer y.local: 0 acknowledged, 3 waiting, 0 in flight", 100, 300))
        test_fail(__FILE__, __LINE__, "y's attempt never failed; x said:\n%s", x->seen);
    bn_ask(x, "backup\n", "failing: Offline", 5000);
    /* x goes down before y ever answered; then y comes back, then x */
    bn_exit(x, 0);
    bn_up(y, NULL);
    bn_up(x, NULL);
    backed_ms = median_add_ms(x, 30); /* the tally counts 65 */
    test_log("state_set round trip from the terminal, median of 30: %.2f ms without backups, %.2f ms with two "
             "backup peers", plain_ms, backed_ms);
    bool caught_up = bn_retry(x, "backup\n",
                              "acknowledged, 0 waiting, 0 in flight, 0 failures\nbackup peer q.local", 200, 300);
    if (!caught_up) test_fail(__FILE__, __LINE__, "x never caught up; it said:\n%s", x->seen);
    for (int i = 0; i < 3; i++) bn_exit(&nodes[i], 0);
    /* what y holds brings x back */
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -mindepth 1 -maxdepth 1 ! -name identity.key -exec rm -rf {} +", x->home);
    ASSERT_EQ(system(cmd), 0);
    bn_up(y, NULL);
    /* this time in one step: uqbar boot --restore */
    snprintf(x->backup, sizeof x->backup, "y.local");
    x->extra[0] = "--restore";
    bn_boot(x, NULL);
    BN_EXPECT(x, "backup peer y.local holds", 30000);
    BN_EXPECT(x, "0 lost", 30000);
    BN_EXPECT(x, "restored 1 process", 30000);
    BN_EXPECT(x, "is up", 30000);
    bn_ask(x, "m tally {\"get\":1}\n", "{\"count\":65,", 10000);
    bn_exit(x, 0);
    bn_exit(y, 0);
}

/* Many entries: 2000 states of 4 KiB and one of 1 MiB, written into x's
 * store while it is down, reach its peer at its next boot (the comparison
 * at start), and come back with a restore, byte for byte. Figures: entries
 * and MB per second both ways. */
TEST_T(backup_many_entries_both_ways, 300)
{
    signal(SIGPIPE, SIG_IGN);
    bnode nodes[2];
    bnode *x = &nodes[0], *y = &nodes[1];
    const char *names[2] = {"x.local", "y.local"};
    init_nodes(nodes, names, 2);
    double unused;
    make_directory(nodes, 2, NULL, &unused);
    enum { N = 2000, SZ = 4096, BIG = 1 << 20 };
    uqs_store *s;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_open(x->home, NULL, &s, &em), UQ_OK);
    uint8_t *v = malloc(BIG);
    static char pids[N][8];
    static uint8_t vals[N][SZ];
    static uqs_op ops[N];
    for (int i = 0; i < N; i++) {
        snprintf(pids[i], sizeof pids[i], "p%04d", i);
        memset(vals[i], 'a' + i % 26, SZ);
        snprintf((char *)vals[i], 32, "plain-marker-%04d", i);
        ops[i] = (uqs_op){.db = UQS_DB_STATE, .key = pids[i], .klen = 5, .val = vals[i], .vlen = SZ};
    }
    ASSERT_EQ(uqs_write(s, ops, N, &em), UQ_OK);
    for (int i = 0; i < BIG; i++) v[i] = (uint8_t)(i * 7 + 3);
    ASSERT_EQ(uqs_state_set(s, "bigone", v, BIG, &em), UQ_OK);
    uqs_close(s);

    bn_up(y, NULL);
    snprintf(x->backup, sizeof x->backup, "y.local");
    uint64_t t0 = uqi_now_ns();
    bn_up(x, NULL);
    bn_backed_up(x);
    double up_s = (double)(uqi_now_ns() - t0) / 1e9;
    double mb = ((double)N * SZ + BIG) / 1e6;
    test_log("backup of %d entries (%.1f MB) from boot to acknowledged: %.2f s (%.0f entries/s, %.1f MB/s)", N + 1, mb,
             up_s, (N + 1) / up_s, mb / up_s);
    bn_exit(x, 0);
    bn_exit(y, 0);
    char path[1400];
    snprintf(path, sizeof path, "%s/store/data.mdb", y->home);
    ASSERT(file_has(path, "h/x.local/"));
    ASSERT(!file_has(path, "plain-marker-"));

    char cmd[4000];
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -mindepth 1 -maxdepth 1 ! -name identity.key -exec rm -rf {} +", x->home);
    ASSERT_EQ(system(cmd), 0);
    bn_up(y, NULL);
    cmd_result r = restore(x->home, "y.local");
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "restore: 2001 entries");
    ASSERT_STR_HAS(r.out, "0 lost");
    test_log("restore of the same: %.2f s (%.0f entries/s, %.1f MB/s)", r.seconds, (N + 1) / r.seconds, mb / r.seconds);
    tb_result_free(&r);
    bn_exit(y, 0);
    ASSERT_EQ(uqs_open(x->home, NULL, &s, &em), UQ_OK);
    uint8_t *got;
    size_t n;
    ASSERT_EQ(uqs_state_get(s, "bigone", &got, &n, &em), UQ_OK);
    ASSERT_EQ(n, BIG);
    ASSERT(memcmp(got, v, BIG) == 0);
    free(got);
    ASSERT_EQ(uqs_state_get(s, "p1234", &got, &n, &em), UQ_OK);
    ASSERT_EQ(n, SZ);
    ASSERT(strcmp((char *)got, "plain-marker-1234") == 0 && got[SZ - 1] == 'a' + 1234 % 26);
    free(got);
    uqs_close(s);
    free(v);
}
