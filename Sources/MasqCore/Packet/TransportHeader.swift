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

// IPv6 (RFC 8200 §8.1): the same checksums over the IPv6 pseudo-header. A UDP checksum of 0 is not
// "none" there but invalid: `isChecksumValid` says so, and callers drop such datagrams before they
// rewrite anything (the rewriting functions, sharing `adjust`, would leave a 0 as it was).
extension TransportHeader {
    /// Folds a pseudo-header IPv6 address change into the checksum (RFC 1624 eqn. 3, eight words).
    /// Callers drop a UDP datagram whose checksum is 0 before rewriting it (RFC 8200 §8.1): on such a
    /// field this changes nothing, as over IPv4, and the datagram would stay invalid.
    @inlinable public func addressChanged(from old: IPv6Address, to new: IPv6Address) {
        adjust(InternetChecksum.update(checksum, old: old, new: new))
    }

    /// For a field holding the (uncomplemented) IPv6 pseudo-header sum (Linux CHECKSUM_PARTIAL):
    /// replace `old` by `new` in that sum.
    @inlinable public func pseudoHeaderSumAddressChanged(from old: IPv6Address, to new: IPv6Address) {
        let oldComplement = IPv6Address(high: ~old.high, low: ~old.low)
        let sum = UInt64(checksum) &+ oldComplement.checksumSum &+ new.checksumSum
        bytes.setU16(InternetChecksum.fold(sum), checksumOffset)
    }

    /// Computes the whole checksum from scratch over the IPv6 pseudo-header and the segment (whose
    /// length is `bytes.count`); UDP's computed 0 goes out as 0xffff (RFC 8200 §8.1, RFC 768).
    @inlinable public func finishChecksum(source: IPv6Address, destination: IPv6Address, proto: IPProtocol) {
        bytes.setU16(0, checksumOffset)
        let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination,
                                                   protocol: proto, length: bytes.count)
        let value = InternetChecksum.compute(bytes, initial: pseudo)
        bytes.setU16(zeroMeansNone && value == 0 ? 0xffff : value, checksumOffset)
    }

    /// Whether the checksum verifies over the IPv6 pseudo-header and the segment. A UDP checksum of 0
    /// is invalid over IPv6 (RFC 8200 §8.1: receivers discard it), unlike over IPv4.
    public func isChecksumValid(source: IPv6Address, destination: IPv6Address, proto: IPProtocol) -> Bool {
        if zeroMeansNone && checksum == 0 { return false }
        let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination,
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
