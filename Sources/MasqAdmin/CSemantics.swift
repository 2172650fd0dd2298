import MasqCore

// The C library behaviours ipvsadm 1.31 relies on when it reads its command line and prints its
// tables, reimplemented so masqadm accepts and prints exactly what ipvsadm does: glibc's
// `inet_aton`, `strtol` as used by ipvsadm's `string_to_number`, `inet_pton(AF_INET6)` (only to
// recognise IPv6, which masq refuses), printf's `%-Ns`/`%Ns` padding, and glibc's merge sort behind
// `qsort`.

enum CSemantics {
    /// glibc `inet_aton`: one to four parts separated by dots, each a C integer (decimal, `0` octal,
    /// `0x` hex); the last part fills the remaining bytes (`10.1` is 10.0.0.1, `1` is 0.0.0.1); trailing
    /// whitespace and whatever follows it are ignored. ipvsadm's `parse_service` and `parse_netmask`
    /// try it before resolving a host name.
    static func inetAton(_ text: String) -> IPv4Address? {
        let s = Array(text.utf8)
        var i = 0
        var parts: [UInt32] = []
        var value: UInt64 = 0
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0d) }
        func hexValue(_ c: UInt8) -> UInt64? {
            switch c {
            case 0x30...0x39: return UInt64(c - 0x30)
            case 0x61...0x66: return UInt64(c - 0x61 + 10)
            case 0x41...0x46: return UInt64(c - 0x41 + 10)
            default: return nil
            }
        }
        while true {
            guard i < s.count, isDigit(s[i]) else { return nil }
            // strtoul(cp, &end, 0): the base comes from the prefix.
            var base: UInt64 = 10
            if s[i] == 0x30 {
                if i + 1 < s.count, s[i + 1] == 0x78 || s[i + 1] == 0x58,
                   i + 2 < s.count, hexValue(s[i + 2]) != nil {
                    base = 16
                    i += 2
                } else {
                    base = 8
                }
            }
            value = 0
            while i < s.count, let d = hexValue(s[i]), d < base {
                value = value * base + d
                if value > 0xffff_ffff { return nil }
                i += 1
            }
            if i < s.count, s[i] == 0x2e {
                guard parts.count < 3, value <= 0xff else { return nil }
                parts.append(UInt32(value))
                i += 1
            } else {
                break
            }
        }
        if i < s.count, !isSpace(s[i]) { return nil }
        let limits: [UInt64] = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff]
        guard value <= limits[parts.count] else { return nil }
        var word: UInt32 = 0
        for (k, p) in parts.enumerated() { word |= p << (24 - 8 * UInt32(k)) }
        return IPv4Address(rawValue: word | UInt32(value))
    }

    /// ipvsadm's `string_to_number(s, min, max)`: `strtol(s, &end, 10)` must consume the whole
    /// string (leading blanks and a sign are allowed, as strtol allows them) and land in [min, max].
    static func stringToNumber(_ text: String, min: Int, max: Int) -> Int? {
        let s = Array(text.utf8)
        var i = 0
        while i < s.count, s[i] == 0x20 || (s[i] >= 0x09 && s[i] <= 0x0d) { i += 1 }
        var negative = false
        if i < s.count, s[i] == 0x2b || s[i] == 0x2d {
            negative = s[i] == 0x2d
            i += 1
        }
        let start = i
        var magnitude: UInt64 = 0
        var overflow = false
        while i < s.count, s[i] >= 0x30, s[i] <= 0x39 {
            let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (n, o2) = m.addingReportingOverflow(UInt64(s[i] - 0x30))
            if o1 || o2 || n > UInt64(Int64.max) + 1 { overflow = true }
            magnitude = overflow ? magnitude : n
            i += 1
        }
        guard i > start, i == s.count, !overflow else { return nil }  // no digits, junk, or ERANGE
        if !negative && magnitude > UInt64(Int64.max) { return nil }
        let number = negative ? Int(truncatingIfNeeded: 0 &- magnitude) : Int(magnitude)
        return (min...max).contains(number) ? number : nil
    }

    /// `atoi`, for `-M` on an IPv6 service (ipvsadm reads a prefix length there).
    static func atoi(_ text: String) -> Int {
        let s = Array(text.utf8)
        var i = 0
        while i < s.count, s[i] == 0x20 || (s[i] >= 0x09 && s[i] <= 0x0d) { i += 1 }
        var sign = 1
        if i < s.count, s[i] == 0x2b || s[i] == 0x2d {
            sign = s[i] == 0x2d ? -1 : 1
            i += 1
        }
        var n = 0
        while i < s.count, s[i] >= 0x30, s[i] <= 0x39, n < Int(Int32.max) {
            n = n * 10 + Int(s[i] - 0x30)
            i += 1
        }
        return sign * n
    }

    /// Whether glibc's `inet_pton(AF_INET6, text)` accepts the text (its `inet_pton6` step by step):
    /// groups of one to four hex digits, at most one `::`, optionally ending in a dotted IPv4 address,
    /// sixteen bytes in all. Only used to recognise IPv6 where ipvsadm does, as masq refuses it.
    static func isIPv6(_ text: String) -> Bool {
        let s = Array(text.utf8)
        var i = 0
        guard !s.isEmpty else { return false }
        if s[0] == 0x3a {
            i = 1
            guard i < s.count, s[i] == 0x3a else { return false }
        }
        var tp = 0  // bytes written
        var colon = false
        var tokenStart = i
        var digitsSeen = 0
        func hex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x61...0x66).contains(c) || (0x41...0x46).contains(c) }
        while i < s.count {
            let c = s[i]
            i += 1
            if hex(c) {
                if digitsSeen == 4 { return false }
                digitsSeen += 1
                continue
            }
            if c == 0x3a {
                tokenStart = i
                if digitsSeen == 0 {
                    if colon { return false }
                    colon = true
                    continue
                } else if i == s.count {
                    return false
                }
                if tp + 2 > 16 { return false }
                tp += 2
                digitsSeen = 0
                continue
            }
            if c == 0x2e, tp + 4 <= 16, isStrictDottedQuad(s[tokenStart...]) {
                tp += 4
                digitsSeen = 0
                i = s.count
                break
            }
            return false
        }
        if digitsSeen > 0 {
            if tp + 2 > 16 { return false }
            tp += 2
        }
        if colon {
            if tp == 16 { return false }
            tp = 16
        }
        return tp == 16
    }

    /// glibc `inet_pton4`: exactly four decimal octets, no leading zeros, nothing else.
    private static func isStrictDottedQuad(_ s: ArraySlice<UInt8>) -> Bool {
        var octets = 0
        var value = 0
        var sawDigit = false
        for c in s {
            if (0x30...0x39).contains(c) {
                if sawDigit && value == 0 { return false }
                value = value * 10 + Int(c - 0x30)
                if value > 255 { return false }
                if !sawDigit {
                    octets += 1
                    if octets > 4 { return false }
                    sawDigit = true
                }
            } else if c == 0x2e && sawDigit {
                if octets == 4 { return false }
                value = 0
                sawDigit = false
            } else {
                return false
            }
        }
        return octets == 4 && sawDigit
    }
}

// MARK: - printf

/// The few printf conversions ipvsadm's listing uses. Widths count bytes, as C does.
enum CFormat {
    /// `%-Ns`: the text, then blanks up to N bytes (never cut).
    static func left(_ text: String, _ width: Int) -> String {
        let n = text.utf8.count
        return n >= width ? text : text + String(repeating: " ", count: width - n)
    }

    /// `%Ns` / `%Nllu`: blanks up to N bytes, then the text.
    static func right(_ text: String, _ width: Int) -> String {
        let n = text.utf8.count
        return n >= width ? text : String(repeating: " ", count: width - n) + text
    }

    /// `buf[n] = '\0'`: the first n bytes.
    static func cut(_ text: String, _ bytes: Int) -> String {
        let u = Array(text.utf8)
        return u.count <= bytes ? text : String(decoding: u[..<bytes], as: UTF8.self)
    }

    /// `%u` of a C `unsigned` holding a kernel `__u32` the state carries as Int32.
    static func unsigned(_ value: Int32) -> String { String(UInt32(bitPattern: value)) }
}

// MARK: - qsort

/// glibc's `qsort` (2.36, the one ipvsadm runs on in Debian 12) is a merge sort (`msort_with_tmp`):
/// split n into n/2 and the rest, sort both halves, merge taking from the left while
/// `cmp(left, right) <= 0`. Reproduced step for step, because ipvsadm's comparators
/// (`ipvs_cmp_services`, `ipvs_cmp_dests`) subtract 32-bit addresses into an `int` and so are not
/// transitive when addresses are 2^31 or more apart: only the same algorithm gives the same order.
func glibcMergeSort<T>(_ items: [T], by compare: (T, T) -> Int32) -> [T] {
    guard items.count > 1 else { return items }
    let n1 = items.count / 2
    let left = glibcMergeSort(Array(items[..<n1]), by: compare)
    let right = glibcMergeSort(Array(items[n1...]), by: compare)
    var out: [T] = []
    out.reserveCapacity(items.count)
    var i = 0
    var j = 0
    while i < left.count && j < right.count {
        if compare(left[i], right[j]) <= 0 {
            out.append(left[i])
            i += 1
        } else {
            out.append(right[j])
            j += 1
        }
    }
    out.append(contentsOf: left[i...])
    out.append(contentsOf: right[j...])
    return out
}
