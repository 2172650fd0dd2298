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
#endif
