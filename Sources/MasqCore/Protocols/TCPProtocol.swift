/// TCP connection tracking as IPVS does it (net/netfilter/ipvs/ip_vs_proto_tcp.c): a state table indexed
/// by direction, the packet's most significant flag and the current state, and a timeout per state.
public enum TCPProtocol: TransportProtocol {
    public static let number = IPProtocol.tcp

    /// IPVS's default TCP timeouts (`tcp_timeouts[]`), in seconds.
    public static let defaultTimeouts: [(ConnectionState, UInt32)] = [
        (.none, 2), (.established, 900), (.synSent, 120), (.synRecv, 60), (.finWait, 120),
        (.timeWait, 120), (.close, 10), (.closeWait, 60), (.lastAck, 30), (.listen, 120), (.synAck, 120),
    ]

    /// A header of at least 20 bytes whose data offset (RFC 9293 §3.1) lies within the segment.
    @inlinable public static func validate(_ segment: PacketBytes) -> PacketBytes? {
        guard segment.count >= 20 else { return nil }
        let dataOffset = Int(segment.u8(12) >> 4) &* 4
        guard dataOffset >= 20, dataOffset <= segment.count else { return nil }
        return segment
    }

    /// IPVS `tcp_state_idx()`: RST wins over SYN, SYN over FIN, FIN over ACK.
    @inlinable static func eventIndex(_ flags: TCPFlags) -> Int? {
        if flags.contains(.rst) { return 3 }
        if flags.contains(.syn) { return 0 }
        if flags.contains(.fin) { return 1 }
        if flags.contains(.ack) { return 2 }
        return nil
    }

    // Columns: NONE ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN SYNACK
    private static let NO: UInt8 = 0, ES: UInt8 = 1, SS: UInt8 = 2, SR: UInt8 = 3, FW: UInt8 = 4, TW: UInt8 = 5
    private static let CL: UInt8 = 6, CW: UInt8 = 7, LA: UInt8 = 8, LI: UInt8 = 9, SA: UInt8 = 10

    /// IPVS `tcp_states[]` (the normal, non-secure table): [direction][event][state] → new state.
    @usableFromInline static let table: [UInt8] = [
        // INPUT (client → real server)
        SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR, // syn
        CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW, // fin
        ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES, // ack
        CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR, // rst
        // OUTPUT (real server → client)
        SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR, // syn
        TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW, // fin
        ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES, // ack
        CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL, // rst
    ]

    /// The state after a packet with `flags` travelling `direction`, from `state`.
    @inlinable public static func transition(from state: ConnectionState, direction: FlowDirection,
                                             flags: TCPFlags) -> ConnectionState {
        guard state.rawValue < 11 else { return state }
        // A segment with none of the four flags closes the connection (`set_tcp_state` starts from CLOSE).
        guard let event = eventIndex(flags) else { return .close }
        let row = Int(direction.rawValue) &* 4 &+ event
        return ConnectionState(rawValue: table[row &* 11 &+ Int(state.rawValue)])
    }

    @inlinable public static func transition(from state: ConnectionState, direction: FlowDirection,
                                             header: TransportHeader) -> ConnectionState {
        transition(from: state, direction: direction, flags: header.tcpFlags)
    }

    /// IPVS schedules a new TCP connection only on a SYN without RST (`tcp_conn_schedule`); anything
    /// else for a virtual service with no connection is let through untouched.
    @inlinable public static func startsConnection(_ flags: TCPFlags) -> Bool {
        flags.contains(.syn) && !flags.contains(.rst)
    }

    @inlinable public static func startsConnection(_ header: TransportHeader) -> Bool {
        startsConnection(header.tcpFlags)
    }

    /// A new SYN (no ACK) on a connection that has closed (TIME_WAIT or CLOSE).
    @inlinable public static func reopens(_ state: ConnectionState, with header: TransportHeader) -> Bool {
        let flags = header.tcpFlags
        return startsConnection(flags) && !flags.contains(.ack) && (state == .timeWait || state == .close)
    }

    /// The client's SYN moves NONE to SYN_RECV.
    @inlinable public static func initialState(_ header: TransportHeader) -> ConnectionState {
        transition(from: .none, direction: .inbound, flags: header.tcpFlags)
    }

    /// SYN_RECV (the client's SYN seen, its handshake not completed) or SYN_SENT.
    @inlinable public static func isHalfOpen(_ state: ConnectionState, answered: Bool) -> Bool {
        state == .synRecv || state == .synSent
    }

    public static let evictionReason = EvictionReason.halfOpenTCP

    /// From SYN_RECV, ESTABLISHED completes the handshake; CLOSE (the real server's RST) fails it.
    @inlinable public static func handshake(from previous: ConnectionState,
                                            to state: ConnectionState) -> HandshakeOutcome? {
        guard previous == .synRecv else { return nil }
        if state == .established { return .completed }
        if state == .close { return .failed }
        return nil
    }

    /// A SYN the real server never answered. One it answered with a SYN-ACK the client never
    /// acknowledged (a spoofed SYN) is not its failure.
    @inlinable public static func failsHandshake(expiringIn state: ConnectionState, answered: Bool) -> Bool {
        state == .synRecv && !answered
    }
}
