/* Asks WASI for things a process is not granted: files, directories, a bad
 * descriptor, stdin when not granted. Each must fail with an errno, never a
 * crash. Prints one line per probe and "all denied" at the end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(void)
{
    int bad = 0;
    FILE *f = fopen("/etc/passwd", "r");
    printf("fopen /etc/passwd: %s\n", f ? "OPENED" : strerror(errno));
    bad += f != NULL;
    int fd = open("secret.txt", O_WRONLY | O_CREAT, 0600);
    printf("open secret.txt: %s\n", fd >= 0 ? "OPENED" : strerror(errno));
    bad += fd >= 0;
    DIR *d = opendir(".");
    printf("opendir .: %s\n", d ? "OPENED" : strerror(errno));
    bad += d != NULL;
    char c;
    ssize_t r = read(5, &c, 1);
    printf("read fd 5: %s\n", r >= 0 ? "READ" : strerror(errno));
    bad += r >= 0;
    errno = 0;
    r = write(9, "x", 1);
    printf("write fd 9: %s\n", r >= 0 ? "WROTE" : strerror(errno));
    bad += r >= 0;
    struct timespec ts;
    int cr = clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("clock: %s\n", cr == 0 && (ts.tv_sec > 0 || ts.tv_nsec > 0) ? "ok" : "FAILED");
    bad += cr != 0;
    unsigned char rnd[16] = {0};
    int gr = getentropy(rnd, sizeof rnd);
    int nz = 0;
    for (int i = 0; i < 16; i++) nz |= rnd[i];
    printf("random: %s\n", gr == 0 && nz ? "ok" : "FAILED");
    bad += gr != 0 || !nz;
    printf("%s\n", bad ? "SOMETHING WAS GRANTED" : "all denied");
    return bad;
}
