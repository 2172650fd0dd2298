#ifndef MASQ_CNFQ_SHIM_H
#define MASQ_CNFQ_SHIM_H
/* <netinet/in.h> first: the kernel's libc-compat header then leaves in6_addr to glibc. */
#include <netinet/in.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <sys/socket.h>
#include <time.h>

/* recvmmsg(2) and struct mmsghdr are _GNU_SOURCE-only in glibc's headers, which Swift's Glibc module
   is built without; declare the same layout and bind the name to glibc's symbol. */
struct masq_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
extern int masq_recvmmsg(int fd, struct masq_mmsghdr *messages, unsigned int count, int flags,
                         struct timespec *timeout) __asm__("recvmmsg");
#endif
