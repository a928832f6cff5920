/* Networking for `uqbar boot`: the node's identity (keyfile), the net
 * module, the directory file, and the node's own record. */
#ifndef UQ_CLI_BOOT_NET_H
#define UQ_CLI_BOOT_NET_H

#include "kernel/kernel.h"
#include "net/netmod.h"

typedef struct uq_netopts {
    bool on;                    /* --listen given: the node talks to others */
    const char *listen;         /* --listen HOST:PORT (port 0: any) */
    const char *peers;          /* --peers FILE (default <home>/peers) */
    const char *password_file;  /* --password-file FILE (else $UQBAR_PASSWORD) */
    bool dev_key;               /* --dev-unencrypted-key */
    uint32_t timeout_ms;        /* --net-timeout MS: not sent by then -> Timeout */
    uint32_t keepalive_ms;      /* --net-keepalive MS */
    uint32_t idle_ms;           /* --net-idle MS */
    const char *backup_peers;   /* --backup-peers a,b: where this node's backups go */
    uint64_t backup_quota;      /* --backup-quota MB: kept per other node (bytes; 0: default) */
    bool restore;               /* --restore: fetch the store from the backup peers first */
    uint32_t lookup_ms;         /* --lookup-timeout MS: peers asked about an unknown name this long */
    bool no_lookup;             /* --no-lookup: neither ask peers nor answer them */
} uq_netopts;

/* Consume a networking option at argv[*i] (advancing *i past its value);
 * false if it is not one. */
bool uq_netopts_parse(uq_netopts *o, int argc, char **argv, int *i);
/* Load <home>/identity.key, or create it for *name on first boot. When
 * name_given is false the keyfile's name is taken; otherwise it must match. */
uq_err uq_boot_identity(const char *home, const char **name, bool name_given, const uq_netopts *o, uqn_identity *id,
                        uq_errmsg *em);
/* Start the net module for node and attach it; writes <home>/record (the
 * node's signed directory record, one line) for others' directory files;
 * records learned from peers are kept in <home>/learned. */
uq_err uq_boot_net(uqi_node *node, const char *home, const uq_netopts *o, const uqn_identity *id, uqn_net **out,
                   uq_errmsg *em);
/* Backups (kernel/backup.h): with o->restore, restore the store from the
 * backup peers first (a fresh home); then start the process `backup`
 * (keeps other nodes' backups; sends ours to o->backup_peers). */
struct uqi_backup;
struct uqs_store;
uq_err uq_boot_backup(uqi_node *node, struct uqs_store *store, const uq_netopts *o, const uqn_identity *id,
                      struct uqi_backup **out, uq_errmsg *em);

/* Detach and stop (before uqi_node_stop). */
void uq_boot_net_stop(uqi_node *node, uqn_net *net);

#endif
