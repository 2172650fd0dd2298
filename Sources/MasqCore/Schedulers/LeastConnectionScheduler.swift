/// Least connection (IPVS ip_vs_lc.c): the available server with the smallest overhead
/// (active × 256 + inactive); the first in list order wins a tie. Weights only gate (0 = no new flows).
public final class LeastConnectionScheduler: Scheduler {
    public static let name = "lc"
    public init(flags: SchedulerFlags) {}

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        var least: Destination?
        var leastOverhead: Int64 = 0
        for d in destinations where d.isAvailable {
            let o = connectionOverhead(d)
            if least == nil || o < leastOverhead {
                least = d
                leastOverhead = o
            }
        }
        return least
    }
}
