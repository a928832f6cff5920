/* Group commit: writers queue requests, one committer thread applies every
 * request queued so far in one LMDB write transaction, commits it (LMDB
 * fsyncs the data pages, then writes and syncs the meta page) and only then
 * acknowledges each request. While one commit syncs, the next batch gathers,
 * so N concurrent writers share one fsync instead of paying N. */
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"

/* ---- validation and queueing ------------------------------------------- */
static uq_err check_ops(const uqs_op *ops, size_t n, uq_errmsg *em)
{
    if (!ops || n == 0) return uqi_errf(em, UQ_EINVAL, "store write: no operations");
    for (size_t i = 0; i < n; i++) {
        const uqs_op *o = &ops[i];
        if ((unsigned)o->db >= UQS_DB_N) return uqi_errf(em, UQ_EINVAL, "store write: no database %d", (int)o->db);
        if (!o->key || o->klen == 0 || o->klen > UQS_KEY_MAX)
            return uqi_errf(em, UQ_EINVAL, "store write: key length %zu not in 1..%d", o->klen, UQS_KEY_MAX);
        if (!o->del && o->vlen && !o->val) return uqi_errf(em, UQ_EINVAL, "store write: value missing");
        if (!o->del && o->vlen > UINT32_MAX)
            return uqi_errf(em, UQ_ELIMIT, "store write: value of %zu bytes is too large (at most 4 GiB)", o->vlen);
    }
    return UQ_OK;
}

/* Under s->mu. */
static uq_err enqueue(uqs_store *s, uqs_req *r, uq_errmsg *em)
{
    if (s->closing) return uqi_errf(em, UQ_ECLOSED, "store %s is closing", s->path);
    r->next = NULL;
    *s->tail = r;
    s->tail = &r->next;
    pthread_cond_signal(&s->work);
    return UQ_OK;
}

uq_err uqs_write(uqs_store *s, const uqs_op *ops, size_t n, uq_errmsg *em)
{
    uq_err e = check_ops(ops, n, em);
    if (e) return e;
    uqs_req r = {.ops = ops, .n = n};
    pthread_mutex_lock(&s->mu);
    e = enqueue(s, &r, em);
    while (!e && !r.finished) pthread_cond_wait(&s->acked, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (e) return e;
    if (r.err && em) *em = r.em;
    return r.err;
}

uq_err uqs_flush(uqs_store *s, uq_errmsg *em)
{
    /* A barrier: an empty sync request. The queue is FIFO and batches are
     * committed in order, so once it is acknowledged every request queued
     * before it is committed (or has failed; counted in stats.failures). */
    uqs_req r = {.ops = NULL, .n = 0};
    pthread_mutex_lock(&s->mu);
    uint64_t failed0 = s->stats.failures;
    uq_err e = enqueue(s, &r, em);
    while (!e && !r.finished) pthread_cond_wait(&s->acked, &s->mu);
    uint64_t failed = s->stats.failures - failed0;
    pthread_mutex_unlock(&s->mu);
    if (e) return e;
    if (r.err) {
        if (em) *em = r.em;
        return r.err;
    }
    if (failed)
        return uqi_errf(em, UQ_EIO, "store %s: %llu write%s queued before could not be committed (see the log)",
                        s->path, (unsigned long long)failed, failed == 1 ? "" : "s");
    return UQ_OK;
}

uq_err uqs_flush_async(uqs_store *s, uqs_done_fn done, void *arg, uq_errmsg *em)
{
    uqs_req *r = uqi_xcalloc(1, sizeof *r); /* a barrier: no ops */
    r->done = done;
    r->arg = arg;
    pthread_mutex_lock(&s->mu);
    r->failed0 = s->stats.failures;
    uq_err e = enqueue(s, r, em);
    pthread_mutex_unlock(&s->mu);
    if (e) free(r);
    return e;
}

uq_err uqs_write_async(uqs_store *s, const uqs_op *ops, size_t n, uqs_done_fn done, void *arg, uq_errmsg *em)
{
    uq_err e = check_ops(ops, n, em);
    if (e) return e;
    /* One block: the request, the ops, then every key and value. */
    size_t bytes = sizeof(uqs_req) + n * sizeof(uqs_op);
    for (size_t i = 0; i < n; i++) bytes += ops[i].klen + (ops[i].del ? 0 : ops[i].vlen);
    uqs_req *r = uqi_xcalloc(1, bytes);
    uqs_op *copy = (uqs_op *)(r + 1);
    uint8_t *p = (uint8_t *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        copy[i] = ops[i];
        copy[i].key = memcpy(p, ops[i].key, ops[i].klen);
        p += ops[i].klen;
        if (ops[i].del || !ops[i].vlen) {
            copy[i].val = NULL;
            copy[i].vlen = 0;
        } else {
            copy[i].val = memcpy(p, ops[i].val, ops[i].vlen);
            p += ops[i].vlen;
        }
    }
    r->ops = copy;
    r->n = n;
    r->done = done;
    r->arg = arg;
    pthread_mutex_lock(&s->mu);
    e = enqueue(s, r, em);
    pthread_mutex_unlock(&s->mu);
    if (e) free(r);
    return e;
}

/* ---- the committer ------------------------------------------------------ */
static int apply(uqs_store *s, MDB_txn *t, const uqs_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const uqs_op *o = &r->ops[i];
        MDB_val k = {o->klen, (void *)o->key};
        int rc;
        if (o->del) {
            rc = mdb_del(t, s->dbi[o->db], &k, NULL);
            if (rc == MDB_NOTFOUND) rc = 0;
        } else {
            MDB_val v = {o->vlen, (void *)o->val};
            rc = mdb_put(t, s->dbi[o->db], &k, &v, 0);
        }
        if (rc) return rc;
    }
    return 0;
}

/* One transaction for the requests first..last (NULL-terminated list when
 * last is NULL). Returns the LMDB code; on failure nothing is applied. */
static int commit_list(uqs_store *s, uqs_req *first, const uqs_req *stop)
{
    MDB_txn *t;
    int rc = mdb_txn_begin(s->env, NULL, 0, &t);
    if (rc) return rc;
    for (uqs_req *r = first; r != stop && !rc; r = r->next) rc = apply(s, t, r);
    if (rc) {
        mdb_txn_abort(t);
        return rc;
    }
    return mdb_txn_commit(t); /* frees t either way */
}

static void fail_req(uqs_store *s, uqs_req *r, int rc)
{
    r->err = uqi_store_mdb_err(s, rc, "write", &r->em);
}

/* Commit a batch; on failure, find who failed by committing each request
 * alone (a full store refuses the big writer, not its small neighbours). */
static void run_batch(uqs_store *s, uqs_req *batch, unsigned *commits)
{
    /* Barriers alone need no transaction: every write queued before them
     * was committed, and synced, by an earlier batch (and an empty commit
     * can itself fail on a full map, which is not theirs to report). */
    bool writes = false;
    for (uqs_req *r = batch; r && !writes; r = r->next) writes = r->n != 0;
    if (!writes) return;
    int rc = commit_list(s, batch, NULL);
    if (!rc) {
        (*commits)++;
        return;
    }
    if (!batch->next) {
        fail_req(s, batch, rc);
        return;
    }
    for (uqs_req *r = batch; r; r = r->next) {
        if (!r->n) continue; /* a barrier: the requests before it are done with */
        int rc1 = commit_list(s, r, r->next);
        if (rc1) fail_req(s, r, rc1);
        else (*commits)++;
    }
}

void *uqi_store_committer(void *arg)
{
    uqs_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->closing) pthread_cond_wait(&s->work, &s->mu);
        if (!s->head) break; /* closing, and the queue is drained */
        uqs_req *batch = s->head, *last = batch;
        for (unsigned k = 1; last->next && k < s->batch_max; k++) last = last->next;
        s->head = last->next;
        if (!s->head) s->tail = &s->head;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        if (s->test_delay_ms) usleep(s->test_delay_ms * 1000u);
        unsigned commits = 0;
        run_batch(s, batch, &commits);

        /* The watcher first (before anyone hears the write is durable). */
        pthread_mutex_lock(&s->mu);
        if (s->watch)
            for (uqs_req *r = batch; r; r = r->next)
                if (!r->err)
                    for (size_t i = 0; i < r->n; i++) s->watch(s->watch_arg, r->ops[i].db, r->ops[i].key, r->ops[i].klen);
        pthread_mutex_unlock(&s->mu);

        /* The batch's counts first, so that whoever a callback wakes sees
         * them (a barrier queued from there must not count this batch's
         * failures as its own); then the async callbacks, outside the lock
         * (they may queue more); the sync requests are kept aside. */
        uint64_t ok = 0, bad = 0;
        for (uqs_req *r = batch; r; r = r->next)
            if (r->n) r->err ? bad++ : ok++; /* a barrier (uqs_flush) is no write */
        pthread_mutex_lock(&s->mu);
        uint64_t failures_before = s->stats.failures;
        s->stats.commits += commits;
        s->stats.writes += ok;
        s->stats.failures += bad;
        pthread_mutex_unlock(&s->mu);
        uint64_t bad_ahead = 0; /* failed writes of this batch before r */
        uqs_req *sync = NULL;
        for (uqs_req *r = batch, *next; r; r = next) {
            next = r->next;
            if (r->n && r->err) bad_ahead++;
            if (r->done && !r->n) { /* uqs_flush_async: the failures queued before it */
                uint64_t failed = failures_before - r->failed0 + bad_ahead;
                if (failed && !r->err)
                    r->err = uqi_errf(&r->em, UQ_EIO, "store %s: %llu write%s queued before could not be committed",
                                      s->path, (unsigned long long)failed, failed == 1 ? "" : "s");
            }
            if (r->done) {
                r->done(r->arg, r->err, &r->em);
                free(r);
            } else {
                r->next = sync;
                sync = r;
            }
        }
        pthread_mutex_lock(&s->mu);
        /* A sync request may vanish (its caller returns) once finished is
         * set, so read next first. */
        for (uqs_req *r = sync, *next; r; r = next) {
            next = r->next;
            r->finished = true;
        }
        pthread_cond_broadcast(&s->acked);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void uqs_set_watch(uqs_store *s, uqs_watch_fn fn, void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->watch = fn;
    s->watch_arg = arg;
    pthread_mutex_unlock(&s->mu);
}
