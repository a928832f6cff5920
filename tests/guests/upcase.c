/* A filter: copies stdin to stdout in upper case, then reports the count. */
#include <ctype.h>
#include <stdio.h>
int main(void)
{
    long n = 0;
    int c;
    while ((c = getchar()) != EOF) {
        putchar(toupper(c));
        n++;
    }
    fprintf(stderr, "read %ld bytes\n", n);
    return 0;
}
