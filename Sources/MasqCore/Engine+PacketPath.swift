/// The packet path, as IPVS's ip_vs_core.c is: each packet looked up, scheduled or translated, its
/// connection's state moved on; new connections and persistence; the early drop and expiry that make
/// room for them; ICMP errors about a connection translated. Per-protocol behaviour comes from the
/// tables in Protocols/ through generics specialised per protocol, so nothing here is dispatched
/// dynamically, and nothing allocates on the heap.
extension Engine {
    /// Runs one IPv4 or IPv6 packet through NAT, rewriting `bytes` in place, at time `now` (nanoseconds).
    /// After `markCleanShutdown` the table takes nothing more: the packet is dropped untouched and
    /// uncounted, as `tableFull` (fail closed: TCP retransmits it to the next masq).
    public func process(_ bytes: PacketBytes, meta: PacketMeta = PacketMeta(), now: Int64) -> Verdict {
        guard !isShutDown else { return .drop(.tableFull) }
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
    /// An IPv6 packet is prefetched only when TCP or UDP follows the fixed header directly (the
    /// common case; a chain is walked by `process` alone, bounded there).
    @inline(__always) private func prefetchBucket(_ bytes: PacketBytes) -> UInt32 {
        guard bytes.count >= 20 else { return 0 }
        let ip = IPv4Header(bytes)
        let headerLength = ip.headerLength
        if ip.version == 6 { return prefetchBucket6(bytes) }
        guard ip.version == 4, ip.proto.isTracked, !ip.isFragment,
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
        guard !isShutDown else { return }
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

    /// The IPv4 header's checks, then the path of the packet's protocol: its table chosen by the header's
    /// protocol number, as IPVS's hooks choose theirs (`ip_vs_proto_data_get`), but at compile time.
    /// A first nibble of 6 takes the IPv6 path (`route6`, Engine+IPv6.swift).
    @inline(__always)
    private func route(_ bytes: PacketBytes, meta: PacketMeta) -> Verdict {
        guard bytes.count >= 20 else { return .drop(.malformedIP) }
        let ip = IPv4Header(bytes)
        guard ip.version == 4 else { return ip.version == 6 ? route6(bytes, meta: meta) : .drop(.malformedIP) }
        guard ip.ihl >= 5, ip.headerLength <= ip.totalLength, ip.totalLength <= bytes.count else {
            return .drop(.malformedIP)
        }
        guard ip.isChecksumValid else { return .drop(.badIPChecksum) }
        switch ip.proto {
        case .tcp: return transport(IPv4Family.self, TCPProtocol.self, IPv4Packet(ip: ip), meta: meta)
        case .udp: return transport(IPv4Family.self, UDPProtocol.self, IPv4Packet(ip: ip), meta: meta)
        case .icmp: return icmp(ip)
        default: return .accept
        }
    }

    /// A TCP or UDP packet of either family: its connection's, or a new one if it is for a service and
    /// may start one. A fragment, first or not, of a flow masq could have (to a VIP, from a real
    /// server) is dropped: masq does not reassemble (its flows bypass conntrack and its defrag), and a
    /// fragment's ports are absent or incomplete; fragments of anything else pass untouched.
    func transport<F: AddressFamily, P: TransportProtocol>(_: F.Type, _: P.Type, _ packet: F.Packet,
                                                           meta: PacketMeta) -> Verdict {
        if packet.isFragment {
            return F.concernsMasq(self, packet, proto: P.number) || marksService(F.self, meta) ? .drop(.fragment) : .accept
        }
        guard let segment = P.validate(packet.upperLayer) else {
            return F.concernsMasq(self, packet, proto: P.number) || marksService(F.self, meta) ? .drop(.malformedL4) : .accept
        }
        let th = TransportHeader(segment, proto: P.number)
        let key = F.key(source: packet.source, destination: packet.destination, sourcePort: th.sourcePort,
                        destinationPort: th.destinationPort, proto: P.number)
        // RFC 8200 §8.1: an IPv6 UDP checksum of 0 is invalid (no "none" as in IPv4); masq cannot NAT
        // such a datagram with a valid checksum, and its receiver would discard it. A partial checksum
        // field holds the pseudo-header sum, which is never 0.
        let zeroChecksum = F.zeroUDPChecksumIsInvalid && P.number == .udp && th.checksum == 0
            && !meta.partialChecksum && !meta.partialChecksumKept
        if let (slot, direction) = F.lookup(table, key) {
            if zeroChecksum { return .drop(.udpZeroChecksum) }
            if direction == .inbound && P.reopens(table[slot].state, with: th)
                && table[slot].controller == ConnectionTable.noSlot {
                expireNow(slot)
            } else if table[slot].expires > now {
                if expireNodestConnections && destination(table[slot].destinationID)?.inService != true {
                    expireNow(slot)
                    return .drop(.realServerRemoved)
                }
                return established(F.self, P.self, slot, direction, packet, th, meta: meta)
            } else {
                expireNow(slot)
            }
        }
        guard let service = service(F.self, P.number, packet.destination, th.destinationPort, mark: meta.mark) else {
            // Only UDP, only with a one-packet service configured: one branch for everything else.
            if P.number == .udp && !onePacketReplies.isEmpty {
                return onePacketReply(F.self, packet, th, zeroChecksum: zeroChecksum, meta: meta)
            }
            return .accept
        }
        if zeroChecksum { return .drop(.udpZeroChecksum) }
        guard P.startsConnection(th) else { return .accept }
        return newConnection(F.self, P.self, service, packet, th, meta: meta)
    }

    /// IPVS `ip_vs_service_find`: a marked packet goes to the firewall-mark service of its family and
    /// mark first, whatever its protocol, address and port; otherwise (no mark, or no service for it)
    /// to the service of its protocol, destination address and port, then of port 0. An unmarked
    /// packet pays one compare for the firewall-mark lookup, a marked one a dictionary probe.
    @inline(__always)
    func service<F: AddressFamily>(_: F.Type, _ proto: IPProtocol, _ destination: F.Address, _ port: UInt16,
                                   mark: UInt32) -> VirtualService? {
        if mark != 0, let s = F.firewallMarkService(self, mark) { return s }
        return findService(proto, F.ipAddress(destination), port)
    }

    /// The packet carries the mark of a firewall-mark service of its family (for what has no ports to
    /// look up: a fragment, a malformed segment, which masq drops as it drops those to a VIP).
    @inline(__always)
    private func marksService<F: AddressFamily>(_: F.Type, _ meta: PacketMeta) -> Bool {
        meta.mark != 0 && F.firewallMarkService(self, meta.mark) != nil
    }

    /// The service of a protocol, address and port (never a firewall-mark service: their key's address
    /// is unspecified and their port 0, which no packet's destination is).
    func findService(_ proto: IPProtocol, _ address: IPAddress, _ port: UInt16) -> VirtualService? {
        if let s = serviceByKey[ServiceKey(proto: proto, address: address, port: port)] { return s }
        // A persistent service on port 0 takes every port of its address (ipvsadm `-t VIP:0 -p`).
        return serviceByKey[ServiceKey(proto: proto, address: address, port: 0)]
    }

    // MARK: Established connections

    private func established<F: AddressFamily, P: TransportProtocol>(_: F.Type, _: P.Type, _ slot: UInt32,
                                                                     _ direction: FlowDirection, _ packet: F.Packet,
                                                                     _ th: TransportHeader,
                                                                     meta: PacketMeta) -> Verdict {
        let length = UInt64(packet.length)
        let state = table[slot].state
        let next = P.transition(from: state, direction: direction, header: th)
        if next != state { setState(P.self, slot, next) }
        let timeout = table[slot].timeout
        table[slot].expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
        let c = table[slot]
        if direction == .inbound {
            table[slot].packetsIn &+= 1
            table[slot].bytesIn &+= length
            registry.service(c.serviceID)?.pointee.stats.countInbound(length: length)
            registry.destination(c.destinationID)?.pointee.stats.countInbound(length: length)
            rewriteInbound(F.self, packet, th, proto: P.number, to: F.addresses(table, slot, c).server,
                           port: c.serverPort, meta: meta)
            // One branch with sync off (and no retain of the outbox either way).
            if syncOutbox != nil && syncDue(c, packets: c.packetsIn &+ 1) { pushSynced(slot) }
        } else {
            // The real server's first answer ends a flow that was half-open for want of one (UDP): its
            // short pressure timeout, if it had one, ends too.
            if c.packetsOut == 0 && P.answerEndsHalfOpen(c.state) && c.timeout < timeouts[c.state] {
                table[slot].timeout = timeouts[c.state]
                table[slot].expires = now &+ Int64(timeouts[c.state]) &* ConnectionTable.nanosPerTick
            }
            table[slot].packetsOut &+= 1
            table[slot].bytesOut &+= length
            registry.service(c.serviceID)?.pointee.stats.countOutbound(length: length)
            registry.destination(c.destinationID)?.pointee.stats.countOutbound(length: length)
            rewriteOutbound(F.self, packet, th, proto: P.number, from: F.addresses(table, slot, c).virtualAddress,
                            port: c.virtualPort, meta: meta)
        }
        return .rewritten(direction)
    }

    /// Moves a connection to `state`, with its timeout, its real server's Active/InAct counts (IPVS
    /// `set_tcp_state`: only ESTABLISHED counts as active) and the handshake's passive health signal.
    private func setState<P: TransportProtocol>(_: P.Type, _ slot: UInt32, _ state: ConnectionState) {
        let previous = table[slot].state
        let id = table[slot].destinationID
        switch P.handshake(from: previous, to: state) {
        case .completed?: destination(id)?.handshakeFailures = 0
        case .failed?: destination(id)?.handshakeFailures &+= 1
        case nil: break
        }
        let timeout = timeout(for: state, halfOpen: P.isHalfOpen(state, answered: true))
        let longer = timeout >= table[slot].timeout
        table[slot].state = state
        table[slot].timeout = timeout
        if !longer {
            table[slot].expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
            table.expiryShortened(slot)
        }
        countActive(slot, state == .established)
    }

    /// Moves a connection between its real server's ActiveConn and InActConn (IPVS's
    /// IP_VS_CONN_F_INACTIVE): a state change here, or one a master sent (`applySynced`).
    func countActive(_ slot: UInt32, _ active: Bool) {
        guard table[slot].countedActive != active,
              let destination = destination(table[slot].destinationID) else { return }
        table[slot].countedActive = active
        if active {
            destination.activeConnections &+= 1
            destination.inactiveConnections &-= 1
        } else {
            destination.activeConnections &-= 1
            destination.inactiveConnections &+= 1
        }
    }

    /// Client → VIP becomes client → real server: the destination address (IPv4 with its header
    /// checksum; IPv6 has none, RFC 8200 §3) and port, and the L4 checksum over the pseudo-header
    /// (RFC 1624 incrementally, or finished whole for a partial one, or its partial sum kept).
    @inline(__always)
    private func rewriteInbound<F: AddressFamily>(_: F.Type, _ packet: F.Packet, _ th: TransportHeader,
                                                  proto: IPProtocol, to server: F.Address, port: UInt16,
                                                  meta: PacketMeta) {
        let vip = packet.destination
        packet.setDestination(server)
        if meta.partialChecksumKept {
            F.pseudoHeaderSumAddressChanged(th, from: vip, to: server)
            th.setDestinationPort(port, adjustChecksum: false)
        } else if meta.partialChecksum {
            th.setDestinationPort(port, adjustChecksum: false)
            F.finishChecksum(th, source: packet.source, destination: server, proto: proto)
        } else {
            F.addressChanged(th, from: vip, to: server)
            th.setDestinationPort(port)
        }
    }

    /// Real server → client becomes VIP → client: the source address and port, as `rewriteInbound`.
    @inline(__always)
    private func rewriteOutbound<F: AddressFamily>(_: F.Type, _ packet: F.Packet, _ th: TransportHeader,
                                                   proto: IPProtocol, from vip: F.Address, port: UInt16,
                                                   meta: PacketMeta) {
        let server = packet.source
        packet.setSource(vip)
        if meta.partialChecksumKept {
            F.pseudoHeaderSumAddressChanged(th, from: server, to: vip)
            th.setSourcePort(port, adjustChecksum: false)
        } else if meta.partialChecksum {
            th.setSourcePort(port, adjustChecksum: false)
            F.finishChecksum(th, source: vip, destination: packet.destination, proto: proto)
        } else {
            F.addressChanged(th, from: server, to: vip)
            th.setSourcePort(port)
        }
    }

    // MARK: New connections

    /// IPVS `ip_vs_schedule`: the service's scheduler (or its persistence template) picks the real
    /// server, and the connection enters the table in its protocol's first state.
    private func newConnection<F: AddressFamily, P: TransportProtocol>(_: F.Type, _: P.Type,
                                                                       _ service: VirtualService, _ packet: F.Packet,
                                                                       _ th: TransportHeader,
                                                                       meta: PacketMeta) -> Verdict {
        let client = packet.source, virtualAddress = packet.destination
        let input = SchedulingInput(clientHashWord: F.hashWord(client), clientPort: th.sourcePort,
                                    virtualAddressHashWord: F.hashWord(virtualAddress),
                                    virtualPort: th.destinationPort,
                                    destinationAddress: F.ipAddress(virtualAddress), now: now)
        updatePressure()
        var controller = ConnectionTable.noSlot
        let chosen: Destination
        if let persistence = service.spec.persistence {
            switch persistentDestination(F.self, service, input, client: client, virtualAddress: virtualAddress,
                                         timeout: persistence) {
            case .chosen(let d, let template):
                chosen = d
                controller = template
            case .noRoom:
                return .drop(.tableFull)
            case .noRealServer:
                F.answerUnreachable(unreachable, packet, now: now)
                return .drop(.noRealServer)
            }
        } else {
            guard let d = service.scheduler.select(from: service.destinations, for: input) else {
                F.answerUnreachable(unreachable, packet, now: now)
                return .drop(.noRealServer)
            }
            chosen = d
        }
        if P.number == .udp && service.usesOnePacketScheduling {
            return onePacketDatagram(F.self, service, chosen, packet, th, meta: meta)
        }
        let state = P.initialState(th)
        let timeout = timeout(for: state, halfOpen: P.isHalfOpen(state, answered: false))
        // Room is made only now, for a flow that has its real server (and, if persistent, its template,
        // which must not be evicted for it, nor be left behind idle by a flow that found no room).
        guard makeRoom(keeping: controller) else {
            if controller != ConnectionTable.noSlot && table[controller].controlled == 0 { expireNow(controller) }
            return .drop(.tableFull)
        }
        let length = UInt64(packet.length)
        let server = F.address(of: chosen)
        let connection = Connection(
            proto: P.number, state: state, isTemplate: false, countedActive: state == .established,
            client: F.connectionField(client), clientPort: input.clientPort,
            virtualAddress: F.connectionField(virtualAddress), virtualPort: input.virtualPort,
            // IPVS: the real server's port applies when the packet is for the service's own port; a port-0
            // (any port) service keeps the port the client asked for.
            server: F.connectionField(server),
            serverPort: serverPort(service, chosen, virtualPort: input.virtualPort),
            serviceID: service.id, destinationID: chosen.id, controller: controller,
            timeout: timeout, expires: now &+ Int64(timeout) &* ConnectionTable.nanosPerTick,
            packetsIn: 1, packetsOut: 0, bytesIn: length, bytesOut: 0)
        let addresses = EntryAddresses(client: client, virtualAddress: virtualAddress, server: server)
        guard let slot = F.insert(table, connection, addresses) else {
            return .drop(table.isFull ? .tableFull : .tupleConflict)
        }
        chosen.bindConnection(active: connection.countedActive)
        counters.connectionsCreated &+= 1
        registry.services[Int(service.id)].stats.countConnection(length: length)
        chosen.stats.countConnection(length: length)
        rewriteInbound(F.self, packet, th, proto: P.number, to: server, port: connection.serverPort, meta: meta)
        // A first packet counts toward the threshold too (the kernel's in_pkts is 1 after it): with a
        // threshold of 1 a UDP flow is sent at once.
        if syncOutbox != nil && syncDue(connection, packets: 1) { pushSynced(slot) }
        return .rewritten(.inbound)
    }

    /// The port a connection of `service` to `d` is sent to (IPVS `ip_vs_schedule`: `dport = dest->port
    /// ?: vport` for a firewall-mark service): the real server's, except for a port-0 real server of a
    /// firewall-mark service and a port-0 (any port) service's other ports, which keep the port the
    /// client asked for.
    @inline(__always)
    func serverPort(_ service: VirtualService, _ d: Destination, virtualPort: UInt16) -> UInt16 {
        (service.key.isFirewallMark || virtualPort == service.key.port) && d.port != 0 ? d.port : virtualPort
    }

    // MARK: One-packet scheduling

    /// IPVS `IP_VS_CONN_F_ONE_PACKET` (ipvsadm `-o`): the datagram goes to the real server its
    /// scheduler (or persistence template) chose and no entry is kept: the kernel's connection is
    /// bound, used for this one packet and freed at once (`ip_vs_conn_put`), so the real server's
    /// ActiveConn/InActConn do not move, while `ip_vs_conn_stats` counts the datagram as a connection
    /// of the service and the real server (ipvsadm `--stats` Conns). Not synced: no entry.
    private func onePacketDatagram<F: AddressFamily>(_: F.Type, _ service: VirtualService, _ chosen: Destination,
                                                     _ packet: F.Packet, _ th: TransportHeader,
                                                     meta: PacketMeta) -> Verdict {
        let length = UInt64(packet.length)
        registry.services[Int(service.id)].stats.countConnection(length: length)
        chosen.stats.countConnection(length: length)
        rewriteInbound(F.self, packet, th, proto: .udp, to: F.address(of: chosen),
                       port: serverPort(service, chosen, virtualPort: th.destinationPort), meta: meta)
        return .rewritten(.inbound)
    }

    /// A UDP datagram no entry and no service claims, from a real server endpoint of a one-packet
    /// service: its answer to a datagram `onePacketDatagram` sent on, which leaves from the service's
    /// VIP and port as a connection's answer would (`Engine.onePacketReplies`, built by `apply`).
    /// IPVS keeps no state for these either; its NAT answers are un-NATed by conntrack, which masq's
    /// flows bypass, so masq reverses them without state, by the real server endpoint alone.
    @inline(never)
    private func onePacketReply<F: AddressFamily>(_: F.Type, _ packet: F.Packet, _ th: TransportHeader,
                                                  zeroChecksum: Bool, meta: PacketMeta) -> Verdict {
        guard let reply = onePacketReplies[OnePacketReplyKey(address: F.ipAddress(packet.source), port: th.sourcePort)],
              let vip = F.address(reply.virtualAddress) else { return .accept }
        if zeroChecksum { return .drop(.udpZeroChecksum) }
        let length = UInt64(packet.length)
        registry.service(reply.serviceID)?.pointee.stats.countOutbound(length: length)
        registry.destination(reply.destinationID)?.pointee.stats.countOutbound(length: length)
        rewriteOutbound(F.self, packet, th, proto: .udp, from: vip, port: reply.virtualPort, meta: meta)
        return .rewritten(.outbound)
    }

    /// The idle timeout an entry gets on entering `state`.
    @inline(__always)
    private func timeout(for state: ConnectionState, halfOpen: Bool) -> UInt32 {
        pressure && halfOpen ? min(Self.pressureHalfOpenTimeout, timeouts[state]) : timeouts[state]
    }

    /// IPVS `ip_vs_sched_persist`: a client (under the netmask) keeps its real server while its template
    /// lives; each new connection re-arms the template. A quiesced (weight 0) server keeps its persistent
    /// clients (expire_quiescent_template off, the default); a removed one loses them.
    private enum PersistentChoice {
        case chosen(Destination, template: UInt32)
        case noRealServer
        case noRoom
    }

    /// A persistence template's client address, virtual address and key: the client under the
    /// service's `-M` (an IPv4 netmask, an IPv6 prefix length: `ServiceSpec.persistenceKey`), port 0,
    /// the virtual address and the service's port (IPVS's `<proto, caddr & mask, 0, vaddr, vport>`).
    /// A firewall-mark service's template has the mark for its virtual address and port 0 (IPVS's
    /// `<IPPROTO_IP, caddr & mask, 0, fwmark, 0>`), so a client's TCP and UDP flows to any of the
    /// mark's addresses and ports share one real server; masq keys it with the service's protocol
    /// (TCP, as ipvsadm sets it) where IPVS has IPPROTO_IP: both protocols find the one template.
    func templateKey<F: AddressFamily>(_: F.Type, _ service: VirtualService, client: F.Address,
                                       virtualAddress: F.Address) -> (client: F.Address, virtualAddress: F.Address, key: F.Key) {
        let masked = F.address(service.spec.persistenceKey(F.ipAddress(client))) ?? client
        let vaddr = service.key.isFirewallMark ? F.firewallMarkAddress(service.key.fwmark) : virtualAddress
        return (masked, vaddr, F.key(source: masked, destination: vaddr, sourcePort: 0,
                                     destinationPort: service.key.port, proto: service.key.proto))
    }

    private func persistentDestination<F: AddressFamily>(_: F.Type, _ service: VirtualService, _ input: SchedulingInput,
                                                         client: F.Address, virtualAddress: F.Address,
                                                         timeout: UInt32) -> PersistentChoice {
        let (masked, templateAddress, templateKey) = templateKey(F.self, service, client: client,
                                                                 virtualAddress: virtualAddress)
        let expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
        if let slot = F.template(table, for: templateKey) {
            let t = table[slot]
            if (t.expires > now || t.controlled > 0), let d = destination(t.destinationID),
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
        let server = F.address(of: d)
        let template = Connection(
            proto: service.key.proto, state: .none, isTemplate: true, countedActive: false,
            client: F.connectionField(masked), clientPort: 0, virtualAddress: F.connectionField(templateAddress),
            virtualPort: service.key.port, server: F.connectionField(server), serverPort: d.port,
            serviceID: service.id, destinationID: d.id,
            controller: ConnectionTable.noSlot, timeout: timeout, expires: expires,
            packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
        let addresses = EntryAddresses(client: masked, virtualAddress: templateAddress, server: server)
        guard let slot = F.insert(table, template, addresses) else { return .noRoom }
        d.bindTemplate()
        counters.templatesCreated &+= 1
        return .chosen(d, template: slot)
    }

    // MARK: Early drop

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
    func makeRoom(keeping: UInt32 = ConnectionTable.noSlot) -> Bool {
        guard table.isFull else { return true }
        let victim = table.evictionCandidate(samples: Self.evictionSamples, random: { self.nextRandom() }) { slot, c in
            c.isTemplate ? c.controlled == 0 && slot != keeping : c.isHalfOpen
        }
        guard let victim else { return false }
        let entry = table[victim]
        let reason: EvictionReason = entry.isTemplate ? .idleTemplate : entry.evictionReason
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

    // MARK: Expiry

    /// `evicted`: removed by early drop, before its time: no verdict on its real server.
    func expireNow(_ slot: UInt32, evicted: Bool = false) {
        let entry = table[slot]
        if entry.isTemplate && entry.controlled > 0 { return }
        // Out of the table first: `release` may free the real server's (and its service's) record, and
        // a kill between the two must not leave a live entry naming a freed record.
        table.remove(slot)
        release(entry, evicted: evicted)
    }

    /// Gives back what a connection held on its real server (IPVS `ip_vs_unbind_dest`).
    private func release(_ entry: Connection, evicted: Bool = false) {
        counters.expired &+= 1
        guard let d = destination(entry.destinationID) else { return }
        // A synced entry's handshake happened on the master: its expiry here says nothing of the server.
        if !evicted && !entry.isTemplate && !entry.isSynced && entry.failsHandshakeOnExpiry { d.handshakeFailures &+= 1 }
        if entry.isTemplate { d.unbindTemplate() } else { d.unbindConnection(active: entry.countedActive) }
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
              innerProto.isTracked else { return .accept }
        let th = TransportHeader(quoted.slice(from: inner.headerLength), proto: innerProto)
        guard let (slot, direction) = quotedFlow(IPv4Family.self, IPv4Packet(ip: inner), th, proto: innerProto) else {
            return .accept
        }
        guard icmp.isChecksumValid else { return .drop(.badICMPChecksum) }
        translateQuoted(IPv4Family.self, slot, direction, outer: IPv4Packet(ip: ip), quoted: IPv4Packet(ip: inner), th)
        inner.recomputeChecksum()
        icmp.recomputeChecksum()
        return .rewritten(direction)
    }

    /// The live connection an ICMP error's quoted datagram belongs to, and the direction the error
    /// travels in. The quoted datagram travelled the other way: its reverse is the connection's key.
    /// `th` is the quoted L4 header, its ports at least (8 bytes, RFC 792 and RFC 4443 §2.4(c)).
    @inline(__always)
    func quotedFlow<F: AddressFamily>(_: F.Type, _ inner: F.Packet, _ th: TransportHeader,
                                      proto: IPProtocol) -> (slot: UInt32, direction: FlowDirection)? {
        let key = F.key(source: inner.destination, destination: inner.source, sourcePort: th.destinationPort,
                        destinationPort: th.sourcePort, proto: proto)
        guard let (slot, direction) = F.lookup(table, key), table[slot].expires > now else { return nil }
        return (slot, direction)
    }

    /// Rewrites an ICMP error about the connection in `slot` as its packets are rewritten: the outer
    /// address, the quoted datagram's address and port, and the quoted L4 checksum when the quote holds
    /// it. The caller fixes what covers the rest: the quoted IPv4 header's checksum, the ICMP checksum.
    @inline(__always)
    func translateQuoted<F: AddressFamily>(_: F.Type, _ slot: UInt32, _ direction: FlowDirection, outer: F.Packet,
                                           quoted inner: F.Packet, _ th: TransportHeader) {
        let c = table[slot]
        let addresses = F.addresses(table, slot, c)
        let checksumPresent = th.bytes.count >= th.checksumOffset &+ 2
        if direction == .outbound {
            // From the real servers' side, about a datagram client → real server.
            outer.setSource(addresses.virtualAddress)
            if checksumPresent { F.addressChanged(th, from: inner.destination, to: addresses.virtualAddress) }
            inner.setDestination(addresses.virtualAddress)
            th.setDestinationPort(c.virtualPort, adjustChecksum: checksumPresent)
        } else {
            // From the client's side, about a datagram VIP → client.
            outer.setDestination(addresses.server)
            if checksumPresent { F.addressChanged(th, from: inner.source, to: addresses.server) }
            inner.setSource(addresses.server)
            th.setSourcePort(c.serverPort, adjustChecksum: checksumPresent)
        }
    }
}

extension VirtualService {
    /// IPVS `IP_VS_SVC_F_ONEPACKET` as masq applies it: a UDP address service with a port and `-o`
    /// schedules each datagram alone and keeps no entry. A firewall-mark service and a port-0 service
    /// keep their entries even with `-o`: without one, nothing tells which VIP and port a real
    /// server's answer must leave from (README, "One-packet scheduling").
    var usesOnePacketScheduling: Bool {
        spec.onePacket && spec.key.proto == .udp && !spec.key.isFirewallMark && spec.key.port != 0
    }
}
