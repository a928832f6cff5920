/* Logging, panics, allocation, time and file helpers shared by all subsystems. */
#include "util/util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int uqi_log_level = UQ_LOG_WARN;

void uqi_panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "uqbar: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

void uqi_log_emit(uq_loglevel level, const char *subsys, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "uqbar: [%s] %s: %s\n", subsys, names[level], line);
}

void *uqi_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) uqi_panic(__FILE__, __LINE__, "host out of memory");
    return p;
}

void *uqi_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) uqi_panic(__FILE__, __LINE__, "host out of memory");
    return p;
}

char *uqi_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(uqi_xmalloc(n), s, n);
}

uint64_t uqi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC_COARSE lags CLOCK_MONOTONIC by less than its resolution
 * (a clock tick): that added, the figure is never behind the time. */
uint64_t uqi_now_coarse_ns(void)
{
    static _Atomic uint64_t res;
    uint64_t r = atomic_load_explicit(&res, memory_order_relaxed);
    struct timespec ts;
    if (!r) {
        clock_getres(CLOCK_MONOTONIC_COARSE, &ts);
        r = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + 1;
        atomic_store_explicit(&res, r, memory_order_relaxed);
    }
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + r;
}

struct timespec uqi_ns_to_timespec(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    return ts;
}

void uqi_cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

uq_err uqi_read_file(const char *path, uint8_t **out, size_t *out_len, uq_errmsg *em)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return uqi_errf(em, uqi_err_from_errno(errno), "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return uqi_errf(em, UQ_EINVAL, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size, got = 0;
    uint8_t *buf = uqi_xmalloc(len);
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return uqi_errf(em, uqi_err_from_errno(e), "%s: read failed: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *out_len = len;
    return UQ_OK;
}

uq_err uqi_write_file_atomic(const char *path, const void *data, size_t len, uq_errmsg *em)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return uqi_errf(em, uqi_err_from_errno(errno), "%s: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return uqi_errf(em, uqi_err_from_errno(e), "%s: %s", path, strerror(e));
    }
    return UQ_OK;
fail:;
    int e = errno;
    close(fd);
    unlink(tmp);
    return uqi_errf(em, uqi_err_from_errno(e), "%s: %s", tmp, strerror(e));
}

uq_err uqi_mkdirs(const char *path, uq_errmsg *em)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return uqi_errf(em, UQ_EINVAL, "bad directory path");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return uqi_errf(em, uqi_err_from_errno(errno), "mkdir %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return UQ_OK;
}
