/// Source hashing (IPVS ip_vs_sh.c): a 256-bucket table in which each server holds `weight` consecutive
/// buckets in turn; a new connection takes the bucket of its client's address (and port with `sh-port`).
/// An unavailable server refuses the client unless `sh-fallback` probes on to the next buckets.
public final class SourceHashingScheduler: Scheduler {
    public static let name = "sh"
    static let tableBits = 8
    static let tableSize = 1 << tableBits
    private let flags: SchedulerFlags
    private var buckets: [Destination?] = Array(repeating: nil, count: tableSize)

    public init(flags: SchedulerFlags) { self.flags = flags }

    public func destinationsChanged(_ destinations: [Destination]) {
        guard !destinations.isEmpty else {
            buckets = Array(repeating: nil, count: Self.tableSize)
            return
        }
        var index = 0
        var taken: Int32 = 0
        for bucket in 0..<Self.tableSize {
            let d = destinations[index]
            buckets[bucket] = d
            taken += 1
            if taken >= d.weight {
                index = (index + 1) % destinations.count
                taken = 0
            }
        }
    }

    /// IPVS `ip_vs_sh_hashkey`: `(offset + (port + addr) * 2654435761) & 255`, `addr` an IPv4 address
    /// or an IPv6 address's fold (`SchedulingInput.clientHashWord`).
    static func bucket(_ addressWord: UInt32, port: UInt16, offset: Int) -> Int {
        let product = (UInt64(port) &+ UInt64(addressWord)) &* 2_654_435_761
        return Int((UInt64(offset) &+ product) & UInt64(tableSize - 1))
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        let port = flags.contains(.port) ? input.clientPort : 0
        let first = Self.bucket(input.clientHashWord, port: port, offset: 0)
        if let d = buckets[first], d.isAvailable { return d }
        guard flags.contains(.fallback) else { return nil }
        for offset in 0..<Self.tableSize {
            let probe = Self.bucket(input.clientHashWord, port: port, offset: (offset + first) % Self.tableSize)
            if let d = buckets[probe], d.isAvailable { return d }
        }
        return nil
    }
}
