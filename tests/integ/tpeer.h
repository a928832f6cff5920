/* A bare peer for the network tests: a net module (no kernel) whose
 * messages the test reads and sends by hand, so that it can answer, lie or
 * stay silent as the test wants. */
#ifndef UQ_TEST_TPEER_H
#define UQ_TEST_TPEER_H

#include <pthread.h>

#include "kernel/remote.h"
#include "net/netmod.h"
#include "tnet.h"

typedef struct rawpeer {
    uqn_identity id;
    uqn_net *net;
    uqn_net_cfg opt;           /* for rp_start: timeouts, lookup_off... (backoff 20-100 ms; the rest is filled in) */
    char listen[128];          /* where it listens (after rp_start) */
    char dir[1200];            /* its directory file by default: <tmp>/<name>-<variant>.peers */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uqi_msg *head, *tail;      /* kernel messages received, in order (unbounded: the test reads them all) */
    int fails;                 /* sends that ended with an error */
    int whys[4096];            /* per cookie (1..4095): 1 + the done reason */
    uint8_t *raw[4096];        /* look-up messages received (with opt.lookup_off) */
    size_t rawlen[4096];
    int nraw;
    uint64_t next_id;          /* free for the test */
} rawpeer;

/* A deterministic identity for name (tn_identity), nothing started. */
void rp_init(rawpeer *rp, const char *name, int variant);
/* Start its net module on listen (NULL: 127.0.0.1, any port) with the
 * directory file dir (NULL: rp->dir); the test fails if it cannot. */
void rp_start(rawpeer *rp, const char *listen, const char *dir);
void rp_stop(rawpeer *rp);
/* rp_stop if started; free what it received. */
void rp_fini(rawpeer *rp);
/* The next message received within ms, or NULL. */
uqi_msg *rp_wait(rawpeer *rp, int ms);
/* The message received with id (the others stay queued) within ms, or NULL. */
uqi_msg *rp_wait_id(rawpeer *rp, uint64_t id, int ms);
/* Wait until rp holds more than k raw look-up messages: the (k+1)-th, or NULL. */
const uint8_t *rp_raw(rawpeer *rp, int k, size_t *len, int ms);
/* Send m to node `to` (cookie: 0, or 1..4095 to see its fate in whys). */
void rp_send(rawpeer *rp, const char *to, const uqi_msg *m, bool with_rsvp, uintptr_t cookie);
/* Send bytes as they are (not a kernel message). */
void rp_send_raw(rawpeer *rp, const char *to, const void *bytes, size_t len);

#endif
