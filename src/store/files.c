/* The filesystem with handle capabilities. Each file has a record in the
 * store ("app/name" -> size, generation) and a data file
 * <home>/files/<app>/<name>.v<gen>. A replace writes generation gen+1 and
 * syncs it, then commits the record that points to it: the switch is the
 * store commit, so a crash leaves either the old or the new content. An
 * append writes past the recorded size, syncs, then commits the new size:
 * a crash leaves the old size, and the tail is trimmed. Reads never go past
 * the recorded size. Handles live in the store's `handles` database. */
#define _GNU_SOURCE
#include "store/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define STRIPES 64
#define FREC_LEN 17            /* version, size u64, gen u64 */
#define HREC_FIXED 19          /* version, rights, flags, parent[16] */
#define HREC_DERIVED 1u
#define FKEY_MAX (UQS_APP_MAX + 1 + UQS_NAME_MAX)

struct uqs_files {
    uqs_store *s;
    char root[4096];                  /* <home>/files */
    pthread_mutex_t stripe[STRIPES];  /* per-file writers (by hash of "app/name") */
    pthread_mutex_t handles_mu;       /* handle creation and revocation */
};

typedef struct frec {
    uint64_t size, gen;
} frec;

typedef struct hrec {
    unsigned rights, flags;
    uqs_handle parent;
    char fkey[FKEY_MAX + 1];          /* "app/name" */
    size_t fklen;
} hrec;

/* ---- encoding ------------------------------------------------------------ */

static void frec_encode(const frec *r, uint8_t *b)
{
    b[0] = 1;
    uqi_put_le64(b + 1, r->size);
    uqi_put_le64(b + 9, r->gen);
}

static bool frec_decode(const uint8_t *b, size_t n, frec *r)
{
    if (n != FREC_LEN || b[0] != 1) return false;
    r->size = uqi_get_le64(b + 1);
    r->gen = uqi_get_le64(b + 9);
    return r->gen > 0;
}

static size_t hrec_encode(const hrec *r, uint8_t *b)
{
    b[0] = 1;
    b[1] = (uint8_t)r->rights;
    b[2] = (uint8_t)r->flags;
    memcpy(b + 3, r->parent.id, 16);
    memcpy(b + HREC_FIXED, r->fkey, r->fklen);
    return HREC_FIXED + r->fklen;
}

static bool hrec_decode(const uint8_t *b, size_t n, hrec *r)
{
    if (n <= HREC_FIXED || n > HREC_FIXED + FKEY_MAX || b[0] != 1) return false;
    r->rights = b[1];
    r->flags = b[2];
    memcpy(r->parent.id, b + 3, 16);
    r->fklen = n - HREC_FIXED;
    memcpy(r->fkey, b + HREC_FIXED, r->fklen);
    r->fkey[r->fklen] = '\0';
    return r->rights && !(r->rights & ~UQS_RIGHTS_ALL) && memchr(r->fkey, '/', r->fklen);
}

/* ---- names and handles in text --------------------------------------------- */
static uq_err check_app(const char *app, uq_errmsg *em)
{
    size_t n = app ? strlen(app) : 0;
    bool ok = n >= 1 && n <= UQS_APP_MAX && app[0] != '.';
    for (size_t i = 0; ok && i < n; i++) {
        char c = app[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
             c == '.' || c == ':';
    }
    if (!ok)
        return uqi_errf(em, UQ_EINVAL, "bad app name \"%.64s\": 1-%d characters of a-z, A-Z, 0-9, '-', '_', '.', ':', "
                        "not starting with '.'", app ? app : "", UQS_APP_MAX);
    return UQ_OK;
}

static uq_err check_name(const char *name, uq_errmsg *em)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > UQS_NAME_MAX)
        return uqi_errf(em, UQ_EINVAL, "bad file name: must be 1-%d bytes (got %zu)", UQS_NAME_MAX, n);
    if (name[0] == '.')
        return uqi_errf(em, UQ_EINVAL, "bad file name \"%.64s\": must not start with '.' (no \".\", \"..\" or hidden files)",
                        name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/') return uqi_errf(em, UQ_EINVAL, "bad file name \"%.64s\": must not contain '/'", name);
        if (c < 0x20 || c == 0x7f)
            return uqi_errf(em, UQ_EINVAL, "bad file name: must not contain control characters");
    }
    return UQ_OK;
}

static size_t make_fkey(const char *app, const char *name, char *out)
{
    return (size_t)snprintf(out, FKEY_MAX + 1, "%s/%s", app, name);
}

uq_err uqs_handle_parse(const char *hex, uqs_handle *out, uq_errmsg *em)
{
    size_t bin_len = 0;
    if (!hex || strlen(hex) != UQS_HANDLE_HEX ||
        sodium_hex2bin(out->id, sizeof out->id, hex, UQS_HANDLE_HEX, NULL, &bin_len, NULL) != 0 || bin_len != 16)
        return uqi_errf(em, UQ_EINVAL, "malformed file handle: expected %d hex digits", UQS_HANDLE_HEX);
    return UQ_OK;
}

char *uqs_handle_format(uqs_handle h, char *out)
{
    return sodium_bin2hex(out, UQS_HANDLE_HEX + 1, h.id, sizeof h.id);
}

const char *uqs_rights_name(unsigned rights)
{
    switch (rights & UQS_RIGHTS_ALL) {
    case UQS_RIGHT_READ: return "read";
    case UQS_RIGHT_WRITE: return "write";
    case UQS_RIGHTS_ALL: return "read,write";
    default: return "none";
    }
}

/* ---- small helpers ---------------------------------------------------------- */
static pthread_mutex_t *stripe_of(uqs_files *fs, const char *fkey)
{
    uint32_t h = 2166136261u;
    for (const char *p = fkey; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return &fs->stripe[h % STRIPES];
}

static void data_path(uqs_files *fs, const char *fkey, uint64_t gen, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.v%llu", fs->root, fkey, (unsigned long long)gen);
}

/* An I/O failure on path as uq_err: a full disk or file size limit is
 * UQ_ELIMIT, like a full store. */
static uq_err io_err(uq_errmsg *em, int e, const char *what, const char *path)
{
    if (e == ENOSPC || e == EDQUOT) return uqi_errf(em, UQ_ELIMIT, "%s %s: no space left on device", what, path);
    if (e == EFBIG) return uqi_errf(em, UQ_ELIMIT, "%s %s: file size limit reached", what, path);
    return uqi_errf(em, uqi_err_from_errno(e), "%s %s: %s", what, path, strerror(e));
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static void parent_dir(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
}

/* 0 or an errno. */
static int write_all(int fd, const void *data, size_t len, uint64_t off)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        if (w == 0) return EIO;
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Write a new data file and make it durable: data, then its directory entry. */
static uq_err write_new(const char *path, const void *data, size_t len, uq_errmsg *em)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return io_err(em, errno, "cannot create", path);
    int e = write_all(fd, data, len, 0);
    if (!e && fsync(fd) != 0) e = errno;
    close(fd);
    char dir[4400];
    parent_dir(path, dir, sizeof dir);
    if (!e && fsync_dir(dir) != 0) e = errno;
    if (e) {
        unlink(path);
        return io_err(em, e, "cannot write", path);
    }
    return UQ_OK;
}

static uq_err get_frec(uqs_files *fs, const char *fkey, frec *out, uq_errmsg *em)
{
    uint8_t *b;
    size_t n;
    uq_err e = uqs_get(fs->s, UQS_DB_FILES, fkey, strlen(fkey), &b, &n, em);
    if (e == UQ_ENOENT) return uqi_errf(em, UQ_ENOENT, "no file %s", fkey);
    if (e) return e;
    bool ok = frec_decode(b, n, out);
    free(b);
    if (!ok) return uqi_errf(em, UQ_ECORRUPT, "store %s: the record of file %s is damaged", uqs_path(fs->s), fkey);
    return UQ_OK;
}

/* The record of handle h, which must carry the rights `need`. */
static uq_err lookup(uqs_files *fs, uqs_handle h, unsigned need, hrec *out, uq_errmsg *em)
{
    char hex[UQS_HANDLE_HEX + 1];
    uint8_t *b;
    size_t n;
    uq_err e = uqs_get(fs->s, UQS_DB_HANDLES, h.id, sizeof h.id, &b, &n, em);
    if (e == UQ_ENOENT)
        return uqi_errf(em, UQ_EPERM, "file handle %.8s... is unknown or revoked", uqs_handle_format(h, hex));
    if (e) return e;
    bool ok = hrec_decode(b, n, out);
    free(b);
    if (!ok)
        return uqi_errf(em, UQ_ECORRUPT, "store %s: the record of file handle %.8s... is damaged", uqs_path(fs->s),
                        uqs_handle_format(h, hex));
    if ((out->rights & need) != need)
        return uqi_errf(em, UQ_EPERM, "file handle %.8s... lacks the %s right (it has %s)", uqs_handle_format(h, hex),
                        uqs_rights_name(need & ~out->rights), uqs_rights_name(out->rights));
    return UQ_OK;
}

static void new_handle_op(const hrec *r, uqs_handle *id, uint8_t *buf, uqs_op *op)
{
    randombytes_buf(id->id, sizeof id->id);
    size_t n = hrec_encode(r, buf);
    *op = (uqs_op){.db = UQS_DB_HANDLES, .key = id->id, .klen = sizeof id->id, .val = buf, .vlen = n};
}

/* Commit a new handle's records: with the caller's writer, or alone. */
static uq_err commit_handle(uqs_files *fs, const uqs_writer *w, uqs_handle id, const uqs_op *ops, size_t n,
                            uq_errmsg *em)
{
    return w ? w->write(w->arg, fs->s, id, ops, n, em) : uqs_write(fs->s, ops, n, em);
}

/* ---- recovery ------------------------------------------------------------------ */
/* "name.v<gen>" -> name, gen; false if the entry is not ours. */
static bool parse_data_name(const char *ent, char *name, uint64_t *gen)
{
    const char *v = NULL;
    for (const char *p = strstr(ent, ".v"); p; p = strstr(p + 1, ".v")) v = p;
    if (!v || v == ent || !v[2] || (size_t)(v - ent) > UQS_NAME_MAX) return false;
    char *end;
    errno = 0;
    unsigned long long g = strtoull(v + 2, &end, 10);
    if (*end || errno || g == 0 || v[2] < '1' || v[2] > '9') return false;
    memcpy(name, ent, (size_t)(v - ent));
    name[v - ent] = '\0';
    *gen = g;
    return true;
}

static void recover_app(uqs_files *fs, const char *app)
{
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s", fs->root, app);
    DIR *d = opendir(dir);
    if (!d) return;
    bool changed = false;
    struct dirent *de;
    while ((de = readdir(d))) {
        char name[UQS_NAME_MAX + 1], fkey[FKEY_MAX + 1], path[4700];
        uint64_t gen;
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (!parse_data_name(de->d_name, name, &gen) || check_name(name, NULL)) {
            uq_log(UQ_LOG_WARN, "store", "%s: not a data file of the store; left alone", path);
            continue;
        }
        make_fkey(app, name, fkey);
        frec r;
        uq_errmsg em;
        uq_err e = get_frec(fs, fkey, &r, &em);
        if (e == UQ_ENOENT || (!e && r.gen != gen)) {
            /* A write that was never acknowledged, or the previous
             * generation of a replace or a removed file. */
            if (unlink(path) == 0) changed = true;
            continue;
        }
        if (e) {
            uq_log(UQ_LOG_ERROR, "store", "%s", em.text);
            continue;
        }
        struct stat st;
        if (stat(path, &st) == 0 && (uint64_t)st.st_size > r.size) {
            /* The tail of an append that was never acknowledged. */
            if (truncate(path, (off_t)r.size) != 0)
                uq_log(UQ_LOG_WARN, "store", "%s: cannot trim to %llu bytes: %s", path, (unsigned long long)r.size,
                       strerror(errno));
        } else if (stat(path, &st) == 0 && (uint64_t)st.st_size < r.size) {
            uq_log(UQ_LOG_ERROR, "store", "%s: shorter (%lld bytes) than its record (%llu bytes): damaged", path,
                   (long long)st.st_size, (unsigned long long)r.size);
        }
    }
    closedir(d);
    if (changed) fsync_dir(dir);
}

uq_err uqs_files_open(uqs_store *s, const char *home, uqs_files **out, uq_errmsg *em)
{
    *out = NULL;
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "libsodium failed to initialize");
    if (!home || strlen(home) > 3000) return uqi_errf(em, UQ_EINVAL, "files: bad home directory");
    uqs_files *fs = uqi_xcalloc(1, sizeof *fs);
    fs->s = s;
    snprintf(fs->root, sizeof fs->root, "%s/files", home);
    struct stat st;
    bool fresh = stat(fs->root, &st) != 0;
    uq_err e = uqi_mkdirs(fs->root, em);
    if (e) {
        free(fs);
        return e;
    }
    if (fresh) fsync_dir(home);
    for (int i = 0; i < STRIPES; i++) pthread_mutex_init(&fs->stripe[i], NULL);
    pthread_mutex_init(&fs->handles_mu, NULL);
    DIR *d = opendir(fs->root);
    if (!d) {
        e = io_err(em, errno, "cannot read", fs->root);
        uqs_files_close(fs);
        return e;
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && !check_app(de->d_name, NULL)) recover_app(fs, de->d_name);
    closedir(d);
    *out = fs;
    return UQ_OK;
}

void uqs_files_close(uqs_files *fs)
{
    if (!fs) return;
    for (int i = 0; i < STRIPES; i++) pthread_mutex_destroy(&fs->stripe[i]);
    pthread_mutex_destroy(&fs->handles_mu);
    free(fs);
}

/* ---- trusted calls ----------------------------------------------------------------- */
uq_err uqs_file_create(uqs_files *fs, const char *app, const char *name, const void *data, size_t len,
                       uqs_handle *out, uq_errmsg *em)
{
    return uqs_file_create_with(fs, app, name, data, len, NULL, out, em);
}

uq_err uqs_file_create_with(uqs_files *fs, const char *app, const char *name, const void *data, size_t len,
                            const uqs_writer *w, uqs_handle *out, uq_errmsg *em)
{
    uq_err e = check_app(app, em);
    if (!e) e = check_name(name, em);
    if (e) return e;
    char fkey[FKEY_MAX + 1], path[4600], dir[4400];
    size_t fklen = make_fkey(app, name, fkey);
    pthread_mutex_t *mu = stripe_of(fs, fkey);
    pthread_mutex_lock(mu);
    frec r;
    e = get_frec(fs, fkey, &r, em);
    if (e == UQ_OK) {
        e = uqi_errf(em, UQ_EEXIST, "file %s exists", fkey);
        goto out;
    }
    if (e != UQ_ENOENT) goto out;
    snprintf(dir, sizeof dir, "%s/%s", fs->root, app);
    if (mkdir(dir, 0755) == 0) {
        if (fsync_dir(fs->root) != 0) {
            e = io_err(em, errno, "cannot sync", fs->root);
            goto out;
        }
    } else if (errno != EEXIST) {
        e = io_err(em, errno, "cannot create", dir);
        goto out;
    }
    r = (frec){.size = len, .gen = 1};
    data_path(fs, fkey, r.gen, path, sizeof path);
    e = write_new(path, data, len, em);
    if (e) goto out;
    uint8_t fb[FREC_LEN], hb[HREC_FIXED + FKEY_MAX];
    frec_encode(&r, fb);
    hrec h = {.rights = UQS_RIGHTS_ALL, .fklen = fklen};
    memcpy(h.fkey, fkey, fklen + 1);
    uqs_op ops[2] = {{.db = UQS_DB_FILES, .key = fkey, .klen = fklen, .val = fb, .vlen = FREC_LEN}};
    new_handle_op(&h, out, hb, &ops[1]);
    e = commit_handle(fs, w, *out, ops, 2, em);
    if (e) unlink(path);
out:
    pthread_mutex_unlock(mu);
    return e;
}

uq_err uqs_file_open(uqs_files *fs, const char *app, const char *name, uqs_handle *out, uq_errmsg *em)
{
    return uqs_file_open_with(fs, app, name, NULL, out, em);
}

uq_err uqs_file_open_with(uqs_files *fs, const char *app, const char *name, const uqs_writer *w, uqs_handle *out,
                          uq_errmsg *em)
{
    uq_err e = check_app(app, em);
    if (!e) e = check_name(name, em);
    if (e) return e;
    char fkey[FKEY_MAX + 1];
    size_t fklen = make_fkey(app, name, fkey);
    pthread_mutex_t *mu = stripe_of(fs, fkey);
    pthread_mutex_lock(mu); /* not removed meanwhile */
    frec r;
    e = get_frec(fs, fkey, &r, em);
    if (!e) {
        uint8_t hb[HREC_FIXED + FKEY_MAX];
        hrec h = {.rights = UQS_RIGHTS_ALL, .fklen = fklen};
        memcpy(h.fkey, fkey, fklen + 1);
        uqs_op op;
        new_handle_op(&h, out, hb, &op);
        e = commit_handle(fs, w, *out, &op, 1, em);
    }
    pthread_mutex_unlock(mu);
    return e;
}

typedef struct {
    size_t n, cap, bytes, plen;
    char **names;
} list_ctx;

static int list_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    list_ctx *c = arg;
    if (c->n == c->cap) c->names = realloc(c->names, (c->cap = c->cap ? 2 * c->cap : 16) * sizeof *c->names);
    UQ_VERIFY(c->names != NULL);
    size_t n = klen - c->plen;
    char *s = uqi_xmalloc(n + 1);
    memcpy(s, (const char *)key + c->plen, n);
    s[n] = '\0';
    c->names[c->n++] = s;
    c->bytes += n + 1;
    return 0;
}

uq_err uqs_file_list(uqs_files *fs, const char *app, char ***out_names, size_t *out_n, uq_errmsg *em)
{
    *out_names = NULL;
    *out_n = 0;
    uq_err e = check_app(app, em);
    if (e) return e;
    char prefix[UQS_APP_MAX + 2];
    list_ctx c = {.plen = (size_t)snprintf(prefix, sizeof prefix, "%s/", app)};
    e = uqs_each(fs->s, UQS_DB_FILES, prefix, c.plen, list_cb, &c, em);
    if (!e) {
        /* One block: the pointer array, then the strings (key order is sorted). */
        char **block = uqi_xmalloc((c.n + 1) * sizeof(char *) + c.bytes);
        char *p = (char *)(block + c.n + 1);
        for (size_t i = 0; i < c.n; i++) {
            size_t n = strlen(c.names[i]) + 1;
            block[i] = memcpy(p, c.names[i], n);
            p += n;
        }
        block[c.n] = NULL;
        *out_names = block;
        *out_n = c.n;
    }
    for (size_t i = 0; i < c.n; i++) free(c.names[i]);
    free(c.names);
    return e;
}

/* ---- through a handle ------------------------------------------------------------ */
uq_err uqs_file_write(uqs_files *fs, uqs_handle h, const void *data, size_t len, uq_errmsg *em)
{
    hrec hr;
    uq_err e = lookup(fs, h, UQS_RIGHT_WRITE, &hr, em);
    if (e) return e;
    pthread_mutex_t *mu = stripe_of(fs, hr.fkey);
    pthread_mutex_lock(mu);
    frec r;
    e = get_frec(fs, hr.fkey, &r, em);
    if (e) goto out;
    char path[4600], old[4600];
    frec nr = {.size = len, .gen = r.gen + 1};
    data_path(fs, hr.fkey, nr.gen, path, sizeof path);
    data_path(fs, hr.fkey, r.gen, old, sizeof old);
    e = write_new(path, data, len, em);
    if (e) goto out;
    uint8_t fb[FREC_LEN];
    frec_encode(&nr, fb);
    uqs_op op = {.db = UQS_DB_FILES, .key = hr.fkey, .klen = hr.fklen, .val = fb, .vlen = FREC_LEN};
    e = uqs_write(fs->s, &op, 1, em);
    /* On success the old generation is garbage; on failure the new one is.
     * Either way a crash before this unlink is cleaned up at open. */
    unlink(e ? path : old);
out:
    pthread_mutex_unlock(mu);
    return e;
}

uq_err uqs_file_append(uqs_files *fs, uqs_handle h, const void *data, size_t len, uq_errmsg *em)
{
    hrec hr;
    uq_err e = lookup(fs, h, UQS_RIGHT_WRITE, &hr, em);
    if (e) return e;
    if (len == 0) return UQ_OK;
    pthread_mutex_t *mu = stripe_of(fs, hr.fkey);
    pthread_mutex_lock(mu);
    frec r;
    char path[4600];
    int fd = -1;
    e = get_frec(fs, hr.fkey, &r, em);
    if (e) goto out;
    data_path(fs, hr.fkey, r.gen, path, sizeof path);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        e = errno == ENOENT ? uqi_errf(em, UQ_ECORRUPT, "data file %s of a stored file is missing", path)
                            : io_err(em, errno, "cannot open", path);
        goto out;
    }
    if ((uint64_t)st.st_size < r.size) {
        e = uqi_errf(em, UQ_ECORRUPT, "data file %s is shorter (%lld bytes) than recorded (%llu bytes)", path,
                     (long long)st.st_size, (unsigned long long)r.size);
        goto out;
    }
    /* A tail left by an append that failed: drop it first. */
    if ((uint64_t)st.st_size > r.size && ftruncate(fd, (off_t)r.size) != 0) {
        e = io_err(em, errno, "cannot trim", path);
        goto out;
    }
    int err = write_all(fd, data, len, r.size);
    if (!err && fdatasync(fd) != 0) err = errno;
    if (err) {
        if (ftruncate(fd, (off_t)r.size) != 0) { /* trimmed at the next append or open */ }
        e = io_err(em, err, "cannot append to", path);
        goto out;
    }
    frec nr = {.size = r.size + len, .gen = r.gen};
    uint8_t fb[FREC_LEN];
    frec_encode(&nr, fb);
    uqs_op op = {.db = UQS_DB_FILES, .key = hr.fkey, .klen = hr.fklen, .val = fb, .vlen = FREC_LEN};
    e = uqs_write(fs->s, &op, 1, em);
    if (e && ftruncate(fd, (off_t)r.size) != 0) { /* as above */ }
out:
    if (fd >= 0) close(fd);
    pthread_mutex_unlock(mu);
    return e;
}

/* Open the current data file of h's file for reading, with its recorded
 * size. The descriptor stays valid (and its content fixed up to size)
 * whatever writers do afterwards: a replace makes a new file, an append
 * only adds past size. */
static uq_err open_for_read(uqs_files *fs, uqs_handle h, int *out_fd, uint64_t *out_size, char *path, size_t cap,
                            uq_errmsg *em)
{
    hrec hr;
    uq_err e = lookup(fs, h, UQS_RIGHT_READ, &hr, em);
    if (e) return e;
    pthread_mutex_t *mu = stripe_of(fs, hr.fkey);
    pthread_mutex_lock(mu);
    frec r;
    int fd = -1;
    e = get_frec(fs, hr.fkey, &r, em);
    if (!e) {
        data_path(fs, hr.fkey, r.gen, path, cap);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            e = errno == ENOENT ? uqi_errf(em, UQ_ECORRUPT, "data file %s of a stored file is missing", path)
                                : io_err(em, errno, "cannot open", path);
    }
    pthread_mutex_unlock(mu);
    if (e) return e;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < r.size) {
        close(fd);
        return uqi_errf(em, UQ_ECORRUPT, "data file %s is shorter than recorded (%llu bytes)", path,
                        (unsigned long long)r.size);
    }
    *out_fd = fd;
    *out_size = r.size;
    return UQ_OK;
}

static uq_err read_at(int fd, uint8_t *buf, size_t len, uint64_t off, const char *path, uq_errmsg *em)
{
    while (len) {
        ssize_t r = pread(fd, buf, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return io_err(em, errno, "cannot read", path);
        if (r == 0) return uqi_errf(em, UQ_ECORRUPT, "data file %s ended early", path);
        buf += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return UQ_OK;
}

uq_err uqs_file_read_range(uqs_files *fs, uqs_handle h, uint64_t off, size_t len, uint8_t **out, size_t *out_len,
                           uq_errmsg *em)
{
    *out = NULL;
    *out_len = 0;
    char path[4600];
    int fd;
    uint64_t size;
    uq_err e = open_for_read(fs, h, &fd, &size, path, sizeof path, em);
    if (e) return e;
    uint64_t n = off >= size ? 0 : size - off;
    if (n > len) n = len;
    if (n > SIZE_MAX - 1) {
        close(fd);
        return uqi_errf(em, UQ_ELIMIT, "file %s is too large to read at once", path);
    }
    uint8_t *buf = uqi_xmalloc((size_t)n + 1);
    e = read_at(fd, buf, (size_t)n, off, path, em);
    close(fd);
    if (e) {
        free(buf);
        return e;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = (size_t)n;
    return UQ_OK;
}

uq_err uqs_file_read(uqs_files *fs, uqs_handle h, uint8_t **out, size_t *out_len, uq_errmsg *em)
{
    return uqs_file_read_range(fs, h, 0, SIZE_MAX - 1, out, out_len, em);
}

uq_err uqs_file_size(uqs_files *fs, uqs_handle h, uint64_t *out, uq_errmsg *em)
{
    hrec hr;
    frec r;
    uq_err e = lookup(fs, h, UQS_RIGHT_READ, &hr, em);
    if (!e) e = get_frec(fs, hr.fkey, &r, em);
    if (!e) *out = r.size;
    return e;
}

uq_err uqs_file_hash(uqs_files *fs, uqs_handle h, char *out, uq_errmsg *em)
{
    char path[4600];
    int fd;
    uint64_t size;
    uq_err e = open_for_read(fs, h, &fd, &size, path, sizeof path, em);
    if (e) return e;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    enum { CHUNK = 1 << 16 };
    uint8_t *buf = uqi_xmalloc(CHUNK);
    for (uint64_t off = 0; off < size && !e;) {
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        e = read_at(fd, buf, n, off, path, em);
        if (!e) crypto_generichash_update(&st, buf, n);
        off += n;
    }
    free(buf);
    close(fd);
    if (e) return e;
    uint8_t digest[32];
    crypto_generichash_final(&st, digest, sizeof digest);
    sodium_bin2hex(out, 65, digest, sizeof digest);
    return UQ_OK;
}

/* ---- the handle table -------------------------------------------------------------- */
typedef struct {
    uqs_handle *ids;
    uqs_handle *parents;
    bool *derived;
    size_t n, cap;
    const char *fkey;  /* when set: only handles of this file */
    size_t fklen;
} scan_ctx;

static int scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    scan_ctx *c = arg;
    hrec r;
    if (klen != 16 || !hrec_decode(val, vlen, &r)) return 0; /* skipped; lookups report it */
    if (c->fkey && (r.fklen != c->fklen || memcmp(r.fkey, c->fkey, r.fklen) != 0)) return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->ids = realloc(c->ids, c->cap * sizeof *c->ids);
        c->parents = realloc(c->parents, c->cap * sizeof *c->parents);
        c->derived = realloc(c->derived, c->cap * sizeof *c->derived);
        UQ_VERIFY(c->ids && c->parents && c->derived);
    }
    memcpy(c->ids[c->n].id, key, 16);
    c->parents[c->n] = r.parent;
    c->derived[c->n] = r.flags & HREC_DERIVED;
    c->n++;
    return 0;
}

static void scan_free(scan_ctx *c)
{
    free(c->ids);
    free(c->parents);
    free(c->derived);
}

/* Delete the records of handles ids[0..n) (and extra, if any): with the
 * caller's writer (which gets the ids), or alone. */
static uq_err delete_handles(uqs_files *fs, const uqs_handle *ids, size_t n, const uqs_op *extra,
                             const uqs_deleter *w, uq_errmsg *em)
{
    size_t total = n + (extra ? 1 : 0);
    if (total == 0) return UQ_OK;
    uqs_op *ops = uqi_xcalloc(total, sizeof *ops);
    for (size_t i = 0; i < n; i++)
        ops[i] = (uqs_op){.db = UQS_DB_HANDLES, .del = true, .key = ids[i].id, .klen = sizeof ids[i].id};
    if (extra) ops[n] = *extra;
    uq_err e = w ? w->write(w->arg, fs->s, ids, n, ops, total, em) : uqs_write(fs->s, ops, total, em);
    free(ops);
    return e;
}

uq_err uqs_file_remove(uqs_files *fs, uqs_handle h, uq_errmsg *em)
{
    return uqs_file_remove_ids(fs, h, NULL, NULL, em);
}

static uq_err file_remove(uqs_files *fs, uqs_handle h, const uqs_deleter *w, uqs_handle **out_ids, size_t *out_n,
                          uq_errmsg *em);

uq_err uqs_file_remove_ids(uqs_files *fs, uqs_handle h, uqs_handle **out_ids, size_t *out_n, uq_errmsg *em)
{
    return file_remove(fs, h, NULL, out_ids, out_n, em);
}

uq_err uqs_file_remove_with(uqs_files *fs, uqs_handle h, const uqs_deleter *w, size_t *out_n, uq_errmsg *em)
{
    return file_remove(fs, h, w, NULL, out_n, em);
}

static uq_err file_remove(uqs_files *fs, uqs_handle h, const uqs_deleter *w, uqs_handle **out_ids, size_t *out_n,
                          uq_errmsg *em)
{
    if (out_ids) *out_ids = NULL;
    if (out_n) *out_n = 0;
    hrec hr;
    uq_err e = lookup(fs, h, UQS_RIGHT_WRITE, &hr, em);
    if (e) return e;
    pthread_mutex_t *mu = stripe_of(fs, hr.fkey);
    pthread_mutex_lock(mu);
    pthread_mutex_lock(&fs->handles_mu);
    frec r;
    scan_ctx c = {.fkey = hr.fkey, .fklen = hr.fklen};
    e = get_frec(fs, hr.fkey, &r, em);
    if (!e) e = uqs_each(fs->s, UQS_DB_HANDLES, NULL, 0, scan_cb, &c, em);
    if (!e) {
        uqs_op del = {.db = UQS_DB_FILES, .del = true, .key = hr.fkey, .klen = hr.fklen};
        e = delete_handles(fs, c.ids, c.n, &del, w, em);
    }
    pthread_mutex_unlock(&fs->handles_mu);
    if (!e) {
        char path[4600];
        data_path(fs, hr.fkey, r.gen, path, sizeof path);
        unlink(path); /* or at the next open, after a crash */
        if (out_ids && c.n) {
            *out_ids = uqi_xmalloc(c.n * sizeof **out_ids);
            memcpy(*out_ids, c.ids, c.n * sizeof **out_ids);
        }
        if (out_n) *out_n = c.n;
    }
    pthread_mutex_unlock(mu);
    scan_free(&c);
    return e;
}

uq_err uqs_handle_info_get(uqs_files *fs, uqs_handle h, uqs_handle_info *out, uq_errmsg *em)
{
    hrec hr;
    uq_err e = lookup(fs, h, 0, &hr, em);
    if (e) return e;
    memset(out, 0, sizeof *out);
    const char *slash = strchr(hr.fkey, '/');
    snprintf(out->app, sizeof out->app, "%.*s", (int)(slash - hr.fkey), hr.fkey);
    snprintf(out->name, sizeof out->name, "%s", slash + 1);
    out->rights = hr.rights;
    out->derived = hr.flags & HREC_DERIVED;
    if (out->derived) out->parent = hr.parent;
    return UQ_OK;
}

static uq_err derive(uqs_files *fs, uqs_handle h, unsigned rights, bool subset_of_h, const uqs_writer *w,
                     uqs_handle *out, uq_errmsg *em)
{
    pthread_mutex_lock(&fs->handles_mu);
    hrec hr;
    uq_err e = lookup(fs, h, subset_of_h ? rights : 0, &hr, em);
    if (!e) {
        hrec nr = hr;
        nr.rights = subset_of_h ? rights : hr.rights;
        nr.flags = HREC_DERIVED;
        nr.parent = h;
        uint8_t hb[HREC_FIXED + FKEY_MAX];
        uqs_op op;
        new_handle_op(&nr, out, hb, &op);
        e = commit_handle(fs, w, *out, &op, 1, em);
    }
    pthread_mutex_unlock(&fs->handles_mu);
    return e;
}

uq_err uqs_handle_clone(uqs_files *fs, uqs_handle h, uqs_handle *out, uq_errmsg *em)
{
    return derive(fs, h, 0, false, NULL, out, em);
}

uq_err uqs_handle_clone_with(uqs_files *fs, uqs_handle h, const uqs_writer *w, uqs_handle *out, uq_errmsg *em)
{
    return derive(fs, h, 0, false, w, out, em);
}

uq_err uqs_handle_split(uqs_files *fs, uqs_handle h, unsigned rights, uqs_handle *out, uq_errmsg *em)
{
    return uqs_handle_split_with(fs, h, rights, NULL, out, em);
}

uq_err uqs_handle_split_with(uqs_files *fs, uqs_handle h, unsigned rights, const uqs_writer *w, uqs_handle *out,
                             uq_errmsg *em)
{
    if (rights == 0 || (rights & ~UQS_RIGHTS_ALL))
        return uqi_errf(em, UQ_EINVAL, "split: rights must be read, write or both (got 0x%x)", rights);
    return derive(fs, h, rights, true, w, out, em);
}

uq_err uqs_handle_revoke(uqs_files *fs, uqs_handle h, bool recursive, size_t *out_count, uq_errmsg *em)
{
    return uqs_handle_revoke_ids(fs, h, recursive, NULL, out_count, em);
}

static uq_err handle_revoke(uqs_files *fs, uqs_handle h, bool recursive, const uqs_deleter *w, uqs_handle **out_ids,
                            size_t *out_count, uq_errmsg *em);

uq_err uqs_handle_revoke_ids(uqs_files *fs, uqs_handle h, bool recursive, uqs_handle **out_ids, size_t *out_count,
                             uq_errmsg *em)
{
    return handle_revoke(fs, h, recursive, NULL, out_ids, out_count, em);
}

uq_err uqs_handle_revoke_with(uqs_files *fs, uqs_handle h, bool recursive, const uqs_deleter *w, size_t *out_count,
                              uq_errmsg *em)
{
    return handle_revoke(fs, h, recursive, w, NULL, out_count, em);
}

static uq_err handle_revoke(uqs_files *fs, uqs_handle h, bool recursive, const uqs_deleter *w, uqs_handle **out_ids,
                            size_t *out_count, uq_errmsg *em)
{
    if (out_ids) *out_ids = NULL;
    if (out_count) *out_count = 0;
    pthread_mutex_lock(&fs->handles_mu);
    hrec hr;
    scan_ctx c = {0};
    uqs_handle *doomed = NULL;
    size_t nd = 0;
    uq_err e = lookup(fs, h, 0, &hr, em);
    if (e) goto out;
    if (recursive) e = uqs_each(fs->s, UQS_DB_HANDLES, NULL, 0, scan_cb, &c, em);
    if (e) goto out;
    /* Breadth-first over the derivation tree: doomed[] is the queue. */
    doomed = uqi_xmalloc((c.n + 1) * sizeof *doomed);
    doomed[nd++] = h;
    for (size_t q = 0; q < nd; q++)
        for (size_t i = 0; i < c.n; i++)
            if (c.derived[i] && memcmp(c.parents[i].id, doomed[q].id, 16) == 0 &&
                memcmp(c.ids[i].id, h.id, 16) != 0) {
                bool seen = false;
                for (size_t j = 0; j < nd && !seen; j++) seen = memcmp(doomed[j].id, c.ids[i].id, 16) == 0;
                if (!seen) doomed[nd++] = c.ids[i];
            }
    e = delete_handles(fs, doomed, nd, NULL, w, em);
    if (!e && out_count) *out_count = nd;
    if (!e && out_ids) {
        *out_ids = doomed;
        doomed = NULL;
    }
out:
    pthread_mutex_unlock(&fs->handles_mu);
    scan_free(&c);
    free(doomed);
    return e;
}
