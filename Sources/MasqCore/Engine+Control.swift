/// The engine's configuration side, as IPVS's ip_vs_ctl.c is: services and real servers added,
/// changed and removed, removed real servers kept while connections use them, counters zeroed, rates
/// estimated, timeouts set, and what the admin tools read. Called under the same owner as the packet
/// path, between two packets, so each change is atomic for the packet path.
extension Engine {
    // MARK: Services and real servers

    /// Takes a new configuration (already validated). Services and real servers that stay keep their
    /// identity, counters and scheduler state; established connections are never dropped, even to a
    /// real server that is gone (IPVS's default: they live out their timeouts).
    public func apply(_ configuration: Configuration) {
        timeouts = configuration.timeouts
        var kept: [ServiceKey: VirtualService] = [:]
        var ordered: [VirtualService] = []
        var stillUsed = Set<UInt32>()
        for spec in configuration.services {
            let existing = serviceByKey[spec.key]
            let serviceID = existing?.id ?? newServiceID()
            var dests: [Destination] = []
            for rs in spec.realServers {
                let found = existing?.destinations.first { $0.address == rs.address && $0.port == rs.port }
                let d = found ?? newDestination(rs, serviceID: serviceID, proto: spec.key.proto)
                d.setWeight(rs.weight)
                dests.append(d)
                stillUsed.insert(d.id)
            }
            let service: VirtualService
            if let existing {
                existing.update(spec: spec, destinations: dests)
                service = existing
            } else {
                service = VirtualService(id: serviceID, spec: spec, destinations: dests)
            }
            kept[spec.key] = service
            ordered.append(service)
        }
        // Services already updated in place list only their new destinations: walk every one known.
        for d in destinations.compactMap({ $0 }) where !stillUsed.contains(d.id) && d.inService {
            d.setWeight(0)
            d.inService = false
        }
        services = ordered
        for old in destinations.compactMap({ $0 }) where !stillUsed.contains(old.id) { releaseIfUnused(old) }
        serviceByKey = kept
        virtualAddresses = Set(ordered.map { UInt64($0.key.proto.rawValue) << 32 | UInt64($0.key.address.rawValue) })
        realAddresses = Set(ordered.flatMap { $0.destinations.map(\.address.rawValue) })
    }

    private func newServiceID() -> UInt32 {
        defer { nextServiceID += 1 }
        serviceStats.append(TrafficCounters())
        return nextServiceID
    }

    private func newDestination(_ rs: RealServerSpec, serviceID: UInt32, proto: IPProtocol) -> Destination {
        let d = Destination(id: UInt32(destinations.count), address: rs.address, port: rs.port, weight: rs.weight,
                            serviceID: serviceID, proto: proto)
        destinations.append(d)
        return d
    }

    /// Forgets a removed real server once nothing names it any more (IPVS empties its trash so).
    func releaseIfUnused(_ d: Destination) {
        if d.isUnused && !d.inService { destinations[Int(d.id)] = nil }
    }

    public func service(_ key: ServiceKey) -> VirtualService? { serviceByKey[key] }

    /// Real servers removed from the configuration whose connections still live (IPVS keeps them in
    /// its trash): their replies must still be queued and NATed until the last one ends.
    public var drainingRealServers: [(proto: IPProtocol, address: IPv4Address, port: UInt16)] {
        destinations.compactMap { d in
            guard let d, !d.inService else { return nil }
            return (d.proto, d.address, d.port)
        }
    }

    /// Failed handshakes in a row of a service's real server (see `Destination.handshakeFailures`);
    /// `reset` starts the count over once a health checker has acted on it.
    public func handshakeFailures(_ key: ServiceKey, _ address: IPv4Address, _ port: UInt16, reset: Bool = false) -> UInt32 {
        guard let d = serviceByKey[key]?.destinations.first(where: { $0.address == address && $0.port == port }) else { return 0 }
        defer { if reset { d.handshakeFailures = 0 } }
        return d.handshakeFailures
    }

    // MARK: Counters, rates, timeouts

    /// ipvsadm `-Z`: zero the packet, byte and connection counters of one service (and its real
    /// servers), or of all; their rate estimators start over (IPVS `ip_vs_zero_stats`).
    public func zeroCounters(_ key: ServiceKey? = nil) {
        for service in services where key == nil || service.key == key {
            serviceStats[Int(service.id)] = TrafficCounters()
            service.rateEstimator = RateEstimator()
            for d in service.destinations {
                d.stats = TrafficCounters()
                d.rateEstimator = RateEstimator()
            }
        }
    }

    /// Samples every service's and real server's counters into their rates (IPVS's `estimation_timer`,
    /// every 2 s); `time` is on any monotonic clock in nanoseconds, the same at every call.
    public func estimateRates(at time: Int64) {
        let seconds = lastRateSample.map { Double(time - $0) / 1e9 } ?? 0
        lastRateSample = time
        for service in services {
            service.rateEstimator.sample(serviceStats[Int(service.id)], seconds: seconds)
            for d in service.destinations { d.rateEstimator.sample(d.stats, seconds: seconds) }
        }
    }

    /// ipvsadm `--set tcp tcpfin udp`; applies to states entered from now on, as in IPVS.
    public func setTimeouts(_ newTimeouts: Timeouts) { timeouts = newTimeouts }

    // MARK: Dumps

    /// The table as records (slot order, deterministic), templates included.
    public func flowRecords() -> [FlowRecord] {
        var records: [FlowRecord] = []
        records.reserveCapacity(table.connectionCount + table.templateCount)
        table.forEachLive { _, c in records.append(FlowRecord(c, now: now)) }
        return records
    }
}
