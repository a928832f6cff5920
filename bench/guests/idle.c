/* idle_instance_rss_kib: a small wasi-libc program that does a little work
 * (formats into a buffer; prints nothing) and then sleeps for good: sleep()
 * is poll_oneoff on a clock, which in uqbar parks the task. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char buf[256];

int main(int argc, char **argv)
{
    int n = snprintf(buf, sizeof buf, "%s: idle instance %d of pid-less world, pi=%.5f", argv[0], argc, 3.14159265);
    if (n <= 0 || strlen(buf) == 0) return 1;
    for (;;) sleep(100000);
}
