/// Packet and byte counts of a service or real server (ipvsadm `--stats`).
public struct TrafficCounters: Equatable, Sendable {
    public var connections: UInt64 = 0
    public var packetsIn: UInt64 = 0
    public var packetsOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public init() {}
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
