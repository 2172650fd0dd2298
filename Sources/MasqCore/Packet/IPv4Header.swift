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
