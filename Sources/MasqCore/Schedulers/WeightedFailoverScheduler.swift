/// Weighted failover (IPVS ip_vs_fo.c): every new connection goes to the available server with the
/// highest weight, the first in list order among equals; the others take over only when it is
/// quiesced, removed or overloaded by its `-x` threshold. No `-b` flags.
public final class WeightedFailoverScheduler: Scheduler {
    public static let name = "fo"
    public init(flags: SchedulerFlags) {}

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        var highest: Destination?
        var highestWeight: Int32 = 0
        for d in destinations where d.isAvailable && d.weight > highestWeight {
            highest = d
            highestWeight = d.weight
        }
        return highest
    }
}
