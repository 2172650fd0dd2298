/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), open for values masq does not name.
public struct IPProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let icmp = IPProtocol(rawValue: 1)
    public static let tcp = IPProtocol(rawValue: 6)
    public static let udp = IPProtocol(rawValue: 17)

    // IPv6 next-header values (RFC 8200 §4, IANA "IPv6 Extension Header Types").
    /// Hop-by-Hop Options (RFC 8200 §4.3); only directly after the fixed header.
    public static let hopByHop = IPProtocol(rawValue: 0)
    /// Routing header (RFC 8200 §4.4).
    public static let routing = IPProtocol(rawValue: 43)
    /// Fragment header (RFC 8200 §4.5).
    public static let fragment = IPProtocol(rawValue: 44)
    /// Encapsulating Security Payload (RFC 4303): what follows it is encrypted.
    public static let esp = IPProtocol(rawValue: 50)
    /// Authentication Header (RFC 4302).
    public static let ah = IPProtocol(rawValue: 51)
    /// ICMP for IPv6 (RFC 4443).
    public static let icmpv6 = IPProtocol(rawValue: 58)
    /// No Next Header (RFC 8200 §4.7): nothing follows.
    public static let noNextHeader = IPProtocol(rawValue: 59)
    /// Destination Options (RFC 8200 §4.6).
    public static let destinationOptions = IPProtocol(rawValue: 60)
    /// Mobility header (RFC 6275 §6.1).
    public static let mobility = IPProtocol(rawValue: 135)
    /// Host Identity Protocol (RFC 7401 §5.1).
    public static let hip = IPProtocol(rawValue: 139)
    /// Shim6 (RFC 5533 §5).
    public static let shim6 = IPProtocol(rawValue: 140)

    /// The name ipvsadm prints: `TCP`, `UDP`, …
    public var description: String {
        switch self {
        case .tcp: "TCP"
        case .udp: "UDP"
        case .icmp: "ICMP"
        // ipvsadm has no name for it (it prints only TCP, UDP, SCTP); masq's own output does.
        case .icmpv6: "ICMPv6"
        default: "IP(\(rawValue))"
        }
    }
}
