/// Connection sync, the engine's side, as IPVS's ip_vs_sync.c has it (`ip_vs_sync_conn_needed` and
/// `ip_vs_sync_conn` on the master, `ip_vs_proc_conn` on the backup): which connections the packet
/// path hands to the sync sender and when, what a backup does with an update it receives, and the
/// whole-table walk masq adds for refreshes and resends. No I/O: the daemon's sender drains
/// `syncOutbox` and its receiver calls `applySynced`, both under the engine's owner.
extension Engine {
    // MARK: Master: what the packet path sends

    /// IPVS `ip_vs_sync_conn_needed` for a client's packet on a connection now `c`, its `pkts`-th
    /// (packetsIn after it): TCP only in ESTABLISHED and the closing states, a change into a closing
    /// state at once, else (UDP too) at packet `threshold` and every `period` after. Never asked for
    /// replies. Inlined into the packet path (only `pushSynced` is a call), so sync on costs a few
    /// compares and a division per client packet.
    @inline(__always)
    func syncDue(_ c: Connection, packets pkts: UInt32) -> Bool {
        switch c.proto {
        case .tcp:
            switch c.state {
            case .established:
                break
            case .finWait, .close, .closeWait, .timeWait:
                if c.state != c.syncedState { return true }
            default:
                return false
            }
        case .udp:
            break
        default:
            return false
        }
        let settings = syncSettings
        return settings.period > 0 ? pkts % settings.period == settings.threshold : pkts == settings.threshold
    }

    /// Hands the connection in `slot` to the outbox, with its controlling template after it each time
    /// (v0's rule: the kernel's v1 re-sends a template on every packet of its connections unless
    /// `sync_refresh_period` is set, far more than a backup needs).
    @inline(never)
    func pushSynced(_ slot: UInt32) {
        guard let outbox = syncOutbox else { return }
        let c = table[slot]
        // Only a change the sender has: a dropped one (a full outbox) is tried again at the next packet.
        guard outbox.push(syncUpdate(slot, c)) else { return }
        table[slot].syncedState = c.state
        // A template replaced since (its real server left the service) is not the client's any more.
        if c.controller != ConnectionTable.noSlot && table.isCurrentTemplate(c.controller) {
            _ = outbox.push(syncUpdate(c.controller, table[c.controller]))
        }
    }

    /// The update describing the entry in `slot` (`c`, its contents) as it is now: an IPv6 entry's
    /// addresses come from the table's sidecar (IPVS's `ip_vs_sync_v6`), an IPv4 one's from `c`. An
    /// entry of a firewall-mark service carries its mark (`ip_vs_sync_conn`: `s->fwmark =
    /// htonl(cp->fwmark)`), by which a backup finds the service; its template goes with protocol 0,
    /// IPPROTO_IP, as the kernel's fwmark templates are (`ip_vs_sched_persist`).
    @inline(__always)
    func syncUpdate(_ slot: UInt32, _ c: Connection) -> SyncUpdate {
        var update = c.isIPv6 ? SyncUpdate(c, addresses: table.addresses6(slot)) : SyncUpdate(c)
        if let record = registry.service(c.serviceID), record.pointee.kind == ServiceRecord.firewallMarkKind {
            update.fwmark = record.pointee.address
            if c.isTemplate { update.proto = Self.firewallMarkTemplateProtocol }
        }
        return update
    }

    /// A firewall-mark template's protocol on the wire: IPPROTO_IP (0).
    static let firewallMarkTemplateProtocol = IPProtocol(rawValue: 0)

    // MARK: Master: the whole-table walk

    /// Slots one `collectSyncable` call looks at, at most, for each entry it may return: a slice of a
    /// sparse table ends in bounded time (the caller holds the engine lock for it).
    public static let syncWalkSlotsPerEntry = 16

    /// Whether a walk sends this entry: a template still current, a UDP flow, or a TCP connection in
    /// a state the packet path would send it in; live and not past its expiry. A refresh leaves out
    /// entries that came from a peer and carried no packet here since: with both daemons on both
    /// directors they would otherwise echo between the two refreshes and never expire anywhere.
    func isSyncable(_ slot: UInt32, _ c: Connection, refresh: Bool) -> Bool {
        guard c.expires > now else { return false }
        if refresh && c.isSynced && c.packetsIn == 0 && c.packetsOut == 0 { return false }
        if c.isTemplate { return table.isCurrentTemplate(slot) }
        switch c.proto {
        case .tcp: return c.state == .established || c.state == .finWait || c.state == .close
            || c.state == .closeWait || c.state == .timeWait
        case .udp: return true
        default: return false
        }
    }

    /// A slice of the whole-table walk (masq's periodic refresh, the kernel's `sync_refresh_period` in
    /// spirit, and the full resend a new backup asks for): the syncable entries from slot `cursor` on,
    /// at most `buffer.count` of them, in slot order; advances `cursor` past what it looked at and
    /// returns the count. `cursor` becomes nil when the walk is done; a walk starts at 0, and a nil
    /// cursor returns 0. A slice may return 0 with the walk not done (a sparse stretch of slots).
    /// `refresh`: a periodic walk, which leaves out synced entries unused here (see `isSyncable`);
    /// a resend a backup asked for sends them too.
    public func collectSyncable(from cursor: inout UInt32?, into buffer: UnsafeMutableBufferPointer<SyncUpdate>,
                                refresh: Bool = false) -> Int {
        guard let start = cursor, let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var n = 0
        let limit = buffer.count
        cursor = table.forEachLive(from: start, maximumSlots: limit &* Self.syncWalkSlotsPerEntry) { slot, c in
            guard isSyncable(slot, c, refresh: refresh) else { return true }
            base[n] = syncUpdate(slot, c)
            n += 1
            return n < limit
        }
        return n
    }

    // MARK: Backup: applying what a master sent

    /// Backup side (IPVS `ip_vs_proc_conn`, reference §1.5): creates or updates the entry for a
    /// configured service, bound to the LOCAL real server with the update's address and port (the
    /// service of its fwmark when it has one). Nothing in the update is trusted: an unknown service (or a template for a service without
    /// persistence), no such real server, a state the protocol lacks, a full table (an established
    /// entry is never evicted for it: only what early drop may take, `makeRoom`), or tuples that
    /// collide with another entry's give a result and change nothing.
    ///
    /// Lookup by the inbound key (templates by their persistence key, the client under the local
    /// netmask). An entry bound to another real server is replaced, unless the update is INACTIVE
    /// (the master expiring one it has already replaced: ignored). An existing entry takes the state,
    /// the timeout and expires now + timeout, its real server's ActiveConn/InActConn moved as a state
    /// change moves them. A new one is counted as a new flow would be (ActiveConn/InActConn, or
    /// PersistConn for a template), in `counters.syncedCreated`, not in `connectionsCreated`, and is
    /// marked `isSynced`; templates are not linked to connections (as the kernel's backup).
    /// The timeout is clamped to the local timeout of the state (templates: the service's
    /// persistence timeout), and 0 means the local timeout.
    /// After `markCleanShutdown` nothing is applied (`tableFull`: the table takes nothing more).
    public func applySynced(_ update: SyncUpdate) -> SyncApplyResult {
        guard !isShutDown else { return .tableFull }
        switch update.client {
        case .v4: return applySynced(IPv4Family.self, update)
        case .v6: return applySynced(IPv6Family.self, update)
        }
    }

    /// `applySynced` for an update of the family `F`: its three addresses must all be of it (IPVS's
    /// v4 and v6 entries each carry one family).
    private func applySynced<F: AddressFamily>(_: F.Type, _ update: SyncUpdate) -> SyncApplyResult {
        guard let client = F.address(update.client), let virtualAddress = F.address(update.virtualAddress),
              let server = F.address(update.server) else { return .unknownService }
        if update.isTemplate {
            return applySyncedTemplate(F.self, update, client: client, virtualAddress: virtualAddress, server: server)
        }
        // A marked entry belongs to the firewall-mark service of its mark and family, and to nothing
        // else (IPVS `ip_vs_proc_conn` looks the service up by fwmark when the entry has one).
        let found = update.fwmark != 0 ? F.firewallMarkService(self, update.fwmark)
            : findService(update.proto, update.virtualAddress, update.virtualPort)
        guard let service = found else { return .unknownService }
        switch update.proto {
        case .tcp: guard update.state.rawValue <= ConnectionState.synAck.rawValue else { return .badState }
        case .udp: guard update.state == .udp else { return .badState }
        default: return .unknownService
        }
        // The port a connection to `d` would carry: the real server's, or the client's for a port-0
        // service (newConnection's rule), so a port-0 real server matches as `ip_vs_find_dest` does.
        let destination = service.destinations.first { d in
            d.address == update.server && serverPort(service, d, virtualPort: update.virtualPort) == update.serverPort
        }
        guard let destination else { return .noDestination }
        let timeout = clampedTimeout(update.timeout, local: timeouts[update.state])
        let key = F.key(source: client, destination: virtualAddress, sourcePort: update.clientPort,
                        destinationPort: update.virtualPort, proto: update.proto)
        let existing = F.lookup(table, key)
        if let (slot, direction) = existing {
            guard direction == .inbound else { return .conflict }
            let c = table[slot]
            if F.addresses(table, slot, c).server == server && c.serverPort == update.serverPort {
                updateSynced(slot, state: update.state, timeout: timeout)
                return .updated
            }
            guard update.isActive else { return .staleIgnored }
        }
        // Checked before anything is removed, so a refused update changes nothing.
        let outboundKey = F.key(source: server, destination: client, sourcePort: update.serverPort,
                                destinationPort: update.clientPort, proto: update.proto)
        if F.lookup(table, outboundKey) != nil || key == outboundKey { return .conflict }
        let connection = Connection(
            proto: update.proto, state: update.state, isTemplate: false,
            countedActive: update.state == .established,
            client: F.connectionField(client), clientPort: update.clientPort,
            virtualAddress: F.connectionField(virtualAddress), virtualPort: update.virtualPort,
            server: F.connectionField(server), serverPort: update.serverPort,
            serviceID: service.id, destinationID: destination.id, controller: ConnectionTable.noSlot,
            timeout: timeout, expires: now &+ Int64(timeout) &* ConnectionTable.nanosPerTick,
            packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
        if let (slot, _) = existing { expireNow(slot, evicted: true) }  // no verdict on its real server
        let addresses = EntryAddresses(client: client, virtualAddress: virtualAddress, server: server)
        guard makeRoom(), let slot = F.insert(table, connection, addresses) else {
            return table.isFull ? .tableFull : .conflict
        }
        table[slot].isSynced = true
        destination.bindConnection(active: connection.countedActive)
        counters.syncedCreated &+= 1
        return existing != nil ? .replaced : .created
    }

    private func applySyncedTemplate<F: AddressFamily>(_: F.Type, _ update: SyncUpdate, client: F.Address,
                                                       virtualAddress: F.Address, server: F.Address) -> SyncApplyResult {
        let serviceKey = ServiceKey(proto: update.proto, address: update.virtualAddress, port: update.virtualPort)
        let found = update.fwmark != 0 ? F.firewallMarkService(self, update.fwmark) : self.service(serviceKey)
        guard let service = found, let persistence = service.spec.persistence else {
            return .unknownService
        }
        guard update.state == .none else { return .badState }
        guard let destination = service.destinations.first(where: {
            $0.address == update.server && $0.port == update.serverPort
        }) else { return .noDestination }
        let timeout = clampedTimeout(update.timeout, local: persistence)
        // persistentDestination's key (the client under the local -M), so a new connection after
        // takeover finds this template.
        let (masked, templateAddress, key) = templateKey(F.self, service, client: client, virtualAddress: virtualAddress)
        let existing = F.template(table, for: key)
        if let slot = existing {
            let t = table[slot]
            if F.addresses(table, slot, t).server == server && t.serverPort == update.serverPort {
                updateSynced(slot, state: .none, timeout: timeout)
                return .updated
            }
        }
        // Room first, so a refused update changes nothing: removing an unused old template makes its
        // own room; otherwise early drop may (never taking the old template it is about to replace).
        let freesItsSlot = existing.map { table[$0].controlled == 0 } ?? false
        if !freesItsSlot {
            guard makeRoom(keeping: existing ?? ConnectionTable.noSlot) else { return .tableFull }
        }
        if let slot = existing {
            // The master chose another real server for this client: its choice wins (a template still
            // controlling connections here lives on unseen until they end, as persistentDestination does).
            if table[slot].controlled > 0 { table.invalidateTemplate(slot) } else { expireNow(slot, evicted: true) }
        }
        let template = Connection(
            proto: service.key.proto, state: .none, isTemplate: true, countedActive: false,
            client: F.connectionField(masked), clientPort: 0, virtualAddress: F.connectionField(templateAddress),
            virtualPort: service.key.port, server: F.connectionField(server), serverPort: destination.port,
            serviceID: service.id, destinationID: destination.id, controller: ConnectionTable.noSlot,
            timeout: timeout, expires: now &+ Int64(timeout) &* ConnectionTable.nanosPerTick,
            packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
        let addresses = EntryAddresses(client: masked, virtualAddress: templateAddress, server: server)
        guard let slot = F.insert(table, template, addresses) else { return table.isFull ? .tableFull : .conflict }
        table[slot].isSynced = true
        destination.bindTemplate()
        counters.syncedCreated &+= 1
        return existing != nil ? .replaced : .created
    }

    /// An update's timeout: 0 (v0, or unknown) is the local one, and none is longer than it.
    private func clampedTimeout(_ sent: UInt32, local: UInt32) -> UInt32 {
        sent == 0 ? local : min(sent, local)
    }

    /// An existing entry takes the master's state and timeout, and expires one timeout from now
    /// (`ip_vs_conn_put` re-arming the timer), its real server's counts moved as `setState` moves them.
    private func updateSynced(_ slot: UInt32, state: ConnectionState, timeout: UInt32) {
        table[slot].state = state
        table[slot].syncedState = state
        table[slot].timeout = timeout
        let expires = now &+ Int64(timeout) &* ConnectionTable.nanosPerTick
        let earlier = expires < table[slot].expires
        table[slot].expires = expires
        if earlier { table.expiryShortened(slot) }
        if !table[slot].isTemplate { countActive(slot, state == .established) }
    }
}
