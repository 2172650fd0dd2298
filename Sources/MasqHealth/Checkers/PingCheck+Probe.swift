#if canImport(Glibc)
import Glibc
#endif
import MasqCore
import NIOCore
import NIOPosix
import Synchronization

// The probe of PingCheck.swift's checker (kept apart from its settings and parser, which the
// keepalived fuzz target builds without SwiftNIO).

extension Probe {
    /// One PING_CHECK probe (ping_it / recv_it, ping6_it / recv6_it).
    static func ping(_ check: PingCheck, address: IPAddress, bindTo: IPAddress?, timeout: Double) async -> Result {
        await BlockingProbe.run { Pinger.ping(address, bindTo: bindTo, timeout: timeout) }
    }
}

enum Pinger {
    /// The identifier of the next raw-socket probe (the datagram socket's is the kernel's).
    static let nextIdentifier = Atomic<UInt16>(UInt16(truncatingIfNeeded: getpid()))
    static let dataLength = 128  // ICMP_BUFSIZE

    static func ping(_ address: IPAddress, bindTo: IPAddress?, timeout: Double) -> Probe.Result {
        let v6 = address.isIPv6
        let what = "PING_CHECK to \(address)"
        let family = v6 ? AF_INET6 : AF_INET
        let proto = Int32(v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)
        var raw = false
        var fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), proto)
        if fd < 0 && (errno == EACCES || errno == EPERM) {
            // ping_group_range does not admit our group: the raw socket (CAP_NET_RAW).
            fd = socket(family, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), proto)
            raw = true
        }
        guard fd >= 0 else {
            let reason = errno == EPERM || errno == EACCES
                ? "no ICMP socket: masq's group is not in net.ipv4.ping_group_range and it lacks CAP_NET_RAW"
                : String(cString: strerror(errno)).lowercased()
            return .failure(ProbeFailure(check: what, reason: .other(reason)))
        }
        defer { close(fd) }
        if let bindTo, let failure = BlockingProbe.bind(fd, bindTo) {
            return .failure(ProbeFailure(check: what, reason: failure))
        }
        var identifier = raw ? nextIdentifier.add(1, ordering: .relaxed).newValue : 0
        if !raw {
            // The kernel's identifier is the socket's "port": read it back to match replies.
            var local = sockaddr_in6()
            var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            identifier = UInt16(bigEndian: local.sin6_port)  // sin_port and sin6_port share the offset
        }
        let sequence: UInt16 = 1
        // Type, code, checksum, identifier, sequence; keepalived's set_buf data.
        var packet: [UInt8] = [v6 ? 128 : 8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), 0, UInt8(sequence)]
        packet += BlockingProbe.keepalivedPadding(dataLength)
        if !v6 {
            // The kernel fills in the checksum of datagram ICMP and of every ICMPv6; raw ICMPv4 is ours.
            let sum = checksum(packet)
            packet[2] = UInt8(sum >> 8)
            packet[3] = UInt8(sum & 0xff)
        }
        let sent = BlockingProbe.withSockaddr(address, 0) { sendto(fd, packet, packet.count, 0, $0, $1) }
        guard sent == packet.count else {
            return .failure(ProbeFailure(check: what, reason: .init(errno: errno, timeout: timeout)))
        }
        let deadline = BlockingProbe.now() + timeout
        var buffer = [UInt8](repeating: 0, count: 60 + 8 + dataLength + 64)
        while true {
            switch BlockingProbe.wait(fd, timeout: timeout, until: deadline) {
            case .timeout:
                return .failure(ProbeFailure(check: what, reason: .timeout(seconds: timeout)))
            case .error:
                var code: Int32 = 0
                var length = socklen_t(4)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
                return .failure(ProbeFailure(check: what, reason: .init(errno: code == 0 ? EIO : code, timeout: timeout)))
            case .readable:
                var from = sockaddr_in6()
                var fromLength = socklen_t(MemoryLayout<sockaddr_in6>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &fromLength) }
                }
                guard n >= 0 else {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return .failure(ProbeFailure(check: what, reason: .init(errno: errno, timeout: timeout)))
                }
                let source: IPAddress = withUnsafeBytes(of: &from) { bytes in
                    func word(_ at: Int) -> UInt64 { UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
                    return v6 ? .v6(IPv6Address(high: word(8), low: word(16)))
                              : .v4(IPv4Address(rawValue: UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))))
                }
                if isReply(buffer[..<n], raw: raw, v6: v6, identifier: identifier, sequence: sequence), source == address {
                    return .success
                }
                // Another probe's reply, an echo request seen by the raw socket, or something else: wait on.
            }
        }
    }

    /// Whether `data` (from the IPv4 header on for raw ICMPv4, from the ICMP header otherwise) is the
    /// echo reply to `identifier` / `sequence`.
    static func isReply(_ data: ArraySlice<UInt8>, raw: Bool, v6: Bool, identifier: UInt16, sequence: UInt16) -> Bool {
        var icmp = data
        if raw && !v6 {
            guard let first = data.first else { return false }
            icmp = data.dropFirst(Int(first & 0x0f) * 4)
        }
        guard icmp.count >= 8 else { return false }
        let b = Array(icmp.prefix(8))
        guard b[0] == (v6 ? 129 : 0), b[1] == 0 else { return false }
        // The datagram socket gives only its own replies (and may rewrite the identifier); raw sees all.
        if raw && (UInt16(b[4]) << 8 | UInt16(b[5])) != identifier { return false }
        return (UInt16(b[6]) << 8 | UInt16(b[7])) == sequence
    }

    /// RFC 1071's Internet checksum of an echo request: MasqCore's, over the array's bytes.
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var copy = bytes
        return copy.withUnsafeMutableBytes { InternetChecksum.compute(PacketBytes($0)) }
    }
}
