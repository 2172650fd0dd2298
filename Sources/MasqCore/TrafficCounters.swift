/// Packet and byte counts of a service or real server (ipvsadm `--stats`). Codable: the control
/// protocol's `state` answer carries them as they are.
public struct TrafficCounters: Codable, Equatable, Sendable {
    public var connections: UInt64 = 0
    public var packetsIn: UInt64 = 0
    public var packetsOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0

    public init(connections: UInt64 = 0, packetsIn: UInt64 = 0, packetsOut: UInt64 = 0, bytesIn: UInt64 = 0,
                bytesOut: UInt64 = 0) {
        self.connections = connections
        self.packetsIn = packetsIn
        self.packetsOut = packetsOut
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }
}

extension TrafficCounters {
    /// A packet from the client (IPVS `ip_vs_in_stats`).
    @inline(__always) mutating func countInbound(length: UInt64) {
        packetsIn &+= 1
        bytesIn &+= length
    }

    /// A packet from the real server (IPVS `ip_vs_out_stats`).
    @inline(__always) mutating func countOutbound(length: UInt64) {
        packetsOut &+= 1
        bytesOut &+= length
    }

    /// A new connection and its first packet (IPVS `ip_vs_conn_stats` + `ip_vs_in_stats`).
    @inline(__always) mutating func countConnection(length: UInt64) {
        connections &+= 1
        countInbound(length: length)
    }
}
