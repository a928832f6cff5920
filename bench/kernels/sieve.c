/* sieve kernel: sieve of Eratosthenes up to N, repeated REPS * scale times.
 * Output: "sieve N=<n> reps=<r> primes=<count> checksum=<hex>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 20000000u
#define REPS 2

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    uint8_t *comp = malloc(N + 1);
    if (!comp) return 2;
    uint64_t total = 0;
    uint32_t ck = 0;
    long reps = REPS * scale;
    for (long r = 0; r < reps; r++) {
        memset(comp, 0, N + 1);
        comp[0] = comp[1] = 1;
        for (uint32_t i = 2; (uint64_t)i * i <= N; i++)
            if (!comp[i])
                for (uint32_t j = i * i; j <= N; j += i) comp[j] = 1;
        uint32_t count = 0, h = 2166136261u + (uint32_t)r;
        for (uint32_t i = 2; i <= N; i++)
            if (!comp[i]) {
                count++;
                h = (h ^ i) * 16777619u; /* FNV-1a over the primes */
            }
        total += count;
        ck = ck * 31u + h;
    }
    printf("sieve N=%u reps=%ld primes=%llu checksum=%08x\n", N, reps,
           (unsigned long long)total, ck);
    free(comp);
    return 0;
}
