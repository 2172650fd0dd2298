import MasqCore
import Testing
@testable import MasqRules

/// The glibc calls ipvsadm's command line relies on, as masq's parser makes them: what they accept
/// is what masqadm and the rules file accept.
@Suite struct RulesGlibcParsingTests {
    // glibc inet_aton
    @Test(arguments: [
        ("1.2.3.4", "1.2.3.4"), ("10.1", "10.0.0.1"), ("10.1.2", "10.1.0.2"), ("16909060", "1.2.3.4"),
        ("0x0a000001", "10.0.0.1"), ("010.0.0.1", "8.0.0.1"), ("1.2.3.4 trailing", "1.2.3.4"),
        ("255.255.255.255", "255.255.255.255"),
    ])
    func inetAtonAccepts(_ text: String, _ address: String) {
        #expect(GlibcParsing.inetAton(text) == IPv4Address(address))
    }

    @Test(arguments: ["", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "08.0.0.1", "0x", "a.b.c.d", "1.2.3.4x", "1..2",
                      "4294967296", "-1.2.3.4", " 1.2.3.4"])
    func inetAtonRefuses(_ text: String) {
        #expect(GlibcParsing.inetAton(text) == nil)
    }

    // ipvsadm's string_to_number: strtol(…, 10), whole string, range
    @Test(arguments: [("80", 80), ("+80", 80), ("080", 80), (" 7", 7), ("0", 0), ("65535", 65535)])
    func numbers(_ text: String, _ value: Int) {
        #expect(GlibcParsing.stringToNumber(text, min: 0, max: 65535) == value)
    }

    @Test(arguments: ["", " ", "65536", "-1", "8 ", "0x10", "1e3", "99999999999999999999999"])
    func notNumbers(_ text: String) {
        #expect(GlibcParsing.stringToNumber(text, min: 0, max: 65535) == nil)
    }

    // inet_pton(AF_INET6)
    @Test(arguments: ["::1", "::", "fe80::1", "2001:2::1:2", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1::"])
    func ipv6(_ text: String) { #expect(GlibcParsing.isIPv6(text)) }

    @Test(arguments: ["1.2.3.4", "1:2:3:4:5:6:7:8:9", ":1", "1:::2", "12345::", "::1.2.3", "1.2.3.4:80", "", "fe80::1::2",
                      "1:2:3:4:5:6:7:8::"])
    func notIPv6(_ text: String) { #expect(!GlibcParsing.isIPv6(text)) }

    @Test func aWordWithANulByteIsRefused() {
        // C would stop at the NUL and accept the prefix; a word holding one is refused.
        #expect(GlibcParsing.stringToNumber("80\u{0}x", min: 0, max: 65535) == nil)
        #expect(GlibcParsing.inetAton("1.2.3.4\u{0}x") == nil)
        #expect(!GlibcParsing.isIPv6("::1\u{0}"))
    }
}
