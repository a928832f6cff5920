/* Directory records and the directory. A record says "node N has Ed25519 key
 * K and is reached at these host:port addresses", with a sequence number,
 * and is signed by K: whoever relays it cannot change it. The directory maps
 * names to records; its file holds one record per line. Formats:
 * docs/PROTOCOL.md ("Records", "Directory file"). */
#ifndef UQ_NET_RECORD_H
#define UQ_NET_RECORD_H

#include "net/identity.h"

#define UQN_ADDRS_MAX 8      /* addresses per record */
#define UQN_ADDR_MAX 127     /* bytes per "host:port" */
#define UQN_RECORD_MAX (2 + UQN_NAME_MAX + 32 + 8 + 1 + UQN_ADDRS_MAX * (1 + UQN_ADDR_MAX) + 64)
#define UQN_RECORD_LINE_MAX (UQN_RECORD_MAX * 4 / 3 + 4)  /* base64 of the encoding, + NUL */

typedef struct uqn_record {
    char name[UQN_NAME_MAX + 1];
    uint8_t pk[32];           /* Ed25519 key of the node; signs the record */
    uint64_t seq;             /* larger replaces smaller (e.g. Unix seconds at signing) */
    unsigned naddrs;
    char addrs[UQN_ADDRS_MAX][UQN_ADDR_MAX + 1];  /* "host:port", host a DNS name, IPv4 or [IPv6] */
    uint8_t sig[64];
} uqn_record;

/* True if a is "host:port" as records allow. */
bool uqn_addr_valid(const char *a);

/* A record for id with n addresses and sequence seq, signed. UQ_EINVAL for
 * too many or malformed addresses. */
uq_err uqn_record_make(const uqn_identity *id, const char *const *addrs, size_t n, uint64_t seq,
                       uqn_record *out, uq_errmsg *em);
/* The canonical encoding, signature included, into out (UQN_RECORD_MAX
 * bytes); returns its length. */
size_t uqn_record_encode(const uqn_record *r, uint8_t *out);
/* Parse a canonical encoding and verify its signature. UQ_ECORRUPT if
 * malformed or not canonical, UQ_ECRYPTO if the signature does not verify. */
uq_err uqn_record_decode(const uint8_t *p, size_t n, uqn_record *out, uq_errmsg *em);
/* Check r's signature (UQ_OK or UQ_ECRYPTO). */
uq_err uqn_record_verify(const uqn_record *r, uq_errmsg *em);
/* The record as one line of text (base64url, no padding) into out
 * (UQN_RECORD_LINE_MAX bytes), and back (decode + verify). */
void uqn_record_to_line(const uqn_record *r, char *out);
uq_err uqn_record_from_line(const char *line, uqn_record *out, uq_errmsg *em);

/* ---- the directory ------------------------------------------------------ */

typedef struct uqn_dir uqn_dir;

/* Where a record came from: the operator's file may bind a name to a new
 * key; a peer answering a look-up may only add a name or update one with
 * the same key and a higher sequence number. */
typedef enum uqn_src { UQN_SRC_FILE = 0, UQN_SRC_PEER = 1 } uqn_src;

uqn_dir *uqn_dir_new(void);
void uqn_dir_free(uqn_dir *d);   /* NULL is a no-op */
size_t uqn_dir_count(const uqn_dir *d);
/* The i-th record (i < uqn_dir_count), in the order they were added. */
const uqn_record *uqn_dir_at(const uqn_dir *d, size_t i);

/* Add or update a record (copied) after verifying it. UQ_ECRYPTO: bad
 * signature. UQ_EEXIST: not newer than the record held (nothing changes).
 * UQ_EPERM: a peer tried to bind a known name to another key. UQ_ECORRUPT:
 * same name and sequence but a different record. */
uq_err uqn_dir_put(uqn_dir *d, const uqn_record *r, uqn_src src, uq_errmsg *em);
/* The record for name, or NULL. Valid until the next put or free. */
const uqn_record *uqn_dir_get(const uqn_dir *d, const char *name);
/* A uqn_lookup_fn: arg is the uqn_dir. UQ_ENOENT if unknown. */
uq_err uqn_dir_lookup(void *arg, const char *name, uint8_t pk[32], uq_errmsg *em);

/* Read a directory file into d (source UQN_SRC_FILE): one record line each,
 * blank lines and lines starting with # ignored. A bad line fails the load
 * with "path:line: why"; two lines for one name with different keys too. */
uq_err uqn_dir_load(uqn_dir *d, const char *path, uq_errmsg *em);
/* Write d to path (atomically), each record preceded by a readable comment. */
uq_err uqn_dir_save(const uqn_dir *d, const char *path, uq_errmsg *em);

#endif
