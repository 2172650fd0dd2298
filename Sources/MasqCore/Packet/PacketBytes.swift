/// A mutable window onto packet bytes owned by someone else (a receive buffer, a capture record).
///
/// Views never copy and never allocate; integers are read and written in network byte order at a byte
/// index, in the manner of swift-nio's `getInteger`/`setInteger`. Callers check bounds once per header
/// (`count`), so the accessors themselves are unchecked in release builds.
public struct PacketBytes {
    public let base: UnsafeMutableRawPointer
    public let count: Int

    @inlinable public init(base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    @inlinable public init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.base = buffer.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 0x10)!
        self.count = buffer.count
    }

    /// The bytes from `offset` on, as a view of their own.
    @inlinable public func slice(from offset: Int) -> PacketBytes {
        PacketBytes(base: base + offset, count: count - offset)
    }

    @inlinable public func slice(from offset: Int, count: Int) -> PacketBytes {
        PacketBytes(base: base + offset, count: count)
    }

    @inlinable public func u8(_ index: Int) -> UInt8 {
        base.load(fromByteOffset: index, as: UInt8.self)
    }

    @inlinable public func u16(_ index: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: index, as: UInt16.self))
    }

    @inlinable public func u32(_ index: Int) -> UInt32 {
        UInt32(bigEndian: base.loadUnaligned(fromByteOffset: index, as: UInt32.self))
    }

    @inlinable public func setU8(_ value: UInt8, _ index: Int) {
        base.storeBytes(of: value, toByteOffset: index, as: UInt8.self)
    }

    @inlinable public func setU16(_ value: UInt16, _ index: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: index, as: UInt16.self)
    }

    @inlinable public func setU32(_ value: UInt32, _ index: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: index, as: UInt32.self)
    }

    public var bytes: [UInt8] {
        Array(UnsafeRawBufferPointer(start: base, count: count))
    }
}

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), open for values masq does not name.
public struct IPProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let icmp = IPProtocol(rawValue: 1)
    public static let tcp = IPProtocol(rawValue: 6)
    public static let udp = IPProtocol(rawValue: 17)

    /// The name ipvsadm prints: `TCP`, `UDP`, …
    public var description: String {
        switch self {
        case .tcp: "TCP"
        case .udp: "UDP"
        case .icmp: "ICMP"
        default: "IP(\(rawValue))"
        }
    }
}

/// An IPv4 address in host byte order.
public struct IPv4Address: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Dotted-quad only: `198.18.0.1`. No hostnames, no shorthand forms.
    public init?(_ text: Substring) {
        var value: UInt32 = 0
        var octets = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
            octets += 1
        }
        guard octets == 4 else { return nil }
        rawValue = value
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xff).\(rawValue >> 8 & 0xff).\(rawValue & 0xff)"
    }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}
