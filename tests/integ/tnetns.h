/* Two network namespaces joined by an emulated link, for the network tests
 * of issue 6 (delay, loss, a cut link, a tampered packet):
 *
 * - real `tc netem` on a veth pair when the kernel has sch_netem;
 * - otherwise tunem (tests/tools/tunem.c, built as <build>/tunem): two TUN
 *   devices, one in each namespace, and a userspace delay queue between
 *   them with a seeded PRNG for loss. The kernels' TCP sees the same
 *   thing: delayed, lost, reordered packets.
 *
 * The log says which. Namespace a holds 10.231.0.1, b holds 10.231.0.2.
 * Tampering with a packet (a byte of TCP payload flipped, the TCP checksum
 * fixed up) needs tunem: netem's corruption leaves a bad checksum that the
 * receiving kernel drops, and TCP resends the packet intact. */
#ifndef UQ_TEST_TNETNS_H
#define UQ_TEST_TNETNS_H

#include <stdbool.h>
#include <sys/types.h>

#define TNS_IP_A "10.231.0.1"
#define TNS_IP_B "10.231.0.2"

typedef struct tns_shape {
    double delay_ms, jitter_ms; /* each way */
    double loss;                /* percent, each way */
    double rate_mbit;           /* 0: unlimited */
} tns_shape;

typedef struct tns {
    char a[32], b[32];          /* namespace names */
    bool netem;                 /* real netem (veth); else tunem */
    char dev_a[16], dev_b[16];
    tns_shape shape;
    pid_t tunem;                /* tunem: its pid, stdin and stdout */
    int to, from;
    char out[16384];            /* tunem's output not yet read as lines */
    size_t have;
    unsigned tampered;          /* "tampered ..." lines seen */
} tns;

/* Make both namespaces and the link between them, shaped as sh. With
 * need_tunem, tunem even if netem exists (for tampering). Returns false,
 * having logged "SKIPPED: <why>", when network namespaces cannot be made
 * here (not root, no iproute2) or neither netem nor /dev/net/tun exists. */
bool tns_up(tns *t, const tns_shape *sh, bool need_tunem);
/* Reshape the link (both ways). */
void tns_set(tns *t, const tns_shape *sh);
/* Cut the link (every packet dropped both ways, as if the cable were
 * pulled; what is in flight is lost), or restore it. */
void tns_cut(tns *t, bool cut);
/* tunem only: flip a byte of the next TCP packet of dir ("a2b" or "b2a")
 * carrying at least min payload bytes. */
void tns_tamper(tns *t, const char *dir, int min);
/* A counter of dir ("a2b" or "b2a"): "bytes" forwarded (netem too: what
 * the sending veth sent); with tunem also "read", "forwarded", "loss",
 * "cut", "overflow", "delayed", "tampered" (netem: 0). Reading them also
 * reads tunem's "tampered" reports (t->tampered). */
unsigned long long tns_stat(tns *t, const char *dir, const char *key);
/* Log the link's counters (tunem's, or netem's qdisc statistics), stop
 * tunem, delete the namespaces. */
void tns_down(tns *t);
/* Move the calling thread into namespace ns (its sockets and the threads it
 * creates live there); fails the test if it cannot. */
void tns_enter(const char *ns);
/* Run fmt as a shell command; its exit status. */
int tns_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
