#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore

/// The C library calls ipvsadm 1.31 reads its command line with, called rather than copied, so what
/// masqadm and the rules file accept is what glibc accepts. A word holding a NUL byte (never in
/// argv; possible in a rules file) is refused before C sees it, as C would stop reading there.
enum GlibcParsing {
    /// `inet_aton` (ipvsadm's `parse_service` and `parse_netmask` try it before a host name): one to
    /// four parts, each a C integer (decimal, `0` octal, `0x` hex), the last filling the remaining
    /// bytes (`10.1` is 10.0.0.1); whatever follows a blank is ignored.
    static func inetAton(_ text: String) -> IPv4Address? {
        guard !text.utf8.contains(0) else { return nil }
        var address = in_addr()
        guard inet_aton(text, &address) != 0 else { return nil }
        return IPv4Address(rawValue: UInt32(bigEndian: address.s_addr))
    }

    /// ipvsadm's `string_to_number(s, min, max)`: `strtol(s, &end, 10)` must read the whole string
    /// (leading blanks and a sign allowed), without ERANGE, and land in [min, max].
    static func stringToNumber(_ text: String, min: Int, max: Int) -> Int? {
        guard !text.utf8.contains(0) else { return nil }
        return text.withCString { start -> Int? in
            var end: UnsafeMutablePointer<CChar>?
            errno = 0
            let number = strtol(start, &end, 10)
            guard let end, end.pointee == 0, UnsafePointer(end) != start, errno != ERANGE,
                  min <= number, number <= max else { return nil }
            return number
        }
    }

    /// `atoi`: `-M` on an IPv6 service reads a prefix length with it.
    static func atoi(_ text: String) -> Int {
        guard !text.utf8.contains(0) else { return 0 }
        #if canImport(Glibc)
        return Int(Glibc.atoi(text))
        #elseif canImport(Musl)
        return Int(Musl.atoi(text))
        #else
        return Int(Darwin.atoi(text))
        #endif
    }

    /// Whether `inet_pton(AF_INET6, text)` accepts the text: where ipvsadm tells IPv6 from IPv4.
    static func isIPv6(_ text: String) -> Bool { inet6Pton(text) != nil }

    /// glibc's `inet_pton(AF_INET6, text)` (RFC 4291 text, an embedded dotted quad allowed): the
    /// address ipvsadm's `parse_service` reads, nil where it finds none.
    static func inet6Pton(_ text: String) -> IPv6Address? {
        guard !text.utf8.contains(0) else { return nil }
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &address) { Array($0) }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<8 {
            high = high << 8 | UInt64(bytes[i])
            low = low << 8 | UInt64(bytes[i + 8])
        }
        return IPv6Address(high: high, low: low)
    }
}
