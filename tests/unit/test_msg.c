/* Kernel message basics: addresses, shared payloads, bounded mailboxes. */
#include <pthread.h>
#include <sched.h>

#include "kernel/msg.h"
#include "runner.h"

TEST(addr_parse_and_validate)
{
    uqi_addr a;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_addr_parse("alice.dev@chat-app", NULL, &a, &em), UQ_OK);
    ASSERT(strcmp(a.node, "alice.dev") == 0 && strcmp(a.process, "chat-app") == 0);
    ASSERT_EQ(uqi_addr_parse("echo", "me", &a, &em), UQ_OK);
    ASSERT(strcmp(a.node, "me") == 0 && strcmp(a.process, "echo") == 0);
    ASSERT_EQ(uqi_addr_parse("echo", NULL, &a, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "expected node@process");
    ASSERT_EQ(uqi_addr_parse("me@Echo", NULL, &a, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "process id must be");
    ASSERT_EQ(uqi_addr_parse("me@a.b", NULL, &a, &em), UQ_EINVAL);
    ASSERT_EQ(uqi_addr_parse("@x", NULL, &a, &em), UQ_EINVAL);
    ASSERT_EQ(uqi_addr_parse("no de@x", NULL, &a, &em), UQ_EINVAL);
    ASSERT_EQ(uqi_addr_parse("me@", NULL, &a, &em), UQ_EINVAL);
    char longname[80];
    memset(longname, 'a', 70);
    longname[70] = '\0';
    ASSERT_EQ(uqi_addr_parse(longname, "me", &a, &em), UQ_EINVAL);
    char uuid[37];
    uqi_uuid_new(uuid);
    ASSERT_EQ(strlen(uuid), 36);
    ASSERT(uqi_process_name_valid(uuid));
    char buf[160];
    ASSERT_EQ(uqi_addr_parse(uuid, "me", &a, &em), UQ_OK);
    uqi_addr_format(&a, buf, sizeof buf);
    ASSERT_EQ(strncmp(buf, "me@", 3), 0);
}

TEST(payload_is_shared_by_reference)
{
    uqi_payload *p = uqi_payload_new("bytes", 5, "text/plain");
    uqi_msg *m1 = uqi_msg_new(UQI_MSG_REQUEST, "{}", 2);
    uqi_msg *m2 = uqi_msg_new(UQI_MSG_REQUEST, "{}", 2);
    m1->payload = p;
    m2->payload = uqi_payload_hold(p); /* forwarded with inherit: no copy */
    ASSERT(m1->payload == m2->payload);
    ASSERT_EQ(atomic_load(&p->refs), 2);
    uqi_msg_free(m1);
    ASSERT_EQ(atomic_load(&p->refs), 1);
    ASSERT_EQ(memcmp(m2->payload->data, "bytes", 5), 0);
    ASSERT(strcmp(m2->payload->mime, "text/plain") == 0);
    uqi_msg_free(m2);
}

TEST(mailbox_is_bounded_and_refuses_not_drops)
{
    uqi_mailbox mb;
    uqi_mailbox_init(&mb, 3);
    uqi_msg *ms[4];
    for (int i = 0; i < 4; i++) {
        ms[i] = uqi_msg_new(UQI_MSG_REQUEST, "x", 1);
        ms[i]->id = (uint64_t)i;
    }
    for (int i = 0; i < 3; i++) ASSERT_EQ(uqi_mailbox_push(&mb, ms[i]), UQ_OK);
    ASSERT_EQ(uqi_mailbox_push(&mb, ms[3]), UQ_ELIMIT); /* the sender keeps it */
    ASSERT_EQ(mb.refused, 1);
    ASSERT_EQ(uqi_mailbox_depth(&mb), 3);
    for (int i = 0; i < 3; i++) {
        uqi_msg *m = uqi_mailbox_pop(&mb);
        ASSERT(m != NULL);
        ASSERT_EQ(m->id, i); /* FIFO */
        uqi_msg_free(m);
    }
    ASSERT(uqi_mailbox_pop(&mb) == NULL);
    ASSERT_EQ(uqi_mailbox_push(&mb, ms[3]), UQ_OK);
    uqi_mailbox_fini(&mb); /* frees what is still queued */
}

typedef struct { uqi_mailbox *mb; int n; } prod_arg;

static void *producer(void *arg)
{
    prod_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        uqi_msg *m = uqi_msg_new(UQI_MSG_REQUEST, &i, sizeof i);
        while (uqi_mailbox_push(a->mb, m) == UQ_ELIMIT) sched_yield();
    }
    return NULL;
}

TEST(mailbox_concurrent_producers_lose_nothing)
{
    uqi_mailbox mb;
    uqi_mailbox_init(&mb, 64);
    pthread_t th[4];
    prod_arg a = {&mb, 20000};
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, producer, &a);
    int got = 0;
    long sum = 0;
    while (got < 4 * a.n) {
        uqi_msg *m = uqi_mailbox_pop(&mb);
        if (!m) { sched_yield(); continue; }
        int v;
        memcpy(&v, m->body, sizeof v);
        sum += v;
        got++;
        uqi_msg_free(m);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(sum, 4L * (20000L * 19999L / 2));
    ASSERT(mb.refused > 0); /* backpressure happened and nothing was lost */
    test_log("%llu pushes refused under pressure, all retried", (unsigned long long)mb.refused);
    uqi_mailbox_fini(&mb);
}
