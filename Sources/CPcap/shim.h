#ifndef MASQ_CPCAP_SHIM_H
#define MASQ_CPCAP_SHIM_H
#include <pcap/pcap.h>
#endif
