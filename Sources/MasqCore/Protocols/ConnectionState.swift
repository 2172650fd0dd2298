/// A connection's protocol state, named as `ipvsadm -L -c` prints it.
public struct ConnectionState: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    // TCP states, in the order of IPVS's `enum ip_vs_tcp_states`.
    public static let none = ConnectionState(rawValue: 0)
    public static let established = ConnectionState(rawValue: 1)
    public static let synSent = ConnectionState(rawValue: 2)
    public static let synRecv = ConnectionState(rawValue: 3)
    public static let finWait = ConnectionState(rawValue: 4)
    public static let timeWait = ConnectionState(rawValue: 5)
    public static let close = ConnectionState(rawValue: 6)
    public static let closeWait = ConnectionState(rawValue: 7)
    public static let lastAck = ConnectionState(rawValue: 8)
    public static let listen = ConnectionState(rawValue: 9)
    public static let synAck = ConnectionState(rawValue: 10)
    /// UDP has one state (IPVS `IP_VS_UDP_S_NORMAL`, printed "UDP").
    public static let udp = ConnectionState(rawValue: 11)

    public static let count = 12

    public var description: String {
        switch self {
        case .none: "NONE"
        case .established: "ESTABLISHED"
        case .synSent: "SYN_SENT"
        case .synRecv: "SYN_RECV"
        case .finWait: "FIN_WAIT"
        case .timeWait: "TIME_WAIT"
        case .close: "CLOSE"
        case .closeWait: "CLOSE_WAIT"
        case .lastAck: "LAST_ACK"
        case .listen: "LISTEN"
        case .synAck: "SYNACK"
        case .udp: "UDP"
        default: "STATE\(rawValue)"
        }
    }
}
