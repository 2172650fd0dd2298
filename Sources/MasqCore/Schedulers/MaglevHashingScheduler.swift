/// Maglev hashing (IPVS ip_vs_mh.c; Eisenbud et al., "Maglev", NSDI 2016 §3.4): every server walks its own
/// permutation of a prime-sized lookup table, taking free slots in turn, as many per round as its
/// weight / gcd; a client's address (and port with `mh-port`) hashes to a slot. Removing a server
/// moves only the clients it had. Quiesced servers keep their slots (built from the last weight) but
/// refuse new clients unless `mh-fallback` probes on.
///
/// The permutation hash is masq's own (IPVS seeds hsiphash), so slot positions differ from the kernel's.
public final class MaglevHashingScheduler: Scheduler {
    public static let name = "mh"
    /// IPVS's default table size (CONFIG_IP_VS_MH_TAB_INDEX 12); a prime, as Maglev requires.
    public static let tableSize = 4093
    private let flags: SchedulerFlags
    private var lookup: [Destination?] = Array(repeating: nil, count: tableSize)

    public init(flags: SchedulerFlags) { self.flags = flags }

    static func hash(_ a: UInt32, _ b: UInt32, seed: UInt64) -> UInt64 {
        var x = (UInt64(a) << 32 | UInt64(b)) ^ seed
        x = (x ^ (x >> 33)) &* 0xff51_afd7_ed55_8ccd
        x = (x ^ (x >> 33)) &* 0xc4ce_b9fe_1a85_ec53
        return x ^ (x >> 33)
    }

    public func destinationsChanged(_ destinations: [Destination]) {
        let size = Self.tableSize
        lookup = Array(repeating: nil, count: size)
        let weights = destinations.map { Int($0.lastWeight) }
        let divisor = weights.reduce(0) { gcd($0, $1) }
        guard divisor > 0 else { return }
        var next = destinations.map { d -> Int in
            Int(Self.hash(d.address.hashWord, UInt32(d.port), seed: 2_654_435_761) % UInt64(size))
        }
        let skip = destinations.map { d -> Int in
            Int(Self.hash(d.address.hashWord, UInt32(d.port), seed: 2_654_435_801) % UInt64(size - 1)) + 1
        }
        // IPVS `ip_vs_mh_shift_weight`: scale large weights down so one server cannot take every slot
        // in its first round (weights 5000:4999 would otherwise give the second nothing).
        let maxTurns = (weights.max() ?? 0) / divisor
        let shift = max(0, (Int.bitWidth - maxTurns.leadingZeroBitCount) - 6)
        let turns = weights.map { w in w == 0 ? 0 : max(1, (w / divisor) >> shift) }
        var filled = 0
        while true {
            for (i, d) in destinations.enumerated() where turns[i] > 0 {
                for _ in 0..<turns[i] {
                    while lookup[next[i]] != nil { next[i] = (next[i] + skip[i]) % size }
                    lookup[next[i]] = d
                    filled += 1
                    if filled == size { return }
                }
            }
        }
    }

    /// The client's address (an IPv6 address folded, as `ip_vs_mh_hashkey` folds it) and, with
    /// `mh-port`, its port pick the slot.
    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        let port = flags.contains(.port) ? UInt32(input.clientPort) : 0
        let size = UInt64(Self.tableSize)
        let slot = Int(Self.hash(input.clientHashWord, port, seed: 0) % size)
        guard let d = lookup[slot] else { return nil }
        if d.isAvailable { return d }
        guard flags.contains(.fallback) else { return nil }
        for offset in 1..<Self.tableSize {
            let probe = Int(Self.hash(input.clientHashWord, port, seed: UInt64(offset)) % size)
            if let d = lookup[probe], d.isAvailable { return d }
        }
        return nil
    }

    private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
