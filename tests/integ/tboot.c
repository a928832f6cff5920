/* Real nodes as OS processes, driven through their terminal (tboot.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tboot.h"
#include "util/util.h"

pid_t tboot_spawn(const char *const *argv, const char *ns, int pdeathsig, int *in, int *out)
{
    return tboot_spawn_env(argv, NULL, ns, pdeathsig, in, out);
}

/* environ with env's entries in place of those of the same name (built
 * before fork: the child may not allocate). */
static char **merged_env(const char *const *env)
{
    extern char **environ;
    size_t n = 0, k = 0, add = 0;
    while (environ[n]) n++;
    while (env && env[add]) add++;
    char **out = calloc(n + add + 1, sizeof *out);
    ASSERT(out != NULL);
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < add && !replaced; j++) {
            size_t eq = strcspn(env[j], "=");
            replaced = strncmp(environ[i], env[j], eq + 1) == 0;
        }
        if (!replaced) out[k++] = environ[i];
    }
    for (size_t j = 0; j < add; j++) out[k++] = (char *)env[j];
    return out;
}

pid_t tboot_spawn_env(const char *const *argv, const char *const *env, const char *ns, int pdeathsig, int *in,
                      int *out)
{
    char **envp = merged_env(env);
    char nspath[256] = "";
    if (ns) snprintf(nspath, sizeof nspath, "/run/netns/%s", ns);
    int pin[2], pout[2];
    ASSERT(pipe2(pin, O_CLOEXEC) == 0 && pipe2(pout, O_CLOEXEC) == 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) { /* only async-signal-safe calls: the test may have threads */
        if (pdeathsig) prctl(PR_SET_PDEATHSIG, pdeathsig); /* never outlive the test */
        if (ns) {
            int fd = open(nspath, O_RDONLY);
            if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(126);
        }
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(pout[1], 2);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    close(pin[0]);
    close(pout[1]);
    *in = pin[1];
    *out = pout[0];
    return pid;
}

/* A port for a node to listen on. Not from bind(0): that gives a port of the
 * ephemeral range (ip_local_port_range, 32768-60999 here), which any
 * outgoing connection, a dialing node's included, may take before the node
 * binds it. Ports below that range, in a walk that starts at a place of this
 * process's own and never hands out a port twice; each one checked free. */
int tboot_free_port(void)
{
    enum { LO = 20000, SPAN = 12000 };
    static unsigned next;
    if (!next) next = 1 + (unsigned)(getpid() * 7919u + (unsigned)uqi_now_ns()) % SPAN;
    for (int tries = 0; tries < SPAN; tries++) {
        int port = LO + (int)(next++ % SPAN);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT(fd >= 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as the node's listener does */
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons((uint16_t)port)};
        bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok) return port;
    }
    test_fail(__FILE__, __LINE__, "no free port in %d-%d", LO, LO + SPAN - 1);
}

void tboot_manifest(char *path, size_t cap, const char *file, const char *pkg, const tboot_proc *procs, int n)
{
    char shared[1024], text[8192];
    ASSERT(realpath(tb_shared(), shared) != NULL); /* the manifest's paths are relative to its own directory */
    snprintf(path, cap, "%s/%s", tb_tmpdir(), file);
    int k = snprintf(text, sizeof text, "{\"package\":\"%s\",\"processes\":[", pkg);
    for (int i = 0; i < n; i++) {
        const tboot_proc *p = &procs[i];
        k += snprintf(text + k, sizeof text - (size_t)k,
                      "%s{\"process_name\":\"%s\",\"process_wasm_path\":\"%s/apps/%s.wasm\",\"on_exit\":\"%s\","
                      "\"public\":%s%s}",
                      i ? "," : "", p->name, shared, p->app, p->on_exit, p->public ? "true" : "false",
                      p->networking ? ",\"request_networking\":true" : "");
        ASSERT((size_t)k < sizeof text);
    }
    snprintf(text + k, sizeof text - (size_t)k, "]}");
    ASSERT_EQ(uqi_write_file_atomic(path, text, strlen(text), NULL), UQ_OK);
}

void bn_init(bnode *b, const char *name)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    snprintf(b->home, sizeof b->home, "%s/%s", tb_tmpdir(), name);
    snprintf(b->listen, sizeof b->listen, "127.0.0.1:%d", tboot_free_port());
}

void bn_init_all(bnode *nodes, const char *const *names, int n, const char *peers)
{
    for (int i = 0; i < n; i++) {
        bn_init(&nodes[i], names[i]);
        nodes[i].peers = peers;
    }
}

void bn_boot(bnode *b, const char *manifest)
{
    char exe[1100];
    snprintf(exe, sizeof exe, "%s/uqbar", tb_build());
    const char *argv[24] = {exe, "boot", "--home", b->home, "--name", b->name, "--listen", b->listen,
                            "--dev-unencrypted-key", "--net-timeout", "2000", "--workers", "1"};
    int k = 13;
    if (b->peers) argv[k++] = "--peers", argv[k++] = b->peers;
    if (b->backup[0]) argv[k++] = "--backup-peers", argv[k++] = b->backup;
    for (int j = 0; j < 4 && b->extra[j]; j++) argv[k++] = b->extra[j];
    if (manifest) argv[k++] = "--install", argv[k++] = manifest, argv[k++] = "--yes";
    argv[k] = NULL;
    b->pid = tboot_spawn_env(argv, b->env, NULL, 0, &b->in, &b->out);
    b->have = 0;
}

bool bn_expect(bnode *b, const char *want, int ms)
{
    uint64_t end = uqi_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        b->buf[b->have] = '\0';
        char *hit = strstr(b->buf, want);
        if (hit) {
            char *nl = strchr(hit, '\n');
            size_t cut = nl ? (size_t)(nl + 1 - b->buf) : b->have;
            memmove(b->buf, b->buf + cut, b->have - cut + 1);
            b->have -= cut;
            return true;
        }
        if (uqi_now_ns() >= end) return false;
        struct pollfd pf = {b->out, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        if (b->have > sizeof b->buf - 4096) { /* keep the tail */
            memmove(b->buf, b->buf + b->have - 2048, 2048);
            b->have = 2048;
        }
        ssize_t n = read(b->out, b->buf + b->have, sizeof b->buf - 1 - b->have);
        if (n <= 0) return false;
        if (getenv("UQ_NET_DEBUG")) fprintf(stderr, "[%s] %.*s", b->name, (int)n, b->buf + b->have);
        if (b->nseen + (size_t)n >= sizeof b->seen) { /* keep the later half */
            size_t keep = sizeof b->seen / 2, drop = b->nseen > keep ? b->nseen - keep : 0;
            memmove(b->seen, b->seen + drop, b->nseen - drop);
            b->nseen -= drop;
        }
        size_t c = (size_t)n < sizeof b->seen - 1 - b->nseen ? (size_t)n : sizeof b->seen - 1 - b->nseen;
        memcpy(b->seen + b->nseen, b->buf + b->have, c);
        b->nseen += c;
        b->seen[b->nseen] = '\0';
        b->have += (size_t)n;
    }
}

void bn_expect_at(const char *file, int at, bnode *b, const char *want, int ms)
{
    if (!bn_expect(b, want, ms))
        test_fail(file, at, "%s: no \"%s\" within %d ms; its output:\n%s", b->name, want, ms, b->seen);
}

void bn_say(bnode *b, const char *line)
{
    ASSERT(write(b->in, line, strlen(line)) == (ssize_t)strlen(line));
}

void bn_ask_at(const char *file, int at, bnode *b, const char *line, const char *want, int ms)
{
    bn_say(b, line);
    if (!bn_expect(b, want, ms))
        test_fail(file, at, "%s: no \"%s\" within %d ms after %s; its output:\n%s", b->name, want, ms, line, b->seen);
}

bool bn_retry(bnode *b, const char *line, const char *want, int tries, int ms)
{
    for (int i = 0; i < tries; i++) {
        bn_say(b, line);
        if (bn_expect(b, want, ms)) return true;
    }
    return false;
}

void bn_wait_up(bnode *b)
{
    bn_expect_at(__FILE__, __LINE__, b, "is up", 60000);
}

void bn_up(bnode *b, const char *manifest)
{
    bn_boot(b, manifest);
    bn_wait_up(b);
}

void bn_up_all(bnode *nodes, int n, const char *manifest)
{
    for (int i = 0; i < n; i++) bn_boot(&nodes[i], manifest);
    for (int i = 0; i < n; i++) bn_wait_up(&nodes[i]);
}

int bn_kill(bnode *b, int sig)
{
    if (sig) kill(b->pid, sig);
    int st = 0;
    ASSERT(waitpid(b->pid, &st, 0) == b->pid);
    close(b->in);
    close(b->out);
    return st;
}

void bn_kill9(bnode *b)
{
    int st = bn_kill(b, SIGKILL);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

void bn_boot_home(bnode *b, const char *name, const char *home, const char *manifest, const char *delay_ms)
{
    bn_init(b, name);
    snprintf(b->home, sizeof b->home, "%s", home);
    if (delay_ms) {
        static char env[64];
        snprintf(env, sizeof env, "UQBAR_TEST_STORE_DELAY_MS=%s", delay_ms);
        b->env[0] = env;
    }
    bn_boot(b, manifest);
}

void bn_exit(bnode *b, int sig)
{
    bn_say(b, "exit\n");
    bn_expect_at(__FILE__, __LINE__, b, "shutting down", 10000);
    bn_kill(b, sig);
}

void bn_directory(const char *path, bnode *const *of, int n)
{
    char dir[8192] = "", rpath[1300];
    for (int i = 0; i < n; i++) {
        snprintf(rpath, sizeof rpath, "%s/record", of[i]->home);
        uint8_t *rec;
        size_t len;
        ASSERT_EQ(uqi_read_file(rpath, &rec, &len, NULL), UQ_OK);
        strncat(dir, (char *)rec, len);
        free(rec);
    }
    ASSERT_EQ(uqi_write_file_atomic(path, dir, strlen(dir), NULL), UQ_OK);
}

void bn_peers(bnode *b, bnode *const *of, int n)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/peers", b->home);
    bn_directory(path, of, n);
}
