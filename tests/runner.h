/* The in-house test runner: tests register with TEST(name), each runs in a
 * forked child with a timeout, asserts print both sides, and the run ends
 * with the line "N passed, N failed". */
#ifndef UQ_TEST_RUNNER_H
#define UQ_TEST_RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
    int timeout_s;
    struct test_case *next;
} test_case;

void test_register(test_case *t);

#define TEST_T(name, secs)                                                               \
    static void test_##name(void);                                                       \
    static test_case tc_##name = {#name, test_##name, secs, NULL};                       \
    __attribute__((constructor)) static void reg_##name(void) { test_register(&tc_##name); } \
    static void test_##name(void)
#define TEST(name) TEST_T(name, 60)

__attribute__((noreturn, format(printf, 3, 4))) void test_fail(const char *file, int line, const char *fmt, ...);
void test_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define ASSERT(c) do { if (!(c)) test_fail(__FILE__, __LINE__, "assertion failed: %s", #c); } while (0)
#define ASSERT_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define ASSERT_STR_HAS(hay, needle) do { const char *h_ = (hay), *n_ = (needle); \
    if (!h_ || !strstr(h_, n_)) test_fail(__FILE__, __LINE__, "expected \"%s\" in:\n%s", n_, h_ ? h_ : "(null)"); } while (0)
#define ASSERT_STR_LACKS(hay, needle) do { const char *h_ = (hay), *n_ = (needle); \
    if (h_ && strstr(h_, n_)) test_fail(__FILE__, __LINE__, "did not expect \"%s\" in:\n%s", n_, h_); } while (0)

/* ---- helpers for tests ------------------------------------------------ */
/* The build directory (UQ_BUILD, default "build") and paths inside it. */
const char *tb_build(void);
/* Where guests and the test compile cache live (UQ_SHARED, default "build"):
 * the same for every build flavour. */
const char *tb_shared(void);
/* Path of a test guest: <shared>/guests/<name>.wasm (static buffer rotation). */
const char *tb_guest(const char *name);
/* A fresh empty directory for this test. */
const char *tb_tmpdir(void);
/* Write data[0..len) to <tmpdir>/name and return the path (static buffer rotation). */
const char *tb_write_tmp(const char *name, const void *data, size_t len);

typedef struct cmd_result {
    int status;       /* exit status, or 128+signal */
    bool signaled;
    char *out, *err;  /* captured, NUL-terminated, malloc'ed */
    double seconds;
} cmd_result;
/* Run argv (NULL-terminated) with stdin from /dev/null (or in_text), capture output. */
cmd_result tb_run(const char *const *argv, const char *in_text, int timeout_s);
void tb_result_free(cmd_result *r);

#endif
