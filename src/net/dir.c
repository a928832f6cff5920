/* The directory: node name -> signed record, with the update rules (a peer
 * cannot rebind a known name to another key), and its file (one record per
 * line). Format and rules: docs/PROTOCOL.md ("Directory"). */
#include "net/record.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

struct uqn_dir {
    uqn_record *recs;
    size_t n, cap;
};

uqn_dir *uqn_dir_new(void) { return uqi_xcalloc(1, sizeof(uqn_dir)); }

void uqn_dir_free(uqn_dir *d)
{
    if (!d) return;
    free(d->recs);
    free(d);
}

size_t uqn_dir_count(const uqn_dir *d) { return d->n; }

const uqn_record *uqn_dir_at(const uqn_dir *d, size_t i)
{
    UQ_ASSERT(i < d->n);
    return &d->recs[i];
}

static uqn_record *find(const uqn_dir *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->recs[i].name, name) == 0) return &d->recs[i];
    return NULL;
}

const uqn_record *uqn_dir_get(const uqn_dir *d, const char *name) { return find(d, name); }

uq_err uqn_dir_lookup(void *arg, const char *name, uint8_t pk[32], uq_errmsg *em)
{
    const uqn_record *r = find(arg, name);
    if (!r) return uqi_errf(em, UQ_ENOENT, "%s is not in the directory", name);
    memcpy(pk, r->pk, 32);
    return UQ_OK;
}

static bool same(const uqn_record *a, const uqn_record *b)
{
    uint8_t x[UQN_RECORD_MAX], y[UQN_RECORD_MAX];
    size_t nx = uqn_record_encode(a, x), ny = uqn_record_encode(b, y);
    return nx == ny && memcmp(x, y, nx) == 0;
}

uq_err uqn_dir_put(uqn_dir *d, const uqn_record *r, uqn_src src, uq_errmsg *em)
{
    uq_err e = uqn_record_verify(r, em);
    if (e) return e;
    uqn_record *old = find(d, r->name);
    if (!old) {
        if (d->n == d->cap) {
            d->cap = d->cap ? 2 * d->cap : 16;
            uqn_record *nr = realloc(d->recs, d->cap * sizeof *nr);
            UQ_VERIFY(nr != NULL);
            d->recs = nr;
        }
        d->recs[d->n++] = *r;
        return UQ_OK;
    }
    bool same_key = sodium_memcmp(old->pk, r->pk, 32) == 0;
    if (!same_key && src == UQN_SRC_PEER)
        return uqi_errf(em, UQ_EPERM, "directory: refusing a record that binds %s to another key "
                        "(only the directory file may change a node's key)", r->name);
    if (same_key && r->seq < old->seq)
        return uqi_errf(em, UQ_EEXIST, "directory: the record for %s (sequence %llu) is older than "
                        "the one held (%llu)", r->name, (unsigned long long)r->seq,
                        (unsigned long long)old->seq);
    if (same_key && r->seq == old->seq) {
        if (same(old, r)) return uqi_errf(em, UQ_EEXIST, "directory: already have this record for %s", r->name);
        return uqi_errf(em, UQ_ECORRUPT, "directory: two different records for %s with sequence %llu",
                        r->name, (unsigned long long)r->seq);
    }
    *old = *r;
    return UQ_OK;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
    return s;
}

uq_err uqn_dir_load(uqn_dir *d, const char *path, uq_errmsg *em)
{
    FILE *f = fopen(path, "re");
    if (!f) return uqi_errf(em, uqi_err_from_errno(errno), "%s: %s", path, strerror(errno));
    char line[UQN_RECORD_LINE_MAX + 64];
    unsigned lineno = 0;
    uq_err e = UQ_OK;
    uqn_dir *seen = uqn_dir_new(); /* names met in this file: a second key for one is an error */
    uq_errmsg rem;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            e = uqi_errf(em, UQ_ECORRUPT, "%s:%u: line too long for a record", path, lineno);
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#') continue;
        uqn_record r;
        if ((e = uqn_record_from_line(s, &r, &rem))) {
            uqi_errf(em, e, "%s:%u: %s", path, lineno, rem.text);
            break;
        }
        const uqn_record *prev = uqn_dir_get(seen, r.name);
        if (prev && sodium_memcmp(prev->pk, r.pk, 32) != 0) {
            e = uqi_errf(em, UQ_ECORRUPT, "%s:%u: a second record for %s with a different key",
                         path, lineno, r.name);
            break;
        }
        e = uqn_dir_put(seen, &r, UQN_SRC_FILE, &rem);
        if (e == UQ_EEXIST) e = UQ_OK; /* an older or repeated line: the newest wins */
        if (!e) e = uqn_dir_put(d, &r, UQN_SRC_FILE, &rem);
        if (e == UQ_EEXIST) e = UQ_OK;
        if (e) {
            uqi_errf(em, e, "%s:%u: %s", path, lineno, rem.text);
            break;
        }
    }
    if (!e && ferror(f)) e = uqi_errf(em, UQ_EIO, "%s: read error", path);
    fclose(f);
    uqn_dir_free(seen);
    return e;
}

uq_err uqn_dir_save(const uqn_dir *d, const char *path, uq_errmsg *em)
{
    size_t cap = 128 + d->n * (UQN_RECORD_LINE_MAX + 64 + UQN_ADDRS_MAX * (UQN_ADDR_MAX + 2) + 96);
    char *buf = uqi_xmalloc(cap);
    size_t n = (size_t)snprintf(buf, cap, "# uqbar directory: one signed record per line (docs/PROTOCOL.md)\n");
    for (size_t i = 0; i < d->n; i++) {
        const uqn_record *r = &d->recs[i];
        char hex[65], line[UQN_RECORD_LINE_MAX];
        uqn_hex(r->pk, 32, hex);
        n += (size_t)snprintf(buf + n, cap - n, "# %s key %s seq %llu", r->name, hex,
                              (unsigned long long)r->seq);
        for (unsigned a = 0; a < r->naddrs; a++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", a ? "," : " at ", r->addrs[a]);
        uqn_record_to_line(r, line);
        n += (size_t)snprintf(buf + n, cap - n, "\n%s\n", line);
    }
    uq_err e = uqi_write_file_atomic(path, buf, n, em);
    free(buf);
    return e;
}
