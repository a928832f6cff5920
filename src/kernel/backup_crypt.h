/* The sealed entries of encrypted backups (docs/PERSISTENCE.md, "Backups";
 * docs/PROTOCOL.md §9): keys derived from the node's identity secret, the
 * entry id (a keyed hash of the store key, so peers do not learn process
 * names), and XChaCha20-Poly1305 with the owner, entry id and sequence as
 * associated data, so a peer cannot read, alter, swap or misattribute an
 * entry undetected. Pure functions, no I/O. */
#ifndef UQ_BACKUP_CRYPT_H
#define UQ_BACKUP_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uqbar/err.h"

#define UQI_BID_HEX 32          /* entry ids: 16 bytes, lower-case hex */
#define UQI_BENTRY_VERSION 1
#define UQI_BENTRY_OVERHEAD (24 + 16 + 5) /* nonce + tag + plaintext header */

/* Which store database an entry comes from (the plaintext says). */
#define UQI_BDB_PROCS 'p'
#define UQI_BDB_STATE 's'

typedef struct uqi_bkeys {
    uint8_t enc[32];  /* XChaCha20-Poly1305 key */
    uint8_t id[32];   /* BLAKE2b key of entry ids */
} uqi_bkeys;

/* Derive the backup keys from the node's Ed25519 secret key (libsodium
 * layout: the first 32 bytes are the seed) with crypto_kdf, context
 * "uqbackup", subkeys 1 and 2. */
void uqi_bkeys_derive(const uint8_t sk[64], uqi_bkeys *k);
void uqi_bkeys_wipe(uqi_bkeys *k);

/* The entry id of store key (db, key): hex of the 16-byte BLAKE2b of
 * db || key keyed with k->id. */
void uqi_bentry_id(const uqi_bkeys *k, char db, const void *key, size_t klen, char hex[UQI_BID_HEX + 1]);

/* Seal one entry: val NULL (vlen 0) with deleted marks a deletion. Returns
 * nonce || ciphertext (malloc'ed, *len bytes). */
uint8_t *uqi_bentry_seal(const uqi_bkeys *k, const char *owner, const char *eid, uint64_t seq, char db,
                         const void *key, size_t klen, const void *val, size_t vlen, bool deleted, size_t *len);

/* An opened entry. */
typedef struct uqi_bentry {
    char db;
    bool deleted;
    uint8_t *key;      /* malloc'ed, klen bytes (+ NUL) */
    size_t klen;
    uint8_t *val;      /* malloc'ed, vlen bytes (+ NUL) */
    size_t vlen;
} uqi_bentry;

/* Verify and decrypt: UQ_ECRYPTO if the bytes were altered, or belong to
 * another owner, entry id or sequence, or to another key; UQ_ECORRUPT if
 * authentic but unreadable (another version). On success out holds copies. */
uq_err uqi_bentry_open(const uqi_bkeys *k, const char *owner, const char *eid, uint64_t seq, const uint8_t *buf,
                       size_t len, uqi_bentry *out, uq_errmsg *em);
void uqi_bentry_free(uqi_bentry *e);

#endif
