/* c-loop: the baseline NFQUEUE loop for scripts/bench. Binds queue N (libmnl + libnetfilter_queue's
 * nfq_nlmsg_* API, like nf-queue.c), copy-packet 0xffff, F_GSO, queue length 8192 (as masq), and
 * answers every packet with NF_ACCEPT carrying the packet back. No NAT. A non-GSO packet flagged
 * CSUMNOTREADY gets its full TCP/UDP checksum first (the kernel marks a reinjected payload
 * CHECKSUM_NONE). ENOBUFS is counted, never fatal. SIGTERM/SIGINT: print counters, exit 0.
 * Build: cc -O2 -o c-loop bench/c-loop.c -lmnl -lnetfilter_queue         Usage: c-loop QUEUE */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static struct mnl_socket *nl;
static unsigned long long packets, enobufs, csum_fixed, gso, send_errors;

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s) {
    for (; n > 1; p += 2, n -= 2) s += (uint32_t)p[0] << 8 | p[1];
    if (n) s += (uint32_t)p[0] << 8;
    return s;
}

/* Full L4 checksum of an IPv4 TCP/UDP packet (pseudo-header + segment), written in place. */
static void finish_l4_checksum(uint8_t *pkt, size_t len) {
    if (len < 20 || (pkt[0] >> 4) != 4) return;
    size_t ihl = (size_t)(pkt[0] & 15) * 4, tot = (size_t)pkt[2] << 8 | pkt[3];
    if (ihl < 20 || tot > len || tot <= ihl) return;
    if (((pkt[6] << 8 | pkt[7]) & 0x3fff) != 0) return; /* a fragment: not a whole segment */
    uint8_t proto = pkt[9];
    size_t l4len = tot - ihl, off;
    if (proto == IPPROTO_TCP && l4len >= 20) off = 16;
    else if (proto == IPPROTO_UDP && l4len >= 8) off = 6;
    else return;
    uint8_t *l4 = pkt + ihl;
    l4[off] = l4[off + 1] = 0;
    uint32_t s = sum16(pkt + 12, 8, 0) + proto + (uint32_t)l4len;
    s = sum16(l4, l4len, s);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    uint16_t c = (uint16_t)~s;
    if (c == 0 && proto == IPPROTO_UDP) c = 0xffff;
    l4[off] = c >> 8;
    l4[off + 1] = c & 0xff;
    csum_fixed++;
}

static int queue_cb(const struct nlmsghdr *nlh, void *data) {
    struct nlattr *attr[NFQA_MAX + 1] = {0};
    char out[0xffff + 512];
    (void)data;
    if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return MNL_CB_OK;
    struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
    struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
    uint32_t id = ntohl(ph->packet_id);
    uint32_t skbinfo = attr[NFQA_SKB_INFO] ? ntohl(mnl_attr_get_u32(attr[NFQA_SKB_INFO])) : 0;
    packets++;
    struct nlmsghdr *v = nfq_nlmsg_put(out, NFQNL_MSG_VERDICT, ntohs(nfg->res_id));
    nfq_nlmsg_verdict_put(v, id, NF_ACCEPT);
    if (attr[NFQA_PAYLOAD]) {
        uint8_t *payload = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
        uint16_t plen = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
        int truncated = attr[NFQA_CAP_LEN] && ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN])) != plen;
        if (skbinfo & NFQA_SKB_GSO) gso++;
        if (!truncated) { /* a cut-short packet is accepted as is, without a payload */
            if ((skbinfo & NFQA_SKB_CSUMNOTREADY) && !(skbinfo & NFQA_SKB_GSO))
                finish_l4_checksum(payload, plen);
            nfq_nlmsg_verdict_put_pkt(v, payload, plen);
        }
    }
    if (mnl_socket_sendto(nl, v, v->nlmsg_len) < 0) send_errors++;
    return MNL_CB_OK;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s QUEUE\n", argv[0]); return 2; }
    unsigned queue = (unsigned)atoi(argv[1]);
    size_t bufsize = 0xffff + MNL_SOCKET_BUFFER_SIZE;
    char *buf = malloc(bufsize);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: recv returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl || !buf) { perror("mnl_socket_open"); return 1; }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) { perror("mnl_socket_bind"); return 1; }
    unsigned portid = mnl_socket_get_portid(nl);
    int rcvbuf = 64 << 20, off = 0;
    if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        perror("SO_RCVBUFFORCE");
    mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &off, sizeof off); /* ENOBUFS stays on: count it */

    struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) { perror("bind queue"); return 1; }
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
    mnl_attr_put_u32(nlh, NFQA_CFG_QUEUE_MAXLEN, htonl(8192));
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) { perror("config queue"); return 1; }
    fprintf(stderr, "c-loop: serving queue %u\n", queue);

    while (!stop) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, bufsize);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) { enobufs++; continue; }
            perror("recv");
            return 1;
        }
        if (mnl_cb_run(buf, (size_t)n, 0, portid, queue_cb, NULL) < 0 && errno != EINTR)
            perror("mnl_cb_run"); /* e.g. an error ack for a verdict on a vanished id: keep going */
    }
    fprintf(stderr, "c-loop: packets %llu gso %llu csum_fixed %llu enobufs %llu send_errors %llu\n",
            packets, gso, csum_fixed, enobufs, send_errors);
    mnl_socket_close(nl);
    return 0;
}
