/* Sealed backup entries: round trip; every single-byte change, another
 * owner, entry id, sequence or key is refused; an entry moved under
 * another id is refused; ids hide the store key and differ per node. */
#define _GNU_SOURCE
#include "integ/tnet.h"
#include "kernel/backup_crypt.h"

TEST(backup_entry_seal_open_and_tamper)
{
    uqn_identity a, b;
    tn_identity("alice.dev", 0, &a);
    tn_identity("bob.dev", 0, &b);
    uqi_bkeys ka, kb;
    uqi_bkeys_derive(a.sk, &ka);
    uqi_bkeys_derive(b.sk, &kb);
    char id[UQI_BID_HEX + 1], id2[UQI_BID_HEX + 1], idb[UQI_BID_HEX + 1];
    uqi_bentry_id(&ka, UQI_BDB_STATE, "tally", 5, id);
    uqi_bentry_id(&ka, UQI_BDB_PROCS, "tally", 5, id2);
    uqi_bentry_id(&kb, UQI_BDB_STATE, "tally", 5, idb);
    ASSERT_EQ(strlen(id), UQI_BID_HEX);
    ASSERT(strcmp(id, id2) != 0 && strcmp(id, idb) != 0); /* per database, per node */
    ASSERT(strstr(id, "tally") == NULL);
    size_t n;
    uint8_t *ct = uqi_bentry_seal(&ka, "alice.dev", id, 7, UQI_BDB_STATE, "tally", 5, "secret-42", 9, false, &n);
    ASSERT(ct != NULL);
    ASSERT_EQ(n, 9 + 5 + UQI_BENTRY_OVERHEAD);
    ASSERT(memmem(ct, n, "secret-42", 9) == NULL && memmem(ct, n, "tally", 5) == NULL);
    uqi_bentry e;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id, 7, ct, n, &e, &em), UQ_OK);
    ASSERT(e.db == UQI_BDB_STATE && !e.deleted && e.klen == 5 && memcmp(e.key, "tally", 5) == 0);
    ASSERT(e.vlen == 9 && memcmp(e.val, "secret-42", 9) == 0);
    uqi_bentry_free(&e);
    for (size_t i = 0; i < n; i++) {
        ct[i] ^= 0x01;
        ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id, 7, ct, n, &e, &em), UQ_ECRYPTO);
        ct[i] ^= 0x01;
    }
    ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id, 7, ct, n - 1, &e, &em), UQ_ECRYPTO);
    ASSERT_EQ(uqi_bentry_open(&ka, "mallory.dev", id, 7, ct, n, &e, &em), UQ_ECRYPTO); /* misattributed */
    ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id2, 7, ct, n, &e, &em), UQ_ECRYPTO);  /* swapped */
    ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id, 8, ct, n, &e, &em), UQ_ECRYPTO);   /* another sequence */
    ASSERT_STR_HAS(em.text, "fails authentication");
    ASSERT_EQ(uqi_bentry_open(&kb, "alice.dev", id, 7, ct, n, &e, &em), UQ_ECRYPTO);   /* another node's key */
    free(ct);
    /* sealed honestly under a wrong id (a confused or hostile writer): the key inside disagrees */
    ct = uqi_bentry_seal(&ka, "alice.dev", id2, 9, UQI_BDB_STATE, "tally", 5, "x", 1, false, &n);
    ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id2, 9, ct, n, &e, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "holds the key of entry");
    free(ct);
    /* a deletion */
    ct = uqi_bentry_seal(&ka, "alice.dev", id, 10, UQI_BDB_STATE, "tally", 5, NULL, 0, true, &n);
    ASSERT_EQ(uqi_bentry_open(&ka, "alice.dev", id, 10, ct, n, &e, &em), UQ_OK);
    ASSERT(e.deleted && e.vlen == 0);
    uqi_bentry_free(&e);
    free(ct);
    uqi_bkeys_wipe(&ka);
    uqi_bkeys_wipe(&kb);
}
