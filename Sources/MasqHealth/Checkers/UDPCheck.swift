#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import MasqCore
import NIOCore
import NIOPosix

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

/// The connection keywords and timing keywords every checker but MISC_CHECK has (check_api.c's
/// install_checker_common_keywords(true)); TCP_CHECK's reader takes them.
let commonCheckKeywords: Set<String> = ["connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "connect_timeout",
                                        "fwmark", "retry", "delay_before_retry", "warmup", "delay_loop", "alpha",
                                        "log_all_failures"]

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

extension Probe {
    /// One UDP_CHECK probe (udp_bind_connect, udp_socket_state, udp_socket_error).
    static func udp(_ check: UDPCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        let what = "UDP_CHECK to \(address.endpoint(port))"
        return await BlockingProbe.run { () -> Result in
            let fd = socket(address.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_UDP))
            guard fd >= 0 else { return .failure(ProbeFailure(check: what, reason: .system(errno: errno))) }
            defer { close(fd) }
            var on: Int32 = 1
            // IP_RECVERR / IPV6_RECVERR: every ICMP error reaches the socket, not only the "hard" ones.
            _ = address.isIPv6 ? setsockopt(fd, Int32(IPPROTO_IPV6), BlockingProbe.ipv6RecvErr, &on, 4)
                               : setsockopt(fd, Int32(IPPROTO_IP), BlockingProbe.ipRecvErr, &on, 4)
            if let bindTo, let failure = BlockingProbe.bind(fd, bindTo) {
                return .failure(ProbeFailure(check: what, reason: failure))
            }
            let connected = BlockingProbe.withSockaddr(address, port) { connect(fd, $0, $1) }
            guard connected == 0 else {
                return .failure(ProbeFailure(check: what, reason: .init(errno: errno, timeout: timeout)))
            }
            let payload = check.payload ?? BlockingProbe.keepalivedPadding(32)
            guard send(fd, payload, payload.count, 0) == payload.count else {
                return .failure(ProbeFailure(check: what, reason: .init(errno: errno, timeout: timeout)))
            }
            switch BlockingProbe.wait(fd, timeout: timeout) {
            case .timeout:
                return check.requireReply ? .failure(ProbeFailure(check: what, reason: .timeout(seconds: timeout))) : .success
            case .error:
                if let reason = BlockingProbe.unreachable(fd) { return .failure(ProbeFailure(check: what, reason: reason)) }
                return .success  // an ICMP error other than destination unreachable: keepalived passes it
            case .readable:
                var buffer = [UInt8](repeating: 0, count: check.maxReplyLength + 1)
                let n = recv(fd, &buffer, buffer.count, 0)
                guard n >= 0 else {
                    if let reason = BlockingProbe.unreachable(fd) { return .failure(ProbeFailure(check: what, reason: reason)) }
                    return .failure(ProbeFailure(check: what, reason: .init(errno: errno, timeout: timeout)))
                }
                guard check.accepts(buffer[..<n]) else {
                    return .failure(ProbeFailure(check: what, reason: .other("reply does not match require_reply (\(n) bytes)")))
                }
                return .success
            }
        }
    }
}

/// The UDP and ICMP probes use plain sockets with poll(2), on a thread of their own so the wait (up
/// to connect_timeout) blocks no task: NIO has no IP_RECVERR error queue and no ICMP sockets.
enum BlockingProbe {
    static let ipRecvErr: Int32 = 11     // IP_RECVERR, linux/in.h
    static let ipv6RecvErr: Int32 = 25   // IPV6_RECVERR, linux/in6.h
    static let msgErrQueue: Int32 = 0x2000

    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: body()) }
        }
    }

    /// keepalived's set_buf: "keepalived check - " repeated to `count` bytes (no stack leaked, and
    /// recognisable in a capture).
    static func keepalivedPadding(_ count: Int) -> [UInt8] {
        let text = Array("keepalived check - ".utf8)
        return (0..<count).map { text[$0 % text.count] }
    }

    static func withSockaddr<R>(_ address: IPAddress, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let socketAddress = try! SocketAddress(ipAddress: address.description, port: Int(port))
        switch socketAddress {
        case .v4(let a):
            var raw = a.address
            return withUnsafePointer(to: &raw) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        case .v6(let a):
            var raw = a.address
            return withUnsafePointer(to: &raw) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        default:
            fatalError("an IP address literal is v4 or v6")
        }
    }

    /// bindto: the source address (any port).
    static func bind(_ fd: Int32, _ local: IPAddress) -> ProbeFailure.Reason? {
        let rc = withSockaddr(local, 0) { Glibc.bind(fd, $0, $1) }
        return rc == 0 ? nil : .other("cannot bind to \(local): \(String(cString: strerror(errno)).lowercased())")
    }

    enum Readiness { case readable, error, timeout }

    /// poll(2) for input until `timeout` seconds have passed (EINTR resumes with what is left).
    static func wait(_ fd: Int32, timeout: Double, until deadline: Double? = nil) -> Readiness {
        let end = deadline ?? now() + timeout
        while true {
            let left = end - now()
            guard left > 0 else { return .timeout }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, Int32(min(left * 1000, Double(Int32.max)).rounded(.up)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n == 0 ? .timeout : .error }
            if p.revents & Int16(POLLERR) != 0 { return .error }
            return .readable
        }
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// udp_socket_error: the error queue's ICMP destination unreachable, in words; nil for none (or
    /// another ICMP error, which keepalived does not count).
    static func unreachable(_ fd: Int32) -> ProbeFailure.Reason? {
        var data = [UInt8](repeating: 0, count: 512)
        var control = [UInt64](repeating: 0, count: 64)  // 8-byte aligned for cmsghdr
        var name = sockaddr_in6()
        return data.withUnsafeMutableBytes { dataBytes in
            control.withUnsafeMutableBytes { controlBytes in
                withUnsafeMutablePointer(to: &name) { namePointer in
                    var iov = iovec(iov_base: dataBytes.baseAddress, iov_len: dataBytes.count)
                    return withUnsafeMutablePointer(to: &iov) { iovPointer in
                        var msg = msghdr()
                        msg.msg_name = UnsafeMutableRawPointer(namePointer)
                        msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_in6>.size)
                        msg.msg_iov = iovPointer
                        msg.msg_iovlen = 1
                        msg.msg_control = controlBytes.baseAddress
                        msg.msg_controllen = controlBytes.count
                        guard recvmsg(fd, &msg, msgErrQueue) >= 0 else { return nil }
                        return parseErrors(UnsafeRawBufferPointer(rebasing: controlBytes[..<Int(msg.msg_controllen)]))
                    }
                }
            }
        }
    }

    /// Walks the control messages (struct cmsghdr: size_t len, int level, int type, then the data at
    /// 8-byte alignment) for a struct sock_extended_err (u32 errno, u8 origin, u8 type, u8 code, ...).
    static func parseErrors(_ control: UnsafeRawBufferPointer) -> ProbeFailure.Reason? {
        var offset = 0
        while offset + 16 <= control.count {
            let length = Int(control.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            let level = control.loadUnaligned(fromByteOffset: offset + 8, as: Int32.self)
            let type = control.loadUnaligned(fromByteOffset: offset + 12, as: Int32.self)
            guard length >= 16, offset + length <= control.count else { break }
            if length >= 16 + 8 {
                let code = control.loadUnaligned(fromByteOffset: offset + 16, as: UInt32.self)
                let origin = control[offset + 20], icmpType = control[offset + 21], icmpCode = control[offset + 22]
                // SO_EE_ORIGIN_ICMP (2) with ICMP_DEST_UNREACH (3), SO_EE_ORIGIN_ICMP6 (3) with
                // ICMPV6_DEST_UNREACH (1).
                if (level == Int32(IPPROTO_IP) && type == ipRecvErr && origin == 2 && icmpType == 3)
                    || (level == Int32(IPPROTO_IPV6) && type == ipv6RecvErr && origin == 3 && icmpType == 1) {
                    let port = origin == 2 ? icmpCode == 3 : icmpCode == 4
                    return port ? .connectionRefused : .init(errno: Int32(code), timeout: 0)
                }
            }
            offset += (length + 7) & ~7
        }
        return nil
    }
}
