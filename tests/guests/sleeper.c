/* Sleeps in small steps (poll_oneoff on a clock), then says so; with an
 * argument "forever" it sleeps for a very long time (an idle process). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "forever") == 0) {
        for (;;) sleep(100000);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 10; i++) usleep(5000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    printf("slept %ld ms\n", ms);
    return ms >= 50 ? 0 : 1;
}
