/* A node's identity: its name and Ed25519 key pair, kept in <home>/identity.key
 * (encrypted with a password by Argon2id + XChaCha20-Poly1305, or plain for
 * development nodes only when asked explicitly). The X25519 static key that
 * Noise uses is derived from the Ed25519 key, so one secret is stored. The
 * file format is in docs/PROTOCOL.md ("Keyfile"). */
#ifndef UQ_NET_IDENTITY_H
#define UQ_NET_IDENTITY_H

#include "util/util.h"

#define UQN_NAME_MAX 63          /* node names: uqi_node_name_valid (kernel/msg.h) */
#define UQN_KEYFILE "identity.key"

typedef struct uqn_identity {
    char name[UQN_NAME_MAX + 1];
    uint8_t pk[32];       /* Ed25519 public key: the node's identity */
    uint8_t sk[64];       /* Ed25519 secret key (seed || pk), libsodium layout */
    uint8_t x_sk[32];     /* X25519 static secret for Noise, derived from sk */
    uint8_t x_pk[32];     /* its public key */
    bool encrypted;       /* loaded from (or saved to) an encrypted keyfile */
} uqn_identity;

/* Flags for uqn_identity_save. */
#define UQN_KEYFILE_UNENCRYPTED 0x1u /* dev nodes: store the seed in clear (needs password NULL) */
#define UQN_KEYFILE_FAST_KDF 0x2u    /* Argon2id at the INTERACTIVE level (tests); MODERATE otherwise */

/* A fresh identity for name, from the system's random source. UQ_EINVAL for
 * a name that uqi_node_name_valid refuses. */
uq_err uqn_identity_generate(const char *name, uqn_identity *out, uq_errmsg *em);
/* The identity whose Ed25519 seed is seed (deterministic; tests). */
uq_err uqn_identity_from_seed(const char *name, const uint8_t seed[32], uqn_identity *out,
                              uq_errmsg *em);

/* Write id to <home>/identity.key, creating home if needed. With a password
 * (non-empty), the seed is encrypted; with password NULL, flags must hold
 * UQN_KEYFILE_UNENCRYPTED, and the file says it is unencrypted. Never
 * overwrites: UQ_EEXIST if the file exists. The file is written to a temp
 * file, fsynced, then linked into place, mode 0600. UQ_EINVAL for a missing
 * password without the flag, UQ_EIO (or a system error) for I/O. */
uq_err uqn_identity_save(const uqn_identity *id, const char *home, const char *password,
                         unsigned flags, uq_errmsg *em);

/* Read <home>/identity.key. An encrypted file needs password (else
 * UQ_EPERM); an unencrypted one loads without (a password is then ignored,
 * out->encrypted says which it was). UQ_ENOENT if there is no file,
 * UQ_ECRYPTO for a wrong password (or a file altered since it was written),
 * UQ_ECORRUPT for a truncated, foreign or inconsistent file. Every message
 * names the file. */
uq_err uqn_identity_load(const char *home, const char *password, uqn_identity *out,
                         uq_errmsg *em);

/* Ed25519 signature of msg by the identity. */
void uqn_identity_sign(const uqn_identity *id, const uint8_t *msg, size_t len, uint8_t sig[64]);
/* Check an Ed25519 signature: UQ_OK or UQ_ECRYPTO. */
uq_err uqn_sig_verify(const uint8_t pk[32], const uint8_t *msg, size_t len, const uint8_t sig[64]);

/* Zero the secrets. */
void uqn_identity_wipe(uqn_identity *id);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void uqn_hex(const uint8_t *p, size_t n, char *out);

#endif
