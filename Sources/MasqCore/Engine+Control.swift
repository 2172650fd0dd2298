/// The engine's configuration side, as IPVS's ip_vs_ctl.c is: services and real servers added,
/// changed and removed, removed real servers kept while connections use them, counters zeroed, rates
/// estimated, timeouts set, and what the admin tools read. Called under the same owner as the packet
/// path, between two packets, so each change is atomic for the packet path.
extension Engine {
    // MARK: Services and real servers

    /// Takes a new configuration (already validated). Services and real servers that stay keep their
    /// identity, counters and scheduler state; established connections are never dropped, even to a
    /// real server that is gone (IPVS's default: they live out their timeouts).
    ///
    /// A service or real server that finds the registry full (`TableMemory.registryCapacity` records
    /// in use, live and draining) gets no record: it is left out (a real server is never scheduled, a
    /// service never matched) and counted in `EngineCounters.registryFull`, which the daemon logs.
    ///
    /// Refused (a no-op) once `markCleanShutdown` ran: the table is marked clean for the next masq.
    public func apply(_ configuration: Configuration) {
        guard !isShutDown else { return }
        apply(configuration, adopted: [:], adoptedInService: [])
    }

    /// `adopted`: services of an adopted table's registry by key, not yet matched (see `adoptRegistry`);
    /// `adoptedInService`: the real-server ids whose records were in service when the previous masq
    /// left, preferred when two records of one service share an address:port (a remove and re-add
    /// while the old one drained).
    private func apply(_ configuration: Configuration, adopted: [ServiceKey: UInt32], adoptedInService: Set<UInt32>) {
        timeouts = configuration.timeouts
        var kept: [ServiceKey: VirtualService] = [:]
        var ordered: [VirtualService] = []
        var stillUsed = Set<UInt32>()
        for spec in configuration.services {
            let existing = serviceByKey[spec.key]
            let adoptedID = existing == nil ? adopted[spec.key] : nil
            guard let serviceID = existing?.id ?? adoptedID ?? newServiceID(spec.key) else {
                counters.registryFull &+= 1
                continue
            }
            var dests: [Destination] = []
            for rs in spec.realServers {
                var found = existing?.destinations.first { $0.address == rs.address && $0.port == rs.port }
                if found == nil && adoptedID != nil {
                    let candidates = destinations.lazy.compactMap { $0 }.filter {
                        !$0.inService && $0.serviceID == serviceID && $0.address == rs.address && $0.port == rs.port
                    }
                    found = candidates.first { adoptedInService.contains($0.id) } ?? candidates.first
                    found?.inService = true
                }
                guard let d = found ?? newDestination(rs, serviceID: serviceID, proto: spec.key.proto) else {
                    counters.registryFull &+= 1
                    continue
                }
                d.setWeight(rs.weight)
                d.setThresholds(upper: rs.upperThreshold, lower: rs.lowerThreshold)
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
            registry.services[Int(serviceID)].inService = 1
            kept[spec.key] = service
            ordered.append(service)
        }
        // Services no longer configured: their flows live on, their records until the last ends.
        let dropped = serviceByKey.values.filter { kept[$0.key] !== $0 }.map(\.id)
            + adopted.filter { kept[$0.key]?.id != $0.value }.map(\.value)
        for id in dropped { registry.services[Int(id)].inService = 0 }
        // Services already updated in place list only their new destinations: walk every one known.
        for d in destinations.compactMap({ $0 }) where !stillUsed.contains(d.id) && d.inService {
            d.setWeight(0)
            d.inService = false
        }
        services = ordered
        serviceByKey = kept
        for old in destinations.compactMap({ $0 }) where !stillUsed.contains(old.id) { releaseIfUnused(old) }
        for id in dropped { releaseServiceIfUnused(id) }
        indexServices(ordered)
    }

    /// The packet path's indexes of the configured services: VIPs and real-server addresses (for what
    /// has no ports), firewall-mark services by mark, one-packet services by real server endpoint.
    private func indexServices(_ ordered: [VirtualService]) {
        let byAddress = ordered.filter { !$0.key.isFirewallMark }
        virtualAddresses = Set(byAddress.compactMap { s in s.key.address.v4.map { UInt64(s.key.proto.rawValue) << 32 | UInt64($0.rawValue) } })
        realAddresses = Set(ordered.flatMap { $0.destinations.compactMap(\.address.v4?.rawValue) })
        virtualAddresses6 = Set(byAddress.compactMap { s in s.key.address.v6.map { VirtualAddress6(proto: s.key.proto, address: $0) } })
        realAddresses6 = Set(ordered.flatMap { $0.destinations.compactMap(\.address.v6) })
        firewallMarkServices = [:]
        firewallMarkServices6 = [:]
        for s in ordered where s.key.isFirewallMark {
            if s.key.address.isIPv6 { firewallMarkServices6[s.key.fwmark] = s } else { firewallMarkServices[s.key.fwmark] = s }
        }
        // One-packet services' answers, reversed without state: only an address service with a port
        // tells which VIP:port an answer from a real server endpoint must leave from (a firewall-mark
        // service has no VIP; a port-0 service many ports). A real server endpoint in two such services
        // answers for the first configured (see README, "One-packet scheduling").
        onePacketReplies = [:]
        for s in byAddress where s.usesOnePacketScheduling {
            for d in s.destinations {
                let key = OnePacketReplyKey(address: d.address, port: d.port != 0 ? d.port : s.key.port)
                if onePacketReplies[key] == nil {
                    onePacketReplies[key] = OnePacketReply(virtualAddress: s.key.address, virtualPort: s.key.port,
                                                           serviceID: s.id, destinationID: d.id)
                }
            }
        }
    }

    /// The lowest free service record, initialised for `key`; nil when the registry is full.
    private func newServiceID(_ key: ServiceKey) -> UInt32? {
        guard let id = registry.freeServiceID() else { return nil }
        registry.services[Int(id)] = ServiceRecord(inUse: 1, inService: 1, port: key.port, proto: key.proto.rawValue,
                                                   family: key.address.isIPv6 ? 6 : 0,
                                                   kind: key.isFirewallMark ? ServiceRecord.firewallMarkKind : 0,
                                                   reserved: 0,
                                                   address: key.isFirewallMark ? key.fwmark : key.address.v4?.rawValue ?? 0,
                                                   address6: key.address.v6 ?? .unspecified, stats: TrafficCounters())
        return id
    }

    /// A real server on the lowest free id (a released one is reused); nil when the registry is full.
    private func newDestination(_ rs: RealServerSpec, serviceID: UInt32, proto: IPProtocol) -> Destination? {
        let id: Int
        if let free = destinations.firstIndex(where: { $0 == nil }) {
            id = free
        } else {
            guard destinations.count < registry.capacity else { return nil }
            id = destinations.count
            destinations.append(nil)
        }
        let d = Destination(id: UInt32(id), in: table.memory, address: rs.address, port: rs.port, weight: rs.weight,
                            serviceID: serviceID, proto: proto)
        destinations[id] = d
        return d
    }

    /// Forgets a removed real server once nothing names it any more (IPVS empties its trash so), and
    /// its service's record once that service is gone too.
    func releaseIfUnused(_ d: Destination) {
        guard d.isUnused && !d.inService, Int(d.id) < destinations.count, destinations[Int(d.id)] === d else { return }
        destinations[Int(d.id)] = nil
        d.record.pointee.inUse = 0
        releaseServiceIfUnused(d.serviceID)
    }

    /// A service record is free once the service is not configured and no real server names it.
    private func releaseServiceIfUnused(_ id: UInt32) {
        guard let record = registry.service(id), record.pointee.inUse != 0, record.pointee.inService == 0,
              !destinations.contains(where: { $0?.serviceID == id }) else { return }
        record.pointee.inUse = 0
    }

    /// After `TableMemory` adopted a table: the registry's records become objects again (services by
    /// key, real servers by id, all drained until matched), then the configuration is applied as a
    /// reload would be, giving matched ones back their ids, counts and stats.
    func adoptRegistry(_ configuration: Configuration) {
        var adopted: [ServiceKey: UInt32] = [:]
        for id in 0..<registry.capacity where registry.services[id].inUse != 0 && registry.services[id].inService != 0 {
            adopted[registry.services[id].key] = UInt32(id)
        }
        var rebuilt: [Destination?] = []
        var inService = Set<UInt32>()
        for id in 0..<registry.capacity where registry.destinations[id].inUse != 0 {
            while rebuilt.count < id { rebuilt.append(nil) }
            if registry.destinations[id].inService != 0 { inService.insert(UInt32(id)) }
            let d = Destination(adopting: UInt32(id), in: table.memory, weight: 0)
            d.inService = false
            rebuilt.append(d)
        }
        destinations = rebuilt
        apply(configuration, adopted: adopted, adoptedInService: inService)
        // The overload flag is not in the records: recomputed from the adopted counts.
        for d in destinations { d?.restoreOverload() }
        let memory = table.memory
        adoption = AdoptionReport(
            generation: memory.generation, previousOwnerPID: memory.previousOwnerPID, clean: memory.wasCleanShutdown,
            connections: table.connectionCount, templates: table.templateCount,
            onRemovedRealServers: destinations.reduce(0) { sum, d in
                guard let d, !d.inService else { return sum }
                return sum + Int(d.activeConnections) + Int(d.inactiveConnections)
            },
            repairedSlot: table.repairedSlot, recountNanoseconds: table.recountNanoseconds,
            previousActivity: memory.previousActivity, scrubbedSlots: table.scrubbedSlots,
            firstScrubReason: table.firstScrubReason, revivedRecords: table.revivedRecords)
    }

    /// The real server of an id read from the table (bounds-checked: an adopted slab is not trusted).
    @inline(__always) func destination(_ id: UInt32) -> Destination? {
        Int(id) < destinations.count ? destinations[Int(id)] : nil
    }

    public func service(_ key: ServiceKey) -> VirtualService? { serviceByKey[key] }

    /// Real servers removed from the configuration whose connections still live (IPVS keeps them in
    /// its trash): their replies must still be queued and NATed until the last one ends.
    public var drainingRealServers: [(proto: IPProtocol, address: IPAddress, port: UInt16)] {
        destinations.compactMap { d in
            guard let d, !d.inService else { return nil }
            return (d.proto, d.address, d.port)
        }
    }

    /// Failed handshakes in a row of a service's real server (see `Destination.handshakeFailures`);
    /// `reset` starts the count over once a health checker has acted on it.
    public func handshakeFailures(_ key: ServiceKey, _ address: IPAddress, _ port: UInt16, reset: Bool = false) -> UInt32 {
        guard let d = serviceByKey[key]?.destinations.first(where: { $0.address == address && $0.port == port }) else { return 0 }
        defer { if reset && !isShutDown { d.handshakeFailures = 0 } }
        return d.handshakeFailures
    }

    // MARK: Counters, rates, timeouts

    /// ipvsadm `-Z`: zero the packet, byte and connection counters of one service (and its real
    /// servers), or of all; their rate estimators start over (IPVS `ip_vs_zero_stats`).
    public func zeroCounters(_ key: ServiceKey? = nil) {
        guard !isShutDown else { return }
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
        guard !isShutDown else { return }
        let seconds = lastRateSample.map { Double(time - $0) / 1e9 } ?? 0
        lastRateSample = time
        for service in services {
            service.rateEstimator.sample(serviceStats[Int(service.id)], seconds: seconds)
            for d in service.destinations { d.rateEstimator.sample(d.stats, seconds: seconds) }
        }
    }

    /// ipvsadm `--set tcp tcpfin udp`; applies to states entered from now on, as in IPVS.
    public func setTimeouts(_ newTimeouts: Timeouts) {
        guard !isShutDown else { return }
        timeouts = newTimeouts
    }

    // MARK: Dumps

    /// The table as records (slot order, deterministic), templates included.
    public func flowRecords() -> [FlowRecord] {
        var records: [FlowRecord] = []
        records.reserveCapacity(table.connectionCount + table.templateCount)
        table.forEachLive { slot, c in
            records.append(FlowRecord(c, addresses6: c.isIPv6 ? table.addresses6(slot) : nil, now: now))
        }
        return records
    }
}
