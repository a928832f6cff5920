/* Node identity: Ed25519 key pair, the X25519 key derived from it, and the
 * keyfile <home>/identity.key (format in docs/PROTOCOL.md, "Keyfile"). */
#include "net/identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel/msg.h"

#define KF_MAGIC "UQBARKEY"
#define KF_VERSION 1
#define KF_PLAIN 0
#define KF_ARGON 1
#define KF_OPS_MAX 16ull                  /* above SENSITIVE (4): refuse */
#define KF_MEM_MAX (1024ull << 20)        /* 1 GiB: SENSITIVE; a file asking more is refused */
#define KF_MAX 512                        /* no keyfile is larger */

void uqn_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static uq_err from_seed(const char *name, const uint8_t seed[32], uqn_identity *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    if (!name || !uqi_node_name_valid(name))
        return uqi_errf(em, UQ_EINVAL, "node name \"%s\" is not valid: 1-63 of a-z 0-9 . - "
                        "(not starting or ending with . or -)", name ? name : "");
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "libsodium failed to initialize");
    snprintf(out->name, sizeof out->name, "%s", name);
    crypto_sign_seed_keypair(out->pk, out->sk, seed);
    if (crypto_sign_ed25519_sk_to_curve25519(out->x_sk, out->sk) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(out->x_pk, out->pk) != 0) {
        uqn_identity_wipe(out);
        return uqi_errf(em, UQ_ECRYPTO, "could not derive the X25519 key from the Ed25519 key");
    }
    return UQ_OK;
}

uq_err uqn_identity_from_seed(const char *name, const uint8_t seed[32], uqn_identity *out,
                              uq_errmsg *em)
{
    return from_seed(name, seed, out, em);
}

uq_err uqn_identity_generate(const char *name, uqn_identity *out, uq_errmsg *em)
{
    uint8_t seed[32];
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "libsodium failed to initialize");
    randombytes_buf(seed, sizeof seed);
    uq_err e = from_seed(name, seed, out, em);
    sodium_memzero(seed, sizeof seed);
    return e;
}

void uqn_identity_sign(const uqn_identity *id, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    crypto_sign_detached(sig, NULL, msg, len, id->sk);
}

uq_err uqn_sig_verify(const uint8_t pk[32], const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? UQ_OK : UQ_ECRYPTO;
}

void uqn_identity_wipe(uqn_identity *id) { sodium_memzero(id, sizeof *id); }

/* ---- keyfile ----------------------------------------------------------- */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static void keyfile_path(const char *home, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", home, UQN_KEYFILE);
}

static uq_err derive_key(const char *password, const uint8_t salt[16], uint64_t ops, uint64_t mem,
                         uint8_t key[32], const char *path, uq_errmsg *em)
{
    if (crypto_pwhash(key, 32, password, strlen(password), salt, ops, (size_t)mem,
                      crypto_pwhash_ALG_ARGON2ID13) != 0)
        return uqi_errf(em, UQ_ENOMEM, "%s: Argon2id could not get %llu bytes of memory",
                        path, (unsigned long long)mem);
    return UQ_OK;
}

/* Write all of buf to a new file at path without ever replacing one: a
 * temp file, fsync, then link(2), which fails if path exists. */
static uq_err write_new_file(const char *path, const uint8_t *buf, size_t len, uq_errmsg *em)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return uqi_errf(em, uqi_err_from_errno(errno), "%s: %s", tmp, strerror(errno));
    size_t off = 0;
    int e = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { e = errno; break; }
        off += (size_t)w;
    }
    if (!e && fsync(fd) != 0) e = errno;
    close(fd);
    if (!e && link(tmp, path) != 0) e = errno;
    unlink(tmp);
    if (e == EEXIST)
        return uqi_errf(em, UQ_EEXIST, "%s already exists: refusing to overwrite a node identity", path);
    if (e) return uqi_errf(em, uqi_err_from_errno(e), "%s: %s", path, strerror(e));
    /* make the new directory entry durable */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return UQ_OK;
}

uq_err uqn_identity_save(const uqn_identity *id, const char *home, const char *password,
                         unsigned flags, uq_errmsg *em)
{
    char path[4096];
    keyfile_path(home, path, sizeof path);
    bool plain = password == NULL;
    if (plain && !(flags & UQN_KEYFILE_UNENCRYPTED))
        return uqi_errf(em, UQ_EINVAL, "%s: no password given; an unencrypted keyfile needs the "
                        "explicit development flag", path);
    if (!plain && (flags & UQN_KEYFILE_UNENCRYPTED))
        return uqi_errf(em, UQ_EINVAL, "%s: both a password and the unencrypted flag given", path);
    if (!plain && password[0] == '\0')
        return uqi_errf(em, UQ_EINVAL, "%s: the password is empty", path);
    if (!uqi_node_name_valid(id->name))
        return uqi_errf(em, UQ_EINVAL, "%s: node name \"%s\" is not valid", path, id->name);
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "libsodium failed to initialize");
    uq_err e = uqi_mkdirs(home, em);
    if (e) return e;

    uint8_t buf[KF_MAX];
    size_t n = 0, nlen = strlen(id->name);
    memcpy(buf, KF_MAGIC, 8);
    buf[8] = KF_VERSION;
    buf[9] = plain ? KF_PLAIN : KF_ARGON;
    buf[10] = (uint8_t)nlen;
    memcpy(buf + 11, id->name, nlen);
    n = 11 + nlen;
    memcpy(buf + n, id->pk, 32);
    n += 32;
    if (plain) {
        memcpy(buf + n, id->sk, 32); /* the seed */
        n += 32;
        crypto_generichash(buf + n, 16, buf, n, NULL, 0);
        n += 16;
    } else {
        bool fast = flags & UQN_KEYFILE_FAST_KDF;
        uint64_t ops = fast ? crypto_pwhash_OPSLIMIT_INTERACTIVE : crypto_pwhash_OPSLIMIT_MODERATE;
        uint64_t mem = fast ? crypto_pwhash_MEMLIMIT_INTERACTIVE : crypto_pwhash_MEMLIMIT_MODERATE;
        put_u64(buf + n, ops);
        put_u64(buf + n + 8, mem);
        uint8_t *salt = buf + n + 16, *nonce = buf + n + 32;
        randombytes_buf(salt, 16);
        randombytes_buf(nonce, 24);
        n += 56;
        uint8_t key[32];
        if ((e = derive_key(password, salt, ops, mem, key, path, em))) return e;
        unsigned long long clen;
        crypto_aead_xchacha20poly1305_ietf_encrypt(buf + n, &clen, id->sk, 32, buf, n, NULL, nonce, key);
        sodium_memzero(key, sizeof key);
        n += (size_t)clen;
    }
    e = write_new_file(path, buf, n, em);
    sodium_memzero(buf, sizeof buf);
    return e;
}

uq_err uqn_identity_load(const char *home, const char *password, uqn_identity *out, uq_errmsg *em)
{
    char path[4096];
    keyfile_path(home, path, sizeof path);
    memset(out, 0, sizeof *out);
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "libsodium failed to initialize");
    uint8_t *buf = NULL;
    size_t len = 0;
    uq_errmsg rem;
    uq_err e = uqi_read_file(path, &buf, &len, &rem);
    if (e == UQ_ENOENT) return uqi_errf(em, e, "%s: no identity keyfile (create one first)", path);
    if (e) return uqi_errf(em, e, "%s", rem.text);
    uint8_t seed[32], key[32];
    char name[UQN_NAME_MAX + 1];
    size_t n = 0, nlen;
    if (len < 11 || memcmp(buf, KF_MAGIC, 8) != 0) {
        e = uqi_errf(em, UQ_ECORRUPT, "%s: not a uqbar keyfile (bad magic)", path);
        goto out;
    }
    if (buf[8] != KF_VERSION) {
        e = uqi_errf(em, UQ_ECORRUPT, "%s: keyfile version %u, this uqbar reads version %u",
                     path, buf[8], KF_VERSION);
        goto out;
    }
    nlen = buf[10];
    if (nlen == 0 || nlen > UQN_NAME_MAX || len < 11 + nlen + 32) goto truncated;
    memcpy(name, buf + 11, nlen);
    name[nlen] = '\0';
    if (strlen(name) != nlen || !uqi_node_name_valid(name)) {
        e = uqi_errf(em, UQ_ECORRUPT, "%s: the node name in the keyfile is not valid", path);
        goto out;
    }
    n = 11 + nlen + 32;
    const uint8_t *pk = buf + 11 + nlen;
    if (buf[9] == KF_PLAIN) {
        if (len != n + 32 + 16) goto truncated;
        uint8_t check[16];
        crypto_generichash(check, 16, buf, n + 32, NULL, 0);
        if (sodium_memcmp(check, buf + n + 32, 16) != 0) {
            e = uqi_errf(em, UQ_ECORRUPT, "%s: checksum mismatch: the keyfile is damaged", path);
            goto out;
        }
        memcpy(seed, buf + n, 32);
    } else if (buf[9] == KF_ARGON) {
        if (len != n + 56 + 48) goto truncated;
        if (!password) {
            e = uqi_errf(em, UQ_EPERM, "%s: the keyfile is encrypted: a password is needed", path);
            goto out;
        }
        uint64_t ops = get_u64(buf + n), mem = get_u64(buf + n + 8);
        if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > KF_OPS_MAX || mem < crypto_pwhash_MEMLIMIT_MIN ||
            mem > KF_MEM_MAX) {
            e = uqi_errf(em, UQ_ECORRUPT, "%s: Argon2id parameters out of range (ops %llu, memory %llu)",
                         path, (unsigned long long)ops, (unsigned long long)mem);
            goto out;
        }
        const uint8_t *salt = buf + n + 16, *nonce = buf + n + 32;
        if ((e = derive_key(password, salt, ops, mem, key, path, em))) goto out;
        unsigned long long plen;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(seed, &plen, NULL, buf + n + 56, 48, buf, n + 56,
                                                       nonce, key) != 0) {
            e = uqi_errf(em, UQ_ECRYPTO, "%s: wrong password (or the keyfile was altered)", path);
            goto out;
        }
    } else {
        e = uqi_errf(em, UQ_ECORRUPT, "%s: unknown keyfile mode %u", path, buf[9]);
        goto out;
    }
    if ((e = from_seed(name, seed, out, em))) goto out;
    if (sodium_memcmp(out->pk, pk, 32) != 0) {
        uqn_identity_wipe(out);
        e = uqi_errf(em, UQ_ECORRUPT, "%s: the secret key does not match the public key in the file", path);
        goto out;
    }
    out->encrypted = buf[9] == KF_ARGON;
    e = UQ_OK;
    goto out;
truncated:
    e = uqi_errf(em, UQ_ECORRUPT, "%s: truncated or malformed keyfile (%zu bytes)", path, len);
out:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(key, sizeof key);
    sodium_memzero(buf, len);
    free(buf);
    return e;
}
