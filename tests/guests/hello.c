/* A wasi-libc program with printf, arguments and an exit code. */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    printf("hello from wasm: %d args:", argc - 1);
    for (int i = 1; i < argc; i++) printf(" [%s]", argv[i]);
    printf("\n");
    const char *e = getenv("GREETING");
    if (e) printf("GREETING=%s\n", e);
    fprintf(stderr, "to stderr\n");
    return argc > 1 && argv[1][0] == 'x' ? 7 : 0;
}
