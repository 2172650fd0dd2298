/// UDP "connections" as IPVS tracks them (ip_vs_proto_udp.c): one state, refreshed by every packet.
public enum UDPProtocol {
    /// IPVS's default UDP timeout, in seconds (`udp_timeouts[IP_VS_UDP_S_NORMAL]`).
    public static let defaultTimeout: UInt32 = 300

    /// Every datagram to a virtual service may start a connection.
    @inlinable public static func startsConnection() -> Bool { true }
}
