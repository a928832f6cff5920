/* Two network namespaces and an emulated link between them: netem on a
 * veth pair, or tunem over TUN (tnetns.h). */
#define _GNU_SOURCE
#include "tnetns.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"
#include "tboot.h"
#include "util/util.h"

int tns_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

void tns_enter(const char *ns)
{
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) test_fail(__FILE__, __LINE__, "cannot enter netns %s: %s", ns, strerror(errno));
    close(fd);
}

/* ---- tunem's output, line by line ---------------------------------------- */
/* The next line of tunem's output (NUL-terminated, valid until the next
 * call), or NULL after ms without one or at its end. */
static char *tunem_line(tns *t, int ms)
{
    static char line[sizeof t->out];
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        char *nl = memchr(t->out, '\n', t->have);
        if (nl) {
            size_t n = (size_t)(nl - t->out);
            memcpy(line, t->out, n);
            line[n] = '\0';
            memmove(t->out, nl + 1, t->have - n - 1);
            t->have -= n + 1;
            if (strncmp(line, "tampered ", 9) == 0) {
                t->tampered++;
                test_log("tunem: %s", line);
            }
            return line;
        }
        uint64_t now = uqi_now_ns();
        if (now >= end || t->have == sizeof t->out) return NULL;
        struct pollfd pf = {t->from, POLLIN, 0};
        if (poll(&pf, 1, (int)((end - now) / 1000000ull) + 1) <= 0) continue;
        ssize_t r = read(t->from, t->out + t->have, sizeof t->out - t->have);
        if (r <= 0) return NULL;
        t->have += (size_t)r;
    }
}

/* Send one command; the lines before its "ok" are logged when log is set.
 * Fails the test on "error" or silence. */
static void tunem_cmd(tns *t, bool log, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tunem_cmd(tns *t, bool log, const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd - 1, fmt, ap);
    va_end(ap);
    cmd[n++] = '\n';
    if (write(t->to, cmd, (size_t)n) != n) test_fail(__FILE__, __LINE__, "tunem: cannot send %s", cmd);
    char *l;
    while ((l = tunem_line(t, 5000))) {
        if (strncmp(l, "ok", 2) == 0) return;
        if (strncmp(l, "error", 5) == 0) test_fail(__FILE__, __LINE__, "tunem: %.*s: %s", n - 1, cmd, l);
        if (log) test_log("tunem %s", l);
    }
    test_fail(__FILE__, __LINE__, "tunem did not answer %.*s", n - 1, cmd);
}

/* ---- the link ----------------------------------------------------------------- */
static bool netem_probe(void)
{
    int pid = (int)getpid();
    bool ok = tns_sh("ip netns add uqprobe%d 2>/dev/null", pid) == 0 &&
              tns_sh("ip netns exec uqprobe%d tc qdisc add dev lo root netem delay 1ms 2>/dev/null", pid) == 0;
    tns_sh("ip netns del uqprobe%d 2>/dev/null", pid);
    return ok;
}

static void netem_apply(tns *t, const tns_shape *sh, bool cut)
{
    char spec[256];
    int n = snprintf(spec, sizeof spec, "delay %gms", sh->delay_ms);
    if (sh->jitter_ms > 0) n += snprintf(spec + n, sizeof spec - (size_t)n, " %gms", sh->jitter_ms);
    n += snprintf(spec + n, sizeof spec - (size_t)n, " loss %g%%", cut ? 100.0 : sh->loss);
    if (sh->rate_mbit > 0) n += snprintf(spec + n, sizeof spec - (size_t)n, " rate %gmbit", sh->rate_mbit);
    snprintf(spec + n, sizeof spec - (size_t)n, " limit 10000");
    if (tns_sh("ip netns exec %s tc qdisc replace dev %s root netem %s", t->a, t->dev_a, spec) != 0 ||
        tns_sh("ip netns exec %s tc qdisc replace dev %s root netem %s", t->b, t->dev_b, spec) != 0)
        test_fail(__FILE__, __LINE__, "tc netem %s refused", spec);
}

static void tunem_start(tns *t, const tns_shape *sh)
{
    char exe[1100], delay[32], jitter[32], loss[32], rate[32], seed[32];
    /* a new draw of losses each run (the seed is in the log: UQ_TUNEM_SEED=N replays it) */
    const char *es = getenv("UQ_TUNEM_SEED");
    snprintf(seed, sizeof seed, "%llu",
             es && *es ? strtoull(es, NULL, 0) : (unsigned long long)(uqi_now_ns() ^ ((uint64_t)getpid() << 32)));
    snprintf(exe, sizeof exe, "%s/tunem", tb_build());
    if (access(exe, X_OK) != 0) test_fail(__FILE__, __LINE__, "%s is missing (make builds it with the tests)", exe);
    snprintf(delay, sizeof delay, "%g", sh->delay_ms);
    snprintf(jitter, sizeof jitter, "%g", sh->jitter_ms);
    snprintf(loss, sizeof loss, "%g", sh->loss);
    snprintf(rate, sizeof rate, "%g", sh->rate_mbit);
    const char *argv[] = {exe, "--ns-a", t->a, "--ns-b", t->b, "--dev-a", t->dev_a, "--dev-b", t->dev_b,
                          "--addr-a", TNS_IP_A, "--addr-b", TNS_IP_B, "--delay", delay, "--jitter", jitter,
                          "--loss", loss, "--rate", rate, "--limit", "10000", "--seed", seed, NULL};
    t->tunem = tboot_spawn(argv, NULL, SIGTERM, &t->to, &t->from); /* never outlive the test */
    char *l;
    while ((l = tunem_line(t, 10000)))
        if (strncmp(l, "ready ", 6) == 0) {
            test_log("link: tunem (userspace netem over TUN; this kernel has no sch_netem): %s", l + 6);
            return;
        } else {
            test_log("tunem: %s", l);
        }
    test_fail(__FILE__, __LINE__, "tunem did not come up");
}

bool tns_up(tns *t, const tns_shape *sh, bool need_tunem)
{
    memset(t, 0, sizeof *t);
    t->tunem = -1;
    int pid = (int)getpid();
    if (getuid() != 0) {
        test_log("SKIPPED: network namespaces need root (uid %d)", (int)getuid());
        return false;
    }
    if (tns_sh("ip netns add uqprobe%d 2>/dev/null", pid) != 0) {
        test_log("SKIPPED: `ip netns add` failed: no iproute2, or no network namespaces here");
        return false;
    }
    tns_sh("ip netns del uqprobe%d", pid);
    /* namespaces left by an earlier run that died half-way */
    tns_sh("for ns in $(ip netns list | grep -o '^uq[ab][0-9]*'); do p=${ns#uq?}; kill -0 $p 2>/dev/null || "
           "ip netns del $ns; done");
    snprintf(t->a, sizeof t->a, "uqa%d", pid);
    snprintf(t->b, sizeof t->b, "uqb%d", pid);
    t->shape = *sh;
    t->netem = !need_tunem && netem_probe();
    if (!t->netem && access("/dev/net/tun", R_OK | W_OK) != 0) {
        test_log("SKIPPED: this kernel has no sch_netem and there is no /dev/net/tun for tunem");
        return false;
    }
    ASSERT(tns_sh("ip netns add %s && ip netns add %s", t->a, t->b) == 0);
    if (t->netem) {
        snprintf(t->dev_a, sizeof t->dev_a, "va%d", pid);
        snprintf(t->dev_b, sizeof t->dev_b, "vb%d", pid);
        ASSERT(tns_sh("ip link add %s type veth peer name %s && ip link set %s netns %s && ip link set %s netns %s && "
                      "ip -n %s addr add " TNS_IP_A "/24 dev %s && ip -n %s addr add " TNS_IP_B "/24 dev %s && "
                      "ip -n %s link set %s up && ip -n %s link set %s up && ip -n %s link set lo up && "
                      "ip -n %s link set lo up",
                      t->dev_a, t->dev_b, t->dev_a, t->a, t->dev_b, t->b, t->a, t->dev_a, t->b, t->dev_b, t->a,
                      t->dev_a, t->b, t->dev_b, t->a, t->b) == 0);
        netem_apply(t, sh, false);
        test_log("link: tc netem on a veth pair: delay %gms jitter %gms loss %g%% rate %gmbit each way", sh->delay_ms,
                 sh->jitter_ms, sh->loss, sh->rate_mbit);
    } else {
        snprintf(t->dev_a, sizeof t->dev_a, "tua%d", pid);
        snprintf(t->dev_b, sizeof t->dev_b, "tub%d", pid);
        tunem_start(t, sh);
    }
    return true;
}

void tns_set(tns *t, const tns_shape *sh)
{
    t->shape = *sh;
    if (t->netem) netem_apply(t, sh, false);
    else
        tunem_cmd(t, false, "set both delay=%g jitter=%g loss=%g rate=%g", sh->delay_ms, sh->jitter_ms, sh->loss,
                  sh->rate_mbit);
}

void tns_cut(tns *t, bool cut)
{
    if (t->netem) netem_apply(t, &t->shape, cut);
    else tunem_cmd(t, false, "%s", cut ? "cut" : "restore");
}

void tns_tamper(tns *t, const char *dir, int min)
{
    if (t->netem) test_fail(__FILE__, __LINE__, "tampering needs tunem (tns_up with need_tunem)");
    tunem_cmd(t, false, "tamper %s %d", dir, min);
}

/* The number after key in tunem's counters of dir ("read 12", "loss 3"),
 * or before it for "bytes" ("(1234 bytes"). */
static unsigned long long tunem_stat(tns *t, const char *dir, const char *key)
{
    static const char cmd[] = "stats\n";
    ASSERT(write(t->to, cmd, sizeof cmd - 1) == (ssize_t)sizeof cmd - 1);
    unsigned long long v = 0;
    char *l, want[8], pat[40];
    snprintf(want, sizeof want, "%s: ", dir);
    snprintf(pat, sizeof pat, " %s ", key);
    while ((l = tunem_line(t, 5000)) && strncmp(l, "ok", 2) != 0) {
        if (strncmp(l, want, strlen(want)) != 0) continue;
        if (strcmp(key, "bytes") == 0) {
            char *f = strstr(l, " bytes)");
            while (f && f > l && f[-1] != '(') f--;
            if (f) v = strtoull(f, NULL, 10);
        } else {
            char *f = strstr(l, pat);
            if (!f) { /* "(loss 3," */
                snprintf(pat, sizeof pat, "(%s ", key);
                f = strstr(l, pat);
            }
            if (f) v = strtoull(f + strlen(pat), NULL, 10);
        }
    }
    ASSERT(l != NULL);
    return v;
}

unsigned long long tns_stat(tns *t, const char *dir, const char *key)
{
    bool ab = strcmp(dir, "a2b") == 0;
    if (!t->netem) return tunem_stat(t, dir, key);
    if (strcmp(key, "bytes") != 0) return 0; /* netem: bytes only */
    char cmd[256]; /* what the sending side's veth sent */
    snprintf(cmd, sizeof cmd, "ip netns exec %s cat /sys/class/net/%s/statistics/tx_bytes", ab ? t->a : t->b,
             ab ? t->dev_a : t->dev_b);
    FILE *f = popen(cmd, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1) v = 0;
        pclose(f);
    }
    return v;
}

void tns_down(tns *t)
{
    if (t->netem) {
        FILE *f;
        char cmd[256], line[512];
        const char *ns[2] = {t->a, t->b}, *dev[2] = {t->dev_a, t->dev_b};
        for (int i = 0; i < 2; i++) {
            snprintf(cmd, sizeof cmd, "tc -n %s -s qdisc show dev %s", ns[i], dev[i]);
            if ((f = popen(cmd, "r"))) {
                while (fgets(line, sizeof line, f)) test_log("netem %s: %s", dev[i], strtok(line, "\n"));
                pclose(f);
            }
        }
    } else if (t->tunem > 0) {
        static const char quit[] = "quit\n";
        if (write(t->to, quit, sizeof quit - 1) < 0) { /* it is gone already: the counters are lost */
        }
        char *l;
        while ((l = tunem_line(t, 5000)))
            if (strncmp(l, "exit", 4) != 0) test_log("tunem %s", l);
        close(t->to);
        close(t->from);
        int st = 0;
        waitpid(t->tunem, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) test_log("tunem ended badly (status %d)", st);
        t->tunem = -1;
    }
    tns_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", t->a, t->b);
}
