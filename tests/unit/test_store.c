/* The node store (src/store/store.c, commit.c): round trips, state and the
 * process table, group commit, and the refusals: a foreign, damaged or
 * newer store file gives a clear error naming it and is left as it was; a
 * full store or disk fails the writer and the store keeps working. */
#define _GNU_SOURCE
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner.h"
#include "store/store.h"
#include "util/util.h"

static uqs_store *open_ok(const char *home, const uqs_options *opt)
{
    uqs_store *s;
    uq_errmsg em = {{0}};
    if (uqs_open(home, opt, &s, &em)) test_fail(__FILE__, __LINE__, "uqs_open: %s", em.text);
    return s;
}

static char *data_mdb(const char *home)
{
    static char p[1200];
    snprintf(p, sizeof p, "%s/store/data.mdb", home);
    return p;
}

static void expect_value(uqs_store *s, uqs_db db, const char *key, const char *want)
{
    uint8_t *v;
    size_t n;
    uq_errmsg em = {{0}};
    uq_err e = uqs_get(s, db, key, strlen(key), &v, &n, &em);
    if (e) test_fail(__FILE__, __LINE__, "get %s: %s", key, em.text);
    ASSERT_EQ(n, strlen(want));
    ASSERT(memcmp(v, want, n) == 0);
    free(v);
}

TEST(store_open_close_reopen_roundtrip)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_ok(home, NULL);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_state_set(s, "counter", "41", 2, &em), UQ_OK);
    ASSERT_EQ(uqs_state_set(s, "counter", "42", 2, &em), UQ_OK);
    ASSERT_EQ(uqs_proc_put(s, "counter", "{rec}", 5, &em), UQ_OK);
    uqs_stats st;
    uqs_get_stats(s, &st);
    ASSERT_EQ(st.writes, 3);
    ASSERT_EQ(st.failures, 0);
    uqs_close(s);
    s = open_ok(home, NULL);
    expect_value(s, UQS_DB_STATE, "counter", "42");
    expect_value(s, UQS_DB_PROCS, "counter", "{rec}");
    ASSERT(strstr(uqs_path(s), "/store") != NULL);
    uqs_close(s);
    uqs_close(NULL);
}

TEST(store_state_set_get_clear)
{
    uqs_store *s = open_ok(tb_tmpdir(), NULL);
    uq_errmsg em = {{0}};
    uint8_t *v;
    size_t n;
    ASSERT_EQ(uqs_state_get(s, "p1", &v, &n, &em), UQ_ENOENT);
    ASSERT_STR_HAS(em.text, "no saved state");
    /* Binary state, with NULs, and an empty one. */
    uint8_t bin[300];
    for (int i = 0; i < 300; i++) bin[i] = (uint8_t)i;
    ASSERT_EQ(uqs_state_set(s, "p1", bin, sizeof bin, &em), UQ_OK);
    ASSERT_EQ(uqs_state_set(s, "p2", "", 0, &em), UQ_OK);
    ASSERT_EQ(uqs_state_get(s, "p1", &v, &n, &em), UQ_OK);
    ASSERT_EQ(n, 300);
    ASSERT(memcmp(v, bin, 300) == 0);
    free(v);
    ASSERT_EQ(uqs_state_get(s, "p2", &v, &n, &em), UQ_OK);
    ASSERT_EQ(n, 0);
    free(v);
    /* A large one (overflow pages). */
    size_t big = 3 << 20;
    uint8_t *b = uqi_xmalloc(big);
    for (size_t i = 0; i < big; i++) b[i] = (uint8_t)(i * 7);
    ASSERT_EQ(uqs_state_set(s, "big", b, big, &em), UQ_OK);
    ASSERT_EQ(uqs_state_get(s, "big", &v, &n, &em), UQ_OK);
    ASSERT_EQ(n, big);
    ASSERT(memcmp(v, b, big) == 0);
    free(v);
    free(b);
    ASSERT_EQ(uqs_state_clear(s, "p1", &em), UQ_OK);
    ASSERT_EQ(uqs_state_get(s, "p1", &v, &n, &em), UQ_ENOENT);
    ASSERT_EQ(uqs_state_clear(s, "p1", &em), UQ_OK); /* absent: fine */
    /* Bad ids. */
    ASSERT_EQ(uqs_state_set(s, "", "x", 1, &em), UQ_EINVAL);
    char longid[600];
    memset(longid, 'a', 599);
    longid[599] = '\0';
    ASSERT_EQ(uqs_state_set(s, longid, "x", 1, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "process id");
    uqs_close(s);
}

static int collect_procs(void *arg, const char *pid, size_t plen, const void *rec, size_t len)
{
    char *acc = arg;
    size_t at = strlen(acc);
    snprintf(acc + at, 256 - at, "%.*s=%.*s;", (int)plen, pid, (int)len, (const char *)rec);
    return 0;
}

TEST(store_proc_records)
{
    uqs_store *s = open_ok(tb_tmpdir(), NULL);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_proc_put(s, "b", "2", 1, &em), UQ_OK);
    ASSERT_EQ(uqs_proc_put(s, "a", "1", 1, &em), UQ_OK);
    ASSERT_EQ(uqs_proc_put(s, "c", "3", 1, &em), UQ_OK);
    ASSERT_EQ(uqs_proc_put(s, "b", "22", 2, &em), UQ_OK);
    ASSERT_EQ(uqs_state_set(s, "b", "state-of-b", 10, &em), UQ_OK);
    char acc[256] = "";
    ASSERT_EQ(uqs_proc_each(s, collect_procs, acc, &em), UQ_OK);
    ASSERT(strcmp(acc, "a=1;b=22;c=3;") == 0);
    /* Deleting a process drops its state too. */
    ASSERT_EQ(uqs_proc_del(s, "b", &em), UQ_OK);
    uint8_t *v;
    size_t n;
    ASSERT_EQ(uqs_proc_get(s, "b", &v, &n, &em), UQ_ENOENT);
    ASSERT_STR_HAS(em.text, "not in the stored process table");
    ASSERT_EQ(uqs_state_get(s, "b", &v, &n, &em), UQ_ENOENT);
    ASSERT_EQ(uqs_proc_get(s, "c", &v, &n, &em), UQ_OK);
    ASSERT_EQ(n, 1);
    free(v);
    acc[0] = '\0';
    ASSERT_EQ(uqs_proc_each(s, collect_procs, acc, &em), UQ_OK);
    ASSERT(strcmp(acc, "a=1;c=3;") == 0);
    uqs_close(s);
}

/* ---- group commit ------------------------------------------------------------ */
typedef struct {
    uqs_store *s;
    int t, n;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "w%d", a->t);
        snprintf(v, sizeof v, "%d", i);
        uq_errmsg em;
        if (uqs_state_set(a->s, k, v, strlen(v), &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    }
    return NULL;
}

TEST(store_group_commit_batches_concurrent_writers)
{
    uqs_store *s = open_ok(tb_tmpdir(), NULL);
    enum { T = 16, N = 40 };
    pthread_t th[T];
    writer_arg a[T];
    for (int t = 0; t < T; t++) {
        a[t] = (writer_arg){s, t, N};
        pthread_create(&th[t], NULL, writer, &a[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    uqs_stats st;
    uqs_get_stats(s, &st);
    test_log("%llu writes in %llu commits", (unsigned long long)st.writes, (unsigned long long)st.commits);
    ASSERT_EQ(st.writes, T * N);
    ASSERT(st.commits < st.writes); /* batched */
    for (int t = 0; t < T; t++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "w%d", t);
        snprintf(v, sizeof v, "%d", N - 1);
        expect_value(s, UQS_DB_STATE, k, v);
    }
    uqs_close(s);
}

typedef struct {
    pthread_mutex_t mu;
    int done, failed;
} async_count;

static void on_done(void *arg, uq_err err, const uq_errmsg *em)
{
    async_count *c = arg;
    pthread_mutex_lock(&c->mu);
    c->done++;
    if (err) c->failed++;
    pthread_mutex_unlock(&c->mu);
}

TEST(store_async_writes_call_back_after_commit)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_ok(home, NULL);
    async_count c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    uq_errmsg em = {{0}};
    for (int i = 0; i < 500; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "a%d", i % 50);
        snprintf(v, sizeof v, "v%d", i);
        ASSERT_EQ(uqs_state_set_async(s, k, v, strlen(v), on_done, &c, &em), UQ_OK);
    }
    /* A bad request fails at once and never calls back. */
    ASSERT_EQ(uqs_state_set_async(s, "", "v", 1, on_done, &c, &em), UQ_EINVAL);
    uqs_close(s); /* drains the queue */
    ASSERT_EQ(c.done, 500);
    ASSERT_EQ(c.failed, 0);
    s = open_ok(home, NULL);
    expect_value(s, UQS_DB_STATE, "a7", "v457"); /* in order: the last write wins */
    uqs_close(s);
}

/* ---- refusals ------------------------------------------------------------------ */
static uint8_t *slurp(const char *path, size_t *n)
{
    uint8_t *b;
    uq_errmsg em;
    if (uqi_read_file(path, &b, n, &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    return b;
}

static void expect_refused(const char *home, uq_err want, const char *text)
{
    size_t n0, n1;
    uint8_t *before = slurp(data_mdb(home), &n0);
    uqs_store *s = NULL;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_open(home, NULL, &s, &em), want);
    ASSERT(s == NULL);
    test_log("refused: %s", em.text);
    ASSERT_STR_HAS(em.text, data_mdb(home)); /* names the file */
    ASSERT_STR_HAS(em.text, text);
    uint8_t *after = slurp(data_mdb(home), &n1);
    ASSERT_EQ(n0, n1); /* left as it was */
    ASSERT(memcmp(before, after, n0) == 0);
    free(before);
    free(after);
}

TEST(store_foreign_file_refused_naming_it)
{
    const char *home = tb_tmpdir();
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/store", home);
    mkdir(dir, 0755);
    const char junk[] = "SQLite format 3\0 this is somebody else's database file, not ours........";
    FILE *f = fopen(data_mdb(home), "w");
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    expect_refused(home, UQ_ECORRUPT, "not an LMDB file");
}

/* An LMDB file written by something else: records, no uqbar meta. */
TEST(store_foreign_lmdb_refused_naming_it)
{
    const char *home = tb_tmpdir();
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/store", home);
    mkdir(dir, 0755);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &t), 0);
    ASSERT_EQ(mdb_dbi_open(t, NULL, 0, &dbi), 0);
    MDB_val k = {3, (void *)"key"}, v = {5, (void *)"value"};
    ASSERT_EQ(mdb_put(t, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(t), 0);
    mdb_env_close(env);
    expect_refused(home, UQ_ECORRUPT, "LMDB file of something else");
}

/* Rewrite a meta record of a closed store with raw LMDB. */
static void poke_meta(const char *home, const char *key, const void *val, size_t len)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/store", home);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_set_maxdbs(env, 8), 0);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &t), 0);
    ASSERT_EQ(mdb_dbi_open(t, "meta", 0, &dbi), 0);
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    ASSERT_EQ(mdb_put(t, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(t), 0);
    mdb_env_close(env);
}

TEST(store_newer_format_refused)
{
    const char *home = tb_tmpdir();
    uqs_close(open_ok(home, NULL));
    poke_meta(home, "version", "\x63\0\0\0", 4); /* 99 */
    expect_refused(home, UQ_ELIMIT, "newer than this uqbar reads");
}

TEST(store_wrong_magic_refused)
{
    const char *home = tb_tmpdir();
    uqs_close(open_ok(home, NULL));
    poke_meta(home, "magic", "other-program", 13);
    expect_refused(home, UQ_ECORRUPT, "wrong magic");
}

/* Both LMDB meta pages damaged (a torn or overwritten header). */
TEST(store_corrupt_file_refused_naming_it)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_ok(home, NULL);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_state_set(s, "p", "x", 1, &em), UQ_OK);
    uqs_close(s);
    /* The second meta page's magic (pages are 4 KiB here). */
    FILE *f = fopen(data_mdb(home), "r+");
    ASSERT(f != NULL);
    fseek(f, 4096 + 16, SEEK_SET);
    fwrite("\xde\xad\xbe\xef", 1, 4, f);
    fclose(f);
    expect_refused(home, UQ_ECORRUPT, "damaged");
}

TEST(store_second_open_is_busy)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_ok(home, NULL), *s2 = NULL;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_open(home, NULL, &s2, &em), UQ_EBUSY);
    ASSERT_STR_HAS(em.text, "in use by another node");
    uqs_close(s);
    uqs_close(open_ok(home, NULL));
}

/* ---- full store, full disk ----------------------------------------------------- */
TEST(store_map_full_fails_the_writer_only)
{
    const char *home = tb_tmpdir();
    uqs_options opt = {.map_size = 512 << 10};
    uqs_store *s = open_ok(home, &opt);
    uq_errmsg em = {{0}};
    size_t big = 300 << 10;
    uint8_t *b = uqi_xcalloc(1, big);
    ASSERT_EQ(uqs_state_set(s, "big1", b, big, &em), UQ_OK);
    ASSERT_EQ(uqs_state_set(s, "big2", b, big, &em), UQ_ELIMIT);
    test_log("map full: %s", em.text);
    ASSERT_STR_HAS(em.text, "is full");
    ASSERT_STR_HAS(em.text, data_mdb(home));
    /* Small writes still go through, and the batch neighbours of a failing
     * write are not failed with it. */
    async_count c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    ASSERT_EQ(uqs_state_set_async(s, "big3", b, big, on_done, &c, &em), UQ_OK);
    ASSERT_EQ(uqs_state_set_async(s, "small1", "ok", 2, on_done, &c, &em), UQ_OK);
    ASSERT_EQ(uqs_state_set(s, "small2", "ok", 2, &em), UQ_OK);
    uqs_close(s);
    ASSERT_EQ(c.done, 2);
    ASSERT_EQ(c.failed, 1);
    s = open_ok(home, &opt);
    expect_value(s, UQS_DB_STATE, "small1", "ok");
    expect_value(s, UQS_DB_STATE, "small2", "ok");
    uint8_t *v;
    size_t n;
    ASSERT_EQ(uqs_state_get(s, "big1", &v, &n, &em), UQ_OK);
    ASSERT_EQ(n, big);
    free(v);
    ASSERT_EQ(uqs_state_get(s, "big2", &v, &n, &em), UQ_ENOENT);
    uqs_close(s);
    free(b);
}

/* A full disk, simulated with RLIMIT_FSIZE (SIGXFSZ ignored: writes past
 * the limit fail with EFBIG, like ENOSPC would). */
TEST(store_disk_full_fails_the_writer_store_keeps_working)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_ok(home, NULL);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_state_set(s, "before", "1", 1, &em), UQ_OK);
    struct stat st;
    ASSERT_EQ(stat(data_mdb(home), &st), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + (256 << 10);
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t big = 2 << 20;
    uint8_t *b = uqi_xcalloc(1, big);
    uq_err e = uqs_state_set(s, "huge", b, big, &em);
    test_log("disk full: %s: %s", uq_strerror(e), em.text);
    ASSERT_EQ(e, UQ_ELIMIT);
    ASSERT_STR_HAS(em.text, data_mdb(home));
    ASSERT_STR_HAS(em.text, "file size limit");
    ASSERT_EQ(uqs_state_set(s, "after", "2", 1, &em), UQ_OK);
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    ASSERT_EQ(uqs_state_set(s, "huge", b, big, &em), UQ_OK);
    uqs_close(s);
    s = open_ok(home, NULL);
    expect_value(s, UQS_DB_STATE, "before", "1");
    expect_value(s, UQS_DB_STATE, "after", "2");
    uint8_t *v;
    size_t n;
    ASSERT_EQ(uqs_state_get(s, "huge", &v, &n, &em), UQ_OK);
    ASSERT_EQ(n, big);
    free(v);
    free(b);
    uqs_close(s);
}

TEST(store_bad_ops_and_closed)
{
    uqs_store *s = open_ok(tb_tmpdir(), NULL);
    uq_errmsg em = {{0}};
    uqs_op op = {.db = UQS_DB_N, .key = "k", .klen = 1};
    ASSERT_EQ(uqs_write(s, &op, 1, &em), UQ_EINVAL);
    op.db = UQS_DB_STATE;
    op.klen = 0;
    ASSERT_EQ(uqs_write(s, &op, 1, &em), UQ_EINVAL);
    ASSERT_EQ(uqs_write(s, NULL, 0, &em), UQ_EINVAL);
    uint8_t *v;
    size_t n;
    ASSERT_EQ(uqs_get(s, UQS_DB_STATE, "", 0, &v, &n, &em), UQ_EINVAL);
    uqs_close(s);
}

/* A store of 512 KiB whose commits each wait delay_ms first (the test hook
 * UQBAR_TEST_STORE_DELAY_MS, read by uqs_open; each test runs in its own
 * process), so that writes are still queued when a barrier comes. */
static uqs_store *open_slow_small(const char *home, const char *delay_ms)
{
    setenv("UQBAR_TEST_STORE_DELAY_MS", delay_ms, 1);
    uqs_options opt = {.map_size = 512 << 10};
    uqs_store *s = open_ok(home, &opt);
    unsetenv("UQBAR_TEST_STORE_DELAY_MS");
    return s;
}

/* uqs_flush: a barrier behind every write queued before it (commits made
 * slow, so the writes are still queued when it is called); it says when one
 * of them failed, and costs almost nothing with an empty queue. */
TEST(store_flush_waits_for_queued_async_writes)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_slow_small(home, "150");
    async_count c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    uq_errmsg em = {{0}};
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "f%d", i);
        ASSERT_EQ(uqs_state_set_async(s, k, "v", 1, on_done, &c, &em), UQ_OK);
    }
    pthread_mutex_lock(&c.mu);
    int before = c.done;
    pthread_mutex_unlock(&c.mu);
    ASSERT(before < 20); /* still queued: the commit waits 150 ms */
    uint64_t t0 = uqi_now_ns();
    ASSERT_EQ(uqs_flush(s, &em), UQ_OK);
    test_log("flush behind 20 queued writes (150 ms commits): %.1f ms", (double)(uqi_now_ns() - t0) / 1e6);
    pthread_mutex_lock(&c.mu);
    ASSERT_EQ(c.done, 20); /* every callback ran: all are durable */
    pthread_mutex_unlock(&c.mu);
    expect_value(s, UQS_DB_STATE, "f19", "v");
    uqs_stats st;
    uqs_get_stats(s, &st);
    ASSERT_EQ(st.writes, 20); /* the barrier is not counted as a write */
    /* a failed write before the barrier is reported */
    size_t big = 600 << 10;
    uint8_t *b = uqi_xcalloc(1, big);
    ASSERT_EQ(uqs_state_set_async(s, "big", b, big, on_done, &c, &em), UQ_OK);
    ASSERT_EQ(uqs_flush(s, &em), UQ_EIO);
    test_log("flush after a failed write: %s", em.text);
    ASSERT_STR_HAS(em.text, "could not be committed");
    ASSERT_EQ(c.failed, 1);
    free(b);
    /* nothing queued: only the (slowed) empty round */
    ASSERT_EQ(uqs_flush(s, &em), UQ_OK);
    uqs_close(s);
}

/* uqs_flush_async (a guest's spawn waits on it): the callback comes once
 * every write queued before it is durable, and says when one failed, in an
 * earlier batch or in its own. */
typedef struct flush_seen {
    async_count *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool called;
    int done_then;
    uq_err err;
    char text[sizeof(uq_errmsg) + 1];
} flush_seen;

static void on_flushed(void *arg, uq_err err, const uq_errmsg *em)
{
    flush_seen *f = arg;
    pthread_mutex_lock(&f->c->mu);
    int done = f->c->done;
    pthread_mutex_unlock(&f->c->mu);
    pthread_mutex_lock(&f->mu);
    f->done_then = done;
    f->err = err;
    snprintf(f->text, sizeof f->text, "%s", err && em ? em->text : "");
    f->called = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void flush_wait(flush_seen *f)
{
    pthread_mutex_lock(&f->mu);
    while (!f->called) pthread_cond_wait(&f->cv, &f->mu);
    f->called = false;
    pthread_mutex_unlock(&f->mu);
}

TEST(store_flush_async_calls_back_once_queued_writes_are_durable)
{
    const char *home = tb_tmpdir();
    uqs_store *s = open_slow_small(home, "100");
    async_count c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    flush_seen f = {.c = &c, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    uq_errmsg em = {{0}};
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "g%d", i);
        ASSERT_EQ(uqs_state_set_async(s, k, "v", 1, on_done, &c, &em), UQ_OK);
    }
    ASSERT_EQ(uqs_flush_async(s, on_flushed, &f, &em), UQ_OK);
    flush_wait(&f);
    ASSERT_EQ(f.err, UQ_OK);
    ASSERT_EQ(f.done_then, 20); /* every write before it had called back */
    /* a failed write in the barrier's own batch (both queued behind a slow commit) */
    ASSERT_EQ(uqs_state_set_async(s, "g0", "w", 1, on_done, &c, &em), UQ_OK);
    size_t big = 600 << 10;
    uint8_t *b = uqi_xcalloc(1, big);
    ASSERT_EQ(uqs_state_set_async(s, "big", b, big, on_done, &c, &em), UQ_OK);
    ASSERT_EQ(uqs_flush_async(s, on_flushed, &f, &em), UQ_OK);
    flush_wait(&f);
    ASSERT_EQ(f.err, UQ_EIO);
    test_log("flush_async after a failed write: %s", f.text);
    ASSERT_STR_HAS(f.text, "could not be committed");
    /* later barriers do not report that old failure */
    ASSERT_EQ(uqs_flush_async(s, on_flushed, &f, &em), UQ_OK);
    flush_wait(&f);
    if (f.err != UQ_OK) test_fail(__FILE__, __LINE__, "third barrier: %d %s", f.err, f.text);
    free(b);
    uqs_close(s);
}
