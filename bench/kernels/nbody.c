/* nbody kernel: the Computer Language Benchmarks Game n-body simulation
 * (5 bodies, symplectic Euler), STEPS * scale steps.
 * Output: "nbody steps=<n> e0=<%.9f> e1=<%.9f>" */
#include <stdio.h>
#include <stdlib.h>

/* __builtin_sqrt: IEEE-exact on both x86-64 (sqrtsd) and wasm (f64.sqrt),
 * keeps the kernel free of <math.h>.  wasm's f64.sqrt never sets errno (clang's
 * wasm32 target defaults to -fno-math-errno); native gcc defaults to
 * -fmath-errno, which guards every sqrtsd with a branch to libm sqrt() and
 * (gcc 12) roughly doubles run time -- so build.sh passes -fno-math-errno
 * natively to compare like with like. Neither a pragma nor
 * __attribute__((optimize)) turns it off in gcc 12. */
#define SQRT(x) __builtin_sqrt(x)
#define STEPS 5000000L
#define PI 3.141592653589793
#define SOLAR_MASS (4 * PI * PI)
#define DAYS_PER_YEAR 365.24

struct body { double x, y, z, vx, vy, vz, mass; };

static struct body bodies[5] = {
    {0, 0, 0, 0, 0, 0, SOLAR_MASS},
    {4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
     1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
     -6.90460016972063023e-05 * DAYS_PER_YEAR, 9.54791938424326609e-04 * SOLAR_MASS},
    {8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
     -2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
     2.30417297573763929e-05 * DAYS_PER_YEAR, 2.85885980666130812e-04 * SOLAR_MASS},
    {1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
     2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
     -2.96589568540237556e-05 * DAYS_PER_YEAR, 4.36624404335156298e-05 * SOLAR_MASS},
    {1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
     2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
     -9.51592254519715870e-05 * DAYS_PER_YEAR, 5.15138902046611451e-05 * SOLAR_MASS},
};

static void advance(struct body *b, int nb, double dt)
{
    for (int i = 0; i < nb; i++)
        for (int j = i + 1; j < nb; j++) {
            double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
            double d2 = dx * dx + dy * dy + dz * dz;
            double mag = dt / (d2 * SQRT(d2));
            b[i].vx -= dx * b[j].mass * mag; b[i].vy -= dy * b[j].mass * mag;
            b[i].vz -= dz * b[j].mass * mag;
            b[j].vx += dx * b[i].mass * mag; b[j].vy += dy * b[i].mass * mag;
            b[j].vz += dz * b[i].mass * mag;
        }
    for (int i = 0; i < nb; i++) {
        b[i].x += dt * b[i].vx; b[i].y += dt * b[i].vy; b[i].z += dt * b[i].vz;
    }
}

static double energy(const struct body *b, int nb)
{
    double e = 0.0;
    for (int i = 0; i < nb; i++) {
        e += 0.5 * b[i].mass * (b[i].vx * b[i].vx + b[i].vy * b[i].vy + b[i].vz * b[i].vz);
        for (int j = i + 1; j < nb; j++) {
            double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
            e -= b[i].mass * b[j].mass / SQRT(dx * dx + dy * dy + dz * dz);
        }
    }
    return e;
}

static void offset_momentum(struct body *b, int nb)
{
    double px = 0, py = 0, pz = 0;
    for (int i = 0; i < nb; i++) {
        px += b[i].vx * b[i].mass; py += b[i].vy * b[i].mass; pz += b[i].vz * b[i].mass;
    }
    b[0].vx = -px / SOLAR_MASS; b[0].vy = -py / SOLAR_MASS; b[0].vz = -pz / SOLAR_MASS;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    long steps = STEPS * scale;
    offset_momentum(bodies, 5);
    double e0 = energy(bodies, 5);
    for (long i = 0; i < steps; i++) advance(bodies, 5, 0.01);
    printf("nbody steps=%ld e0=%.9f e1=%.9f\n", steps, e0, energy(bodies, 5));
    return 0;
}
