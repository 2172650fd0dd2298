/// Locality-based least connection with replication (IPVS ip_vs_lblcr.c): each destination address
/// keeps a set of real servers and takes the least loaded of them (weighted least connection among
/// the set); when that one is overloaded in lblc's sense (see `localityOverloaded`) or none can take
/// it, the least loaded server of the whole service joins the set and takes the connection. A set of
/// more than one unchanged for `lblcr_expiration` (24 h) loses its most loaded member, so a hot
/// address spreads over several servers and shrinks back when it cools.
///
/// Whole entries expire as lblc's do (`LocalityTable`). No `-b` flags: the kernel reads none.
public final class LocalityBasedLeastConnectionReplicationScheduler: Scheduler {
    public static let name = "lblcr"

    /// IPVS `struct ip_vs_dest_set`: the members newest first (`list_add_rcu` adds at the head, and
    /// the kernel's walks go head to tail), and when a member last joined or left.
    struct ServerSet {
        var members: [Destination] = []
        var lastModified: Int64 = 0
    }

    var table = LocalityTable<ServerSet>(empty: ServerSet())

    public init(flags: SchedulerFlags) {}

    /// A removed real server leaves every set (the kernel keeps it in the set, unusable, until the
    /// set's expiry removes it or the entry goes).
    public func destinationsChanged(_ destinations: [Destination]) {
        let current = Set(destinations.map(ObjectIdentifier.init))
        for i in table.indices {
            table.values[i].members.removeAll { !current.contains(ObjectIdentifier($0)) }
        }
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        let now = input.now
        table.collect(now: now)
        guard let entry = table.find(input.destinationAddress) else {
            guard let d = leastWeightedOverhead(destinations, overhead: connectionOverhead) else { return nil }
            _ = table.insert(input.destinationAddress, ServerSet(members: [d], lastModified: now), now: now)
            return d
        }
        table.lastUse[entry] = now
        let least = leastWeightedOverhead(table.values[entry].members, overhead: connectionOverhead)
        // More than one member and the set unchanged for the expiration: the most loaded leaves
        // (`time_after(jiffies, lastmod + expiration)`).
        if table.values[entry].members.count > 1 && now > table.values[entry].lastModified &+ table.expiration,
           let most = Self.mostLoaded(table.values[entry].members) {
            table.values[entry].members.removeAll { $0 === most }
            table.values[entry].lastModified = now
        }
        if let least, !localityOverloaded(least, destinations) { return least }
        guard let d = leastWeightedOverhead(destinations, overhead: connectionOverhead) else { return nil }
        // `ip_vs_dest_set_insert(..., check: true)`: joins at the head unless already a member.
        if !table.values[entry].members.contains(where: { $0 === d }) {
            table.values[entry].members.insert(d, at: 0)
            table.values[entry].lastModified = now
        }
        return d
    }

    /// IPVS `ip_vs_dest_set_max`: the member with the greatest overhead / weight among those with
    /// weight (overloaded or not), the first in set order winning ties.
    static func mostLoaded(_ members: [Destination]) -> Destination? {
        var most: Destination?
        var mostOverhead: Int64 = 0
        for d in members where d.weight > 0 {
            let o = connectionOverhead(d)
            if let m = most {
                if mostOverhead * Int64(d.weight) < o * Int64(m.weight) {
                    most = d
                    mostOverhead = o
                }
            } else {
                most = d
                mostOverhead = o
            }
        }
        return most
    }
}
