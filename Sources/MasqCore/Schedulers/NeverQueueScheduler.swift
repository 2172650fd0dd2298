/// Never queue (IPVS ip_vs_nq.c): an idle server (no active connections) if there is one, the first in
/// list order; otherwise the shortest expected delay, (active + 1) / weight.
public final class NeverQueueScheduler: Scheduler {
    public static let name = "nq"
    public init(flags: SchedulerFlags) {}

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        for d in destinations where d.isAvailable && d.activeConnections == 0 { return d }
        return leastWeightedOverhead(destinations) { Int64($0.activeConnections) + 1 }
    }
}
