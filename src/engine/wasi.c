/* WASI preview1 for guests: stdout/stderr (tagged per process on a node),
 * stdin when granted, args, environ, clocks, random, poll_oneoff on clocks
 * (the task sleeps; the worker runs others), sched_yield and proc_exit.
 * Everything else is refused with the errno a WASI program expects: no file
 * or socket is reachable through WASI (files are capabilities, see later
 * issues), so paths and sockets answer EBADF/ENOTCAPABLE, never a crash.
 * Every guest pointer goes through uqi_guest_ptr. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/proc.h"
#include "engine/rt.h"

/* These functions are reached only through the dynamic symbol table, by
 * name, from generated guest code: they have no header on purpose. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

typedef uint32_t u32;
typedef uint64_t u64;
typedef struct uqi_proc wasi_ctx; /* wasm2c passes the process as the module instance */

enum {
    E_SUCCESS = 0, E_2BIG = 1, E_AGAIN = 6, E_BADF = 8, E_FAULT = 21, E_INVAL = 28, E_IO = 29,
    E_NOSYS = 52, E_NOTSUP = 58, E_PIPE = 64, E_SPIPE = 70, E_NOTCAPABLE = 76,
};
enum { FT_UNKNOWN = 0, FT_CHAR = 2 };
#define RIGHT_FD_READ (1ull << 1)
#define RIGHT_FD_WRITE (1ull << 6)
#define RIGHT_POLL (1ull << 27)

#define GP(p, off, len) uqi_guest_ptr((p), (off), (len))

static inline void put32(uint8_t *b, u32 v) { memcpy(b, &v, 4); }
static inline void put64(uint8_t *b, u64 v) { memcpy(b, &v, 8); }
static inline u32 get32(const uint8_t *b) { u32 v; memcpy(&v, b, 4); return v; }
static inline u64 get64(const uint8_t *b) { u64 v; memcpy(&v, b, 8); return v; }

static bool is_stdio(u32 fd) { return fd <= 2; }

/* ---- output ------------------------------------------------------------ */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {fd, POLLOUT, 0};
            poll(&pf, 1, 100);
            continue;
        }
        if (w < 0) return errno == EPIPE ? E_PIPE : E_IO;
        p += w;
        n -= (size_t)w;
    }
    return E_SUCCESS;
}

/* Tagged output: whole lines, each prefixed with the process's tag, so two
 * processes never interleave within a line. */
static int emit_tagged(wasi_ctx *p, int which, const uint8_t *data, size_t n)
{
    uqi_outbuf *ob = &p->out[which];
    int hostfd = which == 0 ? 1 : 2;
    int rc = E_SUCCESS;
    for (size_t i = 0; i < n; i++) {
        char c = (char)data[i];
        bool full = ob->n == sizeof ob->buf - 1;
        if (c != '\n' && !full) {
            ob->buf[ob->n++] = c;
            continue;
        }
        if (full && c != '\n') ob->buf[ob->n++] = c;
        char line[sizeof ob->buf + 300];
        int k = snprintf(line, sizeof line, "[%s] %.*s\n", p->tag, (int)ob->n, ob->buf);
        pthread_mutex_lock(&out_lock);
        int r = write_all(hostfd, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
        pthread_mutex_unlock(&out_lock);
        if (r) rc = r;
        ob->n = 0;
    }
    return rc;
}

u32 Z_wasi_snapshot_preview1Z_fd_write(wasi_ctx *p, u32 fd, u32 iovs, u32 iovs_len, u32 nwritten)
{
    if (fd != 1 && fd != 2) return E_BADF;
    uint8_t *nw = GP(p, nwritten, 4);
    if (!nw || iovs_len > 1024) return nw ? E_INVAL : E_FAULT;
    uint8_t *iov = GP(p, iovs, iovs_len * 8);
    if (!iov) return E_FAULT;
    u64 total = 0;
    for (u32 i = 0; i < iovs_len; i++) {
        u32 off = get32(iov + 8 * i), len = get32(iov + 8 * i + 4);
        const uint8_t *d = GP(p, off, len);
        if (!d) return E_FAULT;
        int r = p->tag ? emit_tagged(p, (int)fd - 1, d, len) : write_all((int)fd, d, len);
        if (r) return (u32)r;
        total += len;
    }
    put32(nw, (u32)total);
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_read(wasi_ctx *p, u32 fd, u32 iovs, u32 iovs_len, u32 nread)
{
    if (fd != 0 || !p->stdin_ok) return E_BADF;
    uint8_t *nr = GP(p, nread, 4);
    uint8_t *iov = GP(p, iovs, iovs_len * 8);
    if (!nr || !iov || iovs_len > 1024) return nr && iov ? E_INVAL : E_FAULT;
    /* Wait for input without holding the worker: poll, and sleep the task. */
    for (;;) {
        struct pollfd pf = {0, POLLIN, 0};
        int r = poll(&pf, 1, 0);
        if (r > 0) break;
        if (r < 0 && errno != EINTR) return E_IO;
        uqi_task_sleep_until(uqi_now_ns() + 2000000ull);
        uqi_task_check_kill();
    }
    u64 total = 0;
    for (u32 i = 0; i < iovs_len; i++) {
        u32 off = get32(iov + 8 * i), len = get32(iov + 8 * i + 4);
        uint8_t *d = GP(p, off, len);
        if (!d) return E_FAULT;
        if (!len) continue;
        ssize_t r = read(0, d, len);
        if (r < 0 && errno == EINTR) { i--; continue; }
        if (r < 0) return total ? (put32(nr, (u32)total), E_SUCCESS) : E_IO;
        total += (u64)r;
        if ((u32)r < len) break;
        struct pollfd pf = {0, POLLIN, 0};
        if (poll(&pf, 1, 0) <= 0) break;
    }
    put32(nr, (u32)total);
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_close(wasi_ctx *p, u32 fd) { UQ_UNUSED(p); return is_stdio(fd) ? E_SUCCESS : E_BADF; }

u32 Z_wasi_snapshot_preview1Z_fd_fdstat_get(wasi_ctx *p, u32 fd, u32 out)
{
    if (!is_stdio(fd)) return E_BADF;
    uint8_t *b = GP(p, out, 24);
    if (!b) return E_FAULT;
    memset(b, 0, 24);
    b[0] = isatty((int)fd) == 1 ? FT_CHAR : FT_UNKNOWN;
    u64 rights = fd == 0 ? (p->stdin_ok ? RIGHT_FD_READ | RIGHT_POLL : 0) : RIGHT_FD_WRITE | RIGHT_POLL;
    put64(b + 8, rights);
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_filestat_get(wasi_ctx *p, u32 fd, u32 out)
{
    if (!is_stdio(fd)) return E_BADF;
    uint8_t *b = GP(p, out, 64);
    if (!b) return E_FAULT;
    memset(b, 0, 64);
    b[16] = isatty((int)fd) == 1 ? FT_CHAR : FT_UNKNOWN;
    put64(b + 24, 1);
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_seek(wasi_ctx *p, u32 fd, u64 off, u32 whence, u32 out)
{
    UQ_UNUSED(p); UQ_UNUSED(off); UQ_UNUSED(whence); UQ_UNUSED(out);
    return is_stdio(fd) ? E_SPIPE : E_BADF;
}

u32 Z_wasi_snapshot_preview1Z_fd_tell(wasi_ctx *p, u32 fd, u32 out)
{
    UQ_UNUSED(p); UQ_UNUSED(out);
    return is_stdio(fd) ? E_SPIPE : E_BADF;
}

u32 Z_wasi_snapshot_preview1Z_fd_pread(wasi_ctx *p, u32 fd, u32 a, u32 b, u64 c, u32 d)
{
    UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d);
    return is_stdio(fd) ? E_SPIPE : E_BADF;
}

u32 Z_wasi_snapshot_preview1Z_fd_pwrite(wasi_ctx *p, u32 fd, u32 a, u32 b, u64 c, u32 d)
{
    UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d);
    return is_stdio(fd) ? E_SPIPE : E_BADF;
}

/* No preopened directories: wasi-libc stops scanning at the first EBADF. */
u32 Z_wasi_snapshot_preview1Z_fd_prestat_get(wasi_ctx *p, u32 fd, u32 out) { UQ_UNUSED(p); UQ_UNUSED(fd); UQ_UNUSED(out); return E_BADF; }
u32 Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(wasi_ctx *p, u32 fd, u32 a, u32 b) { UQ_UNUSED(p); UQ_UNUSED(fd); UQ_UNUSED(a); UQ_UNUSED(b); return E_BADF; }

#define FD_ONLY(name, ...)                                                                 \
    u32 Z_wasi_snapshot_preview1Z_##name(wasi_ctx *p, u32 fd, __VA_ARGS__)
FD_ONLY(fd_advise, u64 a, u64 b, u32 c) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); return is_stdio(fd) ? E_SPIPE : E_BADF; }
FD_ONLY(fd_allocate, u64 a, u64 b) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); return is_stdio(fd) ? E_SPIPE : E_BADF; }
FD_ONLY(fd_fdstat_set_flags, u32 a) { UQ_UNUSED(p); UQ_UNUSED(a); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
FD_ONLY(fd_fdstat_set_rights, u64 a, u64 b) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(fd_filestat_set_size, u64 a) { UQ_UNUSED(p); UQ_UNUSED(a); return is_stdio(fd) ? E_INVAL : E_BADF; }
FD_ONLY(fd_filestat_set_times, u64 a, u64 b, u32 c) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
FD_ONLY(fd_readdir, u32 a, u32 b, u64 c, u32 d) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
FD_ONLY(fd_renumber, u32 a) { UQ_UNUSED(p); UQ_UNUSED(a); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
u32 Z_wasi_snapshot_preview1Z_fd_datasync(wasi_ctx *p, u32 fd) { UQ_UNUSED(p); return is_stdio(fd) ? E_INVAL : E_BADF; }
u32 Z_wasi_snapshot_preview1Z_fd_sync(wasi_ctx *p, u32 fd) { UQ_UNUSED(p); return is_stdio(fd) ? E_INVAL : E_BADF; }

/* Paths: no directory is preopened, so any dirfd is a bad descriptor. */
FD_ONLY(path_create_directory, u32 a, u32 b) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_filestat_get, u32 a, u32 b, u32 c, u32 d) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_filestat_set_times, u32 a, u32 b, u32 c, u64 d, u64 e, u32 f) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); UQ_UNUSED(e); UQ_UNUSED(f); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_link, u32 a, u32 b, u32 c, u32 d, u32 e, u32 f) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); UQ_UNUSED(e); UQ_UNUSED(f); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_open, u32 a, u32 b, u32 c, u32 d, u64 e, u64 f, u32 g, u32 h) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); UQ_UNUSED(e); UQ_UNUSED(f); UQ_UNUSED(g); UQ_UNUSED(h); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_readlink, u32 a, u32 b, u32 c, u32 d, u32 e) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); UQ_UNUSED(e); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_remove_directory, u32 a, u32 b) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_rename, u32 a, u32 b, u32 c, u32 d, u32 e) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); UQ_UNUSED(e); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
FD_ONLY(path_unlink_file, u32 a, u32 b) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }
u32 Z_wasi_snapshot_preview1Z_path_symlink(wasi_ctx *p, u32 a, u32 b, u32 fd, u32 c, u32 d) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); return is_stdio(fd) ? E_NOTCAPABLE : E_BADF; }

/* Sockets: none are granted. */
FD_ONLY(sock_accept, u32 a, u32 b) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
FD_ONLY(sock_recv, u32 a, u32 b, u32 c, u32 d, u32 e) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); UQ_UNUSED(e); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
FD_ONLY(sock_send, u32 a, u32 b, u32 c, u32 d) { UQ_UNUSED(p); UQ_UNUSED(a); UQ_UNUSED(b); UQ_UNUSED(c); UQ_UNUSED(d); return is_stdio(fd) ? E_NOTSUP : E_BADF; }
FD_ONLY(sock_shutdown, u32 a) { UQ_UNUSED(p); UQ_UNUSED(a); return is_stdio(fd) ? E_NOTSUP : E_BADF; }

/* ---- args and environment -------------------------------------------------- */
static u32 vec_sizes(wasi_ctx *p, int n, u32 bytes, u32 count_out, u32 size_out)
{
    uint8_t *c = GP(p, count_out, 4), *s = GP(p, size_out, 4);
    if (!c || !s) return E_FAULT;
    if (bytes == UINT32_MAX) return E_2BIG;
    put32(c, (u32)n);
    put32(s, bytes);
    return E_SUCCESS;
}

static u32 vec_get(wasi_ctx *p, char **v, int n, u32 ptrs, u32 buf)
{
    uint8_t *pp = GP(p, ptrs, (u32)n * 4);
    if (!pp) return E_FAULT;
    u32 off = buf;
    for (int i = 0; i < n; i++) {
        u32 len = (u32)strlen(v[i]) + 1;
        uint8_t *d = GP(p, off, len);
        if (!d) return E_FAULT;
        memcpy(d, v[i], len);
        put32(pp + 4 * i, off);
        off += len;
    }
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_args_sizes_get(wasi_ctx *p, u32 a, u32 b) { return vec_sizes(p, p->argc, p->argv_bytes, a, b); }
u32 Z_wasi_snapshot_preview1Z_args_get(wasi_ctx *p, u32 a, u32 b) { return vec_get(p, p->argv, p->argc, a, b); }
u32 Z_wasi_snapshot_preview1Z_environ_sizes_get(wasi_ctx *p, u32 a, u32 b) { return vec_sizes(p, p->envc, p->envp_bytes, a, b); }
u32 Z_wasi_snapshot_preview1Z_environ_get(wasi_ctx *p, u32 a, u32 b) { return vec_get(p, p->envp, p->envc, a, b); }

/* ---- clocks, random, scheduling ------------------------------------------------ */
static bool clock_of(u32 id, clockid_t *out)
{
    switch (id) {
    case 0: *out = CLOCK_REALTIME; return true;
    case 1: *out = CLOCK_MONOTONIC; return true;
    case 2: *out = CLOCK_PROCESS_CPUTIME_ID; return true;
    case 3: *out = CLOCK_THREAD_CPUTIME_ID; return true;
    default: return false;
    }
}

static u64 ts_ns(const struct timespec *ts)
{
    return (u64)ts->tv_sec * 1000000000ull + (u64)ts->tv_nsec;
}

/* clock_res_get and clock_time_get: the same checks, another libc call. */
static u32 clock_query(wasi_ctx *p, u32 id, u32 out, int (*query)(clockid_t, struct timespec *))
{
    clockid_t c;
    if (!clock_of(id, &c)) return E_INVAL;
    uint8_t *b = GP(p, out, 8);
    if (!b) return E_FAULT;
    struct timespec ts;
    if (query(c, &ts) != 0) return E_INVAL;
    put64(b, ts_ns(&ts));
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_clock_res_get(wasi_ctx *p, u32 id, u32 out)
{
    return clock_query(p, id, out, clock_getres);
}

u32 Z_wasi_snapshot_preview1Z_clock_time_get(wasi_ctx *p, u32 id, u64 precision, u32 out)
{
    UQ_UNUSED(precision);
    return clock_query(p, id, out, clock_gettime);
}

u32 Z_wasi_snapshot_preview1Z_random_get(wasi_ctx *p, u32 buf, u32 len)
{
    uint8_t *d = GP(p, buf, len);
    if (!d) return E_FAULT;
    randombytes_buf(d, len);
    return E_SUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_sched_yield(wasi_ctx *p)
{
    UQ_UNUSED(p);
    uqi_task_yield();
    return E_SUCCESS;
}

void Z_wasi_snapshot_preview1Z_proc_exit(wasi_ctx *p, u32 code)
{
    p->exit_code = (int)code;
    uqi_task_unwind(&p->task, UQI_UNWIND_EXIT);
}

u32 Z_wasi_snapshot_preview1Z_proc_raise(wasi_ctx *p, u32 sig) { UQ_UNUSED(p); UQ_UNUSED(sig); return E_NOSYS; }

/* poll_oneoff: clock subscriptions sleep the task (the worker runs other
 * tasks meanwhile); stdout/stderr are always writable; other descriptors
 * report EBADF in their event. */
u32 Z_wasi_snapshot_preview1Z_poll_oneoff(wasi_ctx *p, u32 in, u32 out, u32 nsubs, u32 nevents)
{
    if (nsubs == 0) return E_INVAL;
    if (nsubs > 4096) return E_INVAL;
    uint8_t *subs = GP(p, in, nsubs * 48), *evs = GP(p, out, nsubs * 32), *ne = GP(p, nevents, 4);
    if (!subs || !evs || !ne) return E_FAULT;
    u64 now = uqi_now_ns(), deadline = UINT64_MAX;
    u32 n = 0;
    /* First pass: descriptor events that are ready now, and the earliest deadline. */
    for (u32 i = 0; i < nsubs; i++) {
        const uint8_t *s = subs + 48 * i;
        uint8_t tag = s[8];
        if (tag == 0) {
            u32 id = get32(s + 16);
            u64 timeout = get64(s + 24);
            uint16_t flags = (uint16_t)(s[40] | (s[41] << 8));
            clockid_t c;
            u64 d;
            if (!clock_of(id, &c)) d = now; /* reported below as EINVAL */
            else if (flags & 1) {
                struct timespec ts;
                clock_gettime(c, &ts);
                u64 cur = ts_ns(&ts);
                d = timeout > cur ? now + (timeout - cur) : now;
            } else {
                d = timeout > UINT64_MAX - now ? UINT64_MAX : now + timeout;
            }
            if (d < deadline) deadline = d;
        } else if (tag == 1 || tag == 2) {
            u32 fd = get32(s + 16);
            bool ready = (tag == 2 && (fd == 1 || fd == 2)) || (tag == 1 && fd == 0 && p->stdin_ok);
            if (tag == 1 && ready) {
                struct pollfd pf = {0, POLLIN, 0};
                ready = poll(&pf, 1, 0) > 0;
                if (!ready) continue;
            }
            uint8_t *e = evs + 32 * n++;
            memset(e, 0, 32);
            memcpy(e, s, 8);
            uint16_t err = ready ? E_SUCCESS : E_BADF;
            memcpy(e + 8, &err, 2);
            e[10] = tag;
        } else {
            return E_INVAL;
        }
    }
    if (n == 0) {
        if (deadline == UINT64_MAX) deadline = now + 1000000000ull; /* unreachable by construction */
        while (uqi_now_ns() < deadline) {
            uqi_task_sleep_until(deadline);
            uqi_task_check_kill();
        }
        now = uqi_now_ns();
        for (u32 i = 0; i < nsubs; i++) {
            const uint8_t *s = subs + 48 * i;
            if (s[8] != 0) continue;
            clockid_t c;
            uint8_t *e = evs + 32 * n;
            bool valid = clock_of(get32(s + 16), &c);
            memset(e, 0, 32);
            memcpy(e, s, 8);
            uint16_t err = valid ? E_SUCCESS : E_INVAL;
            memcpy(e + 8, &err, 2);
            e[10] = 0;
            n++;
        }
    }
    put32(ne, n);
    return E_SUCCESS;
}
