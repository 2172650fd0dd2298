/// Locality-based least connection (IPVS ip_vs_lblc.c): each destination address keeps the real
/// server it was given, while that server has weight and is not overloaded in lblc's sense (more
/// active connections than its weight while another server has fewer than half its weight); else
/// the weighted least-connection server (as wlc) takes it and the entry. Behind a VIP every flow has
/// the same destination, so a NAT service sends its flows to one server until it overloads; the
/// firewall-mark services of cache clusters, whose packets keep their own destinations, spread.
///
/// Entries idle 24 h (`lblc_expiration`) go in the full check every 30 minutes, entries idle 6 min
/// once there are more than 16384 (`LocalityTable`). No `-b` flags: the kernel reads none.
///
/// As in the kernel, a remembered server is kept even when its `-x` threshold overloaded it (the
/// lookup checks weight and lblc's own overload rule, not IP_VS_DEST_F_OVERLOAD); a new pick skips
/// threshold-overloaded servers.
public final class LocalityBasedLeastConnectionScheduler: Scheduler {
    public static let name = "lblc"
    var table = LocalityTable<Destination?>(empty: nil)

    public init(flags: SchedulerFlags) {}

    /// A removed real server leaves the entries that named it (the kernel keeps them, pointing into its
    /// trash, but never uses them: `IP_VS_DEST_F_AVAILABLE` is off).
    public func destinationsChanged(_ destinations: [Destination]) {
        let current = Set(destinations.map(ObjectIdentifier.init))
        for i in table.indices {
            if let d = table.values[i], !current.contains(ObjectIdentifier(d)) { table.remove(i) }
        }
    }

    public func select(from destinations: [Destination], for input: SchedulingInput) -> Destination? {
        table.collect(now: input.now)
        let entry = table.find(input.destinationAddress)
        if let entry {
            table.lastUse[entry] = input.now
            if let d = table.values[entry], d.weight > 0, !localityOverloaded(d, destinations) { return d }
        }
        guard let d = leastWeightedOverhead(destinations, overhead: connectionOverhead) else { return nil }
        // `ip_vs_lblc_new`: the entry now names the new server (or a new entry does; none at the bound).
        if let entry {
            table.values[entry] = d
        } else {
            _ = table.insert(input.destinationAddress, d, now: input.now)
        }
        return d
    }
}

/// IPVS lblc/lblcr `is_overloaded`: more active connections than its weight, while some server of
/// the service (any, quiesced or overloaded too) has fewer than half its weight in active ones.
@inlinable func localityOverloaded(_ d: Destination, _ destinations: [Destination]) -> Bool {
    guard d.activeConnections > d.weight else { return false }
    for other in destinations where Int64(other.activeConnections) * 2 < Int64(other.weight) { return true }
    return false
}
