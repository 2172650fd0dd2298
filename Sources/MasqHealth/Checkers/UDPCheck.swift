#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import MasqCore

/// keepalived's `UDP_CHECK { }` (keepalived/check/check_udp.c, core/layer4.c): a datagram goes to the
/// real server from a connected socket with IP_RECVERR; an ICMP destination unreachable coming back
/// within `connect_timeout` fails the check. Without `require_reply` silence passes (udp_socket_state:
/// a read timeout is a success); with it a reply must come, and with a pattern it must match.
public struct UDPCheck: Equatable, Sendable {
    /// `payload`: what is sent; nil sends keepalived's 32 bytes of "keepalived check - " (set_buf).
    public var payload: [UInt8]?
    /// `require_reply`: a reply must come.
    public var requireReply: Bool
    /// `require_reply HEX`: the reply's first bytes (up to the shorter of the two) must match, under
    /// `replyMask` (a set bit: the `x` nibble of the pattern, not compared).
    public var reply: [UInt8]?
    public var replyMask: [UInt8]?
    /// `min_reply_length` / `max_reply_length` (0 / 255): only checked with a reply pattern, as
    /// keepalived does (check_udp_reply runs only when require_reply has one).
    public var minReplyLength: Int
    public var maxReplyLength: Int

    public init(payload: [UInt8]? = nil, requireReply: Bool = false, reply: [UInt8]? = nil, replyMask: [UInt8]? = nil,
                minReplyLength: Int = 0, maxReplyLength: Int = 255) {
        self.payload = payload
        self.requireReply = requireReply
        self.reply = reply
        self.replyMask = replyMask
        self.minReplyLength = minReplyLength
        self.maxReplyLength = maxReplyLength
    }

    /// check_udp_reply: whether a reply passes.
    public func accepts(_ data: ArraySlice<UInt8>) -> Bool {
        guard let reply else { return true }
        guard (minReplyLength...max(minReplyLength, maxReplyLength)).contains(data.count), minReplyLength <= maxReplyLength
        else { return false }
        for (i, (got, want)) in zip(data, reply).enumerated() {
            let ignored = replyMask?[i] ?? 0
            if (got ^ want) & ~ignored != 0 { return false }
        }
        return true
    }

    /// keepalived's read_hex_str (lib/parser.c): hex digits, blanks between octets; a lone digit before
    /// a blank or the end is an octet of its own ("Ab12f 3" is AB 12 0F 03). With `wildcards`, `x`/`X`
    /// is a nibble not compared (its mask bits set). nil if invalid or empty.
    public static func hex(_ text: String, wildcards: Bool) -> (bytes: [UInt8], mask: [UInt8]?)? {
        func value(_ c: UInt8) -> (UInt8, UInt8)? {  // (value, mask)
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): (c - UInt8(ascii: "0"), 0)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): (c - UInt8(ascii: "a") + 10, 0)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): (c - UInt8(ascii: "A") + 10, 0)
            case UInt8(ascii: "x"), UInt8(ascii: "X"): wildcards ? (0, 0x0f) : nil
            default: nil
            }
        }
        let s = Array(text.utf8)
        var bytes: [UInt8] = [], mask: [UInt8] = []
        var i = 0
        while true {
            while i < s.count, s[i] == UInt8(ascii: " ") || s[i] == UInt8(ascii: "\t") { i += 1 }
            guard i < s.count else { break }
            guard var (v, m) = value(s[i]) else { return nil }
            i += 1
            if i < s.count, s[i] != UInt8(ascii: " ") {
                guard let (v2, m2) = value(s[i]) else { return nil }
                i += 1
                v = v << 4 | v2
                m = m << 4 | m2
            }
            bytes.append(v)
            mask.append(m)
        }
        guard !bytes.isEmpty else { return nil }
        return (bytes, mask.contains { $0 != 0 } ? mask : nil)
    }
}

// `commonCheckKeywords` (KeepalivedParser.swift): the keywords every checker but MISC_CHECK has.

extension KeepalivedFileParser {
    /// Reads a `UDP_CHECK` block of a real server: `payload HEX`, `require_reply [HEX]`,
    /// `min_reply_length`, `max_reply_length` (0-65535) and the common keywords.
    func udpCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: false)
        var udp = UDPCheck()
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            // payload and require_reply take the rest of the line (make_strvec_str), blanks allowed.
            let rest = st.words.dropFirst().map(\.text).joined(separator: " ")
            switch st.name {
            case "payload":
                guard st.words.count >= 2 else { throw st.keyword.error("UDP_CHECK payload requires a payload") }
                guard let (bytes, _) = UDPCheck.hex(rest, wildcards: false) else {
                    throw st.words[1].error("invalid hex string for UDP_CHECK payload")
                }
                udp.payload = bytes
            case "require_reply":
                udp.requireReply = true
                if st.words.count >= 2 {
                    guard let (bytes, mask) = UDPCheck.hex(rest, wildcards: true) else {
                        throw st.words[1].error("invalid hex string for UDP_CHECK reply (hex digits, x for any nibble)")
                    }
                    udp.reply = bytes
                    udp.replyMask = mask
                }
            case "min_reply_length": udp.minReplyLength = Int(try unsigned(st, 0...65535))
            case "max_reply_length": udp.maxReplyLength = Int(try unsigned(st, 0...65535))
            case let name where commonCheckKeywords.contains(name):
                try checkKeyword(st, &check)
            default:
                throw refuse(st, in: "UDP_CHECK")
            }
        }
        if udp.minReplyLength > udp.maxReplyLength {
            warn(s.keyword, "UDP_CHECK min_reply_length \(udp.minReplyLength) > max_reply_length \(udp.maxReplyLength): "
                     + "will always fail (as keepalived warns)")
        }
        try checkFamilies(s, check, rs)
        check.kind = .udp(udp)
        return check
    }

    /// A socket bound to one family cannot reach the other: the check could never pass.
    func checkFamilies(_ s: KeepalivedStatement, _ check: RawCheck, _ rs: RawRealServer) throws(RulesError) {
        if let bindTo = check.bindTo, bindTo.isIPv6 != (check.connectIP ?? rs.address).isIPv6 {
            throw s.keyword.error("\(s.name): bindto \(bindTo) is not of the family of the address it connects to, "
                                  + "\(check.connectIP ?? rs.address)")
        }
    }
}
