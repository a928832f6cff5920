/* Small shared utilities: checks in three tiers, logging, error helpers,
 * allocation, time and hashing. Every .c file of uqbar includes this. */
#ifndef UQ_UTIL_H
#define UQ_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "uqbar/err.h"

/* ---- checks ---------------------------------------------------------- */
/* UQ_ASSERT: debug-only invariant that is provably true.
 * UQ_VERIFY: stays on in release; its failure would break isolation. */
#ifdef NDEBUG
#define UQ_ASSERT(x) ((void)0)
#else
#define UQ_ASSERT(x) ((x) ? (void)0 : uqi_panic(__FILE__, __LINE__, #x))
#endif
#define UQ_VERIFY(x) ((x) ? (void)0 : uqi_panic(__FILE__, __LINE__, #x))
#define UQ_UNUSED(x) ((void)(x))
#define UQ_LIKELY(x) __builtin_expect(!!(x), 1)
#define UQ_UNLIKELY(x) __builtin_expect(!!(x), 0)

__attribute__((noreturn)) void uqi_panic(const char *file, int line, const char *what);

/* A pause inside a spin-wait loop. */
static inline void uqi_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spin while cond holds, for at most about UQI_SPIN_NS, before a thread
 * sleeps: a wait that ends within it costs no wake-up, and on a VM waking
 * a halted virtual CPU takes 10-20 us, more while the host is busy. The
 * clock is read every 32 pauses (a pause is 3-40 ns, depending on the CPU). */
#define UQI_SPIN_NS 40000u
#define uqi_spin_while(cond)                                                           \
    do {                                                                               \
        uint64_t uqi_spin_end_ = 0;                                                    \
        for (unsigned uqi_spin_i_ = 0; (cond); uqi_spin_i_++) {                        \
            if ((uqi_spin_i_ & 31u) == 0) {                                            \
                uint64_t uqi_spin_t_ = uqi_now_ns();                                   \
                if (!uqi_spin_end_) uqi_spin_end_ = uqi_spin_t_ + UQI_SPIN_NS;         \
                else if (uqi_spin_t_ >= uqi_spin_end_) break;                          \
            }                                                                          \
            uqi_cpu_relax();                                                           \
        }                                                                              \
    } while (0)

/* Little-endian fixed-width integers in byte buffers (store records, backup
 * entries, nonces). */
static inline void uqi_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t uqi_get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- logging --------------------------------------------------------- */
typedef enum { UQ_LOG_ERROR = 0, UQ_LOG_WARN, UQ_LOG_INFO, UQ_LOG_DEBUG } uq_loglevel;
extern int uqi_log_level;
/* The level is checked before the arguments are formatted. */
#define uq_log(level, subsys, ...) \
    do { if ((int)(level) <= uqi_log_level) uqi_log_emit(level, subsys, __VA_ARGS__); } while (0)
void uqi_log_emit(uq_loglevel level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- errors ---------------------------------------------------------- */
/* Fill out (if non-NULL) with a formatted message and return err. */
uq_err uqi_errf(uq_errmsg *out, uq_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uq_err uqi_err_from_errno(int e);

/* ---- memory ---------------------------------------------------------- */
/* Allocation that never returns NULL: the host out of memory is fatal. */
void *uqi_xmalloc(size_t n);
void *uqi_xcalloc(size_t n, size_t size);
char *uqi_xstrdup(const char *s);
/* A block of size bytes (not zeroed) from this thread's cache of freed
 * ones, else malloc; uqi_block_put gives it back with the same size
 * (blocks.c). For the few large blocks made and freed per process. */
void *uqi_block_get(size_t size);
void uqi_block_put(void *p, size_t size);

/* ---- time ------------------------------------------------------------ */
uint64_t uqi_now_ns(void);     /* CLOCK_MONOTONIC */
/* At least uqi_now_ns(), at most a clock tick (1-4 ms) ahead, for a few ns
 * instead of a clock read: for deadlines in seconds, which must not fire early. */
uint64_t uqi_now_coarse_ns(void);
/* A time in nanoseconds as a timespec (for absolute deadlines on the
 * monotonic clock, or for intervals). */
struct timespec uqi_ns_to_timespec(uint64_t ns);
/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines. */
void uqi_cond_init_monotonic(pthread_cond_t *c);

/* ---- files ----------------------------------------------------------- */
/* Read a whole file. *out is malloc'ed, owned by the caller. */
uq_err uqi_read_file(const char *path, uint8_t **out, size_t *out_len, uq_errmsg *em);
/* Write a whole file atomically: temp file, fsync, rename. */
uq_err uqi_write_file_atomic(const char *path, const void *data, size_t len, uq_errmsg *em);
/* mkdir -p */
uq_err uqi_mkdirs(const char *path, uq_errmsg *em);

#endif
