/* Node identity keyfiles: encrypted and development round trips, wrong
 * password, damaged and foreign files, never overwriting. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integ/tnet.h"
#include "net/identity.h"

static const char *keyfile(const char *home)
{
    static char p[1200];
    snprintf(p, sizeof p, "%s/identity.key", home);
    return p;
}

static size_t read_all(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_all(const char *path, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(buf, 1, n, f), n);
    fclose(f);
}

TEST(net_identity_keyfile_encrypted_round_trip)
{
    char home[1100];
    snprintf(home, sizeof home, "%s/node-a", tb_tmpdir());
    uqn_identity id, back;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_identity_generate("alice.dev", &id, &em), UQ_OK);
    ASSERT_EQ(uqn_identity_save(&id, home, "correct horse", UQN_KEYFILE_FAST_KDF, &em), UQ_OK);
    struct stat st;
    ASSERT_EQ(stat(keyfile(home), &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(uqn_identity_load(home, "correct horse", &back, &em), UQ_OK);
    ASSERT(back.encrypted);
    ASSERT(strcmp(back.name, "alice.dev") == 0);
    ASSERT(memcmp(back.pk, id.pk, 32) == 0 && memcmp(back.sk, id.sk, 64) == 0);
    ASSERT(memcmp(back.x_sk, id.x_sk, 32) == 0 && memcmp(back.x_pk, id.x_pk, 32) == 0);
    /* the derived X25519 key pair is consistent */
    uint8_t xpk[32];
    uqn_x25519_public(back.x_sk, xpk);
    ASSERT(memcmp(xpk, back.x_pk, 32) == 0);
    /* the seed is not in the file in clear */
    uint8_t buf[512];
    size_t n = read_all(keyfile(home), buf, sizeof buf);
    ASSERT(n > 32);
    for (size_t i = 0; i + 32 <= n; i++) ASSERT(memcmp(buf + i, id.sk, 32) != 0);

    /* wrong password, and no password */
    ASSERT_EQ(uqn_identity_load(home, "wrong horse", &back, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "wrong password");
    ASSERT_STR_HAS(em.text, keyfile(home));
    ASSERT_EQ(uqn_identity_load(home, NULL, &back, &em), UQ_EPERM);
    ASSERT_STR_HAS(em.text, "password is needed");

    /* never overwritten, even with another identity */
    uqn_identity other;
    ASSERT_EQ(uqn_identity_generate("alice.dev", &other, &em), UQ_OK);
    ASSERT_EQ(uqn_identity_save(&other, home, "x", UQN_KEYFILE_FAST_KDF, &em), UQ_EEXIST);
    ASSERT_STR_HAS(em.text, "already exists");
    ASSERT_EQ(uqn_identity_load(home, "correct horse", &back, &em), UQ_OK);
    ASSERT(memcmp(back.pk, id.pk, 32) == 0);

    /* the name and key are authenticated: change one letter of the name */
    n = read_all(keyfile(home), buf, sizeof buf);
    buf[11] = buf[11] == 'a' ? 'b' : 'a';
    write_all(keyfile(home), buf, n);
    ASSERT_EQ(uqn_identity_load(home, "correct horse", &back, &em), UQ_ECRYPTO);
    uqn_identity_wipe(&id);
    uqn_identity_wipe(&other);
    uqn_identity_wipe(&back);
}

TEST(net_identity_keyfile_unencrypted_needs_the_flag)
{
    char home[1100];
    snprintf(home, sizeof home, "%s/dev", tb_tmpdir());
    uqn_identity id, back;
    uq_errmsg em = {{0}};
    tn_identity("dev.local", 0, &id);
    ASSERT_EQ(uqn_identity_save(&id, home, NULL, 0, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "development flag");
    ASSERT_EQ(access(keyfile(home), F_OK), -1);
    ASSERT_EQ(uqn_identity_save(&id, home, "pw", UQN_KEYFILE_UNENCRYPTED, &em), UQ_EINVAL);
    ASSERT_EQ(uqn_identity_save(&id, home, NULL, UQN_KEYFILE_UNENCRYPTED, &em), UQ_OK);
    ASSERT_EQ(uqn_identity_load(home, NULL, &back, &em), UQ_OK);
    ASSERT(!back.encrypted);
    ASSERT(memcmp(back.sk, id.sk, 64) == 0 && strcmp(back.name, "dev.local") == 0);
    /* the mode byte says it is unencrypted */
    uint8_t buf[512];
    size_t n = read_all(keyfile(home), buf, sizeof buf);
    ASSERT(memcmp(buf, "UQBARKEY", 8) == 0);
    ASSERT_EQ(buf[8], 1);
    ASSERT_EQ(buf[9], 0);
    ASSERT_EQ(n, 11 + 9 + 32 + 32 + 16);
    /* a flipped bit anywhere is caught by the checksum or the key check */
    for (size_t i = 11; i < n; i++) {
        buf[i] ^= 0x10;
        write_all(keyfile(home), buf, n);
        uq_err e = uqn_identity_load(home, NULL, &back, &em);
        if (e != UQ_ECORRUPT) test_fail(__FILE__, __LINE__, "byte %zu: %s", i, uq_strerror(e));
        buf[i] ^= 0x10;
    }
}

TEST(net_identity_keyfile_damaged_or_foreign)
{
    char home[1100];
    snprintf(home, sizeof home, "%s/bad", tb_tmpdir());
    uqn_identity id, back;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ENOENT);
    ASSERT_STR_HAS(em.text, "identity.key");
    tn_identity("bob.dev", 0, &id);
    ASSERT_EQ(uqn_identity_save(&id, home, "pw", UQN_KEYFILE_FAST_KDF, &em), UQ_OK);
    uint8_t good[512], buf[512];
    size_t n = read_all(keyfile(home), good, sizeof good);
    /* every truncation */
    for (size_t cut = 0; cut < n; cut += 7) {
        write_all(keyfile(home), good, cut);
        ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECORRUPT);
        ASSERT_STR_HAS(em.text, keyfile(home));
    }
    /* trailing garbage */
    memcpy(buf, good, n);
    buf[n] = 0;
    write_all(keyfile(home), buf, n + 1);
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECORRUPT);
    /* a foreign file */
    write_all(keyfile(home), (const uint8_t *)"-----BEGIN OPENSSH PRIVATE KEY-----\n", 36);
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "not a uqbar keyfile");
    /* a future version, an unknown mode, absurd Argon2 parameters */
    memcpy(buf, good, n);
    buf[8] = 9;
    write_all(keyfile(home), buf, n);
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "version 9");
    memcpy(buf, good, n);
    buf[9] = 7;
    write_all(keyfile(home), buf, n);
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECORRUPT);
    memcpy(buf, good, n);
    size_t ops_at = 11 + strlen("bob.dev") + 32;
    memset(buf + ops_at + 8, 0xff, 8); /* memlimit 2^64-1 */
    write_all(keyfile(home), buf, n);
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, "out of range");
    /* a flipped ciphertext bit: the tag refuses it */
    memcpy(buf, good, n);
    buf[n - 20] ^= 1;
    write_all(keyfile(home), buf, n);
    ASSERT_EQ(uqn_identity_load(home, "pw", &back, &em), UQ_ECRYPTO);
    /* bad names are refused before anything is written */
    ASSERT_EQ(uqn_identity_generate("Bad_Name", &back, &em), UQ_EINVAL);
    ASSERT_EQ(uqn_identity_generate("", &back, &em), UQ_EINVAL);
}

TEST(net_identity_sign_verify)
{
    uqn_identity a, b;
    tn_identity("a.dev", 0, &a);
    tn_identity("a.dev", 1, &b);
    ASSERT(memcmp(a.pk, b.pk, 32) != 0);
    uint8_t sig[64];
    uqn_identity_sign(&a, (const uint8_t *)"msg", 3, sig);
    ASSERT_EQ(uqn_sig_verify(a.pk, (const uint8_t *)"msg", 3, sig), UQ_OK);
    ASSERT_EQ(uqn_sig_verify(b.pk, (const uint8_t *)"msg", 3, sig), UQ_ECRYPTO);
    ASSERT_EQ(uqn_sig_verify(a.pk, (const uint8_t *)"msh", 3, sig), UQ_ECRYPTO);
}
