/* bench_out.h: how every bench program reports. Figures go to standard
 * output, one line each, "name value unit" (make bench collects them);
 * progress goes to standard error, prefixed with the program's name.
 * Define BENCH_NAME (a string) before including. Header-only: each bench
 * program is one translation unit. */
#ifndef UQ_BENCH_OUT_H
#define UQ_BENCH_OUT_H

#include <stdarg.h>
#include <stdio.h>

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_out.h"
#endif

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(BENCH_NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* One figure, with about three significant digits. */
static void __attribute__((unused)) figure(const char *name, double v, const char *unit)
{
    if (v >= 100) printf("%s %.0f %s\n", name, v, unit);
    else if (v >= 10) printf("%s %.1f %s\n", name, v, unit);
    else printf("%s %.2f %s\n", name, v, unit);
    fflush(stdout);
}

#endif
