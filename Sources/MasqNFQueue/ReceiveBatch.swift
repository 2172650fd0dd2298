import CNetfilterQueue
import MasqCore
#if canImport(Glibc)
import Glibc
#endif

/// A packet the kernel queued for a verdict, viewed in place in the receive buffer (so a rewrite
/// needs no copy, and the verdict can send the same bytes back).
public struct QueuedPacket {
    public var id: UInt32
    /// The IP packet, writable in place.
    public var payload: PacketBytes
    /// The packet's real length when the kernel handed over fewer bytes (NFQA_CAP_LEN).
    public var originalLength: Int
    /// NFQA_SKB_INFO flags.
    public var skbInfo: UInt32
    /// The netfilter hook the packet was queued from (NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, ...).
    public var hook: UInt8 = 0
    /// NFQA_MARK: the packet's firewall mark (`skb->mark`, set by the user's `-j MARK` rules), which
    /// selects a firewall-mark service; 0 when the kernel sent none (it sends it only when non-zero,
    /// `nfqnl_build_packet_message`).
    public var mark: UInt32 = 0

    public var isGSO: Bool { skbInfo & UInt32(NFQA_SKB_GSO) != 0 }
    public var checksumNotReady: Bool { skbInfo & UInt32(NFQA_SKB_CSUMNOTREADY) != 0 }
    public var isTruncated: Bool { originalLength > payload.count }

    /// What the engine must know: a non-GSO packet whose L4 checksum holds only the pseudo-header sum
    /// must leave with it finished (TCP stalls otherwise); a GSO one keeps a partial sum, updated for
    /// the new addresses, from which the kernel checksums each segment; a truncated one is never rewritten.
    ///
    /// Except at LOCAL_IN: a packet delivered to the director's own stack is never segmented, and a
    /// verdict with a payload leaves it CHECKSUM_NONE, so TCP verifies the whole (GRO) packet against its
    /// checksum field: a GSO packet there leaves with its checksum computed in full, whatever the field
    /// held (a pseudo-header sum, or nothing useful after hardware LRO).
    ///
    /// The same for IPv6 packets: NFQA_SKB_INFO's flags and the NF_INET_* hook numbers do not depend
    /// on the family (an IPv6 TCP GSO packet's partial sum is over the IPv6 pseudo-header, RFC 8200 §8.1).
    public var meta: PacketMeta {
        if isGSO && hook == UInt8(NF_INET_LOCAL_IN.rawValue) {
            return PacketMeta(partialChecksum: true, truncated: isTruncated, mark: mark)
        }
        return PacketMeta(partialChecksum: checksumNotReady && !isGSO, truncated: isTruncated,
                          partialChecksumKept: checksumNotReady && isGSO, mark: mark)
    }
}

/// Buffers for one `recvmmsg`: many netlink datagrams (one queued packet each) per system call.
public struct ReceiveBatch: ~Copyable {
    public let capacity: Int
    public let bufferSize: Int
    private let buffers: UnsafeMutableRawPointer
    private let iovecs: UnsafeMutablePointer<iovec>
    let headers: UnsafeMutablePointer<masq_mmsghdr>
    private let attributes: UnsafeMutablePointer<UnsafePointer<nlattr>?>
    /// Datagrams read by the last receive.
    public internal(set) var count = 0
    /// Times the kernel said ENOBUFS: packets were lost because we fell behind.
    public internal(set) var enobufs: UInt64 = 0
    /// NLMSG_ERROR messages the kernel sent back (a verdict it refused, …).
    public private(set) var netlinkErrors: UInt64 = 0
    public private(set) var lastNetlinkError: Int32 = 0

    /// `bufferSize` must hold a 64 KiB GSO packet and its netlink headers.
    public init(capacity: Int = Engine.batchSize, bufferSize: Int = 65_536 + 4_096) {
        self.capacity = capacity
        self.bufferSize = bufferSize
        buffers = .allocate(byteCount: capacity * bufferSize, alignment: 64)
        iovecs = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        attributes = .allocate(capacity: Int(__NFQA_MAX.rawValue))
        packetCapacity = capacity * 4
        parsed = .allocate(capacity: packetCapacity)
        for i in 0..<capacity {
            iovecs[i] = iovec(iov_base: buffers + i * bufferSize, iov_len: bufferSize)
            headers[i] = masq_mmsghdr()
            headers[i].msg_hdr.msg_iov = iovecs + i
            headers[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        buffers.deallocate()
        iovecs.deallocate()
        headers.deallocate()
        attributes.deallocate()
        parsed.deallocate()
    }

    /// The queued packets of the last receive, in order, parsed by `parse()`.
    public private(set) var packetCount = 0
    private let parsed: UnsafeMutablePointer<QueuedPacket>
    private let packetCapacity: Int
    /// Packets beyond `packetCapacity` in one receive (never expected: one packet per datagram); the
    /// highest such id, which the caller must accept with a batch verdict so none goes unanswered.
    public private(set) var overflowID: UInt32?

    public func packet(_ index: Int) -> QueuedPacket { parsed[index] }

    /// The queued packets of the last receive, as a view valid until the next `parse()`.
    public var packets: UnsafeBufferPointer<QueuedPacket> { UnsafeBufferPointer(start: parsed, count: packetCount) }

    /// Walks the datagrams of the last receive: queued packets into `packet(_:)`, errors counted.
    public mutating func parse() {
        packetCount = 0
        overflowID = nil
        let packetType = UInt16(NFNL_SUBSYS_QUEUE) << 8 | UInt16(NFQNL_MSG_PACKET.rawValue)
        for i in 0..<count {
            var remaining = Int32(headers[i].msg_len)
            var nlh = (buffers + i * bufferSize).assumingMemoryBound(to: nlmsghdr.self)
            while mnl_nlmsg_ok(nlh, remaining) {
                let type = nlh.pointee.nlmsg_type
                if type == packetType {
                    if let packet = parse(nlh) {
                        if packetCount < packetCapacity {
                            parsed[packetCount] = packet
                            packetCount += 1
                        } else {
                            overflowID = packet.id
                        }
                    }
                } else if type == UInt16(NLMSG_ERROR) {
                    let error = mnl_nlmsg_get_payload(nlh).assumingMemoryBound(to: nlmsgerr.self).pointee.error
                    if error != 0 {
                        netlinkErrors &+= 1
                        lastNetlinkError = -error
                    }
                }
                nlh = mnl_nlmsg_next(nlh, &remaining)
            }
        }
    }

    private func parse(_ nlh: UnsafeMutablePointer<nlmsghdr>) -> QueuedPacket? {
        let count = Int(__NFQA_MAX.rawValue)
        attributes.update(repeating: nil, count: count)
        let parsed = attributes.withMemoryRebound(to: Optional<UnsafeMutablePointer<nlattr>>.self, capacity: count) {
            nfq_nlmsg_parse(nlh, $0)
        }
        guard parsed >= 0, let header = attributes[Int(NFQA_PACKET_HDR.rawValue)],
              let payloadAttribute = attributes[Int(NFQA_PAYLOAD.rawValue)] else { return nil }
        let packetHeader = mnl_attr_get_payload(header).assumingMemoryBound(to: nfqnl_msg_packet_hdr.self)
        let length = Int(mnl_attr_get_payload_len(payloadAttribute))
        let payload = PacketBytes(base: mnl_attr_get_payload(payloadAttribute), count: length)
        var originalLength = length
        if let capLen = attributes[Int(NFQA_CAP_LEN.rawValue)] {
            originalLength = Int(UInt32(bigEndian: mnl_attr_get_u32(capLen)))
        }
        var skbInfo: UInt32 = 0
        if let info = attributes[Int(NFQA_SKB_INFO.rawValue)] {
            skbInfo = UInt32(bigEndian: mnl_attr_get_u32(info))
        }
        var mark: UInt32 = 0
        if let markAttribute = attributes[Int(NFQA_MARK.rawValue)] {
            mark = UInt32(bigEndian: mnl_attr_get_u32(markAttribute))
        }
        return QueuedPacket(id: UInt32(bigEndian: packetHeader.pointee.packet_id), payload: payload,
                            originalLength: originalLength, skbInfo: skbInfo, hook: packetHeader.pointee.hook,
                            mark: mark)
    }
}
