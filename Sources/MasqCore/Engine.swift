/// The LVS-NAT packet path: every packet, from NFQUEUE or from a capture file, goes through `process`.
///
/// Inbound (client → VIP:port): find or schedule a connection, rewrite the destination to the real
/// server. Outbound (real server → client): rewrite the source back to VIP:port. ICMP errors about a
/// connection are translated both ways. Anything else is accepted untouched. No I/O, no clock of its
/// own: the caller passes the time, so a replay is deterministic.
public final class Engine {
    public let table: ConnectionTable
    public private(set) var counters = EngineCounters()
    public private(set) var timeouts: Timeouts
    /// Services in configuration order.
    public private(set) var services: [VirtualService] = []
    private var serviceByKey: [ServiceKey: VirtualService] = [:]
    /// `proto << 32 | address` of every VIP, for fragments and malformed packets that have no ports.
    private var virtualAddresses: Set<UInt64> = []
    private var realAddresses: Set<UInt32> = []
    /// Destinations by id; a removed one stays until its last connection ends.
    public private(set) var destinations: [Destination?] = []
    private var destinationOwner: [UInt32] = []
    public private(set) var destinationStats: [TrafficCounters] = []
    public private(set) var serviceStats: [TrafficCounters] = []
    private var nextServiceID: UInt32 = 0
    /// The latest time seen, nanoseconds on the caller's clock.
    public private(set) var now: Int64 = 0
    /// IPVS's `expire_nodest_conn`: a packet of a connection whose real server was removed is dropped
    /// and its connection expired, instead of the default (the flow lives out its timeout).
    public var expireNodestConnections = false
    /// Destinations by id that are still in their service (false once removed by a reload or `-d`).
    private var destinationInService: [Bool] = []
    private var destinationProto: [IPProtocol] = []
    /// New TCP connections in a row a real server reset or never completed (passive health signal);
    /// a completed handshake sets it back to 0.
    public private(set) var destinationHandshakeFailures: [UInt32] = []

    public static let defaultCapacity = 1 << 20

    // MARK: Defence (conntrack's early_drop, IPVS's drop_entry and secure_tcp)

    /// Slots drawn per early-drop attempt (conntrack samples 8 entries of a bucket chain).
    public static let evictionSamples = 16
    /// Pressure mode starts when the table is this full and ends below `pressureOff` (hysteresis, so a
    /// table hovering at one level does not flap).
    public static let pressureOn = 0.75, pressureOff = 0.5
    /// Half-open entries' idle timeout under pressure, in seconds (SYN_RECV is 60 s otherwise, an
    /// unanswered UDP flow 300 s): a flood's entries leave in seconds, not minutes.
    public static let pressureHalfOpenTimeout: UInt32 = 5
    /// IPVS `secure_tcp`/`amemthresh` in spirit: the table is under pressure (see `pressureOn`).
    public private(set) var pressure = false
    /// ICMP port unreachable for new flows no real server can take, waiting for the caller to send.
    public let unreachable = UnreachableOutbox()
    /// xorshift64 state for early-drop sampling: fixed seed, so a replay is deterministic.
    private var evictionRandom: UInt64 = 0x9E37_79B9_7F4A_7C15
    /// `prefetching`'s ring of the hashes it has fetched buckets for (allocated once).
    private let prefetchHashes = UnsafeMutablePointer<UInt32>.allocate(capacity: 16)

    public init(configuration: Configuration, capacity: Int = Engine.defaultCapacity) {
        table = ConnectionTable(capacity: capacity)
        timeouts = configuration.timeouts
        apply(configuration)
    }

    deinit { prefetchHashes.deallocate() }

    // MARK: Configuration

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
        for d in destinations.compactMap({ $0 }) where !stillUsed.contains(d.id) && destinationInService[Int(d.id)] {
            d.setWeight(0)
            destinationInService[Int(d.id)] = false
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

    /// Real servers removed from the configuration whose connections still live (IPVS keeps them in
    /// its trash): their replies must still be queued and NATed until the last one ends.
    public var drainingRealServers: [(proto: IPProtocol, address: IPv4Address, port: UInt16)] {
        destinations.compactMap { d in
            guard let d, !destinationInService[Int(d.id)] else { return nil }
            return (destinationProto[Int(d.id)], d.address, d.port)
        }
    }

    private func newDestination(_ rs: RealServerSpec, serviceID: UInt32, proto: IPProtocol) -> Destination {
        let d = Destination(id: UInt32(destinations.count), address: rs.address, port: rs.port, weight: rs.weight)
        destinations.append(d)
        destinationOwner.append(serviceID)
        destinationStats.append(TrafficCounters())
        destinationInService.append(true)
        destinationProto.append(proto)
        destinationHandshakeFailures.append(0)
        return d
    }

    private func isInService(_ d: Destination) -> Bool { destinationInService[Int(d.id)] }

    /// The service a destination belongs (or belonged) to.
    public func serviceID(ofDestination id: UInt32) -> UInt32 { destinationOwner[Int(id)] }

    /// ipvsadm `-Z`: zero the packet, byte and connection counters of one service (and its real
    /// servers), or of all.
    public func zeroCounters(_ key: ServiceKey? = nil) {
        for service in services where key == nil || service.key == key {
            serviceStats[Int(service.id)] = TrafficCounters()
            for d in service.destinations { destinationStats[Int(d.id)] = TrafficCounters() }
        }
    }

    /// ipvsadm `--set tcp tcpfin udp`; applies to states entered from now on, as in IPVS.
    public func setTimeouts(_ newTimeouts: Timeouts) { timeouts = newTimeouts }

    private func releaseIfUnused(_ d: Destination) {
        if d.activeConnections == 0 && d.inactiveConnections == 0 && d.persistentConnections == 0
            && !isInService(d) {
            destinations[Int(d.id)] = nil
        }
    }

    public func service(_ key: ServiceKey) -> VirtualService? { serviceByKey[key] }

    /// Failed handshakes in a row of a service's real server (see `destinationHandshakeFailures`);
    /// `reset` starts the count over once a health checker has acted on it.
    public func handshakeFailures(_ key: ServiceKey, _ address: IPv4Address, _ port: UInt16, reset: Bool = false) -> UInt32 {
        guard let d = serviceByKey[key]?.destinations.first(where: { $0.address == address && $0.port == port }) else { return 0 }
        defer { if reset { destinationHandshakeFailures[Int(d.id)] = 0 } }
        return destinationHandshakeFailures[Int(d.id)]
    }

    // MARK: The packet path

    /// Runs one IPv4 packet through NAT, rewriting `bytes` in place, at time `now` (nanoseconds).
    public func process(_ bytes: PacketBytes, meta: PacketMeta = PacketMeta(), now: Int64) -> Verdict {
        counters.packets &+= 1
        advanceClock(to: now)
        let verdict = meta.truncated ? truncatedPacket() : route(bytes, meta: meta)
        switch verdict {
        case .accept: counters.untouched &+= 1
        case .rewritten(.inbound): counters.rewrittenInbound &+= 1
        case .rewritten(.outbound): counters.rewrittenOutbound &+= 1
        case .drop(let reason): counters.dropped[reason.rawValue] &+= 1
        }
        return verdict
    }

    /// Runs `body(i)` for i in 0..<count, in order, fetching the table's memory ahead: packet i + 8's
    /// index bucket and packet i + 4's connection start loading while packet i is processed, so in a
    /// table bigger than the cache the misses of a batch overlap instead of adding up. `bytes(j)` is
    /// packet j (read only, for its 5-tuple); `body` calls `process` itself. The prefetches are hints:
    /// whatever they fetch, `process` looks everything up again.
    public func prefetching(count: Int, bytes: (Int) -> PacketBytes, _ body: (Int) -> Void) {
        let indexAhead = 8, connectionAhead = 4
        for j in 0..<min(indexAhead, count) { prefetchHashes[j & 15] = prefetchBucket(bytes(j)) }
        for j in 0..<min(connectionAhead, count) { prefetchConnection(prefetchHashes[j & 15]) }
        for i in 0..<count {
            if i + indexAhead < count { prefetchHashes[(i + indexAhead) & 15] = prefetchBucket(bytes(i + indexAhead)) }
            if i + connectionAhead < count { prefetchConnection(prefetchHashes[(i + connectionAhead) & 15]) }
            body(i)
        }
    }

    /// The 5-tuple's hash + 1 after prefetching its bucket, or 0 for a packet that has none to look up.
    @inline(__always) private func prefetchBucket(_ bytes: PacketBytes) -> UInt32 {
        guard bytes.count >= 20 else { return 0 }
        let ip = IPv4Header(bytes)
        let headerLength = ip.headerLength
        guard ip.version == 4, ip.proto == .tcp || ip.proto == .udp, !ip.isFragment,
              headerLength >= 20, bytes.count >= headerLength + 4 else { return 0 }
        let key = FlowKey(source: ip.source, destination: ip.destination, sourcePort: bytes.u16(headerLength),
                          destinationPort: bytes.u16(headerLength + 2), proto: ip.proto)
        return table.prefetchBucket(key) &+ 1
    }

    @inline(__always) private func prefetchConnection(_ token: UInt32) {
        if token != 0 { table.prefetchConnection(hash: token &- 1) }
    }

    /// Moves the clock on and expires what is due; the daemon also calls this on a timer.
    public func advanceClock(to time: Int64) {
        if time > now { now = time }
        if table.needsExpiry(at: now) {
            table.expire(now: now) { release($0) }
            updatePressure()  // so the mode ends once a flood's entries have gone, without new flows
        }
    }

    private func truncatedPacket() -> Verdict {
        counters.truncated &+= 1
        return .accept
    }

    @inline(__always)
    private func route(_ bytes: PacketBytes, meta: PacketMeta) -> Verdict {
        guard bytes.count >= 20 else { return .drop(.malformedIP) }
        let ip = IPv4Header(bytes)
        guard ip.version == 4 else { return ip.version == 6 ? .accept : .drop(.malformedIP) }
        guard ip.ihl >= 5, ip.headerLength <= ip.totalLength, ip.totalLength <= bytes.count else {
            return .drop(.malformedIP)
        }
        guard ip.isChecksumValid else { return .drop(.badIPChecksum) }
        switch ip.proto {
        case .tcp, .udp: return transport(ip, meta: meta)
        case .icmp: return icmp(ip)
        default: return .accept
        }
    }

    /// Whether a packet without usable ports could belong to masq: to a VIP, or from a real server.
    private func concernsMasq(_ ip: IPv4Header) -> Bool {
        virtualAddresses.contains(UInt64(ip.proto.rawValue) << 32 | UInt64(ip.destination.rawValue))
            || realAddresses.contains(ip.source.rawValue)
    }

    private func transport(_ ip: IPv4Header, meta: PacketMeta) -> Verdict {
        let proto = ip.proto
        if ip.isFragment { return concernsMasq(ip) ? .drop(.fragment) : .accept }
        var segment = ip.payload
        guard segment.count >= TransportHeader.minimumLength(proto) else {
            return concernsMasq(ip) ? .drop(.malformedL4) : .accept
        }
        if proto == .tcp {
            let dataOffset = Int(segment.u8(12) >> 4) &* 4
            guard dataOffset >= 20, dataOffset <= segment.count else {
                return concernsMasq(ip) ? .drop(.malformedL4) : .accept
            }
        } else {
            let length = Int(segment.u16(4))
            guard length >= 8, length <= segment.count else {
                return concernsMasq(ip) ? .drop(.malformedL4) : .accept
            }
            segment = segment.slice(from: 0, count: length)
        }
        let th = TransportHeader(segment, proto: proto)
        let key = FlowKey(source: ip.source, destination: ip.destination, sourcePort: th.sourcePort,
                          destinationPort: th.destinationPort, proto: proto)
        if let (slot, direction) = table.lookup(key) {
            // IPVS conn_reuse_mode 1: a new SYN on a closed, unpersisted connection starts a new one.
            if proto == .tcp && direction == .inbound && TCPProtocol.startsConnection(th.tcpFlags)
                && !th.tcpFlags.contains(.ack)
                && (table[slot].state == .timeWait || table[slot].state == .close)
                && table[slot].controller == ConnectionTable.noSlot {
                expireNow(slot)
            } else if table[slot].expires > now {
                if expireNodestConnections && !destinationInService[Int(table[slot].destinationID)] {
                    expireNow(slot)
                    return .drop(.realServerRemoved)
                }
                return established(slot, direction, ip, th, meta: meta)
            } else {
                expireNow(slot)
            }
        }
        guard let service = findService(proto, ip.destination, th.destinationPort) else { return .accept }
        if proto == .tcp && !TCPProtocol.startsConnection(th.tcpFlags) { return .accept }
        return newConnection(service, ip, th, meta: meta)
    }

    private func findService(_ proto: IPProtocol, _ address: IPv4Address, _ port: UInt16) -> VirtualService? {
        if let s = serviceByKey[ServiceKey(proto: proto, address: address, port: port)] { return s }
        // A persistent service on port 0 takes every port of its address (ipvsadm `-t VIP:0 -p`).
        return serviceByKey[ServiceKey(proto: proto, address: address, port: 0)]
    }

    // MARK: Established connections

    private func established(_ slot: UInt32, _ direction: FlowDirection, _ ip: IPv4Header,
                             _ th: TransportHeader, meta: PacketMeta) -> Verdict {
        let length = UInt64(ip.totalLength)
        if ip.proto == .tcp {
            let state = table[slot].state
            let next = TCPProtocol.transition(from: state, direction: direction, flags: th.tcpFlags)
            if next != state { setState(slot, next) }
        }
        let timeout = table[slot].timeout
        table[slot].expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
        let c = table[slot]
        if direction == .inbound {
            table[slot].packetsIn &+= 1
            table[slot].bytesIn &+= length
            serviceStats[Int(c.serviceID)].packetsIn &+= 1
            serviceStats[Int(c.serviceID)].bytesIn &+= length
            destinationStats[Int(c.destinationID)].packetsIn &+= 1
            destinationStats[Int(c.destinationID)].bytesIn &+= length
            rewriteInbound(ip, th, to: c.server, port: c.serverPort, meta: meta)
        } else {
            // A UDP flow's first answer: it is no longer half-open (its short pressure timeout ends).
            if c.packetsOut == 0 && c.proto == .udp && c.timeout < timeouts[.udp] {
                table[slot].timeout = timeouts[.udp]
                table[slot].expires = now &+ Int64(timeouts[.udp]) &* ConnectionTable.nanosPerTick
            }
            table[slot].packetsOut &+= 1
            table[slot].bytesOut &+= length
            serviceStats[Int(c.serviceID)].packetsOut &+= 1
            serviceStats[Int(c.serviceID)].bytesOut &+= length
            destinationStats[Int(c.destinationID)].packetsOut &+= 1
            destinationStats[Int(c.destinationID)].bytesOut &+= length
            rewriteOutbound(ip, th, from: c.virtualAddress, port: c.virtualPort, meta: meta)
        }
        return .rewritten(direction)
    }

    /// Moves a TCP connection to `state`, with its timeout and its real server's Active/InAct counts
    /// (IPVS `set_tcp_state`: only ESTABLISHED counts as active).
    private func setState(_ slot: UInt32, _ state: ConnectionState) {
        let previous = table[slot].state
        if previous == .synRecv {
            if state == .established { destinationHandshakeFailures[Int(table[slot].destinationID)] = 0 }
            if state == .close { destinationHandshakeFailures[Int(table[slot].destinationID)] &+= 1 }
        }
        let timeout = timeout(for: state, halfOpen: Self.isHalfOpen(state: state, proto: .tcp, answered: true))
        let longer = timeout >= table[slot].timeout
        table[slot].state = state
        table[slot].timeout = timeout
        if !longer {
            table[slot].expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
            table.expiryShortened(slot)
        }
        let active = state == .established
        guard table[slot].countedActive != active,
              let d = destinations[Int(table[slot].destinationID)] else { return }
        table[slot].countedActive = active
        if active {
            d.activeConnections += 1
            d.inactiveConnections -= 1
        } else {
            d.activeConnections -= 1
            d.inactiveConnections += 1
        }
    }

    @inline(__always)
    private func rewriteInbound(_ ip: IPv4Header, _ th: TransportHeader, to server: IPv4Address, port: UInt16,
                                meta: PacketMeta) {
        let vip = ip.destination
        ip.setDestination(server)
        if meta.partialChecksumKept {
            th.pseudoHeaderSumAddressChanged(from: vip, to: server)
            th.setDestinationPort(port, adjustChecksum: false)
        } else if meta.partialChecksum {
            th.setDestinationPort(port, adjustChecksum: false)
            th.finishChecksum(source: ip.source, destination: server, proto: ip.proto)
        } else {
            th.addressChanged(from: vip, to: server)
            th.setDestinationPort(port)
        }
    }

    @inline(__always)
    private func rewriteOutbound(_ ip: IPv4Header, _ th: TransportHeader, from vip: IPv4Address, port: UInt16,
                                 meta: PacketMeta) {
        let server = ip.source
        ip.setSource(vip)
        if meta.partialChecksumKept {
            th.pseudoHeaderSumAddressChanged(from: server, to: vip)
            th.setSourcePort(port, adjustChecksum: false)
        } else if meta.partialChecksum {
            th.setSourcePort(port, adjustChecksum: false)
            th.finishChecksum(source: vip, destination: ip.destination, proto: ip.proto)
        } else {
            th.addressChanged(from: server, to: vip)
            th.setSourcePort(port)
        }
    }

    // MARK: New connections

    private func newConnection(_ service: VirtualService, _ ip: IPv4Header, _ th: TransportHeader,
                               meta: PacketMeta) -> Verdict {
        let input = SchedulingInput(client: ip.source, clientPort: th.sourcePort,
                                    virtualAddress: ip.destination, virtualPort: th.destinationPort)
        updatePressure()
        var controller = ConnectionTable.noSlot
        let chosen: Destination
        if let persistence = service.spec.persistence {
            switch persistentDestination(service, input, timeout: persistence) {
            case .chosen(let d, let template):
                chosen = d
                controller = template
            case .noRoom:
                return .drop(.tableFull)
            case .noRealServer:
                _ = unreachable.answer(ip, now: now)
                return .drop(.noRealServer)
            }
        } else {
            guard let d = service.scheduler.select(from: service.destinations, for: input) else {
                _ = unreachable.answer(ip, now: now)
                return .drop(.noRealServer)
            }
            chosen = d
        }
        let proto = ip.proto
        let state: ConnectionState = proto == .tcp
            ? TCPProtocol.transition(from: .none, direction: .inbound, flags: th.tcpFlags) : .udp
        // A new UDP flow is unanswered until its first reply.
        let timeout = timeout(for: state, halfOpen: Self.isHalfOpen(state: state, proto: proto, answered: false))
        // Room is made only now, for a flow that has its real server (and, if persistent, its template,
        // which must not be evicted for it, nor be left behind idle by a flow that found no room).
        guard makeRoom(keeping: controller) else {
            if controller != ConnectionTable.noSlot && table[controller].controlled == 0 { expireNow(controller) }
            return .drop(.tableFull)
        }
        let length = UInt64(ip.totalLength)
        let connection = Connection(
            proto: proto, state: state, isTemplate: false, countedActive: state == .established,
            client: input.client, clientPort: input.clientPort,
            virtualAddress: input.virtualAddress, virtualPort: input.virtualPort,
            // IPVS: the real server's port applies when the packet is for the service's own port; a port-0
            // (any port) service keeps the port the client asked for.
            server: chosen.address,
            serverPort: input.virtualPort == service.key.port && chosen.port != 0 ? chosen.port : input.virtualPort,
            serviceID: service.id, destinationID: chosen.id, controller: controller,
            timeout: timeout, expires: now &+ Int64(timeout) &* ConnectionTable.nanosPerTick,
            packetsIn: 1, packetsOut: 0, bytesIn: length, bytesOut: 0)
        guard table.insert(connection) != nil else {
            return .drop(table.isFull ? .tableFull : .tupleConflict)
        }
        if connection.countedActive { chosen.activeConnections += 1 } else { chosen.inactiveConnections += 1 }
        counters.connectionsCreated &+= 1
        bump(&serviceStats[Int(service.id)], length: length)
        bump(&destinationStats[Int(chosen.id)], length: length)
        rewriteInbound(ip, th, to: connection.server, port: connection.serverPort, meta: meta)
        return .rewritten(.inbound)
    }

    /// Whether an entry never completed its handshake: TCP in SYN_RECV/SYN_SENT, or UDP never answered.
    /// Only those are ever evicted, and only those get the short timeout under pressure.
    @inline(__always)
    static func isHalfOpen(state: ConnectionState, proto: IPProtocol, answered: Bool) -> Bool {
        proto == .udp ? !answered : state == .synRecv || state == .synSent
    }

    /// The idle timeout an entry gets on entering `state`.
    @inline(__always)
    private func timeout(for state: ConnectionState, halfOpen: Bool) -> UInt32 {
        pressure && halfOpen ? min(Self.pressureHalfOpenTimeout, timeouts[state]) : timeouts[state]
    }

    /// Pressure mode on at `pressureOn`, off below `pressureOff`; checked at each new flow.
    @inline(__always)
    private func updatePressure() {
        let fill = table.fill
        if !pressure && fill >= Self.pressureOn {
            pressure = true
            counters.pressureEntered &+= 1
        } else if pressure && fill < Self.pressureOff {
            pressure = false
        }
    }

    /// A full table makes room by evicting the longest-idle half-open entry of a sample (early drop);
    /// false when it is full of flows that completed their handshakes, which are never evicted.
    /// A persistence template no connection uses any more (its flows evicted or gone) is evictable too,
    /// except `keeping`, the one the new flow is about to use.
    private func makeRoom(keeping: UInt32 = ConnectionTable.noSlot) -> Bool {
        guard table.isFull else { return true }
        let victim = table.evictionCandidate(samples: Self.evictionSamples, random: { self.nextRandom() }) { slot, c in
            c.isTemplate ? c.controlled == 0 && slot != keeping
                : Self.isHalfOpen(state: c.state, proto: c.proto, answered: c.packetsOut > 0)
        }
        guard let victim else { return false }
        let entry = table[victim]
        let reason: EvictionReason = entry.isTemplate ? .idleTemplate : entry.proto == .udp ? .unansweredUDP : .halfOpenTCP
        expireNow(victim, evicted: true)
        counters.evicted[reason.rawValue] &+= 1
        return !table.isFull
    }

    private func nextRandom() -> UInt64 {
        evictionRandom ^= evictionRandom << 13
        evictionRandom ^= evictionRandom >> 7
        evictionRandom ^= evictionRandom << 17
        return evictionRandom
    }

    private func bump(_ stats: inout TrafficCounters, length: UInt64) {
        stats.connections &+= 1
        stats.packetsIn &+= 1
        stats.bytesIn &+= length
    }

    /// IPVS `ip_vs_sched_persist`: a client (under the netmask) keeps its real server while its template
    /// lives; each new connection re-arms the template. A quiesced (weight 0) server keeps its persistent
    /// clients (expire_quiescent_template off, the default); a removed one loses them.
    private enum PersistentChoice {
        case chosen(Destination, template: UInt32)
        case noRealServer
        case noRoom
    }

    private func persistentDestination(_ service: VirtualService, _ input: SchedulingInput,
                                       timeout: UInt32) -> PersistentChoice {
        let masked = IPv4Address(rawValue: input.client.rawValue & service.spec.netmask.rawValue)
        let templateKey = FlowKey(source: masked, destination: input.virtualAddress, sourcePort: 0,
                                  destinationPort: service.key.port, proto: service.key.proto)
        let expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
        if let slot = table.template(for: templateKey) {
            let t = table[slot]
            if (t.expires > now || t.controlled > 0), let d = destinations[Int(t.destinationID)],
               service.destinations.contains(where: { $0 === d }) {
                table[slot].expires = expires
                table.expiryShortened(slot)  // a lower -p (or one under the 60 s re-check) moves it earlier
                return .chosen(d, template: slot)
            }
            // Its real server is gone (or it expired): a new template takes its key; the old one lives
            // on unseen until its connections end.
            if t.controlled > 0 { table.invalidateTemplate(slot) } else { expireNow(slot) }
        }
        guard let d = service.scheduler.select(from: service.destinations, for: input) else { return .noRealServer }
        guard makeRoom() else { return .noRoom }
        let template = Connection(
            proto: service.key.proto, state: .none, isTemplate: true, countedActive: false,
            client: masked, clientPort: 0, virtualAddress: input.virtualAddress, virtualPort: service.key.port,
            server: d.address, serverPort: d.port, serviceID: service.id, destinationID: d.id,
            controller: ConnectionTable.noSlot, timeout: timeout, expires: expires,
            packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
        guard let slot = table.insert(template) else { return .noRoom }
        d.persistentConnections += 1
        counters.templatesCreated &+= 1
        return .chosen(d, template: slot)
    }

    // MARK: Expiry

    /// `evicted`: removed by early drop, before its time: no verdict on its real server.
    private func expireNow(_ slot: UInt32, evicted: Bool = false) {
        let entry = table[slot]
        if entry.isTemplate && entry.controlled > 0 { return }
        release(entry, evicted: evicted)
        table.remove(slot)
    }

    /// Gives back what a connection held on its real server.
    private func release(_ entry: Connection, evicted: Bool = false) {
        counters.expired &+= 1
        // A SYN the real server never answered is its failure (passive health); one it answered with a
        // SYN-ACK the client never acknowledged (a spoofed SYN) is not, nor an entry evicted early.
        if !evicted && !entry.isTemplate && entry.proto == .tcp && entry.state == .synRecv && entry.packetsOut == 0 {
            destinationHandshakeFailures[Int(entry.destinationID)] &+= 1
        }
        guard let d = destinations[Int(entry.destinationID)] else { return }
        if entry.isTemplate {
            d.persistentConnections -= 1
        } else if entry.countedActive {
            d.activeConnections -= 1
        } else {
            d.inactiveConnections -= 1
        }
        if d.weight == 0 { releaseIfUnused(d) }
    }

    // MARK: ICMP

    /// ICMP errors quoting a NATed datagram are translated as IPVS `ip_vs_nat_icmp` does: the outer
    /// address, the quoted addresses and ports, the quoted IP checksum and the whole ICMP checksum. masq
    /// also folds the change into the quoted L4 checksum when it is present, so captures stay valid.
    /// Everything else ICMP (echo to a VIP included) is accepted untouched, as with IPVS.
    private func icmp(_ ip: IPv4Header) -> Verdict {
        if ip.isFragment { return .accept }
        let message = ip.payload
        guard message.count >= 8 else { return .accept }
        let icmp = ICMPHeader(message)
        guard icmp.type.quotesDatagram else { return .accept }
        let quoted = icmp.quoted
        guard quoted.count >= 20 else { return .accept }
        let inner = IPv4Header(quoted)
        let innerProto = inner.proto
        guard inner.version == 4, inner.ihl >= 5, quoted.count >= inner.headerLength &+ 8,
              innerProto == .tcp || innerProto == .udp else { return .accept }
        let ports = quoted.slice(from: inner.headerLength)
        // The quoted datagram travelled the other way: its reverse is this connection's key.
        let key = FlowKey(source: inner.destination, destination: inner.source, sourcePort: ports.u16(2),
                          destinationPort: ports.u16(0), proto: innerProto)
        guard let (slot, direction) = table.lookup(key), table[slot].expires > now else { return .accept }
        guard icmp.isChecksumValid else { return .drop(.badICMPChecksum) }
        let c = table[slot]
        let th = TransportHeader(ports, proto: innerProto)
        let checksumPresent = ports.count >= th.checksumOffset &+ 2
        if direction == .outbound {
            // From the real servers' side, about a datagram client → real server.
            ip.setSource(c.virtualAddress)
            if checksumPresent { th.addressChanged(from: inner.destination, to: c.virtualAddress) }
            quoted.setU32(c.virtualAddress.rawValue, 16)
            th.setDestinationPort(c.virtualPort, adjustChecksum: checksumPresent)
        } else {
            // From the client's side, about a datagram VIP → client.
            ip.setDestination(c.server)
            if checksumPresent { th.addressChanged(from: inner.source, to: c.server) }
            quoted.setU32(c.server.rawValue, 12)
            th.setSourcePort(c.serverPort, adjustChecksum: checksumPresent)
        }
        inner.recomputeChecksum()
        icmp.recomputeChecksum()
        return .rewritten(direction)
    }

    // MARK: Dumps

    /// The table as records (slot order, deterministic), templates included.
    public func flowRecords() -> [FlowRecord] {
        var records: [FlowRecord] = []
        records.reserveCapacity(table.connectionCount + table.templateCount)
        table.forEachLive { _, c in records.append(FlowRecord(c, now: now)) }
        return records
    }
}
