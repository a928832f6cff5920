/* Link resumption between two real net modules on loopback TCP
 * (docs/PROTOCOL.md, "Resumption"): after a first link (XX), a link closed
 * and dialed again resumes with the ticket it left; messages flow both
 * ways on it; a peer restarted (its tickets gone) is reached again with XX
 * on the same connection, and the ticket that XX leaves resumes the next. */
#include <unistd.h>

#include "tpeer.h"

static uqi_msg *msg_to(rawpeer *from, const char *to, const char *body)
{
    uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, body, strlen(body));
    m->id = ++from->next_id;
    snprintf(m->source.node, sizeof m->source.node, "%s", from->id.name);
    snprintf(m->source.process, sizeof m->source.process, "t");
    snprintf(m->target.node, sizeof m->target.node, "%s", to);
    snprintf(m->target.process, sizeof m->target.process, "t");
    return m;
}

static void say(rawpeer *from, rawpeer *to, const char *body)
{
    uqi_msg *m = msg_to(from, to->id.name, body);
    rp_send(from, to->id.name, m, false, 0);
    uqi_msg_free(m);
    uqi_msg *in = rp_wait(to, 5000);
    ASSERT(in != NULL);
    ASSERT(in->body_len == strlen(body) && memcmp(in->body, body, in->body_len) == 0);
    ASSERT(strcmp(in->source.node, from->id.name) == 0);
    uqi_msg_free(in);
}

/* The stats as of the net thread's next tick. */
static uqn_net_stats stats(rawpeer *rp)
{
    usleep(60000);
    uqn_net_stats s;
    uqn_net_get_stats(rp->net, &s);
    return s;
}

TEST_T(net_resume_reconnect_resumes_and_restarted_peer_falls_back, 60)
{
    rawpeer x, y;
    rp_init(&x, "x.node", 0);
    rp_init(&y, "y.node", 0);
    rp_start(&x, NULL, x.dir);
    rp_start(&y, NULL, x.dir);
    uqn_record rx, ry;
    uqn_net_own_record(x.net, &rx);
    uqn_net_own_record(y.net, &ry);
    uqn_dir *d = uqn_dir_new();
    ASSERT_EQ(uqn_dir_put(d, &rx, UQN_SRC_FILE, NULL), UQ_OK);
    ASSERT_EQ(uqn_dir_put(d, &ry, UQN_SRC_FILE, NULL), UQ_OK);
    ASSERT_EQ(uqn_dir_save(d, x.dir, NULL), UQ_OK);
    uqn_dir_free(d);

    say(&x, &y, "\"first contact\"");
    uqn_net_stats sx = stats(&x), sy = stats(&y);
    ASSERT_EQ(sx.links_up, 1);
    ASSERT_EQ(sx.links_resumed, 0);

    /* closed, dialed again: resumed, both ways */
    for (int i = 0; i < 3; i++) {
        uqn_net_drop(x.net, "y.node");
        say(&x, &y, "\"again\"");
        say(&y, &x, "\"and back\"");
        sx = stats(&x);
        sy = stats(&y);
        test_log("round %d: x links up %llu resumed %llu, y up %llu resumed %llu", i,
                 (unsigned long long)sx.links_up, (unsigned long long)sx.links_resumed,
                 (unsigned long long)sy.links_up, (unsigned long long)sy.links_resumed);
        ASSERT_EQ(sx.links_up, 2 + (uint64_t)i);
        ASSERT_EQ(sx.links_resumed, 1 + (uint64_t)i);
        ASSERT_EQ(sy.links_resumed, 1 + (uint64_t)i);
    }

    /* y restarted on the same address: its tickets are gone, x's attempt
     * is answered with XX on the same connection */
    char addr[128];
    snprintf(addr, sizeof addr, "%s", y.listen);
    rp_stop(&y);
    rp_start(&y, addr, x.dir);
    say(&x, &y, "\"after the restart\"");
    sy = stats(&y);
    ASSERT_EQ(sy.links_up, 1);
    ASSERT_EQ(sy.links_resumed, 0);
    sx = stats(&x);
    ASSERT_EQ(sx.links_resumed, 3);
    say(&y, &x, "\"answer after the restart\"");
    /* and that XX left tickets: the next reconnect resumes */
    uqn_net_drop(x.net, "y.node");
    say(&x, &y, "\"resumed again\"");
    sy = stats(&y);
    ASSERT_EQ(sy.links_resumed, 1);
    rp_fini(&x);
    rp_fini(&y);
}
