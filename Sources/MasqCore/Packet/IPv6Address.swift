/// An IPv6 address (RFC 4291) as two 64-bit halves in host byte order: `high` holds the first eight
/// bytes on the wire, `low` the last eight. Two loads from a packet, two compares.
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    @inlinable public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// From eight 16-bit groups, as written: `IPv6Address(groups: (0x2001, 2, 0, 0, 0, 0, 0, 1))`.
    public init(groups g: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16)) {
        high = UInt64(g.0) << 48 | UInt64(g.1) << 32 | UInt64(g.2) << 16 | UInt64(g.3)
        low = UInt64(g.4) << 48 | UInt64(g.5) << 32 | UInt64(g.6) << 16 | UInt64(g.7)
    }

    /// The address at `offset` in `bytes` (network byte order on the wire).
    @inlinable public init(_ bytes: PacketBytes, at offset: Int) {
        high = UInt64(bigEndian: bytes.base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        low = UInt64(bigEndian: bytes.base.loadUnaligned(fromByteOffset: offset &+ 8, as: UInt64.self))
    }

    /// Writes the address at `offset` in `bytes`.
    @inlinable public func store(to bytes: PacketBytes, at offset: Int) {
        bytes.base.storeBytes(of: high.bigEndian, toByteOffset: offset, as: UInt64.self)
        bytes.base.storeBytes(of: low.bigEndian, toByteOffset: offset &+ 8, as: UInt64.self)
    }

    public static let unspecified = IPv6Address(high: 0, low: 0)

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? high >> (56 - 8 * i) : low >> (56 - 8 * (i - 8)))) }
    }

    /// The eight 16-bit groups, first to last.
    public var groups: [UInt16] {
        (0..<8).map { i in UInt16(truncatingIfNeeded: i < 4 ? high >> (48 - 16 * i) : low >> (48 - 16 * (i - 4))) }
    }

    /// The sum of the eight 16-bit groups (for pseudo-header checksums, RFC 8200 §8.1), unfolded.
    @inlinable public var checksumSum: UInt64 {
        (high >> 48) &+ (high >> 32 & 0xffff) &+ (high >> 16 & 0xffff) &+ (high & 0xffff)
            &+ (low >> 48) &+ (low >> 32 & 0xffff) &+ (low >> 16 & 0xffff) &+ (low & 0xffff)
    }

    /// The first `length` bits kept, the rest zero (ipvsadm `-M` for IPv6 services is a prefix length).
    public func masked(prefixLength length: Int) -> IPv6Address {
        let n = max(0, min(128, length))
        let highMask: UInt64 = n >= 64 ? .max : (n == 0 ? 0 : .max << (64 - n))
        let lowMask: UInt64 = n <= 64 ? 0 : (n == 128 ? .max : .max << (128 - n))
        return IPv6Address(high: high & highMask, low: low & lowMask)
    }

    /// A 32-bit fold of the address (xor of its four words), for hashing schedulers and filters.
    @inlinable public var folded: UInt32 {
        UInt32(truncatingIfNeeded: high >> 32) ^ UInt32(truncatingIfNeeded: high)
            ^ UInt32(truncatingIfNeeded: low >> 32) ^ UInt32(truncatingIfNeeded: low)
    }

    /// Link-local unicast, fe80::/10 (RFC 4291 §2.5.6).
    public var isLinkLocal: Bool { high >> 54 == 0x3fa }
    /// Multicast, ff00::/8 (RFC 4291 §2.7).
    public var isMulticast: Bool { high >> 56 == 0xff }

    /// RFC 4291 §2.2 text: eight groups of up to four hex digits, one `::` for a run of zero groups,
    /// and a trailing dotted quad in the last 32 bits (`::ffff:198.18.0.1`). No zone index, no prefix.
    public init?(_ text: Substring) {
        guard !text.isEmpty, text.count <= 45 else { return nil }
        var head: [UInt16] = [], tail: [UInt16] = []
        var sawGap = false
        let chars = Array(text.utf8)
        var i = 0
        if chars.starts(with: [UInt8(ascii: ":"), UInt8(ascii: ":")]) {
            sawGap = true
            i = 2
        } else if chars.first == UInt8(ascii: ":") {
            return nil
        }
        while i < chars.count {
            // One field: hex digits up to the next colon, or a dotted quad at the end.
            var j = i
            while j < chars.count && chars[j] != UInt8(ascii: ":") { j += 1 }
            let field = chars[i..<j]
            if field.isEmpty { return nil }
            if field.contains(UInt8(ascii: ".")) {
                // IPv4 suffix: only as the last field.
                guard j == chars.count,
                      let v4 = IPv4Address(Substring(decoding: field, as: UTF8.self)) else { return nil }
                let words = [UInt16(v4.rawValue >> 16), UInt16(v4.rawValue & 0xffff)]
                if sawGap { tail += words } else { head += words }
            } else {
                guard field.count <= 4, let value = UInt16(String(decoding: field, as: UTF8.self), radix: 16),
                      field.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }) else {
                    return nil
                }
                if sawGap { tail.append(value) } else { head.append(value) }
            }
            if j == chars.count { break }
            // At a colon: a second colon right after is the gap.
            if j + 1 < chars.count && chars[j + 1] == UInt8(ascii: ":") {
                guard !sawGap else { return nil }
                sawGap = true
                i = j + 2
                if i == chars.count { break }
            } else {
                guard j + 1 < chars.count else { return nil }  // a trailing single colon
                i = j + 1
            }
        }
        let count = head.count + tail.count
        if sawGap {
            guard count <= 7 else { return nil }
        } else {
            guard count == 8 else { return nil }
        }
        let all = head + Array(repeating: 0, count: 8 - count) + tail
        self.init(groups: (all[0], all[1], all[2], all[3], all[4], all[5], all[6], all[7]))
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    /// RFC 5952 §4: lower-case hex, no leading zeros, the longest run of two or more zero groups (the
    /// first of equal runs) as `::`; an IPv4-mapped address (::ffff:0:0/96) ends in a dotted quad.
    public var description: String {
        let g = groups
        if high == 0 && low >> 32 == 0xffff {
            return "::ffff:" + IPv4Address(rawValue: UInt32(truncatingIfNeeded: low)).description
        }
        var bestStart = -1, bestLength = 0, runStart = -1
        for i in 0...8 {
            if i < 8 && g[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength { (bestStart, bestLength) = (runStart, i - runStart) }
                runStart = -1
            }
        }
        if bestLength < 2 { return g.map { String($0, radix: 16) }.joined(separator: ":") }
        let before = g[..<bestStart].map { String($0, radix: 16) }.joined(separator: ":")
        let after = g[(bestStart + bestLength)...].map { String($0, radix: 16) }.joined(separator: ":")
        return before + "::" + after
    }

    public static func < (a: Self, b: Self) -> Bool { (a.high, a.low) < (b.high, b.low) }
}

/// An address of either family, as the configuration holds it (services, real servers, filters).
/// The packet path never switches on it: it runs each family on its own typed path.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// A dotted quad or an RFC 4291 IPv6 address, without brackets.
    public init?(_ text: Substring) {
        if let a = IPv4Address(text) {
            self = .v4(a)
        } else if text.contains(":"), let a = IPv6Address(text) {
            self = .v6(a)
        } else {
            return nil
        }
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    public var isIPv6: Bool { if case .v6 = self { true } else { false } }
    public var v4: IPv4Address? { if case .v4(let a) = self { a } else { nil } }
    public var v6: IPv6Address? { if case .v6(let a) = self { a } else { nil } }

    /// The address as ipvsadm prints it: bare for IPv4, RFC 5952 for IPv6.
    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    /// `address:port`, the IPv6 address in brackets (RFC 3986 §3.2.2), as ipvsadm prints endpoints.
    public func endpoint(_ port: UInt16) -> String {
        switch self {
        case .v4(let a): "\(a):\(port)"
        case .v6(let a): "[\(a)]:\(port)"
        }
    }

    /// `ADDRESS`, `ADDRESS:PORT`, `[IPV6]`, `[IPV6]:PORT` or a bare IPv6 address (no port then): the
    /// endpoints masq's tools print and read back. nil for anything else.
    public static func endpoint(_ text: Substring) -> (address: IPAddress, port: UInt16?)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), let a = IPv6Address(text[text.index(after: text.startIndex)..<close]) else {
                return nil
            }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (.v6(a), nil) }
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()), rest.count > 1 else { return nil }
            return (.v6(a), port)
        }
        if text.contains("."), text.filter({ $0 == ":" }).count <= 1 {
            let pieces = text.split(separator: ":", omittingEmptySubsequences: false)
            guard pieces.count <= 2, let a = IPv4Address(pieces[0]) else { return nil }
            guard pieces.count == 2 else { return (.v4(a), nil) }
            guard let port = UInt16(pieces[1]), !pieces[1].isEmpty, pieces[1].allSatisfy(\.isASCII) else { return nil }
            return (.v4(a), port)
        }
        return IPv6Address(text).map { (.v6($0), nil) }
    }

    /// A 32-bit value of the address for hashing: the IPv4 address itself, an IPv6 address's fold.
    public var hashWord: UInt32 {
        switch self {
        case .v4(let a): a.rawValue
        case .v6(let a): a.folded
        }
    }

    /// An address of either family against an IPv4 one (false for any IPv6 address).
    public static func == (a: Self, b: IPv4Address) -> Bool { a == .v4(b) }
    public static func == (a: Self, b: IPv6Address) -> Bool { a == .v6(b) }

    public static func < (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): x < y
        case (.v6(let x), .v6(let y)): x < y
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}
