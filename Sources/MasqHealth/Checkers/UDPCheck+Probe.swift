#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import MasqCore
import NIOCore
import NIOPosix

// The probe of UDPCheck.swift's checker (kept apart from its settings and parser, which the
// keepalived fuzz target builds without SwiftNIO).

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
