import Glibc
import Testing
@testable import MasqCore

/// glibc's inet_pton(AF_INET6): the 16 bytes, or nil where glibc rejects the text. The oracle the
/// RFC 4291 parser is checked against; it shares no code with it.
func glibcParse6(_ text: String) -> [UInt8]? {
    var storage = in6_addr()
    let result = text.withCString { inet_pton(AF_INET6, $0, &storage) }
    guard result == 1 else { return nil }
    return withUnsafeBytes(of: &storage) { Array($0) }
}

/// glibc's inet_ntop(AF_INET6), which follows RFC 5952 but for IPv4-compatible addresses (below).
func glibcFormat6(_ bytes: [UInt8]) -> String {
    var storage = in6_addr()
    withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes) }
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    let result = inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count))
    precondition(result != nil, "inet_ntop failed")
    return String(cString: buffer)
}

/// glibc prints the deprecated IPv4-compatible form (::/96 with a non-zero seventh group) as
/// `::a.b.c.d`; RFC 5952 §5 keeps the dotted quad for IPv4-mapped addresses only, as masq does.
func glibcPrintsIPv4Compatible(_ a: IPv6Address) -> Bool {
    a.high == 0 && a.low >> 32 == 0 && (a.low >> 16) & 0xffff != 0
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so every run tests the same values.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

func v6(_ text: String) -> IPv6Address { IPv6Address(text)! }

@Suite struct IPv6AddressTests {
    struct TextCase: Sendable, CustomTestStringConvertible {
        var input: String
        var canonical: String
        var testDescription: String { "\(input) -> \(canonical)" }
    }

    static let textCases: [TextCase] = [
        .init(input: "::", canonical: "::"),
        .init(input: "::1", canonical: "::1"),
        .init(input: "1::", canonical: "1::"),
        .init(input: "2001:2::1", canonical: "2001:2::1"),
        .init(input: "2001:0002:0000:0000:0000:0000:0000:0001", canonical: "2001:2::1"),
        .init(input: "2001:2::AB", canonical: "2001:2::ab"),
        .init(input: "2001:2:0:0:1:0:0:0", canonical: "2001:2:0:0:1::"),        // the longest run
        .init(input: "1:0:0:2:0:0:3:4", canonical: "1::2:0:0:3:4"),            // the first of equal runs
        .init(input: "1:0:2:3:4:5:6:7", canonical: "1:0:2:3:4:5:6:7"),         // one zero group stays
        .init(input: "1:2:3:4:5:6:7::", canonical: "1:2:3:4:5:6:7:0"),
        .init(input: "::2:3:4:5:6:7:8", canonical: "0:2:3:4:5:6:7:8"),
        .init(input: "fe80::1:2", canonical: "fe80::1:2"),
        .init(input: "ff02::1", canonical: "ff02::1"),
        .init(input: "::ffff:198.18.0.1", canonical: "::ffff:198.18.0.1"),
        .init(input: "::ffff:c612:1", canonical: "::ffff:198.18.0.1"),
        .init(input: "::ffff:0:0", canonical: "::ffff:0.0.0.0"),
        .init(input: "1:2:3:4:5:6:1.2.3.4", canonical: "1:2:3:4:5:6:102:304"),
        .init(input: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", canonical: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        .init(input: "0:0:0:0:0:0:0:1", canonical: "::1"),
        .init(input: "2001:2:0:ab:cd:0:0:0", canonical: "2001:2:0:ab:cd::"),
    ]

    @Test(arguments: textCases) func textAgreesWithGlibc(_ c: TextCase) throws {
        let parsed = try #require(IPv6Address(c.input))
        #expect(parsed.bytes == glibcParse6(c.input))
        #expect(parsed.description == c.canonical)
        #expect(glibcFormat6(parsed.bytes) == c.canonical)
        #expect(IPv6Address(c.canonical) == parsed)
    }

    /// The one difference from glibc's output, on purpose (RFC 5952 §5).
    @Test func ipv4CompatibleIsPrintedInHex() throws {
        let a = try #require(IPv6Address("::1.2.3.4"))
        #expect(a.bytes == glibcParse6("::1.2.3.4"))
        #expect(a.description == "::102:304")
        #expect(glibcFormat6(a.bytes) == "::1.2.3.4")
        #expect(glibcPrintsIPv4Compatible(a))
    }

    /// A few thousand seeded addresses, zero groups likely (so `::` runs of every length occur):
    /// masq's text equals glibc's, and each parser reads the other's text back to the same address.
    @Test func randomAddressesRoundTripAgainstGlibc() {
        var rng = SplitMix64(seed: 0x6d61_7371_0016)
        var compared = 0
        for _ in 0..<4000 {
            let zeroMask = UInt8.random(in: 0...255, using: &rng)
            var words = [UInt16](repeating: 0, count: 8)
            for i in 0..<8 where zeroMask & (1 << i) == 0 {
                // Values of every width: 1 to 4 hex digits.
                let digits = Int.random(in: 1...4, using: &rng)
                words[i] = UInt16.random(in: 1...UInt16((1 << (4 * digits)) - 1), using: &rng)
            }
            let a = IPv6Address(groups: (words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7]))
            let ours = a.description
            let theirs = glibcFormat6(a.bytes)
            if !glibcPrintsIPv4Compatible(a) {
                #expect(ours == theirs, "\(a.groups)")
                compared += 1
            }
            #expect(IPv6Address(ours) == a, "\(ours)")
            #expect(IPv6Address(theirs) == a, "\(theirs)")
            #expect(glibcParse6(ours) == a.bytes, "\(ours)")
            // The full form with leading zeros and random case parses the same in both.
            let full = words.map { word -> String in
                let hex = String(word, radix: 16, uppercase: Bool.random(using: &rng))
                return String(repeating: "0", count: 4 - hex.count) + hex
            }.joined(separator: ":")
            #expect(IPv6Address(full) == a, "\(full)")
            #expect(glibcParse6(full) == a.bytes, "\(full)")
        }
        #expect(compared > 3500)
    }

    static let rejected = [
        ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3", "g::", "1:2:3:4:5:6:7:", "1::2:",
        "1:", ":1", "", "1:2:3:4:5:6:7", "::1:2:3:4:5:6:7:8", "1:2:3:4::5:6:7:8", "1.2.3.4", "::ffff:1.2.3.4:5",
        "::1.2.3.256", "[::1]", "::1%eth0", " ::1", "::1 ", "2001:2::1/64", "::-1", "0x1::",
    ]

    @Test(arguments: rejected) func rejectedLikeGlibc(_ text: String) {
        #expect(IPv6Address(text) == nil)
        #expect(glibcParse6(text) == nil)
    }

    struct MaskCase: Sendable, CustomTestStringConvertible {
        var address: String
        var prefixLength: Int
        var expected: String
        var testDescription: String { "\(address)/\(prefixLength)" }
    }

    static let ones = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    static let maskCases: [MaskCase] = [
        .init(address: "2001:2::1", prefixLength: 64, expected: "2001:2::"),
        .init(address: "2001:2:3:4:5:6:7:8", prefixLength: 48, expected: "2001:2:3::"),
        .init(address: "2001:2:3:4:5:6:7:8", prefixLength: 0, expected: "::"),
        .init(address: "2001:2:3:4:5:6:7:8", prefixLength: 128, expected: "2001:2:3:4:5:6:7:8"),
        .init(address: ones, prefixLength: 1, expected: "8000::"),
        .init(address: ones, prefixLength: 63, expected: "ffff:ffff:ffff:fffe::"),
        .init(address: ones, prefixLength: 65, expected: "ffff:ffff:ffff:ffff:8000::"),
        .init(address: ones, prefixLength: 127, expected: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
        .init(address: ones, prefixLength: -1, expected: "::"),
        .init(address: ones, prefixLength: 200, expected: ones),
    ]

    @Test(arguments: maskCases) func masked(_ c: MaskCase) {
        #expect(v6(c.address).masked(prefixLength: c.prefixLength) == v6(c.expected))
    }

    /// Every prefix length against a bit-by-bit mask of the bytes.
    @Test func maskedMatchesBitwise() {
        var rng = SplitMix64(seed: 128)
        for _ in 0..<50 {
            let a = IPv6Address(high: rng.next(), low: rng.next())
            for length in 0...128 {
                let expected = a.bytes.enumerated().map { index, byte -> UInt8 in
                    let keep = max(0, min(8, length - 8 * index))
                    return keep == 0 ? 0 : byte & UInt8(truncatingIfNeeded: 0xff << (8 - keep))
                }
                #expect(a.masked(prefixLength: length).bytes == expected, "\(a)/\(length)")
            }
        }
    }
}
