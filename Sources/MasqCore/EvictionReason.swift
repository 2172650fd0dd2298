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
