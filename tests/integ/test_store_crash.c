/* "An acknowledged state write or file write survives kill -9 of the node
 * at any instant, and the store never ends up unreadable." (issue 5)
 *
 * The crash loop: a child does heavy concurrent writes through the store
 * (blocking and async state writes, file appends, file replaces) and tells
 * the parent over a pipe about each write once it is acknowledged; the
 * parent kill -9s it at a random moment (5-60 ms), reopens the store and
 * checks every acknowledged write is there and intact; at the end it checks
 * every round again. UQ_CRASH_ITERS sets the number of rounds (120). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runner.h"
#include "store/files.h"
#include "util/util.h"

enum { STATE_SYNC_THREADS = 3, STATE_ASYNC_THREAD = STATE_SYNC_THREADS, STATE_KEYS = STATE_SYNC_THREADS + 1 };
enum { ASYNC_IN_FLIGHT = 32 };

/* One report: a write the child saw acknowledged. */
typedef struct report {
    char kind;      /* 'S' state key t at seq; 'A' append seq ending at off+len; 'W' replace at version seq */
    uint32_t t, seq;
    uint64_t off;
    uint32_t len;
} report;

/* What the parent knows was acknowledged, per round. */
typedef struct round {
    uint32_t state_seq[STATE_KEYS];   /* 0: none acknowledged */
    uint32_t appends;                 /* highest acknowledged append seq */
    uint64_t append_end;              /* its end offset */
    uint32_t doc_version;
} round;

/* ---- deterministic content -------------------------------------------------- */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
    uint64_t x = mix(seed);
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) x = mix(x + i);
        b[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

static uint64_t seed_of(char kind, uint32_t iter, uint32_t t, uint32_t seq)
{
    return ((uint64_t)(uint8_t)kind << 56) ^ ((uint64_t)iter << 40) ^ ((uint64_t)t << 32) ^ seq;
}

/* State value: 4-byte seq then filler, 16..2063 bytes. */
static size_t state_value(uint32_t iter, uint32_t t, uint32_t seq, uint8_t *b)
{
    size_t n = 16 + mix(seed_of('s', iter, t, seq)) % 2048;
    fill(b, n, seed_of('S', iter, t, seq));
    memcpy(b, &seq, 4);
    return n;
}

static size_t append_len(uint32_t iter, uint32_t seq) { return 1 + mix(seed_of('a', iter, 0, seq)) % 3000; }

static size_t doc_value(uint32_t iter, uint32_t v, uint8_t *b)
{
    size_t n = 8 + mix(seed_of('d', iter, 0, v)) % 65536;
    fill(b, n, seed_of('D', iter, 0, v));
    memcpy(b, &v, 4);
    return n;
}

/* ---- the child ---------------------------------------------------------------- */
typedef struct child {
    uqs_store *s;
    uqs_files *fs;
    uint32_t iter;
    int fd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_flight;
} child;

static void say(child *c, report r)
{
    pthread_mutex_lock(&c->mu);
    ssize_t w = write(c->fd, &r, sizeof r); /* < PIPE_BUF: all or nothing */
    pthread_mutex_unlock(&c->mu);
    if (w != (ssize_t)sizeof r) _exit(3);
}

static void child_die(const char *what, const uq_errmsg *em)
{
    fprintf(stderr, "crash-loop child: %s: %s\n", what, em->text);
    _exit(2);
}

typedef struct {
    child *c;
    uint32_t t;
} targ;

static void *state_sync(void *p)
{
    targ *a = p;
    char key[32];
    snprintf(key, sizeof key, "s%u-%u", a->c->iter, a->t);
    uint8_t buf[4096];
    for (uint32_t seq = 1;; seq++) {
        size_t n = state_value(a->c->iter, a->t, seq, buf);
        uq_errmsg em;
        if (uqs_state_set(a->c->s, key, buf, n, &em)) child_die("state_set", &em);
        say(a->c, (report){'S', a->t, seq, 0, 0});
    }
    return NULL;
}

typedef struct {
    child *c;
    uint32_t seq;
} async_ack;

static void async_done(void *arg, uq_err err, const uq_errmsg *em)
{
    async_ack *a = arg;
    if (err) child_die("state_set_async", em);
    say(a->c, (report){'S', STATE_ASYNC_THREAD, a->seq, 0, 0});
    pthread_mutex_lock(&a->c->mu);
    a->c->in_flight--;
    pthread_cond_signal(&a->c->cv);
    pthread_mutex_unlock(&a->c->mu);
    free(a);
}

static void *state_async(void *p)
{
    child *c = p;
    char key[32];
    snprintf(key, sizeof key, "s%u-%u", c->iter, STATE_ASYNC_THREAD);
    uint8_t buf[4096];
    for (uint32_t seq = 1;; seq++) {
        pthread_mutex_lock(&c->mu);
        while (c->in_flight >= ASYNC_IN_FLIGHT) pthread_cond_wait(&c->cv, &c->mu);
        c->in_flight++;
        pthread_mutex_unlock(&c->mu);
        size_t n = state_value(c->iter, STATE_ASYNC_THREAD, seq, buf);
        async_ack *a = uqi_xmalloc(sizeof *a);
        *a = (async_ack){c, seq};
        uq_errmsg em;
        if (uqs_state_set_async(c->s, key, buf, n, async_done, a, &em)) child_die("state_set_async", &em);
    }
    return NULL;
}

static void *appender(void *p)
{
    child *c = p;
    char name[32];
    snprintf(name, sizeof name, "log-%u", c->iter);
    uqs_handle h;
    uq_errmsg em;
    if (uqs_file_create(c->fs, "crash", name, NULL, 0, &h, &em)) child_die("create log", &em);
    uint8_t buf[4096];
    uint64_t off = 0;
    for (uint32_t seq = 1;; seq++) {
        size_t n = append_len(c->iter, seq);
        fill(buf, n, seed_of('A', c->iter, 0, seq));
        if (uqs_file_append(c->fs, h, buf, n, &em)) child_die("append", &em);
        say(c, (report){'A', 0, seq, off, (uint32_t)n});
        off += n;
    }
    return NULL;
}

static void *replacer(void *p)
{
    child *c = p;
    char name[32];
    snprintf(name, sizeof name, "doc-%u", c->iter);
    uint8_t *buf = uqi_xmalloc(70000);
    uqs_handle h;
    uq_errmsg em;
    size_t n = doc_value(c->iter, 1, buf);
    if (uqs_file_create(c->fs, "crash", name, buf, n, &h, &em)) child_die("create doc", &em);
    say(c, (report){'W', 0, 1, 0, 0});
    for (uint32_t v = 2;; v++) {
        n = doc_value(c->iter, v, buf);
        if (uqs_file_write(c->fs, h, buf, n, &em)) child_die("replace", &em);
        say(c, (report){'W', 0, v, 0, 0});
    }
    return NULL;
}

static void run_child(const char *home, uint32_t iter, int fd)
{
    child c = {.iter = iter, .fd = fd};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    uq_errmsg em;
    if (uqs_open(home, NULL, &c.s, &em)) child_die("open", &em);
    if (uqs_files_open(c.s, home, &c.fs, &em)) child_die("files_open", &em);
    pthread_t th;
    targ ta[STATE_SYNC_THREADS];
    for (uint32_t t = 0; t < STATE_SYNC_THREADS; t++) {
        ta[t] = (targ){&c, t};
        pthread_create(&th, NULL, state_sync, &ta[t]);
    }
    pthread_create(&th, NULL, state_async, &c);
    pthread_create(&th, NULL, appender, &c);
    pthread_create(&th, NULL, replacer, &c);
    for (;;) pause(); /* until kill -9 */
}

/* ---- the parent ----------------------------------------------------------------- */
static void check_round(uqs_store *s, uqs_files *fs, uint32_t iter, const round *r, uint64_t *acked_total)
{
    uq_errmsg em = {{0}};
    uint8_t want[70000];
    for (uint32_t t = 0; t < STATE_KEYS; t++) {
        char key[32];
        snprintf(key, sizeof key, "s%u-%u", iter, t);
        uint8_t *v;
        size_t n;
        uq_err e = uqs_state_get(s, key, &v, &n, &em);
        if (r->state_seq[t] == 0 && e == UQ_ENOENT) continue;
        if (e) test_fail(__FILE__, __LINE__, "round %u: state %s acknowledged at seq %u: %s", iter, key,
                         r->state_seq[t], em.text);
        uint32_t seq;
        ASSERT(n >= 4);
        memcpy(&seq, v, 4);
        if (seq < r->state_seq[t])
            test_fail(__FILE__, __LINE__, "round %u: state %s is at seq %u, but seq %u was acknowledged", iter, key,
                      seq, r->state_seq[t]);
        size_t wn = state_value(iter, t, seq, want);
        if (wn != n || memcmp(v, want, n) != 0)
            test_fail(__FILE__, __LINE__, "round %u: state %s at seq %u is damaged", iter, key, seq);
        free(v);
        *acked_total += r->state_seq[t];
    }
    /* The log: a whole number of appends 1..k, k >= the acknowledged one. */
    char name[32];
    snprintf(name, sizeof name, "log-%u", iter);
    uqs_handle h;
    uq_err e = uqs_file_open(fs, "crash", name, &h, &em);
    if (e == UQ_ENOENT && r->appends == 0) goto doc;
    if (e) test_fail(__FILE__, __LINE__, "round %u: log: %s", iter, em.text);
    uint8_t *b;
    size_t n;
    if (uqs_file_read(fs, h, &b, &n, &em)) test_fail(__FILE__, __LINE__, "round %u: read log: %s", iter, em.text);
    if (n < r->append_end)
        test_fail(__FILE__, __LINE__, "round %u: log has %zu bytes, %llu were acknowledged", iter, n,
                  (unsigned long long)r->append_end);
    size_t off = 0;
    uint32_t seq = 1;
    for (; off < n; seq++) {
        size_t len = append_len(iter, seq);
        if (off + len > n)
            test_fail(__FILE__, __LINE__, "round %u: log ends inside append %u (a partial append is visible)",
                      iter, seq);
        fill(want, len, seed_of('A', iter, 0, seq));
        if (memcmp(b + off, want, len) != 0)
            test_fail(__FILE__, __LINE__, "round %u: append %u at %zu is damaged", iter, seq, off);
        off += len;
    }
    if (seq - 1 < r->appends)
        test_fail(__FILE__, __LINE__, "round %u: log has %u appends, %u were acknowledged", iter, seq - 1, r->appends);
    *acked_total += r->appends;
    free(b);
doc:
    snprintf(name, sizeof name, "doc-%u", iter);
    e = uqs_file_open(fs, "crash", name, &h, &em);
    if (e == UQ_ENOENT && r->doc_version == 0) return;
    if (e) test_fail(__FILE__, __LINE__, "round %u: doc: %s", iter, em.text);
    if (uqs_file_read(fs, h, &b, &n, &em)) test_fail(__FILE__, __LINE__, "round %u: read doc: %s", iter, em.text);
    uint32_t v;
    ASSERT(n >= 4);
    memcpy(&v, b, 4);
    if (v < r->doc_version)
        test_fail(__FILE__, __LINE__, "round %u: doc at version %u, %u was acknowledged", iter, v, r->doc_version);
    size_t wn = doc_value(iter, v, want);
    if (wn != n || memcmp(b, want, n) != 0)
        test_fail(__FILE__, __LINE__, "round %u: doc version %u is damaged", iter, v);
    *acked_total += r->doc_version;
    free(b);
}

static void take(round *r, const report *rep)
{
    switch (rep->kind) {
    case 'S':
        if (rep->t < STATE_KEYS && rep->seq > r->state_seq[rep->t]) r->state_seq[rep->t] = rep->seq;
        break;
    case 'A':
        if (rep->seq > r->appends) {
            r->appends = rep->seq;
            r->append_end = rep->off + rep->len;
        }
        break;
    case 'W':
        if (rep->seq > r->doc_version) r->doc_version = rep->seq;
        break;
    }
}

static uint64_t now_ms(void) { return uqi_now_ns() / 1000000; }

TEST_T(store_crash_loop_kill9_keeps_every_acknowledged_write, 300)
{
    const char *home = tb_tmpdir();
    const char *env = getenv("UQ_CRASH_ITERS");
    uint32_t iters = env && atoi(env) > 0 ? (uint32_t)atoi(env) : 120;
    round *rounds = uqi_xcalloc(iters, sizeof *rounds);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    uint64_t acks = 0, t0 = now_ms();
    for (uint32_t iter = 0; iter < iters; iter++) {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            run_child(home, iter, p[1]);
        }
        close(p[1]);
        uint64_t deadline = now_ms() + 5 + (uint64_t)(rand() % 56);
        report rep;
        size_t have = 0;
        bool killed = false;
        for (;;) {
            uint64_t now = now_ms();
            if (!killed && now >= deadline) {
                kill(pid, SIGKILL);
                killed = true;
            }
            struct pollfd pf = {p[0], POLLIN, 0};
            int pr = poll(&pf, 1, killed ? 1000 : (int)(deadline - now));
            if (pr <= 0) continue;
            ssize_t r = read(p[0], (uint8_t *)&rep + have, sizeof rep - have);
            if (r <= 0) break; /* EOF: the child is gone */
            have += (size_t)r;
            if (have == sizeof rep) {
                take(&rounds[iter], &rep);
                acks++;
                have = 0;
            }
        }
        close(p[0]);
        int st;
        ASSERT_EQ(waitpid(pid, &st, 0), pid);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            test_fail(__FILE__, __LINE__, "round %u: the child ended by itself (status 0x%x)", iter, st);
        /* Reopen: it must open, and hold everything acknowledged. */
        uqs_store *s;
        uqs_files *fs;
        uq_errmsg em = {{0}};
        if (uqs_open(home, NULL, &s, &em)) test_fail(__FILE__, __LINE__, "round %u: reopen: %s", iter, em.text);
        if (uqs_files_open(s, home, &fs, &em)) test_fail(__FILE__, __LINE__, "round %u: files: %s", iter, em.text);
        uint64_t unused = 0;
        check_round(s, fs, iter, &rounds[iter], &unused);
        uqs_files_close(fs);
        uqs_close(s);
    }
    /* Nothing acknowledged in an earlier round was lost later. */
    uqs_store *s;
    uqs_files *fs;
    uq_errmsg em = {{0}};
    if (uqs_open(home, NULL, &s, &em)) test_fail(__FILE__, __LINE__, "final reopen: %s", em.text);
    if (uqs_files_open(s, home, &fs, &em)) test_fail(__FILE__, __LINE__, "final files: %s", em.text);
    uint64_t checked = 0;
    for (uint32_t iter = 0; iter < iters; iter++) check_round(s, fs, iter, &rounds[iter], &checked);
    uqs_files_close(fs);
    uqs_close(s);
    test_log("%u kills in %.1f s, %llu acknowledged writes reported, all present and intact", iters,
             (double)(now_ms() - t0) / 1000, (unsigned long long)acks);
    ASSERT(acks >= iters); /* the loop did write (about dozens per round) */
    free(rounds);
}
