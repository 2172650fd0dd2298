/// Weighted overflow (IPVS ip_vs_ovf.c): the available server with the highest weight (the first in
/// list order among equals) whose active connections do not exceed its weight; the next in weight
/// takes the overflow. Inactive connections are not counted, so UDP flows (never active) never
/// overflow, as the kernel warns. No `-b` flags.
public final class WeightedOverflowScheduler: Scheduler {
    public static let name = "ovf"
    public init(flags: SchedulerFlags) {}

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        var highest: Destination?
        var highestWeight: Int32 = 0
        for d in destinations where d.isAvailable && d.activeConnections <= d.weight {
            if highest == nil || d.weight > highestWeight {
                highest = d
                highestWeight = d.weight
            }
        }
        return highest
    }
}
