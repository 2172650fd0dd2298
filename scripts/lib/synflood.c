/* A bounded SYN sender for scripts/flood (lab only). Sends TCP SYNs to DST:DPORT from every
 * source address in SRC/PREFIX (inside 198.18.0.0/15 only, checked) and distinct source ports,
 * one new 4-tuple per packet, until COUNT packets are sent or SECONDS have passed, at most PPS
 * packets a second (0: as fast as it can). Prints "sent N in S s (P pps)" at the end.
 *
 *   synflood SRC/PREFIX DST DPORT COUNT SECONDS [PPS]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint16_t csum(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    for (; len > 1; p += 2, len -= 2) sum += (uint32_t)p[0] << 8 | p[1];
    if (len) sum += (uint32_t)p[0] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* 198.18.0.0/15: the benchmarking range the lab lives in. */
static int in_lab(uint32_t host_order) { return (host_order & 0xfffe0000u) == 0xc6120000u; }

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: synflood SRC/PREFIX DST DPORT COUNT SECONDS [PPS]\n");
        return 2;
    }
    char net[64];
    snprintf(net, sizeof net, "%s", argv[1]);
    char *slash = strchr(net, '/');
    int plen = slash ? atoi(slash + 1) : 32;
    if (slash) *slash = 0;
    struct in_addr a, d;
    if (!inet_aton(net, &a) || !inet_aton(argv[2], &d) || plen < 15 || plen > 32) {
        fprintf(stderr, "synflood: bad address or prefix\n");
        return 2;
    }
    uint32_t base = ntohl(a.s_addr), span = plen == 32 ? 1 : 1u << (32 - plen);
    base &= plen == 32 ? 0xffffffffu : ~(span - 1);
    if (!in_lab(base) || !in_lab(base + span - 1) || !in_lab(ntohl(d.s_addr))) {
        fprintf(stderr, "synflood: sources and destination must be inside 198.18.0.0/15\n");
        return 2;
    }
    int dport = atoi(argv[3]);
    unsigned long long count = strtoull(argv[4], 0, 10);
    double seconds = atof(argv[5]), pps = argc > 6 ? atof(argv[6]) : 0;
    if (dport < 1 || dport > 65535 || count == 0 || seconds <= 0 || seconds > 600) {
        fprintf(stderr, "synflood: bad port, count or seconds (at most 600)\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (s < 0) { perror("synflood: socket"); return 1; }
    int sndbuf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    struct { struct iphdr ip; struct tcphdr tcp; } __attribute__((packed)) pkt;
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = d };
    unsigned long long sent = 0, errors = 0;
    uint32_t seq = 0x5eed0000u ^ (uint32_t)getpid();
    double start = now(), deadline = start + seconds;
    for (uint32_t port = 1024; !stop && sent < count; port = port == 65535 ? 1024 : port + 1) {
        for (uint32_t i = 0; i < span && !stop && sent < count; i++) {
            if ((sent & 1023) == 0) {
                double t = now();
                if (t >= deadline) { stop = 1; break; }
                if (pps > 0 && sent > (t - start) * pps) {
                    struct timespec w = { 0, 1000000 };
                    nanosleep(&w, 0);
                    i--;
                    continue;
                }
            }
            memset(&pkt, 0, sizeof pkt);
            pkt.ip.version = 4; pkt.ip.ihl = 5; pkt.ip.ttl = 64; pkt.ip.protocol = IPPROTO_TCP;
            pkt.ip.tot_len = htons(sizeof pkt);
            pkt.ip.id = htons((uint16_t)sent);
            pkt.ip.saddr = htonl(base + i);
            pkt.ip.daddr = d.s_addr;
            pkt.ip.check = htons(csum(&pkt.ip, sizeof pkt.ip, 0));
            pkt.tcp.source = htons((uint16_t)port);
            pkt.tcp.dest = htons((uint16_t)dport);
            pkt.tcp.seq = htonl(seq += 7919);
            pkt.tcp.doff = 5; pkt.tcp.syn = 1; pkt.tcp.window = htons(64240);
            struct { uint32_t s, d; uint8_t z, p; uint16_t l; } __attribute__((packed)) ph = {
                pkt.ip.saddr, pkt.ip.daddr, 0, IPPROTO_TCP, htons(sizeof pkt.tcp) };
            uint32_t sum = 0;
            const uint8_t *q = (const uint8_t *)&ph;
            for (size_t k = 0; k < sizeof ph; k += 2) sum += (uint32_t)q[k] << 8 | q[k + 1];
            pkt.tcp.check = htons(csum(&pkt.tcp, sizeof pkt.tcp, sum));
            if (sendto(s, &pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0) {
                errors++;
                if (errno == ENOBUFS || errno == EAGAIN) { struct timespec w = { 0, 100000 }; nanosleep(&w, 0); }
                else if (errors > 1000) { perror("synflood: sendto"); break; }
                continue;
            }
            sent++;
        }
    }
    double took = now() - start;
    printf("sent %llu in %.1f s (%.0f pps), %llu send errors\n", sent, took, took > 0 ? sent / took : 0, errors);
    return 0;
}
