/* Test runner: forks a child per test, enforces its timeout, collects the
 * verdicts and prints "N passed, N failed". Filters: any argument is a
 * substring a test name must contain. */
#define _GNU_SOURCE
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static test_case *head, **tail = &head;

void test_register(test_case *t)
{
    *tail = t;
    tail = &t->next;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

void test_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *tb_build(void)
{
    const char *b = getenv("UQ_BUILD");
    return b && *b ? b : "build";
}

const char *tb_shared(void)
{
    const char *b = getenv("UQ_SHARED");
    return b && *b ? b : "build";
}

const char *tb_guest(const char *name)
{
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 1024, "%s/guests/%s.wasm", tb_shared(), name);
    return b;
}

static char test_tmp[1024];

const char *tb_tmpdir(void)
{
    if (!test_tmp[0]) {
        char base[900];
        snprintf(base, sizeof base, "%s/tmp", tb_build());
        mkdir(base, 0755);
        snprintf(test_tmp, sizeof test_tmp, "%s/t.XXXXXX", base);
        if (!mkdtemp(test_tmp)) test_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    }
    return test_tmp;
}

const char *tb_write_tmp(const char *name, const void *data, size_t len)
{
    static char bufs[4][1200];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, 1200, "%s/%s", tb_tmpdir(), name);
    FILE *f = fopen(p, "w");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        test_fail(__FILE__, __LINE__, "cannot write %s: %s", p, strerror(errno));
    return p;
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) b = realloc(b, cap *= 2);
        ssize_t r = read(fd, b + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    b[n] = '\0';
    return b;
}

cmd_result tb_run(const char *const *argv, const char *in_text, int timeout_s)
{
    cmd_result r = {0};
    char of[1100], ef[1100], inf[1100];
    const char *d = tb_tmpdir();
    static int seq;
    seq++;
    snprintf(of, sizeof of, "%s/out.%d", d, seq);
    snprintf(ef, sizeof ef, "%s/err.%d", d, seq);
    snprintf(inf, sizeof inf, "%s/in.%d", d, seq);
    if (in_text) {
        FILE *f = fopen(inf, "w");
        fputs(in_text, f);
        fclose(f);
    }
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int i = open(in_text ? inf : "/dev/null", O_RDONLY);
        int o = open(of, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(ef, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        setpgid(0, 0);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = 0;
    double deadline = t0 + timeout_s;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (now_s() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            r.status = -1;
            break;
        }
        usleep(2000);
    }
    r.seconds = now_s() - t0;
    if (r.status != -1) {
        r.signaled = WIFSIGNALED(st);
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    int fo = open(of, O_RDONLY), fe = open(ef, O_RDONLY);
    r.out = slurp_fd(fo);
    r.err = slurp_fd(fe);
    close(fo);
    close(fe);
    return r;
}

void tb_result_free(cmd_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

static bool selected(const char *name, int argc, char **argv)
{
    if (argc < 2) return true;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return true;
    return false;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    char failures[8192] = "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Nodes booted by the tests (`uqbar boot`) share the test compile cache
     * instead of compiling every app again in each fresh home. */
    char cache[1100];
    snprintf(cache, sizeof cache, "%s/cache-test", tb_shared());
    setenv("UQBAR_CACHE", cache, 0);
    for (test_case *t = head; t; t = t->next) {
        if (!selected(t->name, argc, argv)) continue;
        fflush(stdout);
        fflush(stderr);
        double t0 = now_s();
        pid_t pid = fork();
        if (pid == 0) {
            setpgid(0, 0);
            alarm((unsigned)t->timeout_s);
            t->fn();
            fflush(stdout);
            fflush(stderr);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        kill(-pid, SIGKILL); /* anything the test left running */
        double s = now_s() - t0;
        bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ok) {
            passed++;
            printf("ok   %-40s %6.2fs\n", t->name, s);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("FAIL %-40s %6.2fs (%s)\n", t->name, s,
                       WTERMSIG(st) == SIGALRM ? "timed out" : strsignal(WTERMSIG(st)));
            else
                printf("FAIL %-40s %6.2fs\n", t->name, s);
            size_t n = strlen(failures);
            snprintf(failures + n, sizeof failures - n, "  %s\n", t->name);
        }
    }
    if (failed) printf("failed tests:\n%s", failures);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
