import Foundation
import MasqCore
import Synchronization

/// Sends the engine's ICMP port-unreachable answers (see `UnreachableOutbox`) through a raw IPv4
/// socket with the header included. Not through the NFQUEUE verdict: the dropped packet sits in raw
/// PREROUTING, before routing, and an answer from the VIP rewritten there would be a martian (the
/// director's own address as source) on a director without accept_local, exactly what masq must not
/// need. Sent as the director's own packet instead, routed to the client like the kernel's own ICMP.
final class UnreachableSender: Sendable {
    private let descriptor: Int32
    /// Sends the kernel refused (a full socket buffer, no route): counted, never retried.
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

    deinit { close(descriptor) }

    /// Sends what the engine has waiting; never blocks (a full socket buffer drops the answer, counted).
    func send(_ outbox: UnreachableOutbox) {
        outbox.drain { bytes, destination in
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = destination.rawValue.bigEndian
            let n = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0,
                           socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if n < 0 { failures.add(1, ordering: .relaxed) }
        }
    }
}
