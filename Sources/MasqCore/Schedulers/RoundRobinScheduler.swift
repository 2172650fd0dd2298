/// Round robin (IPVS ip_vs_rr.c): each new connection goes to the next available server in the order
/// they were added, starting with the first; weight 0 servers are skipped.
public final class RoundRobinScheduler: Scheduler {
    public static let name = "rr"
    /// Index of the server picked last; -1 before the first pick, so the first server comes first.
    private var last = -1

    public init(flags: SchedulerFlags) {}

    public func destinationsChanged(_ destinations: [Destination]) {
        // IPVS keeps its list position unless the picked server was removed; an index is close enough,
        // clamped so a shorter list still starts over at its head.
        if last >= destinations.count { last = -1 }
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        let n = destinations.count
        guard n > 0 else { return nil }
        for step in 1...n {
            let i = (last + step) % n
            if destinations[i].isAvailable {
                last = i
                return destinations[i]
            }
        }
        return nil
    }
}
