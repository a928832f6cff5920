/* Private parts of the node store shared by store.c (open, reads) and
 * commit.c (the group-commit thread). */
#ifndef UQ_STORE_INT_H
#define UQ_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>

#include "store/store.h"
#include "util/util.h"

/* A write request waiting for the committer. Synchronous requests live on
 * the caller's stack and point at its ops; asynchronous ones own a copy. */
typedef struct uqs_req {
    struct uqs_req *next;
    const uqs_op *ops;
    size_t n;
    uqs_done_fn done;        /* async: callback; sync: NULL */
    void *arg;
    uint64_t failed0;        /* a barrier (n == 0): stats.failures when it was queued */
    /* sync only: */
    bool finished;
    uq_err err;
    uq_errmsg em;
} uqs_req;

struct uqs_store {
    char path[4096];         /* <home>/store */
    char data_path[4200];    /* <home>/store/data.mdb (for messages) */
    MDB_env *env;
    MDB_dbi dbi[UQS_DB_N];
    int lock_fd;             /* flock'ed <home>/store/node.lock */
    size_t map_size;
    unsigned batch_max;
    unsigned test_delay_ms;  /* UQBAR_TEST_STORE_DELAY_MS: each commit waits this long first */

    pthread_t committer;
    pthread_mutex_t mu;      /* guards the queue, closing, stats */
    pthread_cond_t work;     /* committer: requests queued or closing */
    pthread_cond_t acked;    /* sync callers: a batch finished */
    uqs_req *head, **tail;
    bool closing;
    uqs_stats stats;
    uqs_watch_fn watch;      /* under mu */
    void *watch_arg;
};

void *uqi_store_committer(void *arg);
/* An LMDB error as uq_err with a message naming the store. */
uq_err uqi_store_mdb_err(uqs_store *s, int rc, const char *what, uq_errmsg *em);

#endif
