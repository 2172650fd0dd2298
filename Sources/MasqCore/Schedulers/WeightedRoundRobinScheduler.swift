/// Weighted round robin (IPVS ip_vs_wrr.c): passes over the servers with a current weight `cw` that
/// starts at the highest weight and falls by the weights' gcd each pass; a server is picked while its
/// weight is at least `cw`. Weights 3:1 give A A A B.
public final class WeightedRoundRobinScheduler: Scheduler {
    public static let name = "wrr"
    private var index = -1         // last picked (IPVS `mark->cl`)
    private var currentWeight = 0  // IPVS `mark->cw`
    private var maxWeight = 0      // IPVS `mark->mw`
    private var gcdWeight = 1      // IPVS `mark->di`

    public init(flags: SchedulerFlags) {}

    public func destinationsChanged(_ destinations: [Destination]) {
        index = -1
        gcdWeight = destinations.reduce(0) { gcd($0, Int($1.weight)) }
        if gcdWeight == 0 { gcdWeight = 1 }
        maxWeight = Int(destinations.map(\.weight).max() ?? 0) - (gcdWeight - 1)
        if currentWeight > maxWeight || currentWeight == 0 {
            currentWeight = maxWeight
        } else if gcdWeight > 1 {
            currentWeight = currentWeight / gcdWeight * gcdWeight + 1
        }
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        let n = destinations.count
        guard n > 0, maxWeight > 0 else { return nil }
        // At most one full sweep per weight level, plus one: enough to find any server of weight ≥ 1.
        var visits = 0
        let limit = n * (maxWeight / gcdWeight + 2)
        while visits < limit {
            index += 1
            if index >= n {
                index = 0
                currentWeight -= gcdWeight
                if currentWeight <= 0 { currentWeight = maxWeight }
            }
            let d = destinations[index]
            // IPVS: not IP_VS_DEST_F_OVERLOAD and weight >= cw.
            if d.isAvailable && Int(d.weight) >= currentWeight { return d }
            visits += 1
        }
        return nil
    }

    private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
