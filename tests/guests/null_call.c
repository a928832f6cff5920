/* Calls through a null function pointer: an indirect-call trap from C. */
#include <stdio.h>
typedef int (*fn)(int);
static volatile fn target;
int main(void)
{
    printf("calling null\n");
    fflush(stdout);
    return target(3);
}
