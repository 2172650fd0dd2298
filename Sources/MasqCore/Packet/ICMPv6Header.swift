/// A view of an ICMPv6 message (RFC 4443 §2.1) at the start of `bytes`, which hold the whole message
/// (the IPv6 payload from the upper-layer offset: `IPv6Header.payload(from:)`).
///
/// Unlike ICMPv4, the checksum covers the IPv6 pseudo-header (RFC 4443 §2.3), so checking or fixing it
/// needs the addresses, and a NAT rewrite of either address changes it.
public struct ICMPv6Header {
    public let bytes: PacketBytes

    /// Type, code, checksum and the 32-bit field every message has (RFC 4443 §2.1, §3, §4).
    public static let headerLength = 8

    @inlinable public init(_ bytes: PacketBytes) { self.bytes = bytes }

    @inlinable public var type: ICMPv6Type { ICMPv6Type(rawValue: bytes.u8(0)) }
    @inlinable public var code: UInt8 { bytes.u8(1) }
    @inlinable public var checksum: UInt16 { bytes.u16(2) }
    /// The next-hop link's MTU of a packet too big message (RFC 4443 §3.2).
    @inlinable public var mtu: UInt32 { bytes.u32(4) }
    /// The offset in the invoking packet of the error a parameter problem reports (RFC 4443 §3.4).
    @inlinable public var pointer: UInt32 { bytes.u32(4) }
    /// As much of the invoking packet as fit (its IPv6 header first), from offset 8 of an error message.
    @inlinable public var quoted: PacketBytes { bytes.slice(from: Self.headerLength) }

    /// The checksum verifies over the pseudo-header (upper-layer length = the message's byte count,
    /// next header 58) and the message (RFC 4443 §2.3, RFC 8200 §8.1).
    @inlinable public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination,
                                                   protocol: .icmpv6, length: bytes.count)
        return InternetChecksum.fold(InternetChecksum.accumulate(bytes, into: pseudo)) == 0xffff
    }

    /// Computes the checksum from scratch over pseudo-header and message (RFC 4443 §2.3).
    @inlinable public func recomputeChecksum(source: IPv6Address, destination: IPv6Address) {
        bytes.setU16(0, 2)
        let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination,
                                                   protocol: .icmpv6, length: bytes.count)
        bytes.setU16(InternetChecksum.compute(bytes, initial: pseudo), 2)
    }

    /// Folds a pseudo-header address change into the checksum (RFC 1624 eqn. 3 over eight words).
    @inlinable public func addressChanged(from old: IPv6Address, to new: IPv6Address) {
        bytes.setU16(InternetChecksum.update(checksum, old: old, new: new), 2)
    }
}

/// ICMPv6 message types (RFC 4443 §2.1, RFC 4861 §4), open for types masq does not name.
public struct ICMPv6Type: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let destinationUnreachable = ICMPv6Type(rawValue: 1)
    public static let packetTooBig = ICMPv6Type(rawValue: 2)
    public static let timeExceeded = ICMPv6Type(rawValue: 3)
    public static let parameterProblem = ICMPv6Type(rawValue: 4)
    public static let echoRequest = ICMPv6Type(rawValue: 128)
    public static let echoReply = ICMPv6Type(rawValue: 129)
    // Neighbor Discovery (RFC 4861 §4).
    public static let routerSolicitation = ICMPv6Type(rawValue: 133)
    public static let routerAdvertisement = ICMPv6Type(rawValue: 134)
    public static let neighborSolicitation = ICMPv6Type(rawValue: 135)
    public static let neighborAdvertisement = ICMPv6Type(rawValue: 136)
    public static let redirect = ICMPv6Type(rawValue: 137)

    /// An error message: types 0-127 (RFC 4443 §2.1); 128-255 are informational.
    @inlinable public var isError: Bool { rawValue < 128 }

    /// The four errors RFC 4443 defines, which quote the invoking packet from offset 8 and which masq
    /// translates for NATed flows (as ICMPType.quotesDatagram for IPv4).
    @inlinable public var quotesDatagram: Bool { (1...4).contains(rawValue) }

    /// Neighbor Discovery (RFC 4861): link-local by definition (hop limit 255), never a NATed flow.
    @inlinable public var isNeighborDiscovery: Bool { (133...137).contains(rawValue) }
}
