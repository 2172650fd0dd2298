/// A view of an IPv6 fixed header (RFC 8200 §3) at the start of `bytes`.
///
/// As with `IPv4Header`, the accessors do not check bounds: the caller checks `bytes.count >= length`
/// before reading a field. `upperLayer()` checks everything it reads, the fixed header included.
///
/// masq does not do jumbograms (RFC 2675): a payload length of 0 is rejected by `upperLayer()` as
/// `.truncated`, whatever a hop-by-hop header says, so nothing past the 64 KiB the field can express is
/// ever read as payload.
public struct IPv6Header {
    public let bytes: PacketBytes

    /// The fixed header's length; IPv6 has no options in it (they live in extension headers, §4).
    public static let length = 40
    /// Extension headers `upperLayer()` walks before it gives up with `.tooLong`. RFC 8200 sets no limit;
    /// real traffic carries one or two, and a bound keeps the walk's cost constant per packet.
    public static let maximumExtensionHeaders = 8

    @inlinable public init(_ bytes: PacketBytes) { self.bytes = bytes }

    @inlinable public var version: UInt8 { bytes.u8(0) >> 4 }
    /// The 8-bit traffic class (DSCP and ECN, RFC 2474 / RFC 3168), bits 4-11 of the first word.
    @inlinable public var trafficClass: UInt8 { UInt8(truncatingIfNeeded: bytes.u16(0) >> 4) }
    /// The 20-bit flow label (RFC 6437).
    @inlinable public var flowLabel: UInt32 { bytes.u32(0) & 0x000f_ffff }
    /// Bytes after the fixed header, extension headers included (0 would mean a jumbogram: unsupported).
    @inlinable public var payloadLength: Int { Int(bytes.u16(4)) }
    /// The packet's length as the header says: the fixed header and its payload, padding excluded.
    @inlinable public var totalLength: Int { Self.length &+ payloadLength }
    /// The first header after the fixed header: an extension header or the upper layer.
    @inlinable public var nextHeader: IPProtocol { IPProtocol(rawValue: bytes.u8(6)) }
    @inlinable public var hopLimit: UInt8 { bytes.u8(7) }
    @inlinable public var source: IPv6Address { IPv6Address(bytes, at: 8) }
    @inlinable public var destination: IPv6Address { IPv6Address(bytes, at: 24) }

    /// Rewrites the source address. IPv6 has no header checksum; the upper layer's pseudo-header
    /// checksum must be updated by the caller (`TransportHeader.addressChanged`, RFC 8200 §8.1).
    @inlinable public func setSource(_ address: IPv6Address) { address.store(to: bytes, at: 8) }

    /// Rewrites the destination address; the upper layer's checksum is the caller's, as for `setSource`.
    @inlinable public func setDestination(_ address: IPv6Address) { address.store(to: bytes, at: 24) }

    /// The upper-layer bytes from `offset` (as `upperLayer()` returns it) to the end of the payload the
    /// header's payload length says, padding after it excluded, as `IPv4Header.payload` does. Only for
    /// an offset from a successful `upperLayer()`, which has checked `offset <= totalLength <= count`.
    @inlinable public func payload(from offset: Int) -> PacketBytes {
        bytes.slice(from: offset, count: totalLength &- offset)
    }

    /// Walks the extension-header chain (RFC 8200 §4) to the upper-layer header.
    ///
    /// Walked: hop-by-hop options (only directly after the fixed header, §4.1), routing, destination
    /// options, mobility (RFC 6275), HIP (RFC 7401) and shim6 (RFC 5533), all `(Hdr Ext Len + 1) * 8`
    /// bytes; the fragment header (8 bytes, §4.5); AH (RFC 4302 §2.2: `(Payload Len + 2) * 4` bytes).
    /// Anything else ends the walk and is the upper layer: TCP, UDP, ICMPv6, ESP (encrypted beyond),
    /// no-next-header, or a protocol masq does not know. A fragment with a non-zero offset ends it too:
    /// what follows its fragment header is the middle of a datagram, not a header. A first fragment
    /// goes on, since its fragment must hold the whole header chain (RFC 8200 §4.5, RFC 7112).
    ///
    /// Every header is checked to lie within both the bytes and the payload length before it is read,
    /// and at most `maximumExtensionHeaders` are walked, so the walk is bounded and cannot loop.
    @inlinable public func upperLayer() throws(IPv6ChainError) -> IPv6UpperLayer {
        guard bytes.count >= Self.length else { throw .truncated }
        // No jumbograms: a payload length of 0 is never a packet masq forwards.
        guard payloadLength > 0 else { throw .truncated }
        let end = totalLength
        guard end <= bytes.count else { throw .payloadLengthBeyondPacket }
        return try walk(to: end)
    }

    /// `upperLayer()` for the packet an ICMPv6 error quotes (RFC 4443 §2.4(c)): the quote is cut short
    /// to fit the minimum MTU while its payload length is still the original packet's, so the walk is
    /// bounded by the bytes present (and by the payload length when they are more: padding). Every
    /// extension header walked lies within the quote; the upper-layer header at the returned offset may
    /// be cut short, so the caller checks that the bytes it reads from it are there.
    @inlinable public func quotedUpperLayer() throws(IPv6ChainError) -> IPv6UpperLayer {
        guard bytes.count >= Self.length else { throw .truncated }
        guard payloadLength > 0 else { throw .truncated }
        return try walk(to: min(totalLength, bytes.count))
    }

    /// The walk itself, every header checked to lie before `end` (at most `bytes.count`).
    @inlinable func walk(to end: Int) throws(IPv6ChainError) -> IPv6UpperLayer {
        var proto = nextHeader
        var offset = Self.length
        var fragment: IPv6Fragment? = nil
        var routedOnward = false
        var walked = 0
        while true {
            let headerLength: Int
            switch proto {
            case .hopByHop, .routing, .destinationOptions, .mobility, .hip, .shim6:
                if proto == .hopByHop && offset != Self.length { throw .hopByHopNotFirst }
                guard offset &+ 2 <= end else { throw .truncated }
                headerLength = (Int(bytes.u8(offset &+ 1)) &+ 1) &* 8
            case .fragment:
                headerLength = 8
            case .ah:
                guard offset &+ 2 <= end else { throw .truncated }
                headerLength = (Int(bytes.u8(offset &+ 1)) &+ 2) &* 4
            default:
                return IPv6UpperLayer(proto: proto, offset: offset, fragment: fragment, routedOnward: routedOnward)
            }
            guard walked < Self.maximumExtensionHeaders else { throw .tooLong }
            walked &+= 1
            guard offset &+ headerLength <= end else { throw .truncated }
            let next = IPProtocol(rawValue: bytes.u8(offset))
            // Segments Left (RFC 8200 §4.4, the fourth byte): the destination is not the last one.
            if proto == .routing && bytes.u8(offset &+ 3) != 0 { routedOnward = true }
            if proto == .fragment {
                let field = bytes.u16(offset &+ 2)
                let this = IPv6Fragment(offset: Int(field & 0xfff8), moreFragments: field & 1 != 0,
                                        identification: bytes.u32(offset &+ 4))
                // An atomic fragment (offset 0, no more: RFC 6946) says less than a real one after it.
                if !(fragment?.isFragment ?? false) { fragment = this }
                if this.offset != 0 {
                    return IPv6UpperLayer(proto: next, offset: offset &+ headerLength, fragment: fragment,
                                          routedOnward: routedOnward)
                }
            }
            proto = next
            offset &+= headerLength
        }
    }
}

/// Where an IPv6 packet's upper layer starts, as `IPv6Header.upperLayer()` found it.
public struct IPv6UpperLayer: Equatable, Sendable {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, ESP, no-next-header, …).
    public var proto: IPProtocol
    /// The upper-layer header's offset from the start of the IPv6 header; at most `totalLength`.
    public var offset: Int
    /// The fragment header on the way, if any (it may be an atomic fragment: check `isFragment`).
    public var fragment: IPv6Fragment?
    /// A routing header with segments left is on the way: the destination address is not the packet's
    /// final one, and the upper layer's checksum covers that final one (RFC 8200 §8.1), not it.
    public var routedOnward: Bool

    @inlinable public init(proto: IPProtocol, offset: Int, fragment: IPv6Fragment? = nil, routedOnward: Bool = false) {
        self.proto = proto
        self.offset = offset
        self.fragment = fragment
        self.routedOnward = routedOnward
    }

    /// A fragment of a larger datagram, first or not: its upper-layer header is incomplete or absent.
    @inlinable public var isFragment: Bool { fragment?.isFragment ?? false }
}

/// The fields of an IPv6 fragment header (RFC 8200 §4.5).
public struct IPv6Fragment: Equatable, Sendable {
    /// The fragment's offset in the original datagram's fragmentable part, in bytes (a multiple of 8).
    public var offset: Int
    /// The M flag: more fragments follow.
    public var moreFragments: Bool
    public var identification: UInt32

    @inlinable public init(offset: Int, moreFragments: Bool, identification: UInt32) {
        self.offset = offset
        self.moreFragments = moreFragments
        self.identification = identification
    }

    /// A real fragment; offset 0 with M clear is an atomic fragment (RFC 6946): the whole datagram.
    @inlinable public var isFragment: Bool { offset != 0 || moreFragments }
}

/// Why `IPv6Header.upperLayer()` found no upper layer; each is a drop verdict for the engine.
public enum IPv6ChainError: Error, Equatable, Sendable {
    /// The fixed header or an extension header goes beyond the payload length or the bytes; or the
    /// payload length is 0 (a jumbogram, RFC 2675, which masq does not do).
    case truncated
    /// More than `IPv6Header.maximumExtensionHeaders` extension headers.
    case tooLong
    /// A hop-by-hop options header anywhere but directly after the fixed header (RFC 8200 §4.1).
    case hopByHopNotFirst
    /// The payload length says more bytes than the packet holds.
    case payloadLengthBeyondPacket
}
