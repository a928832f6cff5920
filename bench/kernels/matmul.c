/* matmul kernel: C = A*B for dense SIZE x SIZE double matrices, repeated
 * `scale` times (B is perturbed between repetitions).
 * Output: "matmul n=<size> reps=<r> checksum=<%.17g>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SIZE 384
#define REPS 18

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    const int n = SIZE;
    double *a = malloc(sizeof(double) * n * n);
    double *b = malloc(sizeof(double) * n * n);
    double *c = malloc(sizeof(double) * n * n);
    if (!a || !b || !c) return 2;
    uint32_t x = 12345u;
    for (int i = 0; i < n * n; i++) {
        x = x * 1103515245u + 12345u;
        a[i] = (double)((x >> 8) & 0xffff) / 65536.0 - 0.5;
        x = x * 1103515245u + 12345u;
        b[i] = (double)((x >> 8) & 0xffff) / 65536.0 - 0.5;
    }
    double sum = 0.0;
    for (long r = 0; r < REPS * scale; r++) {
        for (int i = 0; i < n; i++) {
            double *ci = c + (size_t)i * n;
            for (int j = 0; j < n; j++) ci[j] = 0.0;
            for (int k = 0; k < n; k++) {
                double aik = a[(size_t)i * n + k];
                const double *bk = b + (size_t)k * n;
                for (int j = 0; j < n; j++) ci[j] += aik * bk[j];
            }
        }
        for (int i = 0; i < n * n; i++) sum += c[i] * (double)((i % 7) - 3);
        b[r % (n * n)] += 1.0;
    }
    printf("matmul n=%d reps=%ld checksum=%.17g\n", n, REPS * scale, sum);
    free(a); free(b); free(c);
    return 0;
}
