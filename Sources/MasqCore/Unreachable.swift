/// IPVS answers a new connection it cannot schedule (no real server available) with ICMP port
/// unreachable (`ip_vs_leave` → `icmp_send`), so the client fails at once instead of waiting out its
/// SYN retries. masq builds the same message: RFC 792 type 3 code 3 from the VIP to the client,
/// quoting the client's IP header and the first 8 bytes of its datagram, for TCP and UDP alike.
///
/// The engine does no I/O: the messages wait here, in memory reserved once, until the caller sends
/// them (the daemon through a raw socket after each receive batch; `masq replay` into its output
/// capture). Rate-limited as the kernel limits its own ICMP (`icmp_msgs_per_sec` 1000,
/// `icmp_msgs_burst` 50), so a flood to a service without servers is not amplified.
public final class UnreachableOutbox {
    /// Messages held between two `drain`s; more in one batch are counted and not built.
    public static let capacity = 64
    /// 20 (IP) + 8 (ICMP) + at most 60 (quoted IP header with options) + 8 (quoted datagram).
    public static let maximumLength = 96
    /// Tokens per second and the bucket's depth.
    public static let ratePerSecond: Int64 = 1000, burst: Int64 = 50

    private let storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * maximumLength, alignment: 8)
    private var lengths = [Int](repeating: 0, count: capacity)
    private var destinations = [IPv4Address](repeating: IPv4Address(rawValue: 0), count: capacity)
    public private(set) var count = 0
    /// Tokens, scaled by 1e9 (one token = one second's worth of nanoseconds / rate).
    private var tokens = burst * 1_000_000_000
    private var lastRefill: Int64?

    /// Messages built for the caller to send.
    public private(set) var sent: UInt64 = 0
    public private(set) var rateLimited: UInt64 = 0
    /// Flows from a source no answer can go to (martian: 0/8, 127/8, 224/4 and above).
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
        refill(now)
        let cost: Int64 = 1_000_000_000
        guard tokens >= cost, count < Self.capacity else {
            rateLimited &+= 1
            return false
        }
        tokens -= cost
        let quoted = min(packet.totalLength, packet.headerLength &+ 8)
        let length = 28 &+ quoted
        let out = PacketBytes(base: storage + count &* Self.maximumLength, count: length)
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
        (storage + count &* Self.maximumLength + 28).copyMemory(from: packet.bytes.base, byteCount: quoted)
        let message = out.slice(from: 20)
        message.setU16(InternetChecksum.compute(message), 2)
        lengths[count] = length
        destinations[count] = packet.source
        count += 1
        sent &+= 1
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

    /// Hands each waiting message (its bytes and its destination, the client) to `body`, then empties
    /// the outbox.
    public func drain(_ body: (UnsafeRawBufferPointer, IPv4Address) -> Void) {
        for i in 0..<count {
            body(UnsafeRawBufferPointer(start: storage + i * Self.maximumLength, count: lengths[i]), destinations[i])
        }
        count = 0
    }
}
