/* Two links over a real TCP connection on loopback: the handshake, then
 * 10 MB each way at once (one thread per node, non-blocking sockets). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "integ/tnet.h"

#define TOTAL (10u << 20)
#define CHUNK (1u << 20) /* messages of 1 MiB, and small ones between them */

typedef struct node {
    const char *name, *peer;
    bool initiator;
    int fd;
    uqn_identity id;
    uqn_dir *dir;
    uint8_t seed;                 /* what this node sends: a keyed stream */
    uint8_t sent_hash[32], got_hash[32];
    crypto_generichash_state got;
    size_t got_bytes, got_msgs, small_msgs;
    uq_err err;
    char errtext[512];
} node;

static void fill(uint8_t seed, size_t off, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((off + i) * 131 + seed + ((off + i) >> 12));
}

static uq_err on_msg(void *arg, const uint8_t *msg, size_t len)
{
    node *nd = arg;
    if (len < 16 && len > 0 && msg[0] == 's') {
        nd->small_msgs++;
    } else {
        crypto_generichash_update(&nd->got, msg, len);
        nd->got_bytes += len;
        nd->got_msgs++;
    }
    return UQ_OK;
}

static void *run_node(void *arg)
{
    node *nd = arg;
    uq_errmsg em = {{0}};
    crypto_generichash_init(&nd->got, NULL, 0, 32);
    uqn_link_cfg cfg = {.id = &nd->id, .initiator = nd->initiator,
                        .expect_name = nd->initiator ? nd->peer : NULL, .lookup = uqn_dir_lookup,
                        .lookup_arg = nd->dir, .deliver = on_msg, .deliver_arg = nd};
    uqn_link *l;
    if ((nd->err = uqn_link_new(&cfg, &l, &em))) goto out;
    crypto_generichash_state sent;
    crypto_generichash_init(&sent, NULL, 0, 32);
    uint8_t *buf = malloc(CHUNK), rbuf[65536];
    size_t queued = 0;
    bool eof = false;
    uint64_t deadline = uqi_now_ns() + 50ull * 1000000000ull;
    for (;;) {
        /* keep about two messages queued: a sender need not hold all 10 MB */
        while (queued < TOTAL && uqn_link_queued(l) < 2 * CHUNK) {
            fill(nd->seed, queued, buf, CHUNK);
            crypto_generichash_update(&sent, buf, CHUNK);
            if ((nd->err = uqn_link_send(l, buf, CHUNK, &em))) goto done;
            if ((nd->err = uqn_link_send(l, "small", 5, &em))) goto done;
            queued += CHUNK;
        }
        const uint8_t *p;
        size_t n = uqn_link_output(l, &p);
        if (nd->got_bytes == TOTAL && nd->small_msgs == TOTAL / CHUNK && n == 0 && queued == TOTAL &&
            uqn_link_queued(l) == 0)
            break;
        if (uqi_now_ns() > deadline) {
            nd->err = uqi_errf(&em, UQ_ETIMEDOUT, "%s: stalled (got %zu bytes)", nd->name, nd->got_bytes);
            goto done;
        }
        struct pollfd pf = {.fd = nd->fd, .events = (short)(POLLIN | (n ? POLLOUT : 0))};
        if (poll(&pf, 1, 1000) < 0 && errno != EINTR) {
            nd->err = uqi_errf(&em, UQ_EIO, "poll: %s", strerror(errno));
            goto done;
        }
        if (n && (pf.revents & POLLOUT)) {
            ssize_t w = send(nd->fd, p, n, MSG_NOSIGNAL);
            if (w > 0) uqn_link_output_done(l, (size_t)w);
            else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                nd->err = uqi_errf(&em, UQ_EIO, "send: %s", strerror(errno));
                goto done;
            }
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(nd->fd, rbuf, sizeof rbuf, 0);
            if (r > 0) {
                if ((nd->err = uqn_link_input(l, rbuf, (size_t)r, &em))) goto done;
            } else if (r == 0) {
                eof = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                nd->err = uqi_errf(&em, UQ_EIO, "recv: %s", strerror(errno));
                goto done;
            }
            if (eof && (nd->got_bytes < TOTAL || nd->small_msgs < TOTAL / CHUNK)) {
                nd->err = uqi_errf(&em, UQ_ECLOSED, "%s: the peer closed early", nd->name);
                goto done;
            }
        }
    }
    crypto_generichash_final(&sent, nd->sent_hash, 32);
    crypto_generichash_final(&nd->got, nd->got_hash, 32);
    if (!uqn_link_established(l) || strcmp(uqn_link_peer(l)->name, nd->peer) != 0)
        nd->err = uqi_errf(&em, UQ_EINVAL, "%s: wrong peer", nd->name);
done:
    free(buf);
    uqn_link_free(l);
    shutdown(nd->fd, SHUT_WR);
out:
    snprintf(nd->errtext, sizeof nd->errtext, "%s", em.text);
    return NULL;
}

TEST_T(net_tcp_loopback_10mb_both_ways, 90)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(ls >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    ASSERT_EQ(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(listen(ls, 1), 0);
    ASSERT_EQ(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    int s = accept(ls, NULL, NULL);
    ASSERT(s >= 0);
    close(ls);
    fcntl(c, F_SETFL, O_NONBLOCK);
    fcntl(s, F_SETFL, O_NONBLOCK);

    node a = {.name = "alice.dev", .peer = "bob.dev", .initiator = true, .fd = c, .seed = 1};
    node b = {.name = "bob.dev", .peer = "alice.dev", .initiator = false, .fd = s, .seed = 2};
    tn_identity(a.name, 0, &a.id);
    tn_identity(b.name, 0, &b.id);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sa.sin_port));
    a.dir = uqn_dir_new();
    tn_dir_add(a.dir, &a.id, NULL);
    tn_dir_add(a.dir, &b.id, addr);
    b.dir = uqn_dir_new();
    tn_dir_add(b.dir, &a.id, NULL);
    tn_dir_add(b.dir, &b.id, addr);

    uint64_t t0 = uqi_now_ns();
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_node, &a);
    pthread_create(&tb, NULL, run_node, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    double secs = (double)(uqi_now_ns() - t0) / 1e9;
    if (a.err) test_fail(__FILE__, __LINE__, "alice: %s: %s", uq_strerror(a.err), a.errtext);
    if (b.err) test_fail(__FILE__, __LINE__, "bob: %s: %s", uq_strerror(b.err), b.errtext);
    ASSERT_EQ(a.got_bytes, TOTAL);
    ASSERT_EQ(b.got_bytes, TOTAL);
    ASSERT_EQ(a.got_msgs, TOTAL / CHUNK);
    ASSERT_EQ(a.small_msgs, TOTAL / CHUNK);
    ASSERT(memcmp(a.got_hash, b.sent_hash, 32) == 0);
    ASSERT(memcmp(b.got_hash, a.sent_hash, 32) == 0);
    test_log("2 x 10 MiB over loopback TCP in %.2f s", secs);
    close(c);
    close(s);
    uqn_dir_free(a.dir);
    uqn_dir_free(b.dir);
}
