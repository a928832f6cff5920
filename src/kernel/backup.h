/* Encrypted remote backups (docs/PERSISTENCE.md, "Backups"; the messages:
 * docs/PROTOCOL.md §9). Every networked node runs the host process
 * `backup`: public, holding the network capability, served by a thread of
 * its own. It does two things:
 *
 *  - keeps other nodes' backups: Put / List / Get from the `backup` process
 *    of the owner node (the link authenticates the node), stored in this
 *    node's store (database "backup", keys "h/<owner>/<entry id>"), at most
 *    `quota` bytes per owner;
 *  - sends its own node's backups: every committed write of the process
 *    table and process state (the store's watcher) marks the store key dirty
 *    for each backup peer; the thread seals the current value
 *    (backup_crypt.h) and Puts it, a window of requests per peer, and once
 *    a peer answers Ok records "a/<peer>/<db><key>" -> sequence + digest.
 *    At start it compares the store with those records, so what a crash or
 *    an offline peer missed is sent again; nothing acknowledged locally is
 *    lost as long as the node's own store lives.
 *
 * uqi_backup_restore is the other direction: on a fresh home with the
 * node's keyfile, List and Get every entry from the peers, verify and
 * decrypt each (a tampered copy is refused by name, another peer's copy
 * taken), and write them into the store. */
#ifndef UQ_BACKUP_H
#define UQ_BACKUP_H

#include <stdio.h>

#include "kernel/kernel.h"

#define UQI_BACKUP_PROCESS "backup"
#define UQI_BACKUP_PEERS_MAX 8
#define UQI_BACKUP_QUOTA_DEFAULT (64ull << 20)

typedef struct uqi_backup uqi_backup;

typedef struct uqi_backup_cfg {
    const uint8_t *sk;               /* the node's Ed25519 secret key (64 bytes); the keys derive from it */
    const char *const *peers;        /* backup peers: node names (none: only keep others' backups) */
    uint32_t npeers;
    uint64_t quota;                  /* bytes kept per other owner; 0 = UQI_BACKUP_QUOTA_DEFAULT */
    uint32_t window;                 /* Puts in flight per peer; 0 = 32 */
} uqi_backup_cfg;

/* Start the `backup` process of n with its thread (store s must outlive
 * it). UQ_EINVAL for a bad peer name or too many peers. */
uq_err uqi_backup_start(uqi_node *n, struct uqs_store *s, const uqi_backup_cfg *cfg, uqi_backup **out,
                        uq_errmsg *em);
/* Stop: the watcher goes, the thread ends, the port goes. What was not yet
 * sent is sent by the next start (it compares the store with what peers
 * acknowledged). Before uqi_node_stop. NULL is a no-op. */
void uqi_backup_stop(uqi_backup *b);

/* One line per backup peer: entries acknowledged, waiting, failures. */
void uqi_backup_status(uqi_backup *b, char *buf, size_t cap);
/* Entries not yet acknowledged by every peer (dirty or in flight);
 * UINT64_MAX until the comparison at start is done. */
uint64_t uqi_backup_pending(uqi_backup *b);

typedef struct uqi_restore_report {
    uint32_t listed;       /* distinct entries the peers listed */
    uint32_t restored;     /* written into the store */
    uint32_t deleted;      /* entries recording a deletion (nothing to write) */
    uint32_t refused;      /* copies refused (altered, or not this node's) */
    uint32_t lost;         /* entries with no good copy on any peer */
    uint32_t peers_ok;     /* peers that answered List */
    uint64_t bytes;        /* bytes of values written */
} uqi_restore_report;

/* Restore n's store from its backup peers (n must be networked and have no
 * process of its own named backup yet; the store must hold no process
 * record: UQ_EEXIST otherwise). Progress and refusals go to out. UQ_OK if
 * every listed entry came back; UQ_ECRYPTO if some had no good copy (the
 * others are written); UQ_ENOENT if no peer answered. */
uq_err uqi_backup_restore(uqi_node *n, struct uqs_store *s, const uint8_t sk[64], const char *const *peers,
                          uint32_t npeers, FILE *out, uqi_restore_report *rep, uq_errmsg *em);

/* Internal (backup.c, backup_restore.c): the port `backup`, public, with
 * the network capability. */
uq_err uqi_backup_port(uqi_node *n, uqi_kproc **out, uq_errmsg *em);

/* "a,b,c" into up to max names (pointers into buf, which is modified). */
uq_err uqi_backup_parse_peers(char *buf, const char **names, uint32_t max, uint32_t *n, uq_errmsg *em);

#endif
