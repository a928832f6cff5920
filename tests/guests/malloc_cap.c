/* Allocates 1 MiB blocks until malloc returns NULL, touching each, then
 * reports how many it got. Under a memory cap malloc must fail cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char *volatile keep[200000]; /* the blocks escape: no allocation is optimised away */

int main(void)
{
    int n = 0;
    for (;;) {
        char *p = malloc(1 << 20);
        if (!p) break;
        memset(p, 0xab, 1 << 20);
        keep[n] = p;
        if (++n > 100000) break;
    }
    printf("allocated %d MiB then malloc returned NULL\n", n);
    char *small = malloc(16);
    printf("still alive: %s\n", small ? "small malloc ok" : "small malloc failed");
    return n > 0 && n < 100000 ? 0 : 1;
}
