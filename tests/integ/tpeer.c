/* A bare peer for the network tests (tpeer.h). */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include "net/lookup.h"
#include "tpeer.h"
#include "util/util.h"

static void rp_recv(void *arg, const char *peer, const uint8_t *msg, size_t len)
{
    rawpeer *rp = arg;
    pthread_mutex_lock(&rp->mu);
    if (uqn_lk_is_msg(msg, len)) { /* only with look-ups off */
        if (rp->nraw < 4096) {
            rp->raw[rp->nraw] = uqi_xmalloc(len);
            memcpy(rp->raw[rp->nraw], msg, len);
            rp->rawlen[rp->nraw++] = len;
        }
    } else {
        uqi_msg *m;
        uq_errmsg em = {{0}};
        if (uqi_wire_decode(msg, len, peer, rp->id.name, &m, &em) == UQ_OK) {
            m->next = NULL;
            if (rp->tail) rp->tail->next = m;
            else rp->head = m;
            rp->tail = m;
        } else {
            test_log("%s: undecodable message: %s", rp->id.name, em.text);
        }
    }
    pthread_cond_broadcast(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
}

static void rp_done(void *arg, void *cookie, int why)
{
    rawpeer *rp = arg;
    pthread_mutex_lock(&rp->mu);
    if (why) rp->fails++;
    uintptr_t k = (uintptr_t)cookie;
    if (k && k < 4096) rp->whys[k] = 1 + why;
    pthread_mutex_unlock(&rp->mu);
}

void rp_init(rawpeer *rp, const char *name, int variant)
{
    memset(rp, 0, sizeof *rp);
    tn_identity(name, variant, &rp->id);
    pthread_mutex_init(&rp->mu, NULL);
    pthread_cond_init(&rp->cv, NULL);
    snprintf(rp->dir, sizeof rp->dir, "%s/%s-%d.peers", tb_tmpdir(), name, variant);
}

void rp_start(rawpeer *rp, const char *listen, const char *dir)
{
    uqn_net_cfg c = rp->opt;
    c.id = &rp->id;
    c.listen = listen ? listen : "127.0.0.1:0";
    c.dir_path = dir ? dir : rp->dir;
    c.recv = rp_recv, c.done = rp_done, c.arg = rp;
    c.backoff_min_ms = 20, c.backoff_max_ms = 100;
    uq_errmsg em = {{0}};
    if (uqn_net_start(&c, &rp->net, &em)) test_fail(__FILE__, __LINE__, "%s: %s", rp->id.name, em.text);
    snprintf(rp->listen, sizeof rp->listen, "%s", uqn_net_listen_addr(rp->net));
}

void rp_stop(rawpeer *rp)
{
    uqn_net_stop(rp->net);
    rp->net = NULL;
}

void rp_fini(rawpeer *rp)
{
    if (rp->net) rp_stop(rp);
    for (uqi_msg *m = rp->head, *nx; m; m = nx) {
        nx = m->next;
        uqi_msg_free(m);
    }
    for (int i = 0; i < rp->nraw; i++) free(rp->raw[i]);
    pthread_mutex_destroy(&rp->mu);
    pthread_cond_destroy(&rp->cv);
}

static struct timespec deadline(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    return ts;
}

uqi_msg *rp_wait(rawpeer *rp, int ms)
{
    struct timespec ts = deadline(ms);
    pthread_mutex_lock(&rp->mu);
    while (!rp->head)
        if (pthread_cond_timedwait(&rp->cv, &rp->mu, &ts) != 0) break;
    uqi_msg *m = rp->head;
    if (m) {
        rp->head = m->next;
        if (!rp->head) rp->tail = NULL;
        m->next = NULL;
    }
    pthread_mutex_unlock(&rp->mu);
    return m;
}

uqi_msg *rp_wait_id(rawpeer *rp, uint64_t id, int ms)
{
    struct timespec ts = deadline(ms);
    pthread_mutex_lock(&rp->mu);
    for (;;) {
        for (uqi_msg **pp = &rp->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
            if ((*pp)->id != id) continue;
            uqi_msg *r = *pp;
            *pp = r->next;
            if (rp->tail == r) rp->tail = prev;
            pthread_mutex_unlock(&rp->mu);
            r->next = NULL;
            return r;
        }
        if (pthread_cond_timedwait(&rp->cv, &rp->mu, &ts) != 0) break;
    }
    pthread_mutex_unlock(&rp->mu);
    return NULL;
}

const uint8_t *rp_raw(rawpeer *rp, int k, size_t *len, int ms)
{
    struct timespec ts = deadline(ms);
    pthread_mutex_lock(&rp->mu);
    while (rp->nraw <= k)
        if (pthread_cond_timedwait(&rp->cv, &rp->mu, &ts) != 0) break;
    const uint8_t *r = NULL;
    if (rp->nraw > k) {
        *len = rp->rawlen[k];
        r = rp->raw[k];
    }
    pthread_mutex_unlock(&rp->mu);
    return r;
}

void rp_send(rawpeer *rp, const char *to, const uqi_msg *m, bool with_rsvp, uintptr_t cookie)
{
    uint8_t *b;
    size_t len;
    uq_errmsg em = {{0}};
    if (uqi_wire_encode(m, with_rsvp, &b, &len, &em) || uqn_net_send(rp->net, to, b, len, (void *)cookie, &em))
        test_fail(__FILE__, __LINE__, "%s -> %s: %s", rp->id.name, to, em.text);
}

void rp_send_raw(rawpeer *rp, const char *to, const void *bytes, size_t len)
{
    uint8_t *b = uqi_xmalloc(len ? len : 1);
    memcpy(b, bytes, len);
    uq_errmsg em = {{0}};
    if (uqn_net_send(rp->net, to, b, len, NULL, &em)) test_fail(__FILE__, __LINE__, "%s: %s", rp->id.name, em.text);
}
