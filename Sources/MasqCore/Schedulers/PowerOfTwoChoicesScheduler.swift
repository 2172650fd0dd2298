/// Power of two choices (IPVS ip_vs_twos.c; Mitzenmacher, Richa, Sitaraman, "The Power of Two Random
/// Choices", 2001): two servers drawn at random in proportion to their weights, the one with the lower
/// overhead / weight (active × 256 + inactive, as wlc) taking the connection, the first draw on a tie.
///
/// As the kernel draws, each draw is `random % (total weight + 1)` walked down the available servers
/// (so the first server has one chance more than its weight). The generator is masq's xorshift64*
/// with a fixed seed (the kernel's is prandom_u32): a replay makes the same picks, and a pick
/// allocates nothing. No `-b` flags.
public final class PowerOfTwoChoicesScheduler: Scheduler {
    public static let name = "twos"
    private var state: UInt64

    public convenience init(flags: SchedulerFlags) { self.init(flags: flags, seed: 0x2545_F491_4F6C_DD1D) }

    /// A scheduler whose draws start from `seed` (tests; 0 is replaced, xorshift needs a non-zero state).
    init(flags: SchedulerFlags, seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    /// xorshift64* (Vigna 2016), its high 32 bits.
    private func nextRandom() -> UInt32 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return UInt32(truncatingIfNeeded: (state &* 0x2545_F491_4F6C_DD1D) >> 32)
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        var totalWeight: Int64 = 0
        for d in destinations where d.isAvailable { totalWeight += Int64(d.weight) }
        guard totalWeight > 0 else { return nil }
        totalWeight += 1
        var draw1 = Int64(nextRandom()) % totalWeight
        var draw2 = Int64(nextRandom()) % totalWeight
        var choice1: Destination?, choice2: Destination?
        for d in destinations where d.isAvailable {
            draw1 -= Int64(d.weight)
            draw2 -= Int64(d.weight)
            if draw1 <= 0 && choice1 == nil { choice1 = d }
            if draw2 <= 0 && choice2 == nil { choice2 = d }
            if choice1 != nil && choice2 != nil { break }
        }
        guard let first = choice1, let second = choice2 else { return choice1 ?? choice2 }
        // `weight2 * overhead1 > weight1 * overhead2`: the second is less loaded per weight.
        if Int64(second.weight) * connectionOverhead(first) > Int64(first.weight) * connectionOverhead(second) {
            return second
        }
        return first
    }
}
