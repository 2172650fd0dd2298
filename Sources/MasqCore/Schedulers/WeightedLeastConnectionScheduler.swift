/// Weighted least connection (IPVS ip_vs_wlc.c), ipvsadm's default: the server minimising
/// (active × 256 + inactive) / weight; the first in list order wins a tie.
public final class WeightedLeastConnectionScheduler: Scheduler {
    public static let name = "wlc"
    public init(flags: SchedulerFlags) {}

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        leastWeightedOverhead(destinations, overhead: connectionOverhead)
    }
}
