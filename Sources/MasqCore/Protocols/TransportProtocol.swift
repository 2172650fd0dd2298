/// What the engine asks of a transport protocol it tracks connections for, as IPVS asks its
/// `struct ip_vs_protocol` (include/net/ip_vs.h; ip_vs_proto.c registers one per protocol, each in its
/// own ip_vs_proto_*.c): whether the header is whole, whether a packet may start a connection, the
/// state it starts in, the state after each packet, the timeout of each state, and which entries never
/// completed their handshake (the early-drop candidates, which also get the short timeout under
/// pressure).
///
/// Every requirement is static. The packet path calls them through generic functions the optimizer
/// specialises per protocol (`Engine.transport`, one copy for TCP, one for UDP), and, for an entry
/// already in the table, through the switches on `Connection.proto` below: no existential and no
/// witness table on the packet path. A new protocol (SCTP, or TCP and UDP over IPv6 with their own
/// header checks) is one more conforming type, its states in `ConnectionState`, and a case in
/// `Engine.route`, in `TransportProtocols.all`, in `IPProtocol.isTracked` and in the switches below.
public protocol TransportProtocol {
    /// The IP protocol number the table is for.
    static var number: IPProtocol { get }

    /// IPVS's `timeout_table` defaults: seconds for each of the protocol's states, before
    /// `ipvsadm --set` changes them.
    static var defaultTimeouts: [(ConnectionState, UInt32)] { get }

    /// The L4 segment the header describes (trailing bytes cut off where the header says where it
    /// ends), or nil when the header is truncated or inconsistent (IPVS: `skb_header_pointer` failing,
    /// the handlers' length checks).
    static func validate(_ segment: PacketBytes) -> PacketBytes?

    /// Whether a packet for a virtual service that has no connection for it may start one (IPVS
    /// `conn_schedule`); one that may not is let through untouched.
    static func startsConnection(_ header: TransportHeader) -> Bool

    /// Whether a client's packet found on a connection in `state` starts a new connection instead, the
    /// old one expiring first (IPVS `conn_reuse_mode` 1: ip_vs_core.c's `is_new_conn` and
    /// `is_new_conn_expected`). The engine asks only for connections no persistence template controls.
    static func reopens(_ state: ConnectionState, with header: TransportHeader) -> Bool

    /// The state a new connection enters with its first (client → virtual service) packet.
    static func initialState(_ header: TransportHeader) -> ConnectionState

    /// The state after a packet travelling `direction` (IPVS `state_transition`).
    static func transition(from state: ConnectionState, direction: FlowDirection,
                           header: TransportHeader) -> ConnectionState

    /// Whether an entry in `state` never completed its handshake; `answered` says whether the real
    /// server has sent anything yet. Only these are ever evicted by early drop, and only these get
    /// `Engine.pressureHalfOpenTimeout` under pressure (IPVS `secure_tcp` in spirit).
    static func isHalfOpen(_ state: ConnectionState, answered: Bool) -> Bool

    /// The counter early drop's evictions of this protocol's half-open entries go to.
    static var evictionReason: EvictionReason { get }

    /// What a change of state says about the real server's handshake (the passive health signal), or
    /// nil when it says nothing.
    static func handshake(from previous: ConnectionState, to state: ConnectionState) -> HandshakeOutcome?

    /// Whether an entry expiring (not evicted) in `state` is a handshake its real server failed.
    static func failsHandshake(expiringIn state: ConnectionState, answered: Bool) -> Bool
}

extension TransportProtocol {
    /// Half-open in `state` only for want of the real server's answer, so its first answer ends that
    /// (UDP; a TCP connection leaves SYN_RECV by its state table instead).
    @inlinable public static func answerEndsHalfOpen(_ state: ConnectionState) -> Bool {
        isHalfOpen(state, answered: false) && !isHalfOpen(state, answered: true)
    }
}

/// What a connection's state change says about its real server: passive health counts the
/// handshakes in a row a real server failed and starts over at one it completed.
public enum HandshakeOutcome: Sendable {
    case completed
    case failed
}

/// The protocols masq tracks, for what is not on the packet path (default timeouts).
public enum TransportProtocols {
    public static var all: [any TransportProtocol.Type] { [TCPProtocol.self, UDPProtocol.self] }
}

extension IPProtocol {
    /// A protocol with a behaviour table (TCP, UDP): its packets are looked up by ports.
    @inlinable public var isTracked: Bool { self == .tcp || self == .udp }
}

extension Connection {
    /// Early drop's question (`TransportProtocol.isHalfOpen`), asked of the entry's own protocol.
    @inline(__always) var isHalfOpen: Bool {
        switch proto {
        case .tcp: TCPProtocol.isHalfOpen(state, answered: packetsOut > 0)
        case .udp: UDPProtocol.isHalfOpen(state, answered: packetsOut > 0)
        default: false
        }
    }

    /// The counter an eviction of this half-open entry goes to.
    var evictionReason: EvictionReason {
        switch proto {
        case .udp: UDPProtocol.evictionReason
        default: TCPProtocol.evictionReason
        }
    }

    /// Whether this entry, expiring now (not evicted), is a handshake its real server failed.
    var failsHandshakeOnExpiry: Bool {
        switch proto {
        case .tcp: TCPProtocol.failsHandshake(expiringIn: state, answered: packetsOut > 0)
        case .udp: UDPProtocol.failsHandshake(expiringIn: state, answered: packetsOut > 0)
        default: false
        }
    }
}
