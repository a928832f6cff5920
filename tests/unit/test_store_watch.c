/* The store's watcher (uqs_set_watch): told of every op of every committed
 * request, sync or async, puts and deletes; not of a failed request; not
 * after it is removed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "runner.h"
#include "store/store.h"

typedef struct seen {
    pthread_mutex_t mu;
    char keys[16][32];
    int dbs[16];
    int n;
} seen;

static void watch(void *arg, uqs_db db, const void *key, size_t klen)
{
    seen *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->n < 16 && klen < 32) {
        memcpy(s->keys[s->n], key, klen);
        s->keys[s->n][klen] = 0;
        s->dbs[s->n++] = (int)db;
    }
    pthread_mutex_unlock(&s->mu);
}

static void done(void *arg, uq_err err, const uq_errmsg *em)
{
    atomic_store((atomic_int *)arg, err ? 2 : 1); /* read by the test's thread */
}

TEST(store_watch_sees_committed_writes)
{
    uqs_store *st;
    uq_errmsg em = {{0}};
    uqs_options opt = {.map_size = 512 << 10};
    ASSERT_EQ(uqs_open(tb_tmpdir(), &opt, &st, &em), UQ_OK);
    seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    uqs_set_watch(st, watch, &s);
    ASSERT_EQ(uqs_state_set(st, "proc-a", "1", 1, &em), UQ_OK);
    uqs_op ops[2] = {{.db = UQS_DB_PROCS, .key = "p/a", .klen = 3, .val = "{}", .vlen = 2},
                     {.db = UQS_DB_STATE, .key = "proc-a", .klen = 6, .del = true}};
    atomic_int flag = 0;
    ASSERT_EQ(uqs_write_async(st, ops, 2, done, &flag, &em), UQ_OK);
    for (int i = 0; i < 500 && !atomic_load(&flag); i++) usleep(2000);
    ASSERT_EQ(atomic_load(&flag), 1);
    /* a request that fails (a value too large for the map) is not reported */
    size_t big = 1 << 20;
    char *b = calloc(1, big);
    ASSERT_EQ(uqs_state_set(st, "big", b, big, &em), UQ_ELIMIT);
    free(b);
    pthread_mutex_lock(&s.mu);
    ASSERT_EQ(s.n, 3);
    ASSERT(strcmp(s.keys[0], "proc-a") == 0 && s.dbs[0] == UQS_DB_STATE);
    ASSERT(strcmp(s.keys[1], "p/a") == 0 && s.dbs[1] == UQS_DB_PROCS);
    ASSERT(strcmp(s.keys[2], "proc-a") == 0 && s.dbs[2] == UQS_DB_STATE);
    pthread_mutex_unlock(&s.mu);
    uqs_set_watch(st, NULL, NULL);
    ASSERT_EQ(uqs_state_set(st, "proc-b", "2", 1, &em), UQ_OK);
    ASSERT_EQ(s.n, 3);
    uqs_close(st);
}
