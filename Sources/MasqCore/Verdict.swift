/// What happens to a packet after the engine has seen it.
public enum Verdict: Equatable, Sendable {
    /// Let through unchanged: not for a virtual service, or nothing to translate.
    case accept
    /// Let through with its bytes rewritten (in place) for the given direction of a NAT connection.
    case rewritten(FlowDirection)
    /// Not let through.
    case drop(DropReason)

    public var accepts: Bool {
        if case .drop = self { return false }
        return true
    }
}

/// Why a packet was dropped; each has a counter and a stable name for summaries and metrics.
public enum DropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// IPv4 header inconsistent: IHL < 5, header or total length beyond the packet, unknown version.
    case malformedIP
    /// IPv4 header checksum wrong (the kernel drops these before any hook).
    case badIPChecksum
    /// TCP/UDP header truncated or inconsistent, for a virtual service or a real server.
    case malformedL4
    /// A fragment for a virtual service: masq does not reassemble (its flows bypass conntrack/defrag).
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
        }
    }
}

/// Why an entry was evicted from a full table to make room for a new flow (early drop): only flows
/// that never completed their handshake are ever evicted, never an established one.
public enum EvictionReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// A TCP connection still in SYN_RECV (or SYN_SENT): the client never acknowledged the real
    /// server's SYN-ACK, as with a spoofed SYN.
    case halfOpenTCP
    /// A UDP flow the real server never answered.
    case unansweredUDP
    /// A persistence template no connection uses any more (its connections evicted or gone).
    case idleTemplate

    public var description: String {
        switch self {
        case .halfOpenTCP: "half-open-tcp"
        case .unansweredUDP: "unanswered-udp"
        case .idleTemplate: "idle-template"
        }
    }
}

/// Facts about a packet that come from where it was read, not from its bytes.
public struct PacketMeta: Sendable {
    /// The L4 checksum field holds only the pseudo-header sum (Linux CHECKSUM_PARTIAL; NFQUEUE's
    /// NFQA_SKB_CSUMNOTREADY). A rewritten packet then leaves with its checksum finished.
    public var partialChecksum: Bool
    /// The bytes are fewer than the packet had (capture snap length, NFQA_CAP_LEN): never rewritten.
    public var truncated: Bool
    /// A GSO packet whose L4 checksum field holds only the pseudo-header sum and stays that way: the
    /// kernel finishes each segment's checksum from it. Address changes update that sum (the kernel's
    /// `inet_proto_csum_replace4` for CHECKSUM_PARTIAL); port changes do not touch it.
    public var partialChecksumKept: Bool

    public init(partialChecksum: Bool = false, truncated: Bool = false, partialChecksumKept: Bool = false) {
        self.partialChecksum = partialChecksum
        self.truncated = truncated
        self.partialChecksumKept = partialChecksumKept
    }
}

/// Packet and byte counts of a service or real server (ipvsadm `--stats`).
public struct TrafficCounters: Equatable, Sendable {
    public var connections: UInt64 = 0
    public var packetsIn: UInt64 = 0
    public var packetsOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public init() {}
}

/// The engine's own counts, as `masq replay` summarises them.
public struct EngineCounters: Equatable, Sendable {
    public var packets: UInt64 = 0
    public var rewrittenInbound: UInt64 = 0
    public var rewrittenOutbound: UInt64 = 0
    public var untouched: UInt64 = 0
    /// Accepted untouched because the bytes were truncated (also counted in `untouched`).
    public var truncated: UInt64 = 0
    public var dropped = [UInt64](repeating: 0, count: DropReason.allCases.count)
    public var connectionsCreated: UInt64 = 0
    /// Entries evicted by early drop, by `EvictionReason`.
    public var evicted = [UInt64](repeating: 0, count: EvictionReason.allCases.count)
    /// Times the engine entered pressure mode (see `Engine.pressure`).
    public var pressureEntered: UInt64 = 0
    public var templatesCreated: UInt64 = 0
    public var expired: UInt64 = 0
    public init() {}

    public subscript(reason: DropReason) -> UInt64 { dropped[reason.rawValue] }
    public subscript(reason: EvictionReason) -> UInt64 { evicted[reason.rawValue] }
    public var droppedTotal: UInt64 { dropped.reduce(0, +) }
}
