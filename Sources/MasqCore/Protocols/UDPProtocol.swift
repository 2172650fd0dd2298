/// UDP "connections" as IPVS tracks them (ip_vs_proto_udp.c): one state, refreshed by every packet.
public enum UDPProtocol: TransportProtocol {
    public static let number = IPProtocol.udp

    /// IPVS's default UDP timeout, in seconds (`udp_timeouts[IP_VS_UDP_S_NORMAL]`).
    public static let defaultTimeout: UInt32 = 300
    public static let defaultTimeouts: [(ConnectionState, UInt32)] = [(.udp, defaultTimeout)]

    /// An 8-byte header whose length field (RFC 768) covers it and lies within the datagram; the
    /// segment is cut to that length (bytes after it are padding, not data).
    @inlinable public static func validate(_ segment: PacketBytes) -> PacketBytes? {
        guard segment.count >= 8 else { return nil }
        let length = Int(segment.u16(4))
        guard length >= 8, length <= segment.count else { return nil }
        return segment.slice(from: 0, count: length)
    }

    /// Every datagram to a virtual service may start a connection.
    @inlinable public static func startsConnection(_ header: TransportHeader) -> Bool { true }

    /// A datagram always belongs to the flow it is found on.
    @inlinable public static func reopens(_ state: ConnectionState, with header: TransportHeader) -> Bool { false }

    @inlinable public static func initialState(_ header: TransportHeader) -> ConnectionState { .udp }

    @inlinable public static func transition(from state: ConnectionState, direction: FlowDirection,
                                             header: TransportHeader) -> ConnectionState { state }

    /// A flow is half-open until the real server's first answer.
    @inlinable public static func isHalfOpen(_ state: ConnectionState, answered: Bool) -> Bool { !answered }

    public static let evictionReason = EvictionReason.unansweredUDP

    /// UDP has no handshake: passive health learns nothing from its flows.
    @inlinable public static func handshake(from previous: ConnectionState,
                                            to state: ConnectionState) -> HandshakeOutcome? { nil }

    @inlinable public static func failsHandshake(expiringIn state: ConnectionState, answered: Bool) -> Bool { false }
}
