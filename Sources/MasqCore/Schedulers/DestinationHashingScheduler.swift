/// Destination hashing (IPVS ip_vs_dh.c): a 256-bucket table filled with the servers in turn (weights
/// ignored); a connection takes the bucket of its destination address. Behind a VIP every flow has the
/// same destination, so dh sends all of one service's traffic to one server, exactly as IPVS does.
public final class DestinationHashingScheduler: Scheduler {
    public static let name = "dh"
    static let tableSize = 256
    private var buckets: [Destination?] = Array(repeating: nil, count: tableSize)

    public init(flags: SchedulerFlags) {}

    public func destinationsChanged(_ destinations: [Destination]) {
        for bucket in 0..<Self.tableSize {
            buckets[bucket] = destinations.isEmpty ? nil : destinations[bucket % destinations.count]
        }
    }

    /// IPVS `ip_vs_dh_hashkey`: the address (an IPv6 address's fold) times 2654435761, low 8 bits.
    static func bucket(_ addressWord: UInt32) -> Int {
        Int((UInt64(addressWord) &* 2_654_435_761) & UInt64(tableSize - 1))
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        guard let d = buckets[Self.bucket(input.virtualAddressHashWord)], d.isAvailable else { return nil }
        return d
    }
}
