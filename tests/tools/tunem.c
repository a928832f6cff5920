/* tunem: a userspace netem between two network namespaces, for kernels
 * without sch_netem (the network tests use it when `tc qdisc ... netem` is
 * refused; docs/ARCHITECTURE.md, "Tests").
 *
 * It opens two TUN devices (IFF_TUN | IFF_NO_PI: one IP packet per read and
 * write), moves each into its namespace (`ip link set DEV netns NS`: a TUN
 * device keeps its file descriptor across the move), gives them
 * point-to-point addresses (a: A peer B, b: B peer A), and forwards every
 * packet read from one fd to the other through a delay queue. So the
 * kernels' real TCP sees real delay, jitter, loss, reordering, duplication
 * and a rate limit, and retransmits. Loss and jitter come from a seeded
 * PRNG (one stream per direction): a run is repeatable in what it draws.
 *
 *   tunem --ns-a NS --ns-b NS [--dev-a tua] [--dev-b tub]
 *         [--addr-a 10.231.0.1] [--addr-b 10.231.0.2] [--mtu 1500]
 *         [--delay MS] [--jitter MS] [--loss PCT] [--dup PCT] [--reorder PCT]
 *         [--rate MBIT] [--limit PKTS] [--seed N] [--no-stdin]
 *
 * The shaping applies to each direction (like one netem qdisc on each
 * side). Control: one command per line on stdin, each answered by a line
 * on stdout ("ok ..." or "error ..."):
 *   set [a2b|b2a|both] delay=MS jitter=MS loss=PCT dup=PCT reorder=PCT rate=MBIT
 *   cut                 drop every packet both ways (and what is queued): the cable is cut
 *   restore             forward again
 *   tamper a2b|b2a [MIN]  flip one byte in the middle of the TCP payload of the next
 *                       IPv4 TCP packet that way carrying at least MIN payload bytes
 *                       (default 1), fixing up the TCP checksum so the receiving kernel
 *                       accepts it: only the application can tell
 *   stats               print the counters
 *   quit                exit
 * End of stdin exits too (unless --no-stdin), as do SIGINT, SIGTERM and
 * SIGHUP. "ready" is printed once both devices are up; the counters are
 * printed at exit: forwarded, dropped (loss, cut, overflow of the bounded
 * queue, write errors), delayed, duplicated, reordered, tampered.
 *
 * Semantics as netem's: delay + uniform jitter in [-jitter, +jitter]
 * (packets leave in order of their due time, so jitter reorders, as
 * netem's tfifo does); reorder=P sends P% of packets at once, the rest
 * delayed; dup=P sends P% twice; rate=R serializes packets at R Mbit/s
 * before the delay; the queue holds at most --limit packets per direction
 * (default 1000, netem's), beyond which packets are dropped (counted). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_PKT 65536

typedef struct pkt {
    uint64_t due_ns, seq;
    uint32_t len;
    uint8_t data[];
} pkt;

typedef struct shaping {
    double delay_ms, jitter_ms, loss, dup, reorder, rate_mbit; /* percentages 0..100 */
} shaping;

typedef struct counters {
    uint64_t read, forwarded, bytes, delayed, duplicated, reordered, tampered;
    uint64_t lost, cut, overflow, errors;
} counters;

typedef struct dirn {
    const char *name;   /* "a2b" */
    int in, out;        /* read from in, write to out */
    shaping sh;
    uint64_t rng;
    uint64_t link_free_ns; /* rate: when the emulated wire is free again */
    pkt **heap;         /* min-heap on (due_ns, seq) */
    size_t n, cap;
    int tamper;         /* -1 off, else minimum TCP payload length */
    counters c;
} dirn;

static uint64_t seq_next;
static bool cut_all;
static size_t limit = 1000;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, seedable, good enough for drawing losses */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd01(uint64_t *s) { return (double)(rnd(s) >> 11) / 9007199254740992.0; }

static bool chance(uint64_t *s, double pct) { return pct > 0 && rnd01(s) * 100.0 < pct; }

static __attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tunem: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* Run `ip` with the given arguments (NULL-terminated); 0 on success. */
static int ip(const char *a0, ...)
{
    const char *argv[24] = {"ip", a0};
    int n = 2;
    va_list ap;
    va_start(ap, a0);
    const char *s;
    while (n < 23 && (s = va_arg(ap, const char *))) argv[n++] = s;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid;
    if (posix_spawnp(&pid, "ip", NULL, NULL, (char *const *)argv, environ) != 0) return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int tun_open(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("/dev/net/tun: %s", strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF %s: %s", name, strerror(errno));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Move dev into ns and configure it: local peer/32, mtu, up (and lo up). */
static void tun_place(const char *dev, const char *ns, const char *local, const char *peer, const char *mtu)
{
    if (ip("link", "set", "dev", dev, "netns", ns, NULL) != 0) die("cannot move %s into netns %s", dev, ns);
    if (ip("-n", ns, "addr", "add", local, "peer", peer, "dev", dev, NULL) != 0 ||
        ip("-n", ns, "link", "set", "dev", dev, "mtu", mtu, "up", NULL) != 0 ||
        ip("-n", ns, "link", "set", "dev", "lo", "up", NULL) != 0)
        die("cannot configure %s in netns %s", dev, ns);
}

/* ---- the delay queue ------------------------------------------------------ */
static bool before(const pkt *a, const pkt *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_push(dirn *d, pkt *p)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 256;
        d->heap = realloc(d->heap, d->cap * sizeof *d->heap);
        if (!d->heap) die("out of memory");
    }
    size_t i = d->n++;
    while (i > 0 && before(p, d->heap[(i - 1) / 2])) {
        d->heap[i] = d->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    d->heap[i] = p;
}

static pkt *heap_pop(dirn *d)
{
    pkt *top = d->heap[0], *last = d->heap[--d->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const pkt *mp = last;
        if (l < d->n && before(d->heap[l], mp)) m = l, mp = d->heap[l];
        if (r < d->n && before(d->heap[r], mp)) m = r;
        if (m == i) break;
        d->heap[i] = d->heap[m];
        i = m;
    }
    if (d->n) d->heap[i] = last;
    return top;
}

static void flush_cut(dirn *d)
{
    while (d->n) {
        free(heap_pop(d));
        d->c.cut++;
    }
}

/* ---- tampering ------------------------------------------------------------ */
static uint16_t csum_fold(uint32_t s)
{
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static uint32_t csum_add(uint32_t s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1) s += (uint32_t)p[n - 1] << 8;
    return s;
}

/* Flip a byte in the middle of the TCP payload of an IPv4 packet carrying
 * at least min bytes of it, and recompute the TCP checksum. */
static bool tamper(uint8_t *b, uint32_t len, int min)
{
    if (len < 20 || (b[0] >> 4) != 4 || b[9] != 6) return false;
    uint32_t ihl = (uint32_t)(b[0] & 15) * 4, tot = (uint32_t)b[2] << 8 | b[3];
    if (ihl < 20 || tot > len || tot < ihl + 20) return false;
    if ((b[6] & 0x3f) || b[7]) return false; /* a fragment */
    uint8_t *tcp = b + ihl;
    uint32_t tlen = tot - ihl, doff = (uint32_t)(tcp[12] >> 4) * 4;
    if (doff < 20 || doff > tlen) return false;
    uint32_t plen = tlen - doff;
    if (plen == 0 || plen < (uint32_t)(min > 0 ? min : 1)) return false;
    tcp[doff + plen / 2] ^= 0x5a;
    tcp[16] = tcp[17] = 0;
    uint32_t s = csum_add(0, b + 12, 8); /* pseudo-header: source, destination */
    s += 6 + tlen;
    s = csum_add(s, tcp, tlen);
    uint16_t c = csum_fold(s);
    tcp[16] = (uint8_t)(c >> 8);
    tcp[17] = (uint8_t)c;
    return true;
}

/* ---- forwarding ----------------------------------------------------------- */
static void enqueue(dirn *d, const uint8_t *buf, uint32_t len, uint64_t now)
{
    d->c.read++;
    if (cut_all) {
        d->c.cut++;
        return;
    }
    if (chance(&d->rng, d->sh.loss)) {
        d->c.lost++;
        return;
    }
    int copies = chance(&d->rng, d->sh.dup) ? 2 : 1;
    for (int k = 0; k < copies; k++) {
        if (d->n >= limit) {
            d->c.overflow++;
            continue;
        }
        pkt *p = malloc(sizeof *p + len);
        if (!p) die("out of memory");
        memcpy(p->data, buf, len);
        p->len = len;
        p->seq = seq_next++;
        if (k == 0 && d->tamper >= 0 && tamper(p->data, len, d->tamper)) {
            d->c.tampered++;
            d->tamper = -1;
            printf("tampered %s packet of %u bytes\n", d->name, len);
        }
        uint64_t t = now;
        if (d->sh.rate_mbit > 0) { /* serialize on the emulated wire */
            if (d->link_free_ns > t) t = d->link_free_ns;
            t += (uint64_t)((double)len * 8.0 * 1000.0 / d->sh.rate_mbit);
            d->link_free_ns = t;
        }
        if (k == 0 && chance(&d->rng, d->sh.reorder)) {
            d->c.reordered++; /* sent at once, ahead of the delayed ones */
        } else {
            double ms = d->sh.delay_ms;
            if (d->sh.jitter_ms > 0) ms += (rnd01(&d->rng) * 2.0 - 1.0) * d->sh.jitter_ms;
            if (ms > 0) {
                t += (uint64_t)(ms * 1e6);
                d->c.delayed++;
            }
        }
        if (k == 1) d->c.duplicated++;
        p->due_ns = t;
        heap_push(d, p);
    }
}

static void drain_in(dirn *d, uint8_t *buf)
{
    for (int i = 0; i < 64; i++) { /* a bounded batch: fair to the other direction */
        ssize_t r = read(d->in, buf, MAX_PKT);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) d->c.errors++;
            return;
        }
        if (r == 0) return;
        enqueue(d, buf, (uint32_t)r, now_ns());
    }
}

static void release(dirn *d, uint64_t now)
{
    while (d->n && d->heap[0]->due_ns <= now) {
        pkt *p = heap_pop(d);
        ssize_t w = write(d->out, p->data, p->len);
        if (w == (ssize_t)p->len) {
            d->c.forwarded++;
            d->c.bytes += p->len;
        } else {
            d->c.errors++; /* the device is down, or the kernel refused the packet */
        }
        free(p);
    }
}

static void print_stats(const dirn *d)
{
    const counters *c = &d->c;
    printf("%s: read %llu forwarded %llu (%llu bytes) dropped %llu (loss %llu, cut %llu, overflow %llu, errors %llu) "
           "delayed %llu duplicated %llu reordered %llu tampered %llu queued %zu\n",
           d->name, (unsigned long long)c->read, (unsigned long long)c->forwarded, (unsigned long long)c->bytes,
           (unsigned long long)(c->lost + c->cut + c->overflow + c->errors), (unsigned long long)c->lost,
           (unsigned long long)c->cut, (unsigned long long)c->overflow, (unsigned long long)c->errors,
           (unsigned long long)c->delayed, (unsigned long long)c->duplicated, (unsigned long long)c->reordered,
           (unsigned long long)c->tampered, d->n);
}

/* ---- options and commands ------------------------------------------------- */
static bool set_param(shaping *s, const char *key, const char *val)
{
    char *end;
    double v = strtod(val, &end);
    if (end == val || *end || v < 0) return false;
    if (strcmp(key, "delay") == 0) s->delay_ms = v;
    else if (strcmp(key, "jitter") == 0) s->jitter_ms = v;
    else if (strcmp(key, "loss") == 0 && v <= 100) s->loss = v;
    else if (strcmp(key, "dup") == 0 && v <= 100) s->dup = v;
    else if (strcmp(key, "reorder") == 0 && v <= 100) s->reorder = v;
    else if (strcmp(key, "rate") == 0) s->rate_mbit = v;
    else return false;
    return true;
}

static void describe(const dirn *d)
{
    printf(" %s: delay %gms jitter %gms loss %g%% dup %g%% reorder %g%% rate %s", d->name, d->sh.delay_ms,
           d->sh.jitter_ms, d->sh.loss, d->sh.dup, d->sh.reorder, d->sh.rate_mbit > 0 ? "" : "unlimited");
    if (d->sh.rate_mbit > 0) printf("%gmbit", d->sh.rate_mbit);
}

/* One control line; returns false on quit. */
static bool command(char *line, dirn *ab, dirn *ba)
{
    char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
    if (!w) return true;
    if (strcmp(w, "quit") == 0) return false;
    if (strcmp(w, "stats") == 0) {
        print_stats(ab);
        print_stats(ba);
        printf("ok stats\n");
    } else if (strcmp(w, "cut") == 0) {
        cut_all = true;
        flush_cut(ab);
        flush_cut(ba);
        printf("ok cut\n");
    } else if (strcmp(w, "restore") == 0) {
        cut_all = false;
        printf("ok restore\n");
    } else if (strcmp(w, "tamper") == 0) {
        char *dir = strtok_r(NULL, " \t\r\n", &save), *min = strtok_r(NULL, " \t\r\n", &save);
        dirn *d = dir && strcmp(dir, "a2b") == 0 ? ab : dir && strcmp(dir, "b2a") == 0 ? ba : NULL;
        if (!d) printf("error tamper a2b|b2a [MIN]\n");
        else {
            d->tamper = min ? atoi(min) : 1;
            if (d->tamper < 1) d->tamper = 1;
            printf("ok tamper %s armed\n", d->name);
        }
    } else if (strcmp(w, "set") == 0) {
        dirn *ds[2] = {ab, ba};
        int nd = 2;
        shaping s[2] = {ab->sh, ba->sh};
        char *a;
        bool bad = false;
        while ((a = strtok_r(NULL, " \t\r\n", &save))) {
            if (strcmp(a, "a2b") == 0) ds[0] = ab, nd = 1, s[0] = ab->sh;
            else if (strcmp(a, "b2a") == 0) ds[0] = ba, nd = 1, s[0] = ba->sh;
            else if (strcmp(a, "both") == 0) ds[0] = ab, ds[1] = ba, nd = 2, s[0] = ab->sh, s[1] = ba->sh;
            else {
                char *eq = strchr(a, '=');
                if (!eq) { bad = true; break; }
                *eq = '\0';
                for (int i = 0; i < nd; i++) bad |= !set_param(&s[i], a, eq + 1);
            }
        }
        if (bad) printf("error set [a2b|b2a|both] delay=MS jitter=MS loss=PCT dup=PCT reorder=PCT rate=MBIT\n");
        else {
            printf("ok");
            for (int i = 0; i < nd; i++) {
                ds[i]->sh = s[i];
                describe(ds[i]);
            }
            printf("\n");
        }
    } else {
        printf("error unknown command %s (set, cut, restore, tamper, stats, quit)\n", w);
    }
    return true;
}

static void usage(void)
{
    fprintf(stderr, "usage: tunem --ns-a NS --ns-b NS [--dev-a DEV] [--dev-b DEV] [--addr-a IP] [--addr-b IP]\n"
                    "             [--mtu N] [--delay MS] [--jitter MS] [--loss PCT] [--dup PCT] [--reorder PCT]\n"
                    "             [--rate MBIT] [--limit PKTS] [--seed N] [--no-stdin]\n"
                    "stdin commands: set [a2b|b2a|both] k=v..., cut, restore, tamper a2b|b2a [MIN], stats, quit\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *ns_a = NULL, *ns_b = NULL, *dev_a = "tunema", *dev_b = "tunemb";
    const char *addr_a = "10.231.0.1", *addr_b = "10.231.0.2", *mtu = "1500";
    shaping sh = {0};
    uint64_t seed = 1;
    bool use_stdin = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-stdin") == 0) { use_stdin = false; continue; }
        if (!v) usage();
        i++;
        if (strcmp(a, "--ns-a") == 0) ns_a = v;
        else if (strcmp(a, "--ns-b") == 0) ns_b = v;
        else if (strcmp(a, "--dev-a") == 0) dev_a = v;
        else if (strcmp(a, "--dev-b") == 0) dev_b = v;
        else if (strcmp(a, "--addr-a") == 0) addr_a = v;
        else if (strcmp(a, "--addr-b") == 0) addr_b = v;
        else if (strcmp(a, "--mtu") == 0) mtu = v;
        else if (strcmp(a, "--seed") == 0) seed = strtoull(v, NULL, 0);
        else if (strcmp(a, "--limit") == 0) limit = (size_t)strtoul(v, NULL, 0);
        else if (strncmp(a, "--", 2) != 0 || !set_param(&sh, a + 2, v)) usage();
    }
    if (!ns_a || !ns_b || limit == 0) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    prctl(PR_SET_TIMERSLACK, 1000UL); /* wake within 1 us of a packet's due time, not the default 50 us */

    /* signals as events: a clean exit that prints the counters */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGHUP);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("signalfd: %s", strerror(errno));

    int fa = tun_open(dev_a), fb = tun_open(dev_b);
    char la[64], lb[64];
    snprintf(la, sizeof la, "%s/32", addr_a);
    snprintf(lb, sizeof lb, "%s/32", addr_b);
    tun_place(dev_a, ns_a, la, addr_b, mtu);
    tun_place(dev_b, ns_b, lb, addr_a, mtu);

    dirn ab = {.name = "a2b", .in = fa, .out = fb, .sh = sh, .rng = seed * 2 + 1, .tamper = -1};
    dirn ba = {.name = "b2a", .in = fb, .out = fa, .sh = sh, .rng = seed * 2 + 2, .tamper = -1};
    printf("ready %s/%s %s <-> %s/%s %s;", ns_a, dev_a, addr_a, ns_b, dev_b, addr_b);
    describe(&ab);
    describe(&ba);
    printf("; limit %zu packets, seed %llu\n", limit, (unsigned long long)seed);

    uint8_t *buf = malloc(MAX_PKT);
    char line[512];
    size_t have = 0;
    if (!buf) die("out of memory");
    bool run = true;
    const char *why = "quit";
    while (run) {
        uint64_t now = now_ns();
        release(&ab, now);
        release(&ba, now);
        uint64_t next = UINT64_MAX;
        if (ab.n) next = ab.heap[0]->due_ns;
        if (ba.n && ba.heap[0]->due_ns < next) next = ba.heap[0]->due_ns;
        struct timespec ts, *tp = NULL;
        if (next != UINT64_MAX) {
            uint64_t w = next > now ? next - now : 0;
            ts.tv_sec = (time_t)(w / 1000000000ull);
            ts.tv_nsec = (long)(w % 1000000000ull);
            tp = &ts;
        }
        struct pollfd pf[4] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}, {sfd, POLLIN, 0}, {use_stdin ? 0 : -1, POLLIN, 0}};
        int r = ppoll(pf, 4, tp, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("poll: %s", strerror(errno));
        }
        if (pf[0].revents & POLLIN) drain_in(&ab, buf);
        if (pf[1].revents & POLLIN) drain_in(&ba, buf);
        if ((pf[0].revents | pf[1].revents) & (POLLERR | POLLNVAL)) {
            why = "a device went away";
            run = false;
        }
        if (pf[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                why = strsignal((int)si.ssi_signo);
                run = false;
            }
        }
        if (pf[3].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(0, line + have, sizeof line - 1 - have);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) continue;
                why = "end of the control input";
                run = false;
            } else {
                have += (size_t)n;
                line[have] = '\0';
                char *nl;
                while (run && (nl = strchr(line, '\n'))) {
                    *nl = '\0';
                    run = command(line, &ab, &ba);
                    size_t used = (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, have - used + 1);
                    have -= used;
                }
                if (have == sizeof line - 1) have = 0; /* an overlong line: dropped */
            }
        }
    }
    printf("exit: %s\n", why);
    print_stats(&ab);
    print_stats(&ba);
    while (ab.n) free(heap_pop(&ab));
    while (ba.n) free(heap_pop(&ba));
    free(ab.heap);
    free(ba.heap);
    free(buf);
    close(fa);
    close(fb);
    return 0;
}
