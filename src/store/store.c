/* The node store: opening (with the checks that refuse a foreign, damaged
 * or newer store file, naming it), closing, reads, and the process state
 * and process table on top of the generic writes of commit.c. */
#define _GNU_SOURCE
#include "store/store_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MAGIC "uqbar-node-store"
#define LMDB_MAGIC 0xBEEFC0DEu          /* mm_magic of an LMDB meta page */
#define DEFAULT_MAP_SIZE (1ull << 30)
#define DEFAULT_BATCH_MAX 4096

static const char *const db_names[UQS_DB_N] = {"procs", "state", "handles", "files", "backup"};

const char *uqs_path(const uqs_store *s) { return s->path; }

/* LMDB reports a short write as EIO; the usual reasons are a full disk or
 * the file size limit, which are worth telling apart from a failing disk. */
static int explain_eio(uqs_store *s)
{
    struct statvfs vfs;
    if (statvfs(s->path, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (1u << 20)) return ENOSPC;
    struct rlimit lim;
    struct stat st;
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && stat(s->data_path, &st) == 0 &&
        (uint64_t)st.st_size + 65536 >= (uint64_t)lim.rlim_cur)
        return EFBIG;
    return EIO;
}

uq_err uqi_store_mdb_err(uqs_store *s, int rc, const char *what, uq_errmsg *em)
{
    if (rc == EIO) rc = explain_eio(s);
    switch (rc) {
    case MDB_MAP_FULL:
        if (s->map_size % (1u << 20) == 0)
            return uqi_errf(em, UQ_ELIMIT, "store %s is full: %s needs more than its map size of %zu MiB",
                            s->data_path, what, s->map_size >> 20);
        return uqi_errf(em, UQ_ELIMIT, "store %s is full: %s needs more than its map size of %zu KiB", s->data_path,
                        what, s->map_size >> 10);
    case ENOSPC:
    case EDQUOT:
        return uqi_errf(em, UQ_ELIMIT, "store %s: %s failed: no space left on device", s->data_path, what);
    case EFBIG:
        return uqi_errf(em, UQ_ELIMIT, "store %s: %s failed: file size limit reached", s->data_path, what);
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        return uqi_errf(em, UQ_ECORRUPT, "store %s is damaged (%s during %s)", s->data_path, mdb_strerror(rc), what);
    case MDB_READERS_FULL:
        return uqi_errf(em, UQ_EBUSY, "store %s: too many concurrent readers", s->data_path);
    case MDB_BAD_VALSIZE:
        return uqi_errf(em, UQ_EINVAL, "store %s: %s: key or value of a bad size", s->data_path, what);
    case MDB_PANIC:
        return uqi_errf(em, UQ_EIO, "store %s: %s failed: %s", s->data_path, what, mdb_strerror(rc));
    case EACCES:
    case EPERM:
    case EROFS:
        return uqi_errf(em, UQ_EPERM, "store %s: %s: %s", s->data_path, what, strerror(rc));
    default:
        return uqi_errf(em, rc > 0 ? uqi_err_from_errno(rc) : UQ_EIO, "store %s: %s failed: %s", s->data_path, what,
                        mdb_strerror(rc));
    }
}

/* ---- open --------------------------------------------------------------- */
/* Before LMDB sees the file: a non-empty data.mdb must start with an LMDB
 * meta page, or it is someone else's file and we say so. */
static uq_err precheck_data(uqs_store *s, uq_errmsg *em)
{
    int fd = open(s->data_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return UQ_OK;
        return uqi_errf(em, uqi_err_from_errno(errno), "store %s: %s", s->data_path, strerror(errno));
    }
    uint8_t head[24];
    ssize_t r = pread(fd, head, sizeof head, 0);
    int e = errno;
    close(fd);
    if (r < 0) return uqi_errf(em, uqi_err_from_errno(e), "store %s: %s", s->data_path, strerror(e));
    if (r == 0) return UQ_OK; /* empty: LMDB initializes it */
    uint32_t magic = 0;
    if (r == (ssize_t)sizeof head) memcpy(&magic, head + 16, 4);
    if (magic != LMDB_MAGIC)
        return uqi_errf(em, UQ_ECORRUPT,
                        "store %s is not an LMDB file (a foreign or damaged file); refusing to open or overwrite it",
                        s->data_path);
    return UQ_OK;
}

static uq_err init_fresh(uqs_store *s, uq_errmsg *em)
{
    MDB_txn *t;
    MDB_dbi meta;
    int rc = mdb_txn_begin(s->env, NULL, 0, &t);
    if (rc) return uqi_store_mdb_err(s, rc, "initialization", em);
    rc = mdb_dbi_open(t, "meta", MDB_CREATE, &meta);
    for (int i = 0; i < UQS_DB_N && !rc; i++) rc = mdb_dbi_open(t, db_names[i], MDB_CREATE, &s->dbi[i]);
    uint8_t ver[4] = {UQS_FORMAT_VERSION & 0xff, (UQS_FORMAT_VERSION >> 8) & 0xff, 0, 0};
    MDB_val km = {5, (void *)"magic"}, vm = {sizeof MAGIC - 1, (void *)MAGIC};
    MDB_val kv = {7, (void *)"version"}, vv = {4, ver};
    if (!rc) rc = mdb_put(t, meta, &km, &vm, 0);
    if (!rc) rc = mdb_put(t, meta, &kv, &vv, 0);
    if (rc) {
        mdb_txn_abort(t);
        return uqi_store_mdb_err(s, rc, "initialization", em);
    }
    rc = mdb_txn_commit(t);
    return rc ? uqi_store_mdb_err(s, rc, "initialization", em) : UQ_OK;
}

/* Check the meta records and open the databases; initialize an empty
 * file. Nothing is written unless the file holds no record at all. */
static uq_err validate_or_init(uqs_store *s, uq_errmsg *em)
{
    MDB_txn *t;
    MDB_dbi meta, main_db;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
    if (rc) return uqi_store_mdb_err(s, rc, "open", em);
    rc = mdb_dbi_open(t, "meta", 0, &meta);
    if (rc == MDB_NOTFOUND) {
        MDB_stat st = {0};
        rc = mdb_dbi_open(t, NULL, 0, &main_db);
        if (!rc) rc = mdb_stat(t, main_db, &st);
        mdb_txn_abort(t);
        if (rc) return uqi_store_mdb_err(s, rc, "open", em);
        if (st.ms_entries)
            return uqi_errf(em, UQ_ECORRUPT,
                            "store %s is an LMDB file of something else (no uqbar meta record); refusing to use it",
                            s->data_path);
        return init_fresh(s, em);
    }
    uq_err e = UQ_OK;
    if (rc == MDB_INCOMPATIBLE) {
        e = uqi_errf(em, UQ_ECORRUPT, "store %s is an LMDB file of something else (\"meta\" is not a database)",
                     s->data_path);
        goto out;
    }
    if (rc) {
        e = uqi_store_mdb_err(s, rc, "open", em);
        goto out;
    }
    MDB_val k = {5, (void *)"magic"}, v;
    rc = mdb_get(t, meta, &k, &v);
    if (rc || v.mv_size != sizeof MAGIC - 1 || memcmp(v.mv_data, MAGIC, v.mv_size) != 0) {
        e = uqi_errf(em, UQ_ECORRUPT, "store %s is not a uqbar store (wrong magic); refusing to use it", s->data_path);
        goto out;
    }
    k = (MDB_val){7, (void *)"version"};
    rc = mdb_get(t, meta, &k, &v);
    if (rc || v.mv_size != 4) {
        e = uqi_errf(em, UQ_ECORRUPT, "store %s: the format version record is missing or damaged", s->data_path);
        goto out;
    }
    const uint8_t *b = v.mv_data;
    uint32_t ver = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if (ver == 0) {
        e = uqi_errf(em, UQ_ECORRUPT, "store %s: format version 0 is not valid", s->data_path);
        goto out;
    }
    if (ver > UQS_FORMAT_VERSION) {
        e = uqi_errf(em, UQ_ELIMIT,
                     "store %s has format version %u, newer than this uqbar reads (%u); use a newer uqbar",
                     s->data_path, ver, UQS_FORMAT_VERSION);
        goto out;
    }
    bool add_backup = false;
    for (int i = 0; i < UQS_DB_N; i++) {
        rc = mdb_dbi_open(t, db_names[i], 0, &s->dbi[i]);
        if (rc == MDB_NOTFOUND && i == UQS_DB_BACKUP) { /* a store from before backups: added below */
            add_backup = true;
            continue;
        }
        if (rc) {
            e = uqi_errf(em, UQ_ECORRUPT, "store %s: database \"%s\" is missing or damaged (%s)", s->data_path,
                         db_names[i], mdb_strerror(rc));
            goto out;
        }
    }
    rc = mdb_txn_commit(t); /* keeps the database handles */
    if (!rc && add_backup) {
        rc = mdb_txn_begin(s->env, NULL, 0, &t);
        if (!rc) {
            rc = mdb_dbi_open(t, db_names[UQS_DB_BACKUP], MDB_CREATE, &s->dbi[UQS_DB_BACKUP]);
            if (!rc) rc = mdb_txn_commit(t);
            else mdb_txn_abort(t);
        }
    }
    return rc ? uqi_store_mdb_err(s, rc, "open", em) : UQ_OK;
out:
    mdb_txn_abort(t);
    return e;
}

static uq_err lock_home(uqs_store *s, uq_errmsg *em)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/node.lock", s->path);
    s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) return uqi_errf(em, uqi_err_from_errno(errno), "store %s: %s", p, strerror(errno));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) return uqi_errf(em, UQ_EBUSY, "store %s is in use by another node", s->path);
        return uqi_errf(em, uqi_err_from_errno(e), "store %s: lock: %s", p, strerror(e));
    }
    return UQ_OK;
}

uq_err uqs_open(const char *home, const uqs_options *opt, uqs_store **out, uq_errmsg *em)
{
    *out = NULL;
    if (!home || !*home || strlen(home) > 3000) return uqi_errf(em, UQ_EINVAL, "store: bad home directory");
    uqs_store *s = uqi_xcalloc(1, sizeof *s);
    s->lock_fd = -1;
    snprintf(s->path, sizeof s->path, "%s/store", home);
    snprintf(s->data_path, sizeof s->data_path, "%s/data.mdb", s->path);
    s->map_size = opt && opt->map_size ? opt->map_size : DEFAULT_MAP_SIZE;
    s->batch_max = opt && opt->batch_max ? opt->batch_max : DEFAULT_BATCH_MAX;
    /* A test hook: a slow disk (an fsync of a loaded machine) made long. */
    const char *dl = getenv("UQBAR_TEST_STORE_DELAY_MS");
    if (dl && *dl) s->test_delay_ms = (unsigned)(strtoul(dl, NULL, 10) % 60001);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->acked, NULL);
    s->tail = &s->head;

    uq_err e = uqi_mkdirs(s->path, em);
    if (!e) e = lock_home(s, em);
    if (!e) e = precheck_data(s, em);
    if (e) goto fail;
    int rc = mdb_env_create(&s->env);
    if (!rc) rc = mdb_env_set_mapsize(s->env, s->map_size);
    if (!rc) rc = mdb_env_set_maxdbs(s->env, 8);
    if (!rc) rc = mdb_env_set_maxreaders(s->env, 256);
    /* Sync on (no MDB_NOSYNC/NOMETASYNC): a commit returns once durable.
     * MDB_NOTLS: read transactions are not tied to threads (fibers move). */
    if (!rc) rc = mdb_env_open(s->env, s->path, MDB_NOTLS, 0644);
    if (rc) {
        e = rc == MDB_INVALID ? uqi_errf(em, UQ_ECORRUPT,
                                         "store %s is damaged (no valid LMDB meta page); refusing to open or overwrite it",
                                         s->data_path)
                              : uqi_store_mdb_err(s, rc, "open", em);
        goto fail;
    }
    e = validate_or_init(s, em);
    if (e) goto fail;
    /* The map size in effect: an existing file may have recorded a larger one. */
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0) s->map_size = info.me_mapsize;
    if (pthread_create(&s->committer, NULL, uqi_store_committer, s) != 0) {
        e = uqi_errf(em, UQ_ENOMEM, "store %s: cannot start the committer thread", s->path);
        goto fail;
    }
    *out = s;
    return UQ_OK;
fail:
    if (s->env) mdb_env_close(s->env);
    if (s->lock_fd >= 0) close(s->lock_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->acked);
    free(s);
    return e;
}

void uqs_close(uqs_store *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->committer, NULL);
    mdb_env_close(s->env);
    close(s->lock_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->acked);
    free(s);
}

void uqs_get_stats(uqs_store *s, uqs_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

/* ---- reads -------------------------------------------------------------- */
uq_err uqs_get(uqs_store *s, uqs_db db, const void *key, size_t klen, uint8_t **out, size_t *out_len, uq_errmsg *em)
{
    *out = NULL;
    *out_len = 0;
    if ((unsigned)db >= UQS_DB_N || !key || klen == 0 || klen > UQS_KEY_MAX)
        return uqi_errf(em, UQ_EINVAL, "store read: bad database or key");
    MDB_txn *t;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
    if (rc) return uqi_store_mdb_err(s, rc, "read", em);
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(t, s->dbi[db], &k, &v);
    if (rc == 0) {
        uint8_t *b = uqi_xmalloc(v.mv_size + 1);
        memcpy(b, v.mv_data, v.mv_size);
        b[v.mv_size] = '\0';
        *out = b;
        *out_len = v.mv_size;
    }
    mdb_txn_abort(t);
    if (rc == MDB_NOTFOUND) return uqi_errf(em, UQ_ENOENT, "no such record");
    return rc ? uqi_store_mdb_err(s, rc, "read", em) : UQ_OK;
}

uq_err uqs_each(uqs_store *s, uqs_db db, const void *prefix, size_t plen, uqs_each_fn fn, void *arg, uq_errmsg *em)
{
    if ((unsigned)db >= UQS_DB_N || plen > UQS_KEY_MAX) return uqi_errf(em, UQ_EINVAL, "store scan: bad database");
    MDB_txn *t;
    MDB_cursor *c;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
    if (rc) return uqi_store_mdb_err(s, rc, "scan", em);
    rc = mdb_cursor_open(t, s->dbi[db], &c);
    if (rc) {
        mdb_txn_abort(t);
        return uqi_store_mdb_err(s, rc, "scan", em);
    }
    MDB_val k = {plen, (void *)prefix}, v;
    rc = mdb_cursor_get(c, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)) break;
        if (fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(t);
    if (rc && rc != MDB_NOTFOUND) return uqi_store_mdb_err(s, rc, "scan", em);
    return UQ_OK;
}

/* ---- process state and table -------------------------------------------- */
static uq_err check_pid(const char *pid, uq_errmsg *em)
{
    size_t n = pid ? strlen(pid) : 0;
    if (n == 0 || n > UQS_KEY_MAX) return uqi_errf(em, UQ_EINVAL, "store: process id must be 1-%d bytes", UQS_KEY_MAX);
    return UQ_OK;
}

uq_err uqs_state_set(uqs_store *s, const char *pid, const void *data, size_t len, uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    uqs_op op = {.db = UQS_DB_STATE, .key = pid, .klen = strlen(pid), .val = data, .vlen = len};
    return uqs_write(s, &op, 1, em);
}

uq_err uqs_state_set_async(uqs_store *s, const char *pid, const void *data, size_t len, uqs_done_fn done, void *arg,
                           uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    uqs_op op = {.db = UQS_DB_STATE, .key = pid, .klen = strlen(pid), .val = data, .vlen = len};
    return uqs_write_async(s, &op, 1, done, arg, em);
}

uq_err uqs_state_get(uqs_store *s, const char *pid, uint8_t **out, size_t *out_len, uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    e = uqs_get(s, UQS_DB_STATE, pid, strlen(pid), out, out_len, em);
    if (e == UQ_ENOENT) uqi_errf(em, e, "process %s has no saved state", pid);
    return e;
}

uq_err uqs_state_clear(uqs_store *s, const char *pid, uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    uqs_op op = {.db = UQS_DB_STATE, .del = true, .key = pid, .klen = strlen(pid)};
    return uqs_write(s, &op, 1, em);
}

uq_err uqs_proc_put(uqs_store *s, const char *pid, const void *rec, size_t len, uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    uqs_op op = {.db = UQS_DB_PROCS, .key = pid, .klen = strlen(pid), .val = rec, .vlen = len};
    return uqs_write(s, &op, 1, em);
}

uq_err uqs_proc_get(uqs_store *s, const char *pid, uint8_t **out, size_t *out_len, uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    e = uqs_get(s, UQS_DB_PROCS, pid, strlen(pid), out, out_len, em);
    if (e == UQ_ENOENT) uqi_errf(em, e, "process %s is not in the stored process table", pid);
    return e;
}

uq_err uqs_proc_del(uqs_store *s, const char *pid, uq_errmsg *em)
{
    uq_err e = check_pid(pid, em);
    if (e) return e;
    uqs_op ops[2] = {{.db = UQS_DB_PROCS, .del = true, .key = pid, .klen = strlen(pid)},
                     {.db = UQS_DB_STATE, .del = true, .key = pid, .klen = strlen(pid)}};
    return uqs_write(s, ops, 2, em);
}

typedef struct {
    uqs_proc_fn fn;
    void *arg;
} proc_each_ctx;

static int proc_each_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    proc_each_ctx *c = arg;
    return c->fn(c->arg, key, klen, val, vlen);
}

uq_err uqs_proc_each(uqs_store *s, uqs_proc_fn fn, void *arg, uq_errmsg *em)
{
    proc_each_ctx c = {fn, arg};
    return uqs_each(s, UQS_DB_PROCS, NULL, 0, proc_each_cb, &c, em);
}
