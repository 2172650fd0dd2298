import Foundation
import MasqCore
import Synchronization

/// Sends the engine's ICMP port-unreachable answers (see `UnreachableOutbox`) through raw sockets with
/// the header included: an IPv4 one for ICMP (RFC 792), an IPv6 one for ICMPv6 (RFC 4443 §3.1), each
/// message going by its first nibble. Not through the NFQUEUE verdict: the dropped packet sits in raw
/// PREROUTING, before routing, and an answer from the VIP rewritten there would be a martian (the
/// director's own address as source) on a director without accept_local, exactly what masq must not
/// need. Sent as the director's own packet instead, routed to the client like the kernel's own ICMP.
final class UnreachableSender: Sendable {
    private let descriptor: Int32
    /// The IPv6 socket: `notOpened` until the first IPv6 answer (a host without IPv6 services never
    /// opens it), `unavailable` when opening failed (no IPv6 in the kernel: EAFNOSUPPORT), not retried.
    private let descriptor6 = Atomic<Int32>(UnreachableSender.notOpened)
    private static let notOpened: Int32 = -1
    private static let unavailable: Int32 = -2
    /// socket(2)'s errno when the IPv6 socket could not be opened.
    private let openError6 = Atomic<Int32>(0)
    /// Sends the kernel refused (a full socket buffer, no route, no IPv6 socket): counted, never retried.
    let failures = Atomic<UInt64>(0)

    /// nil when the socket cannot be opened (no CAP_NET_RAW): the answers are then not sent.
    init?() {
        // IPPROTO_RAW implies IP_HDRINCL: the engine's bytes go out as built.
        let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                        Int32(IPPROTO_RAW))
        guard fd >= 0 else { return nil }
        // The VIP need not be one of the director's addresses (masq catches it before routing); a
        // header-included raw send does not insist on a local source, and IP_TRANSPARENT (19 in
        // <linux/in.h>) says so explicitly for the route lookup (best effort: its result is ignored).
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_IP), 19, &on, socklen_t(MemoryLayout<Int32>.size))
        descriptor = fd
    }

    deinit {
        close(descriptor)
        let fd6 = descriptor6.load(ordering: .acquiring)
        if fd6 >= 0 { close(fd6) }
    }

    /// The IPv6 socket, opened on first use: an AF_INET6 raw socket of protocol IPPROTO_RAW, which on
    /// Linux implies IPV6_HDRINCL (inet6_create sets hdrincl for it; raw(7), ipv6(7)), so the engine's
    /// whole IPv6 packet goes out as built, its ICMPv6 checksum its own. IPV6_HDRINCL (36) is set too
    /// for kernels that want it said, and IPV6_TRANSPARENT (75) for a VIP that is not the director's
    /// address (both best effort, as IP_TRANSPARENT for IPv4). Returns -1 when it cannot be had.
    /// Only the packet thread holding the engine lock sends, so two never race to open it; the
    /// exchange keeps it right if they did.
    func ipv6Descriptor() -> Int32 {
        let known = descriptor6.load(ordering: .acquiring)
        if known >= 0 { return known }
        if known == Self.unavailable { return -1 }
        let fd = socket(AF_INET6, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                        Int32(IPPROTO_RAW))
        if fd < 0 {
            openError6.store(errno, ordering: .relaxed)
        } else {
            var on: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), 36, &on, socklen_t(MemoryLayout<Int32>.size))
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), 75, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let value = fd >= 0 ? fd : Self.unavailable
        let (exchanged, original) = descriptor6.compareExchange(expected: Self.notOpened, desired: value, ordering: .acquiringAndReleasing)
        if exchanged { return fd }
        if fd >= 0 { close(fd) }
        return original >= 0 ? original : -1
    }

    /// Opens the IPv6 socket now: the daemon asks at start when it has IPv6 services, to say so if it
    /// cannot be had. nil when open, else socket(2)'s error.
    func openIPv6() -> ReadError? {
        ipv6Descriptor() >= 0 ? nil : ReadError(code: openError6.load(ordering: .relaxed))
    }

    /// Sends what the engine has waiting; never blocks (a full socket buffer drops the answer, counted).
    /// Each message goes to its own IP header's destination, through the socket of its version.
    func send(_ outbox: UnreachableOutbox) {
        outbox.drain { bytes, _ in
            if !send(packet: bytes) { failures.add(1, ordering: .relaxed) }
        }
    }

    /// Sends one whole IP packet; false when it could not be (unparseable, no socket, refused).
    private func send(packet bytes: UnsafeRawBufferPointer) -> Bool {
        switch Self.destination(of: bytes) {
        case .ipv4(var address):
            let n = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0,
                           socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            return n >= 0
        case .ipv6(var address):
            let fd = ipv6Descriptor()
            guard fd >= 0 else { return false }
            let n = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0,
                           socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
            return n >= 0
        case nil:
            return false
        }
    }

    /// Where a header-included raw send goes: the packet's own destination.
    enum SocketAddress {
        case ipv4(sockaddr_in)
        case ipv6(sockaddr_in6)
    }

    /// The socket address of `packet`'s destination, by its version nibble: IPv4's at bytes 16-19
    /// (RFC 791), IPv6's at 24-39 (RFC 8200), port 0 (a raw socket's protocol is its own; a nonzero
    /// one other than IPPROTO_RAW's is refused by rawv6_sendmsg). nil for a packet shorter than its
    /// fixed header or of another version.
    static func destination(of packet: UnsafeRawBufferPointer) -> SocketAddress? {
        guard packet.count >= 1 else { return nil }
        switch packet[0] >> 4 {
        case 4:
            guard packet.count >= 20 else { return nil }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            // The wire bytes as they are: s_addr is in network order.
            withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[16..<20])) }
            return .ipv4(address)
        case 6:
            guard packet.count >= 40 else { return nil }
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[24..<40])) }
            return .ipv6(address)
        default:
            return nil
        }
    }
}
