/// Shortest expected delay (IPVS ip_vs_sed.c): the server minimising (active + 1) / weight, the delay a
/// new connection would expect; inactive connections are not counted.
public final class ShortestExpectedDelayScheduler: Scheduler {
    public static let name = "sed"
    public init(flags: SchedulerFlags) {}

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        leastWeightedOverhead(destinations) { Int64($0.activeConnections) + 1 }
    }
}
