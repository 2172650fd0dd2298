/// A view of an ICMP message (RFC 792).
public struct ICMPHeader {
    public let bytes: PacketBytes
    @inlinable public init(_ bytes: PacketBytes) { self.bytes = bytes }

    @inlinable public var type: ICMPType { ICMPType(rawValue: bytes.u8(0)) }
    @inlinable public var code: UInt8 { bytes.u8(1) }
    @inlinable public var checksum: UInt16 { bytes.u16(2) }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 §4).
    @inlinable public var nextHopMTU: UInt16 { bytes.u16(6) }
    /// The IP header (and at least 8 bytes of its payload) an error message quotes, from offset 8.
    @inlinable public var quoted: PacketBytes { bytes.slice(from: 8) }

    @inlinable public var isChecksumValid: Bool {
        InternetChecksum.fold(InternetChecksum.accumulate(bytes)) == 0xffff
    }

    @inlinable public func recomputeChecksum() {
        bytes.setU16(0, 2)
        bytes.setU16(InternetChecksum.compute(bytes), 2)
    }
}

/// ICMP message types (RFC 792), open for types masq does not name.
public struct ICMPType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let echoReply = ICMPType(rawValue: 0)
    public static let destinationUnreachable = ICMPType(rawValue: 3)
    public static let sourceQuench = ICMPType(rawValue: 4)
    public static let echoRequest = ICMPType(rawValue: 8)
    public static let timeExceeded = ICMPType(rawValue: 11)
    public static let parameterProblem = ICMPType(rawValue: 12)

    /// Errors that quote the offending datagram's header, which masq translates for NATed flows.
    @inlinable public var quotesDatagram: Bool {
        self == .destinationUnreachable || self == .sourceQuench || self == .timeExceeded
            || self == .parameterProblem
    }
}
