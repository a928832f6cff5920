/* Unbounded recursion from C, with a frame the compiler cannot drop. */
#include <stdio.h>
static int depth(volatile int *p, int n)
{
    volatile int local[8];
    local[n & 7] = n;
    return depth(p, n + 1) + local[(n + 3) & 7] + *p;
}
int main(void)
{
    volatile int one = 1;
    printf("%d\n", depth(&one, 0));
    return 0;
}
