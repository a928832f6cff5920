/* fib kernel: naive doubly-recursive fib(N), computed `scale` times.
 * Output: "fib(<n>) = <value> x<scale>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 40

static volatile int n_in = N; /* defeat constant folding / hoisting */

__attribute__((noinline)) static uint32_t fib(uint32_t n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    uint32_t acc = 0, v = 0;
    for (long i = 0; i < scale; i++) {
        v = fib((uint32_t)n_in);
        acc += v;
    }
    printf("fib(%d) = %u x%ld sum=%u\n", N, v, scale, acc);
    return 0;
}
