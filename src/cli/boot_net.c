/* Networking for `uqbar boot` (boot_net.h). */
#include "cli/boot_net.h"

#include "kernel/backup.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* "64" (MB), or with a suffix: "512K", "64M", "2G"; at least 1 byte. */
static uint64_t quota_bytes(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 10);
    unsigned shift = *end == 'K' || *end == 'k' ? 10 : *end == 'G' || *end == 'g' ? 30 : 20;
    v <<= shift;
    return v ? v : 1;
}

bool uq_netopts_parse(uq_netopts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    bool has = *i + 1 < argc;
    if (strcmp(a, "--listen") == 0 && has) o->listen = argv[++*i], o->on = true;
    else if (strcmp(a, "--peers") == 0 && has) o->peers = argv[++*i];
    else if (strcmp(a, "--password-file") == 0 && has) o->password_file = argv[++*i];
    else if (strcmp(a, "--dev-unencrypted-key") == 0) o->dev_key = true;
    else if (strcmp(a, "--net-timeout") == 0 && has) o->timeout_ms = (uint32_t)atoi(argv[++*i]);
    else if (strcmp(a, "--net-keepalive") == 0 && has) o->keepalive_ms = (uint32_t)atoi(argv[++*i]);
    else if (strcmp(a, "--net-idle") == 0 && has) o->idle_ms = (uint32_t)atoi(argv[++*i]);
    else if (strcmp(a, "--backup-peers") == 0 && has) o->backup_peers = argv[++*i];
    else if (strcmp(a, "--backup-quota") == 0 && has) o->backup_quota = quota_bytes(argv[++*i]);
    else if (strcmp(a, "--restore") == 0) o->restore = true;
    else if (strcmp(a, "--lookup-timeout") == 0 && has) o->lookup_ms = (uint32_t)atoi(argv[++*i]);
    else if (strcmp(a, "--no-lookup") == 0) o->no_lookup = true;
    else return false;
    return true;
}

static char *password(const uq_netopts *o, uq_errmsg *em, uq_err *e)
{
    *e = UQ_OK;
    if (o->password_file) {
        uint8_t *b;
        size_t n;
        if ((*e = uqi_read_file(o->password_file, &b, &n, em))) return NULL;
        char *p = uqi_xmalloc(n + 1);
        memcpy(p, b, n);
        p[n] = '\0';
        p[strcspn(p, "\r\n")] = '\0';
        sodium_memzero(b, n);
        free(b);
        return p;
    }
    const char *env = getenv("UQBAR_PASSWORD");
    return env && *env ? uqi_xstrdup(env) : NULL;
}

uq_err uq_boot_identity(const char *home, const char **name, bool name_given, const uq_netopts *o, uqn_identity *id,
                        uq_errmsg *em)
{
    uq_err e;
    char *pw = password(o, em, &e);
    if (e) return e;
    e = uqn_identity_load(home, pw, id, em);
    if (e == UQ_ENOENT) {
        if (!pw && !o->dev_key) {
            e = uqi_errf(em, UQ_EPERM,
                         "the node's key must be created: give a password (--password-file FILE or UQBAR_PASSWORD), "
                         "or --dev-unencrypted-key for a development node");
            goto out;
        }
        if ((e = uqn_identity_generate(*name, id, em))) goto out;
        e = uqn_identity_save(id, home, pw, pw ? 0 : UQN_KEYFILE_UNENCRYPTED, em);
        if (!e) printf("created the key of node %s in %s/%s%s\n", id->name, home, UQN_KEYFILE,
                       pw ? "" : " (unencrypted: development only)");
        goto out;
    }
    if (e) goto out;
    if (!name_given) *name = id->name;
    else if (strcmp(*name, id->name) != 0)
        e = uqi_errf(em, UQ_EINVAL, "%s/%s is the key of node %s, not %s", home, UQN_KEYFILE, id->name, *name);
out:
    if (pw) {
        sodium_memzero(pw, strlen(pw));
        free(pw);
    }
    return e;
}

uq_err uq_boot_net(uqi_node *node, const char *home, const uq_netopts *o, const uqn_identity *id, uqn_net **out,
                   uq_errmsg *em)
{
    char peers[4096], rec_path[4096], learned[4096];
    snprintf(peers, sizeof peers, "%s/peers", home);
    snprintf(learned, sizeof learned, "%s/learned", home);
    uqn_net_cfg cfg = {.id = id, .listen = o->listen, .dir_path = o->peers ? o->peers : peers,
                       .send_timeout_ms = o->timeout_ms, .keepalive_ms = o->keepalive_ms, .idle_ms = o->idle_ms,
                       .learned_path = learned, .lookup_timeout_ms = o->lookup_ms, .lookup_off = o->no_lookup};
    uqi_node_net_hooks(node, &cfg);
    uq_err e = uqn_net_start(&cfg, out, em);
    if (e) return e;
    const char *addr = uqn_net_listen_addr(*out);
    uqn_record r;
    uqn_net_own_record(*out, &r); /* the one it answers look-ups with */
    if (!r.name[0]) {
        e = uqi_errf(em, UQ_EINVAL, "net: no record could be made for %s at %s", id->name, addr);
        goto fail;
    }
    char line[UQN_RECORD_LINE_MAX + 2];
    uqn_record_to_line(&r, line);
    strcat(line, "\n");
    snprintf(rec_path, sizeof rec_path, "%s/record", home);
    if ((e = uqi_write_file_atomic(rec_path, line, strlen(line), em))) goto fail;
    uqi_node_set_net(node, *out);
    printf("net: node %s listening on %s (its record: %s)\n", id->name, addr, rec_path);
    return UQ_OK;
fail:
    uqn_net_stop(*out);
    *out = NULL;
    return e;
}

uq_err uq_boot_backup(uqi_node *node, struct uqs_store *store, const uq_netopts *o, const uqn_identity *id,
                      struct uqi_backup **out, uq_errmsg *em)
{
    char buf[1024];
    const char *peers[UQI_BACKUP_PEERS_MAX];
    uint32_t np = 0;
    snprintf(buf, sizeof buf, "%s", o->backup_peers ? o->backup_peers : "");
    uq_err e = uqi_backup_parse_peers(buf, peers, UQI_BACKUP_PEERS_MAX, &np, em);
    if (e) return e;
    if (o->restore) {
        uqi_restore_report rep;
        if ((e = uqi_backup_restore(node, store, id->sk, peers, np, stdout, &rep, em))) return e;
    }
    uqi_backup_cfg cfg = {.sk = id->sk, .peers = peers, .npeers = np, .quota = o->backup_quota};
    if ((e = uqi_backup_start(node, store, &cfg, out, em))) return e;
    if (np) printf("backup: this node's process table and state go, encrypted, to %s\n", o->backup_peers);
    return UQ_OK;
}

void uq_boot_net_stop(uqi_node *node, uqn_net *net)
{
    if (!net) return;
    uqi_node_set_net(node, NULL);
    uqn_net_stop(net);
}
