/// IPVS answers a new connection it cannot schedule (no real server available) with ICMP port
/// unreachable (`ip_vs_leave` → `icmp_send`, or `icmpv6_send` for IPv6), so the client fails at once
/// instead of waiting out its SYN retries. masq builds the same messages, from the VIP to the client,
/// for TCP and UDP alike:
/// - IPv4: RFC 792 type 3 code 3, quoting the client's IP header and the first 8 bytes of its datagram;
/// - IPv6: RFC 4443 §3.1 type 1 code 4 (port unreachable), quoting as much of the client's packet as
///   fits in the minimum MTU, 1280 bytes (RFC 4443 §2.4(c)), hop limit 64 (the kernel's default).
///
/// The engine does no I/O: the messages wait here, in memory reserved once, until the caller sends
/// them (the daemon through a raw socket after each receive batch, an AF_INET6 one for a message whose
/// first nibble is 6; `masq replay` into its output capture). Rate-limited as the kernel limits its
/// own ICMP (`icmp_msgs_per_sec` 1000, `icmp_msgs_burst` 50), one bucket for both families, so a
/// flood to a service without servers is not amplified.
public final class UnreachableOutbox {
    /// Messages held between two `drain`s; more in one batch are counted and not built.
    public static let capacity = 64
    /// IPv4: 20 (IP) + 8 (ICMP) + at most 60 (quoted IP header with options) + 8 (quoted datagram).
    public static let maximumLength = 96
    /// IPv6: the whole message within the IPv6 minimum MTU (RFC 8200 §5, RFC 4443 §2.4(c)).
    public static let maximumLength6 = 1280
    /// Each message's room in the storage: the larger of the two.
    static let slotLength = max(maximumLength, maximumLength6)
    /// Tokens per second and the bucket's depth.
    public static let ratePerSecond: Int64 = 1000, burst: Int64 = 50

    private let storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * slotLength, alignment: 8)
    private var lengths = [Int](repeating: 0, count: capacity)
    private var destinations = [IPv4Address](repeating: IPv4Address(rawValue: 0), count: capacity)
    public private(set) var count = 0
    /// Tokens, scaled by 1e9 (one token = one second's worth of nanoseconds / rate).
    private var tokens = burst * 1_000_000_000
    private var lastRefill: Int64?

    /// Messages built for the caller to send.
    public private(set) var sent: UInt64 = 0
    public private(set) var rateLimited: UInt64 = 0
    /// Flows from a source no answer can go to (IPv4 martians: 0/8, 127/8, 224/4 and above; IPv6: the
    /// unspecified address, loopback and multicast, RFC 4443 §2.4(e)).
    public private(set) var unanswerable: UInt64 = 0

    init() {}
    deinit { storage.deallocate() }

    /// Builds the answer to `packet` (a client → VIP datagram, header already validated) if the rate
    /// allows; returns whether it did.
    func answer(_ packet: IPv4Header, now: Int64) -> Bool {
        // masq sees packets before the kernel's martian checks: no answer to a source no host has
        // (0/8, loopback, multicast and above, broadcast), as the kernel's icmp_send would not answer.
        let first = packet.source.rawValue >> 24
        guard first != 0, first != 127, first < 224 else {
            unanswerable &+= 1
            return false
        }
        guard admit(now) else { return false }
        let quoted = min(packet.totalLength, packet.headerLength &+ 8)
        let length = 28 &+ quoted
        let out = PacketBytes(base: storage + count &* Self.slotLength, count: length)
        out.setU8(0x45, 0)
        out.setU8(0xc0, 1)  // IPTOS_PREC_INTERNETCONTROL, as the kernel's own ICMP
        out.setU16(UInt16(length), 2)
        out.setU32(0, 4)  // id 0, no fragment flags
        out.setU8(64, 8)
        out.setU8(IPProtocol.icmp.rawValue, 9)
        out.setU16(0, 10)
        out.setU32(packet.destination.rawValue, 12)
        out.setU32(packet.source.rawValue, 16)
        let ip = IPv4Header(out)
        ip.recomputeChecksum()
        out.setU8(3, 20)  // destination unreachable
        out.setU8(3, 21)  // port unreachable
        out.setU16(0, 22)
        out.setU32(0, 24)
        (storage + count &* Self.slotLength + 28).copyMemory(from: packet.bytes.base, byteCount: quoted)
        let message = out.slice(from: 20)
        message.setU16(InternetChecksum.compute(message), 2)
        lengths[count] = length
        destinations[count] = packet.source
        count += 1
        sent &+= 1
        return true
    }

    /// IPv6: the answer to `packet` (a client → VIP packet whose chain `IPv6Header.upperLayer` walked,
    /// so its payload length lies within its bytes), if the rate allows; returns whether it did.
    func answer(_ packet: IPv6Header, now: Int64) -> Bool {
        // RFC 4443 §2.4(e): no error to a source that does not name one node (unspecified, multicast);
        // and none to loopback, which no packet from the network may carry (RFC 4291 §2.5.3).
        let client = packet.source
        // A link-local client cannot be named without its interface, which the answer's raw socket
        // does not know: counted as unanswerable rather than failing in sendto.
        guard client != .unspecified, client != IPv6Address(high: 0, low: 1), !client.isMulticast,
              !client.isLinkLocal else {
            unanswerable &+= 1
            return false
        }
        guard admit(now) else { return false }
        let headers = IPv6Header.length &+ ICMPv6Header.headerLength
        let quoted = min(packet.totalLength, Self.maximumLength6 &- headers)
        let length = headers &+ quoted
        let base = storage + count &* Self.slotLength
        let out = PacketBytes(base: base, count: length)
        out.setU32(0x6000_0000, 0)  // version 6, traffic class 0, flow label 0 (the kernel's icmpv6_send)
        out.setU16(UInt16(length &- IPv6Header.length), 4)
        out.setU8(IPProtocol.icmpv6.rawValue, 6)
        out.setU8(64, 7)
        packet.destination.store(to: out, at: 8)
        client.store(to: out, at: 24)
        out.setU8(ICMPv6Type.destinationUnreachable.rawValue, 40)
        out.setU8(4, 41)  // port unreachable (RFC 4443 §3.1)
        out.setU16(0, 42)
        out.setU32(0, 44)  // unused, zero
        (base + headers).copyMemory(from: packet.bytes.base, byteCount: quoted)
        ICMPv6Header(out.slice(from: IPv6Header.length))
            .recomputeChecksum(source: packet.destination, destination: client)
        lengths[count] = length
        destinations[count] = IPv4Address(rawValue: 0)
        count += 1
        sent &+= 1
        return true
    }

    /// Takes a token for one answer; false (counted) when the bucket is empty or the outbox full.
    private func admit(_ now: Int64) -> Bool {
        refill(now)
        let cost: Int64 = 1_000_000_000
        guard tokens >= cost, count < Self.capacity else {
            rateLimited &+= 1
            return false
        }
        tokens -= cost
        return true
    }

    private func refill(_ now: Int64) {
        defer { lastRefill = now }
        guard let last = lastRefill, now > last else { return }
        let ceiling = Self.burst * 1_000_000_000
        let elapsed = now - last
        // now - last may be huge (a replay's first packet after a long gap): saturate, no overflow.
        let gained = elapsed > ceiling / Self.ratePerSecond ? ceiling : elapsed &* Self.ratePerSecond
        tokens = min(ceiling, tokens &+ gained)
    }

    /// Hands each waiting message (its bytes and, for an IPv4 one, its destination, the client) to
    /// `body`, then empties the outbox. An IPv6 message (first nibble 6) comes with 0.0.0.0: its
    /// destination is in its header (`destination(of:)`).
    public func drain(_ body: (UnsafeRawBufferPointer, IPv4Address) -> Void) {
        for i in 0..<count {
            body(UnsafeRawBufferPointer(start: storage + i * Self.slotLength, count: lengths[i]), destinations[i])
        }
        count = 0
    }

    /// The destination (the client) of a message `drain` handed over, of either family; nil for bytes
    /// too short for their header.
    public static func destination(of message: UnsafeRawBufferPointer) -> IPAddress? {
        guard let base = message.baseAddress, message.count >= 20 else { return nil }
        let bytes = PacketBytes(base: UnsafeMutableRawPointer(mutating: base), count: message.count)
        if bytes.u8(0) >> 4 == 6 {
            return message.count >= IPv6Header.length ? .v6(IPv6Header(bytes).destination) : nil
        }
        return .v4(IPv4Header(bytes).destination)
    }
}
