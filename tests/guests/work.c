/* Steady computation: counts primes below N by trial division and checks the
 * answer. Exit 0 when right, 1 when wrong. Used beside a trapping or spinning
 * process to show it keeps running and finishes. */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 200000;
    unsigned count = 0;
    for (unsigned i = 2; i < n; i++) {
        unsigned d = 2;
        for (; d * d <= i; d++)
            if (i % d == 0) break;
        if (d * d > i) count++;
    }
    unsigned want = n == 200000 ? 17984 : n == 1000 ? 168 : count;
    printf("primes below %u: %u\n", n, count);
    return count == want ? 0 : 1;
}
