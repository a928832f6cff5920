/* Directory records: sign, verify, tamper; the directory's update rules; the
 * directory file round trip and its errors. */
#include "integ/tnet.h"
#include "net/record.h"

TEST(net_record_sign_verify_tamper)
{
    uqn_identity a;
    tn_identity("alice.dev", 0, &a);
    const char *addrs[] = {"127.0.0.1:9000", "alice.example.org:443", "[::1]:9000"};
    uqn_record r, back;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_record_make(&a, addrs, 3, 42, &r, &em), UQ_OK);
    ASSERT_EQ(uqn_record_verify(&r, &em), UQ_OK);
    uint8_t enc[UQN_RECORD_MAX];
    size_t n = uqn_record_encode(&r, enc);
    ASSERT_EQ(uqn_record_decode(enc, n, &back, &em), UQ_OK);
    ASSERT(strcmp(back.name, "alice.dev") == 0 && back.seq == 42 && back.naddrs == 3);
    ASSERT(strcmp(back.addrs[2], "[::1]:9000") == 0);
    ASSERT(memcmp(back.pk, a.pk, 32) == 0);
    char line[UQN_RECORD_LINE_MAX];
    uqn_record_to_line(&r, line);
    ASSERT(strchr(line, '\n') == NULL && strchr(line, ' ') == NULL);
    ASSERT_EQ(uqn_record_from_line(line, &back, &em), UQ_OK);
    ASSERT_EQ(back.seq, 42);
    /* every single-byte change is refused (malformed, or a bad signature) */
    for (size_t i = 0; i < n; i++) {
        enc[i] ^= 0x01;
        uq_err e = uqn_record_decode(enc, n, &back, &em);
        if (e != UQ_ECRYPTO && e != UQ_ECORRUPT)
            test_fail(__FILE__, __LINE__, "byte %zu changed: %s", i, uq_strerror(e));
        enc[i] ^= 0x01;
    }
    /* a directory that swaps in its own key and re-signs cannot keep the name's
     * key; one that swaps the key without re-signing fails verification */
    uqn_record forged = r;
    uqn_identity m;
    tn_identity("mallory.dev", 0, &m);
    memcpy(forged.pk, m.pk, 32);
    ASSERT_EQ(uqn_record_verify(&forged, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "does not verify");
    forged.seq = 43; /* changed address or seq without the key */
    memcpy(forged.pk, a.pk, 32);
    ASSERT_EQ(uqn_record_verify(&forged, &em), UQ_ECRYPTO);
    /* truncation, trailing bytes, bad base64 */
    ASSERT_EQ(uqn_record_decode(enc, n - 1, &back, &em), UQ_ECORRUPT);
    enc[n] = 0;
    ASSERT_EQ(uqn_record_decode(enc, n + 1, &back, &em), UQ_ECORRUPT);
    ASSERT_EQ(uqn_record_from_line("not base64!", &back, &em), UQ_ECORRUPT);
    /* address syntax */
    ASSERT(uqn_addr_valid("10.0.0.1:1"));
    ASSERT(uqn_addr_valid("node-1.example:65535"));
    ASSERT(!uqn_addr_valid("host:0") && !uqn_addr_valid("host:65536") && !uqn_addr_valid("host:08"));
    ASSERT(!uqn_addr_valid("host") && !uqn_addr_valid(":80") && !uqn_addr_valid("ho st:80"));
    ASSERT(!uqn_addr_valid("[zz]:80") && !uqn_addr_valid("-a:80"));
    const char *bad[] = {"no-port"};
    ASSERT_EQ(uqn_record_make(&a, bad, 1, 1, &r, &em), UQ_EINVAL);
}

TEST(net_record_directory_rules)
{
    uqn_identity a, a2, b;
    tn_identity("alice.dev", 0, &a);
    tn_identity("alice.dev", 1, &a2); /* another key claiming the same name */
    tn_identity("bob.dev", 0, &b);
    uqn_dir *d = uqn_dir_new();
    uq_errmsg em = {{0}};
    const char *ad1[] = {"127.0.0.1:9001"}, *ad2[] = {"127.0.0.1:9002"};
    uqn_record r1, r2, r0, imp, rb;
    ASSERT_EQ(uqn_record_make(&a, ad1, 1, 10, &r1, &em), UQ_OK);
    ASSERT_EQ(uqn_record_make(&a, ad2, 1, 11, &r2, &em), UQ_OK);
    ASSERT_EQ(uqn_record_make(&a, ad2, 1, 9, &r0, &em), UQ_OK);
    ASSERT_EQ(uqn_record_make(&a2, ad2, 1, 99, &imp, &em), UQ_OK);
    ASSERT_EQ(uqn_record_make(&b, NULL, 0, 1, &rb, &em), UQ_OK);
    ASSERT_EQ(uqn_dir_put(d, &r1, UQN_SRC_PEER, &em), UQ_OK);
    ASSERT_EQ(uqn_dir_put(d, &r2, UQN_SRC_PEER, &em), UQ_OK); /* newer, same key */
    ASSERT(strcmp(uqn_dir_get(d, "alice.dev")->addrs[0], "127.0.0.1:9002") == 0);
    ASSERT_EQ(uqn_dir_put(d, &r0, UQN_SRC_PEER, &em), UQ_EEXIST); /* older */
    ASSERT_EQ(uqn_dir_put(d, &r2, UQN_SRC_PEER, &em), UQ_EEXIST); /* the same */
    ASSERT_EQ(uqn_dir_put(d, &imp, UQN_SRC_PEER, &em), UQ_EPERM); /* another key, from a peer */
    ASSERT_STR_HAS(em.text, "another key");
    uint8_t pk[32];
    ASSERT_EQ(uqn_dir_lookup(d, "alice.dev", pk, &em), UQ_OK);
    ASSERT(memcmp(pk, a.pk, 32) == 0);
    ASSERT_EQ(uqn_dir_lookup(d, "carol.dev", pk, &em), UQ_ENOENT);
    /* a record with a bad signature is never stored */
    uqn_record bad = rb;
    bad.sig[0] ^= 1;
    ASSERT_EQ(uqn_dir_put(d, &bad, UQN_SRC_FILE, &em), UQ_ECRYPTO);
    ASSERT(uqn_dir_get(d, "bob.dev") == NULL);
    ASSERT_EQ(uqn_dir_put(d, &rb, UQN_SRC_PEER, &em), UQ_OK);
    /* the operator's file may rebind */
    ASSERT_EQ(uqn_dir_put(d, &imp, UQN_SRC_FILE, &em), UQ_OK);
    ASSERT_EQ(uqn_dir_lookup(d, "alice.dev", pk, &em), UQ_OK);
    ASSERT(memcmp(pk, a2.pk, 32) == 0);
    ASSERT_EQ(uqn_dir_count(d), 2);
    uqn_dir_free(d);
}

TEST(net_record_directory_file)
{
    uqn_identity a, b, a2;
    tn_identity("alice.dev", 0, &a);
    tn_identity("bob.dev", 0, &b);
    tn_identity("alice.dev", 1, &a2);
    uqn_dir *d = uqn_dir_new();
    tn_dir_add(d, &a, "127.0.0.1:9001");
    tn_dir_add(d, &b, "[::1]:9002");
    char path[1200];
    snprintf(path, sizeof path, "%s/peers.dir", tb_tmpdir());
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_dir_save(d, path, &em), UQ_OK);
    uqn_dir *l = uqn_dir_new();
    ASSERT_EQ(uqn_dir_load(l, path, &em), UQ_OK);
    ASSERT_EQ(uqn_dir_count(l), 2);
    ASSERT(strcmp(uqn_dir_get(l, "bob.dev")->addrs[0], "[::1]:9002") == 0);
    uqn_dir_free(l);

    /* a tampered line names the file and line */
    FILE *f = fopen(path, "r");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *line4 = text;
    for (int i = 0; i < 3; i++) line4 = strchr(line4, '\n') + 1; /* # header, # alice, alice, # bob */
    char *rec = strchr(line4, '\n') + 1;                            /* bob's record line */
    rec[10] = rec[10] == 'A' ? 'B' : 'A';
    const char *bad = tb_write_tmp("bad.dir", text, n);
    l = uqn_dir_new();
    ASSERT(uqn_dir_load(l, bad, &em) != UQ_OK);
    char where[1300];
    snprintf(where, sizeof where, "%s:5:", bad);
    ASSERT_STR_HAS(em.text, where);
    uqn_dir_free(l);

    /* two keys for one name in the file */
    char l1[UQN_RECORD_LINE_MAX], l2[UQN_RECORD_LINE_MAX], both[3 * UQN_RECORD_LINE_MAX + 64];
    uqn_record r;
    const char *ad[] = {"a.example:1"};
    ASSERT_EQ(uqn_record_make(&a, ad, 1, 1, &r, &em), UQ_OK);
    uqn_record_to_line(&r, l1);
    ASSERT_EQ(uqn_record_make(&a2, ad, 1, 2, &r, &em), UQ_OK);
    uqn_record_to_line(&r, l2);
    snprintf(both, sizeof both, "# two\n\n  %s  \n%s\n", l1, l2);
    bad = tb_write_tmp("two.dir", both, strlen(both));
    l = uqn_dir_new();
    ASSERT_EQ(uqn_dir_load(l, bad, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, ":4: a second record for alice.dev");
    uqn_dir_free(l);
    /* the same key twice: the newest wins */
    ASSERT_EQ(uqn_record_make(&a, ad, 1, 5, &r, &em), UQ_OK);
    uqn_record_to_line(&r, l2);
    snprintf(both, sizeof both, "%s\n%s\n%s\n", l2, l1, l2);
    bad = tb_write_tmp("dup.dir", both, strlen(both));
    l = uqn_dir_new();
    ASSERT_EQ(uqn_dir_load(l, bad, &em), UQ_OK);
    ASSERT_EQ(uqn_dir_get(l, "alice.dev")->seq, 5);
    ASSERT_EQ(uqn_dir_load(l, "/nonexistent/dir", &em), UQ_ENOENT);
    uqn_dir_free(l);
    uqn_dir_free(d);
}
