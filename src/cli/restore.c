/* `uqbar restore`: bring a node back on a fresh machine from its keyfile and
 * its backup peers. The home holds only identity.key; the node starts
 * without processes, dials its backup peers (dial only: it does not listen),
 * fetches, verifies and decrypts every entry into its store, and stops.
 * The next `uqbar boot` brings the processes back with their state. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/boot_net.h"
#include "cli/cli.h"
#include "kernel/backup.h"
#include "kernel/kernel.h"
#include "store/store.h"

#define EXIT_FAILED 123

int uq_cmd_restore(int argc, char **argv)
{
    const char *home = NULL;
    uq_netopts nopt = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--home") == 0 && i + 1 < argc) home = argv[++i];
        else if (strcmp(argv[i], "-v") == 0) uqi_log_level = UQ_LOG_INFO;
        else if (uq_netopts_parse(&nopt, argc, argv, &i)) continue;
        else {
            fprintf(stderr, "uqbar restore: unknown option '%s' (see uqbar help)\n", argv[i]);
            return 2;
        }
    }
    if (!home || !nopt.backup_peers) {
        fprintf(stderr, "uqbar restore: --home DIR (holding the node's identity.key) and --backup-peers a,b are "
                        "required\n");
        return 2;
    }
    char kf[4200], cache[4200];
    struct stat st;
    snprintf(kf, sizeof kf, "%s/%s", home, UQN_KEYFILE);
    if (stat(kf, &st) != 0) {
        fprintf(stderr, "uqbar restore: %s is missing: restore needs the node's keyfile (its backups are sealed "
                        "with keys derived from it)\n", kf);
        return EXIT_FAILED;
    }
    const char *ec = getenv("UQBAR_CACHE");
    if (ec && *ec) snprintf(cache, sizeof cache, "%s", ec);
    else snprintf(cache, sizeof cache, "%s/cache", home);
    uq_errmsg em = {{0}};
    const char *name = NULL;
    uqn_identity ident;
    if (uq_boot_identity(home, &name, false, &nopt, &ident, &em)) {
        fprintf(stderr, "uqbar: %s\n", em.text);
        return EXIT_FAILED;
    }
    char buf[1024];
    const char *peers[UQI_BACKUP_PEERS_MAX];
    uint32_t np = 0;
    snprintf(buf, sizeof buf, "%s", nopt.backup_peers);
    uqs_store *store = NULL;
    uqi_node *node = NULL;
    uqn_net *net = NULL;
    int rc = EXIT_FAILED;
    char peers_path[4200];
    snprintf(peers_path, sizeof peers_path, "%s/peers", home);
    uqi_node_config cfg = {.name = ident.name, .cache_dir = cache, .workers = 1, .identity_sk = ident.sk};
    uqn_net_cfg ncfg = {.id = &ident, .listen = nopt.listen, .dir_path = nopt.peers ? nopt.peers : peers_path,
                        .send_timeout_ms = nopt.timeout_ms};
    if (uqi_backup_parse_peers(buf, peers, UQI_BACKUP_PEERS_MAX, &np, &em) || uqs_open(home, NULL, &store, &em))
        goto out;
    cfg.store = store;
    if (uqi_node_start(&cfg, &node, &em)) goto out;
    uqi_node_net_hooks(node, &ncfg);
    if (uqn_net_start(&ncfg, &net, &em)) goto out;
    uqi_node_set_net(node, net);
    uqi_restore_report rep;
    uq_err e = uqi_backup_restore(node, store, ident.sk, peers, np, stdout, &rep, &em);
    if (!e || e == UQ_ECRYPTO) {
        printf("restore: node %s is restored in %s; boot it with: uqbar boot --home %s --listen HOST:PORT "
               "--backup-peers %s\n",
               ident.name, home, home, nopt.backup_peers);
        rc = e ? 1 : 0;
    }
out:
    if (rc == EXIT_FAILED) fprintf(stderr, "uqbar restore: %s\n", em.text);
    else if (rc == 1) fprintf(stderr, "uqbar restore: %s\n", em.text);
    fflush(stdout);
    if (net) {
        uqi_node_set_net(node, NULL);
        uqn_net_stop(net);
    }
    if (node) uqi_node_stop(node);
    uqs_close(store);
    uqn_identity_wipe(&ident);
    return rc;
}
