/// A view of an IPv4 header (RFC 791 §3.1) at the start of `bytes`.
public struct IPv4Header {
    public let bytes: PacketBytes

    @inlinable public init(_ bytes: PacketBytes) { self.bytes = bytes }

    @inlinable public var version: UInt8 { bytes.u8(0) >> 4 }
    /// IHL in 32-bit words; options make it larger than 5.
    @inlinable public var ihl: Int { Int(bytes.u8(0) & 0x0f) }
    @inlinable public var headerLength: Int { ihl &* 4 }
    @inlinable public var totalLength: Int { Int(bytes.u16(2)) }
    @inlinable public var flagsAndFragmentOffset: UInt16 { bytes.u16(6) }
    @inlinable public var moreFragments: Bool { flagsAndFragmentOffset & 0x2000 != 0 }
    @inlinable public var dontFragment: Bool { flagsAndFragmentOffset & 0x4000 != 0 }
    @inlinable public var fragmentOffset: Int { Int(flagsAndFragmentOffset & 0x1fff) &* 8 }
    /// A fragment of a larger datagram, first or not: its L4 header is incomplete or absent.
    @inlinable public var isFragment: Bool { flagsAndFragmentOffset & 0x3fff != 0 }
    @inlinable public var ttl: UInt8 { bytes.u8(8) }
    @inlinable public var proto: IPProtocol { IPProtocol(rawValue: bytes.u8(9)) }
    @inlinable public var checksum: UInt16 { bytes.u16(10) }
    @inlinable public var source: IPv4Address { IPv4Address(rawValue: bytes.u32(12)) }
    @inlinable public var destination: IPv4Address { IPv4Address(rawValue: bytes.u32(16)) }

    /// The L4 bytes as the header's total length says (padding after it excluded).
    @inlinable public var payload: PacketBytes {
        bytes.slice(from: headerLength, count: totalLength &- headerLength)
    }

    /// The header checksum is valid (sums to all ones over the header, RFC 1071).
    @inlinable public var isChecksumValid: Bool {
        InternetChecksum.fold(InternetChecksum.accumulate(bytes.slice(from: 0, count: headerLength))) == 0xffff
    }

    /// Rewrites the source address, updating the header checksum incrementally (RFC 1624).
    @inlinable public func setSource(_ address: IPv4Address) {
        bytes.setU16(InternetChecksum.update(checksum, old: source.rawValue, new: address.rawValue), 10)
        bytes.setU32(address.rawValue, 12)
    }

    /// Rewrites the destination address, updating the header checksum incrementally (RFC 1624).
    @inlinable public func setDestination(_ address: IPv4Address) {
        bytes.setU16(InternetChecksum.update(checksum, old: destination.rawValue, new: address.rawValue), 10)
        bytes.setU32(address.rawValue, 16)
    }

    /// Recomputes the header checksum from scratch (RFC 791), as the kernel's `ip_send_check` does.
    @inlinable public func recomputeChecksum() {
        bytes.setU16(0, 10)
        bytes.setU16(InternetChecksum.compute(bytes.slice(from: 0, count: headerLength)), 10)
    }
}

/// A view of the ports shared by TCP and UDP headers, and the checksum at a protocol-specific offset.
public struct TransportHeader {
    public let bytes: PacketBytes
    /// Where the checksum field sits: 16 for TCP (RFC 793), 6 for UDP (RFC 768).
    public let checksumOffset: Int
    /// UDP's checksum 0 means "not computed" (RFC 768) and must stay 0.
    public let zeroMeansNone: Bool

    @inlinable public init(_ bytes: PacketBytes, proto: IPProtocol) {
        self.bytes = bytes
        if proto == .udp {
            checksumOffset = 6
            zeroMeansNone = true
        } else {
            checksumOffset = 16
            zeroMeansNone = false
        }
    }

    /// The smallest header size: 20 for TCP, 8 for UDP.
    @inlinable public static func minimumLength(_ proto: IPProtocol) -> Int { proto == .udp ? 8 : 20 }

    @inlinable public var sourcePort: UInt16 { bytes.u16(0) }
    @inlinable public var destinationPort: UInt16 { bytes.u16(2) }
    @inlinable public var checksum: UInt16 { bytes.u16(checksumOffset) }

    /// TCP flags byte (RFC 793 + RFC 3168): FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10.
    @inlinable public var tcpFlags: TCPFlags { TCPFlags(rawValue: bytes.u8(13)) }
    /// TCP data offset in bytes.
    @inlinable public var tcpHeaderLength: Int { Int(bytes.u8(12) >> 4) &* 4 }

    /// Changes a 16-bit field at `offset` and folds the change into the checksum (RFC 1624 eqn. 3).
    @inlinable func update16(_ offset: Int, to value: UInt16, adjustChecksum: Bool) {
        let old = bytes.u16(offset)
        bytes.setU16(value, offset)
        if adjustChecksum { adjust(InternetChecksum.update(checksum, old: old, new: value)) }
    }

    @inlinable func adjust(_ updated: UInt16) {
        if zeroMeansNone {
            if checksum == 0 { return }
            bytes.setU16(updated == 0 ? 0xffff : updated, checksumOffset)
        } else {
            bytes.setU16(updated, checksumOffset)
        }
    }

    @inlinable public func setSourcePort(_ port: UInt16, adjustChecksum: Bool = true) {
        update16(0, to: port, adjustChecksum: adjustChecksum)
    }

    @inlinable public func setDestinationPort(_ port: UInt16, adjustChecksum: Bool = true) {
        update16(2, to: port, adjustChecksum: adjustChecksum)
    }

    /// Folds a pseudo-header address change into the checksum (RFC 1624 eqn. 3).
    @inlinable public func addressChanged(from old: IPv4Address, to new: IPv4Address) {
        adjust(InternetChecksum.update(checksum, old: old.rawValue, new: new.rawValue))
    }

    /// For a field holding the (uncomplemented) pseudo-header sum: replace `old` by `new` in that sum.
    @inlinable public func pseudoHeaderSumAddressChanged(from old: IPv4Address, to new: IPv4Address) {
        var sum = UInt64(checksum)
        sum &+= UInt64(~UInt16(truncatingIfNeeded: old.rawValue >> 16)) &+ UInt64(~UInt16(truncatingIfNeeded: old.rawValue))
        sum &+= UInt64(new.rawValue >> 16) &+ UInt64(new.rawValue & 0xffff)
        bytes.setU16(InternetChecksum.fold(sum), checksumOffset)
    }

    /// Computes the whole checksum from scratch over pseudo-header and segment. Used to finish a packet
    /// whose checksum field holds only the partial pseudo-header sum (Linux CHECKSUM_PARTIAL).
    @inlinable public func finishChecksum(source: IPv4Address, destination: IPv4Address, proto: IPProtocol) {
        bytes.setU16(0, checksumOffset)
        let pseudo = InternetChecksum.pseudoHeader(source: source.rawValue, destination: destination.rawValue,
                                                   protocol: proto, length: bytes.count)
        let value = InternetChecksum.compute(bytes, initial: pseudo)
        bytes.setU16(zeroMeansNone && value == 0 ? 0xffff : value, checksumOffset)
    }

    /// Whether the checksum verifies over pseudo-header and segment (UDP's 0 counts as valid).
    public func isChecksumValid(source: IPv4Address, destination: IPv4Address, proto: IPProtocol) -> Bool {
        if zeroMeansNone && checksum == 0 { return true }
        let pseudo = InternetChecksum.pseudoHeader(source: source.rawValue, destination: destination.rawValue,
                                                   protocol: proto, length: bytes.count)
        return InternetChecksum.fold(InternetChecksum.accumulate(bytes, into: pseudo)) == 0xffff
    }
}

/// TCP header flags (RFC 793 §3.1, RFC 3168 §6.1).
public struct TCPFlags: OptionSet, Sendable {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
}

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
