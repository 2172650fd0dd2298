/// Why a packet was dropped; each has a counter and a stable name for summaries and metrics.
/// Counters are indexed by the raw value: a new reason goes at the end.
public enum DropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// IPv4 header inconsistent: IHL < 5, header or total length beyond the packet, unknown version;
    /// or an IPv6 packet shorter than its fixed header.
    case malformedIP
    /// IPv4 header checksum wrong (the kernel drops these before any hook).
    case badIPChecksum
    /// TCP/UDP header truncated or inconsistent, for a virtual service or a real server.
    case malformedL4
    /// A fragment (IPv4, or IPv6 with a fragment header, first or not) to a virtual address or from a
    /// real server: masq does not reassemble (its flows bypass conntrack/defrag).
    case fragment
    /// A new connection found no available real server (IPVS answers port-unreachable and drops).
    case noRealServer
    /// A new connection found the connection table full.
    case tableFull
    /// A new connection's tuple is already taken in the other direction by another connection.
    case tupleConflict
    /// An ICMP error about a NATed flow failed its checksum (IPVS verifies before translating).
    case badICMPChecksum
    /// A packet of a connection whose real server was removed, with `expire_nodest_conn` on.
    case realServerRemoved
    /// An IPv6 packet whose payload length runs past its bytes, or whose extension-header chain cannot
    /// be walked (RFC 8200 §4: truncated, more than `IPv6Header.maximumExtensionHeaders`, hop-by-hop
    /// options anywhere but first).
    case malformedExtensionHeaders
    /// An IPv6 UDP datagram with checksum 0, which masq would NAT: the checksum is mandatory over IPv6
    /// (RFC 8200 §8.1) and its receiver would discard the datagram.
    case udpZeroChecksum

    public var description: String {
        switch self {
        case .malformedIP: "malformed-ip"
        case .badIPChecksum: "bad-ip-checksum"
        case .malformedL4: "malformed-l4"
        case .fragment: "fragment"
        case .noRealServer: "no-real-server"
        case .tableFull: "table-full"
        case .tupleConflict: "tuple-conflict"
        case .badICMPChecksum: "bad-icmp-checksum"
        case .realServerRemoved: "real-server-removed"
        case .malformedExtensionHeaders: "malformed-extension-headers"
        case .udpZeroChecksum: "udp-zero-checksum"
        }
    }
}
