import CMasqShims
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The 5-tuple a packet is looked up by: its own source, destination, ports and protocol.
///
/// A NAT connection is entered twice, once per direction: client → VIP (inbound) and
/// real server → client (outbound), so one lookup with the packet's own tuple finds either.
public struct FlowKey: Hashable, Sendable {
    public var source: UInt32
    public var destination: UInt32
    public var ports: UInt32  // source port << 16 | destination port
    public var proto: UInt8

    public init(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16,
                           destinationPort: UInt16, proto: IPProtocol) {
        self.source = source.rawValue
        self.destination = destination.rawValue
        self.ports = UInt32(sourcePort) << 16 | UInt32(destinationPort)
        self.proto = proto.rawValue
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(UInt64(source) << 32 | UInt64(destination))
        hasher.combine(UInt64(ports) << 8 | UInt64(proto))
    }
}

/// The 5-tuple of an IPv6 packet (RFC 8200 addresses), looked up as `FlowKey` is for IPv4.
public struct FlowKey6: Hashable, Sendable {
    public var source: IPv6Address
    public var destination: IPv6Address
    public var ports: UInt32  // source port << 16 | destination port
    public var proto: UInt8

    @inlinable public init(source: IPv6Address, destination: IPv6Address, sourcePort: UInt16,
                           destinationPort: UInt16, proto: IPProtocol) {
        self.source = source
        self.destination = destination
        self.ports = UInt32(sourcePort) << 16 | UInt32(destinationPort)
        self.proto = proto.rawValue
    }
}

/// The IPv6 addresses of an IPv6 entry, in the table's sidecar region (one per slot, touched only by
/// IPv6 entries, so an IPv4 flow's memory is its 80-byte `Connection` alone). The entry's own 32-bit
/// address fields hold these addresses' folds (`IPv6Address.folded`).
public struct ConnectionAddresses6: Sendable, Equatable {
    public var client: IPv6Address
    public var virtualAddress: IPv6Address
    public var server: IPv6Address

    public init(client: IPv6Address, virtualAddress: IPv6Address, server: IPv6Address) {
        self.client = client
        self.virtualAddress = virtualAddress
        self.server = server
    }
}

/// One entry of the table: a NAT connection, or a persistence template (IPVS `struct ip_vs_conn`).
/// Fields are ordered for packing: 80 bytes a connection (see `MemoryLayout<Connection>.stride`).
public struct Connection: Sendable {
    /// When the connection expires, on the engine's clock (nanoseconds).
    public var expires: Int64
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    /// Packet counts wrap at 2^32 (per connection; the service and real-server counters are 64-bit).
    public var packetsIn: UInt32
    public var packetsOut: UInt32
    public var client: IPv4Address
    public var virtualAddress: IPv4Address
    public var server: IPv4Address
    public var serviceID: UInt32
    public var destinationID: UInt32
    /// A connection's controlling template slot, or a template's count of controlled connections.
    var link: UInt32
    /// Idle timeout in seconds for the current state.
    public var timeout: UInt32
    var wheelNext: UInt32
    var wheelPrev: UInt32
    public var clientPort: UInt16
    public var virtualPort: UInt16
    public var serverPort: UInt16
    var wheelBucket: UInt16
    public var proto: IPProtocol
    public var state: ConnectionState
    var flags: UInt8
    /// The state last handed to the sync outbox (IPVS `cp->old_state`): a change into a closing TCP
    /// state is sent at the next client packet even when a reply made it. In the layout's last spare byte.
    var syncedState: ConnectionState

    private static let templateFlag: UInt8 = 1, activeFlag: UInt8 = 2, liveFlag: UInt8 = 4, syncFlag: UInt8 = 8
    /// An IPv6 entry: its addresses are in the table's sidecar (`ConnectionTable.addresses6`).
    private static let ipv6Flag: UInt8 = 16

    public init(proto: IPProtocol, state: ConnectionState, isTemplate: Bool, countedActive: Bool,
                client: IPv4Address, clientPort: UInt16, virtualAddress: IPv4Address, virtualPort: UInt16,
                server: IPv4Address, serverPort: UInt16, serviceID: UInt32, destinationID: UInt32,
                controller: UInt32, timeout: UInt32, expires: Int64,
                packetsIn: UInt32, packetsOut: UInt32, bytesIn: UInt64, bytesOut: UInt64) {
        self.expires = expires
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.packetsIn = packetsIn
        self.packetsOut = packetsOut
        self.client = client
        self.virtualAddress = virtualAddress
        self.server = server
        self.serviceID = serviceID
        self.destinationID = destinationID
        self.link = isTemplate ? 0 : controller
        self.timeout = timeout
        self.wheelNext = ConnectionTable.noSlot
        self.wheelPrev = ConnectionTable.noSlot
        self.clientPort = clientPort
        self.virtualPort = virtualPort
        self.serverPort = serverPort
        self.wheelBucket = 0
        self.proto = proto
        self.state = state
        self.flags = (isTemplate ? Self.templateFlag : 0) | (countedActive ? Self.activeFlag : 0)
        self.syncedState = state
    }

    private func flag(_ f: UInt8) -> Bool { flags & f != 0 }
    private mutating func setFlag(_ f: UInt8, _ on: Bool) { flags = on ? flags | f : flags & ~f }

    /// A persistence template: client (masked, port 0) → service, remembering the real server.
    public var isTemplate: Bool { flag(Self.templateFlag) }
    /// Counted in the destination's ActiveConn (else InActConn); mirrors IPVS's IP_VS_CONN_F_INACTIVE.
    public var countedActive: Bool {
        get { flag(Self.activeFlag) }
        set { setFlag(Self.activeFlag, newValue) }
    }
    var live: Bool {
        get { flag(Self.liveFlag) }
        set { setFlag(Self.liveFlag, newValue) }
    }
    /// An IPv6 connection or template: `client`, `virtualAddress` and `server` hold only the folds of
    /// its addresses, which `ConnectionTable.addresses6` gives.
    public internal(set) var isIPv6: Bool {
        get { flag(Self.ipv6Flag) }
        set { setFlag(Self.ipv6Flag, newValue) }
    }
    /// Live and IPv4 in one test: the IPv4 lookups' check, which must never accept an IPv6 entry.
    @inline(__always) var isLiveIPv4: Bool { flags & (Self.liveFlag | Self.ipv6Flag) == Self.liveFlag }
    @inline(__always) var isLiveIPv6: Bool { flags & (Self.liveFlag | Self.ipv6Flag) == Self.liveFlag | Self.ipv6Flag }
    /// Created by a sync update from a master (IPVS's IP_VS_CONN_F_SYNC, `Origin SYNC` in
    /// /proc/net/ip_vs_conn_sync), not by a packet here; it behaves as any entry once packets arrive.
    public internal(set) var isSynced: Bool {
        get { flag(Self.syncFlag) }
        set { setFlag(Self.syncFlag, newValue) }
    }
    /// The template this connection was scheduled by, or `ConnectionTable.noSlot`.
    public var controller: UInt32 { isTemplate ? ConnectionTable.noSlot : link }
    /// For a template: how many live connections it controls (it outlives its timeout while any do).
    public var controlled: UInt32 {
        get { isTemplate ? link : 0 }
        set { if isTemplate { link = newValue } }
    }

    /// The key packets from the client to the virtual service carry.
    public var inboundKey: FlowKey {
        FlowKey(source: client, destination: virtualAddress, sourcePort: clientPort,
                destinationPort: virtualPort, proto: proto)
    }

    /// The key replies from the real server to the client carry.
    public var outboundKey: FlowKey {
        FlowKey(source: server, destination: client, sourcePort: serverPort,
                destinationPort: clientPort, proto: proto)
    }

    /// A template's key: protocol, masked client address (port 0), virtual address and port.
    public var templateKey: FlowKey { inboundKey }

    @inline(__always) func key(_ direction: UInt32) -> FlowKey { direction == 0 ? inboundKey : outboundKey }
}

/// The connection table: a slab of connections, an index from each direction's 5-tuple to its slot,
/// persistence templates by their own key, and a timing wheel that expires idle entries.
///
/// Everything lives in a `TableMemory` (slab, both indexes, wheel heads, free-slot stack, counts),
/// reserved once for `capacity`: about 80 bytes of slab, 32 of flow index and 16 of template index per
/// connection, resident as used. In a shared mapping the next masq adopts it: every multi-word change
/// (insert, remove, an expiry step, a relink, a template invalidated) is journaled, so the one a
/// `kill -9` interrupts is scrubbed at adoption (`repairAfterCrash`) without walking the table.
///
/// Nothing followed from the memory is trusted: an index value names a slot below `slotsUsed` that is
/// live, a wheel link too (else the bucket's walk ends and `corruptLinks` counts it), a free-stack
/// entry a dead slot below `slotsUsed` (else it is skipped), a controller a slot below `slotsUsed`.
///
/// Expiry is driven by the caller's clock (capture timestamps in replay, CLOCK_MONOTONIC in the daemon,
/// which is system-wide, so an adopted table's `expires` are on the same clock and a restart's gap counts
/// as elapsed time), so replay is deterministic. The wheel re-arms lazily: a packet only moves `expires`;
/// an entry found in a due bucket with a later `expires` is moved to its new bucket then, so the packet
/// path never relinks.
public final class ConnectionTable {
    public static let noSlot = UInt32.max
    static let wheelSize = 1024
    public static let nanosPerTick: Int64 = 1_000_000_000
    static let templateRecheck: Int64 = 60
    /// Slot numbers must fit the index's value (slot << 1 | direction).
    public static let maximumCapacity = 1 << 30

    public let memory: TableMemory
    private let slots: UnsafeMutablePointer<Connection>
    let live: UnsafeMutablePointer<TableLive>
    /// Dead slots below `slotsUsed`, `live.freeCount` of them.
    let freeSlots: UnsafeMutablePointer<UInt32>
    /// Slot << 1 | direction.
    let index: FlowIndex
    /// Template key → slot.
    let templates: FlowIndex
    let wheel: UnsafeMutablePointer<UInt32>
    /// The IPv6 addresses of IPv6 entries, by slot (see `ConnectionAddresses6`).
    let sidecar: UnsafeMutablePointer<ConnectionAddresses6>
    let registry: TableRegistry
    /// The most connections (templates included) the table holds; a new flow beyond it is refused.
    public let capacity: Int
    /// Wheel links found out of range (an adopted file's damage): each ended a bucket's walk.
    public private(set) var corruptLinks = 0
    /// After an unclean adoption: the slot of the interrupted operation scrubbed, and the recount's time.
    private(set) var repairedSlot: UInt32?
    private(set) var recountNanoseconds: Int64?
    /// After an unclean adoption: live entries the recount found impossible and scrubbed (each alone; the
    /// rest of the table kept), the first one's reason, and the freed registry records revived because a
    /// live entry still named them (a kill between a flow's removal and its record's release).
    private(set) var scrubbedSlots = 0
    private(set) var firstScrubReason: String?
    private(set) var revivedRecords = 0
    /// An adopted table's `lastTick` is checked against the clock at its first expiry (`clampAdoptedTick`).
    private var adoptedTickUnchecked = false

    /// Slots ever used (the slab's high-water mark); those below it that are free are in `freeSlots`.
    private var slotsUsed: Int {
        @inline(__always) get { live.pointee.slotsUsed }
        set { live.pointee.slotsUsed = newValue }
    }
    public private(set) var connectionCount: Int {
        @inline(__always) get { live.pointee.connectionCount }
        set { live.pointee.connectionCount = newValue }
    }
    public private(set) var templateCount: Int {
        @inline(__always) get { live.pointee.templateCount }
        set { live.pointee.templateCount = newValue }
    }
    private var lastTick: Int64? {
        get { live.pointee.hasLastTick != 0 ? live.pointee.lastTick : nil }
        set {
            live.pointee.lastTick = newValue ?? 0
            live.pointee.hasLastTick = newValue == nil ? 0 : 1
        }
    }

    /// A table over `memory`: empty when it is fresh, the previous owner's when adopted (repaired and
    /// recounted first if that owner did not exit cleanly: a slot no masq could have written is scrubbed
    /// alone, counted in the adoption report, see `repairAfterCrash`).
    public init(memory: TableMemory) {
        var repaired: UInt32?, recount: Int64?, scrubbed = 0, scrubReason: String?, revived = 0
        if memory.isAdopted && (!memory.wasCleanShutdown || !Self.countsAgree(memory.live.pointee)) {
            let started = TableMemory.clock(CLOCK_MONOTONIC)
            let pass = ConnectionTable(mapping: memory)
            let slot = pass.live.pointee.journalOp != 0 ? pass.live.pointee.journalSlot : nil
            pass.repairAfterCrash()
            repaired = slot
            recount = TableMemory.clock(CLOCK_MONOTONIC) - started
            (scrubbed, scrubReason, revived) = (pass.scrubbedSlots, pass.firstScrubReason, pass.revivedRecords)
        }
        self.memory = memory
        (slots, live, freeSlots, index, templates, wheel, registry, capacity, sidecar) = Self.regions(memory)
        repairedSlot = repaired
        recountNanoseconds = recount
        (scrubbedSlots, firstScrubReason, revivedRecords) = (scrubbed, scrubReason, revived)
        adoptedTickUnchecked = memory.isAdopted
        if !memory.isAdopted {
            for b in 0..<Self.wheelSize { wheel[b] = Self.noSlot }
        }
    }

    /// What a clean exit leaves true of the live block, checked in O(1): every slot below `slotsUsed`
    /// is live or on the free stack, and every connection has its two index entries. A clean file
    /// where this fails was damaged since: it is recounted as after a crash, or its lost free slots
    /// would never come back (the new-flow path would find the table full forever).
    private static func countsAgree(_ l: TableLive) -> Bool {
        l.slotsUsed - l.freeCount == l.connectionCount + l.templateCount && l.flowIndexCount == 2 * l.connectionCount
    }

    /// The regions' views without any check (for the repair pass, before the table is trusted).
    private init(mapping memory: TableMemory) {
        self.memory = memory
        (slots, live, freeSlots, index, templates, wheel, registry, capacity, sidecar) = Self.regions(memory)
    }

    private static func regions(_ memory: TableMemory) -> (UnsafeMutablePointer<Connection>, UnsafeMutablePointer<TableLive>,
                                                           UnsafeMutablePointer<UInt32>, FlowIndex, FlowIndex,
                                                           UnsafeMutablePointer<UInt32>, TableRegistry, Int,
                                                           UnsafeMutablePointer<ConnectionAddresses6>) {
        let l = memory.layout
        let base = memory.base
        let live = memory.live
        let slots = (base + l.slabOffset).bindMemory(to: Connection.self, capacity: l.capacity)
        let free = (base + l.freeOffset).bindMemory(to: UInt32.self, capacity: l.capacity)
        let wheel = (base + l.wheelOffset).bindMemory(to: UInt32.self, capacity: wheelSize)
        let countField = MemoryLayout<TableLive>.offset(of: \TableLive.flowIndexCount)!
        let templateCountField = MemoryLayout<TableLive>.offset(of: \TableLive.templateIndexCount)!
        let index = FlowIndex(memory: base + l.flowIndexOffset, entryCount: l.flowIndexEntries, seed: memory.flowSeed,
                              count: (UnsafeMutableRawPointer(live) + countField).assumingMemoryBound(to: Int.self))
        let templates = FlowIndex(memory: base + l.templateIndexOffset, entryCount: l.templateIndexEntries,
                                  seed: memory.templateSeed,
                                  count: (UnsafeMutableRawPointer(live) + templateCountField).assumingMemoryBound(to: Int.self))
        let sidecar = (base + l.addresses6Offset).bindMemory(to: ConnectionAddresses6.self, capacity: l.capacity)
        return (slots, live, free, index, templates, wheel, TableRegistry(memory), l.capacity, sidecar)
    }

    /// A table in private anonymous memory.
    public convenience init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Self.maximumCapacity, "table capacity out of range")
        self.init(memory: TableMemory.anonymous(capacity: capacity))
    }

    public var isFull: Bool { connectionCount + templateCount >= capacity }

    /// Bytes reserved for slab and both indexes (resident as they fill).
    /// The IPv6 sidecar is not counted: reserved too, but touched only by IPv6 entries.
    public var reservedBytes: Int { capacity * MemoryLayout<Connection>.stride + index.byteCount + templates.byteCount }

    // MARK: Journal

    @inline(__always) private func begin(_ op: TableJournal.Op, _ slot: UInt32) {
        live.pointee.journalSlot = slot
        live.pointee.journalOp = op.rawValue
        atomicMemoryFenceRelease()
    }

    @inline(__always) private func end() {
        atomicMemoryFenceRelease()
        live.pointee.journalOp = TableJournal.Op.none.rawValue
    }

    // MARK: Lookup

    /// The slot and direction of the connection a packet with this tuple belongs to.
    @inline(__always)
    public func lookup(_ key: FlowKey) -> (slot: UInt32, direction: FlowDirection)? {
        guard let value = indexValue(key) else { return nil }
        return (value >> 1, FlowDirection(rawValue: UInt8(value & 1))!)
    }

    @inline(__always) func indexValue(_ key: FlowKey) -> UInt32? {
        let slots = self.slots
        let used = UInt32(truncatingIfNeeded: slotsUsed)
        return index.find(index.hash(key)) { value in
            let slot = value >> 1
            return slot < used && slots[Int(slot)].isLiveIPv4 && slots[Int(slot)].key(value & 1) == key
        }
    }

    /// The slot and direction of the IPv6 connection a packet with this tuple belongs to.
    @inline(__always)
    public func lookup(_ key: FlowKey6) -> (slot: UInt32, direction: FlowDirection)? {
        guard let value = indexValue(key) else { return nil }
        return (value >> 1, FlowDirection(rawValue: UInt8(value & 1))!)
    }

    @inline(__always) func indexValue(_ key: FlowKey6) -> UInt32? {
        let slots = self.slots
        let sidecar = self.sidecar
        let used = UInt32(truncatingIfNeeded: slotsUsed)
        return index.find(index.hash(key)) { value in
            let slot = value >> 1
            return slot < used && slots[Int(slot)].isLiveIPv6
                && Self.key6(slots[Int(slot)], sidecar[Int(slot)], value & 1) == key
        }
    }

    /// An IPv6 entry's key in one direction (0 inbound, 1 outbound), from its sidecar addresses.
    @inline(__always)
    static func key6(_ c: Connection, _ a: ConnectionAddresses6, _ direction: UInt32) -> FlowKey6 {
        direction == 0
            ? FlowKey6(source: a.client, destination: a.virtualAddress, sourcePort: c.clientPort,
                       destinationPort: c.virtualPort, proto: c.proto)
            : FlowKey6(source: a.server, destination: a.client, sourcePort: c.serverPort,
                       destinationPort: c.clientPort, proto: c.proto)
    }

    /// The IPv6 addresses of the IPv6 entry in `slot` (meaningless for an IPv4 one).
    @inline(__always) public func addresses6(_ slot: UInt32) -> ConnectionAddresses6 {
        assert(Int(slot) < slotsUsed, "slot beyond the slab")
        return sidecar[Int(slot)]
    }

    /// The index hash of the entry in `slot`'s key in `direction` (0 inbound, 1 outbound; a template's
    /// key is its inbound one), of either family: what insert, remove and the repairs hash by.
    private func entryHash(_ slot: UInt32, _ direction: UInt32, in index: FlowIndex) -> UInt32 {
        let c = slots[Int(slot)]
        return c.isIPv6 ? index.hash(Self.key6(c, sidecar[Int(slot)], direction)) : index.hash(c.key(direction))
    }

    /// Prefetching ahead of a batch (see `Engine.prefetching`): first the key's index bucket...
    @inline(__always) func prefetchBucket(_ key: FlowKey) -> UInt32 {
        let hash = index.hash(key)
        index.prefetch(hash)
        return hash
    }

    @inline(__always) public func prefetchBucket(_ key: FlowKey6) -> UInt32 {
        let hash = index.hash(key)
        index.prefetch(hash)
        return hash
    }

    /// ...then, once that bucket is in cache, the connection it most likely names (both its lines).
    @inline(__always) func prefetchConnection(hash: UInt32) {
        guard let value = index.candidate(hash), Int(value >> 1) < capacity else { return }
        let connection = UnsafeRawPointer(slots + Int(value >> 1))
        masq_prefetch_for_write(connection)
        masq_prefetch_for_write(connection + MemoryLayout<Connection>.stride - 1)
    }

    public func template(for key: FlowKey) -> UInt32? {
        let slots = self.slots
        let used = UInt32(truncatingIfNeeded: slotsUsed)
        return templates.find(templates.hash(key)) { slot in
            slot < used && slots[Int(slot)].isLiveIPv4 && slots[Int(slot)].isTemplate && slots[Int(slot)].templateKey == key
        }
    }

    /// The IPv6 persistence template for this key (masked client, port 0, VIP, service port).
    public func template(for key: FlowKey6) -> UInt32? {
        let slots = self.slots
        let sidecar = self.sidecar
        let used = UInt32(truncatingIfNeeded: slotsUsed)
        return templates.find(templates.hash(key)) { slot in
            slot < used && slots[Int(slot)].isLiveIPv6 && slots[Int(slot)].isTemplate
                && Self.key6(slots[Int(slot)], sidecar[Int(slot)], 0) == key
        }
    }

    /// The slot the template index answers for the template in `slot`'s own key.
    private func currentTemplate(keyOf slot: UInt32) -> UInt32? {
        let c = slots[Int(slot)]
        return c.isIPv6 ? template(for: Self.key6(c, sidecar[Int(slot)], 0)) : template(for: c.templateKey)
    }

    /// Whether the template in `slot` still answers lookups for its key (not invalidated, see
    /// `invalidateTemplate`): a replaced one only waits for its connections to end.
    public func isCurrentTemplate(_ slot: UInt32) -> Bool { isLive(slot) && currentTemplate(keyOf: slot) == slot }

    /// IPVS `ip_vs_check_template` failing: the template no longer answers lookups (a fresh one can be
    /// made for the same client), but stays until the connections it controls are gone.
    public func invalidateTemplate(_ slot: UInt32) {
        let hash = entryHash(slot, 0, in: templates)
        begin(.invalidate, slot)
        templates.remove(hash, slot)
        end()
    }

    /// A packet moved an entry's expiry earlier than the wheel bucket it sits in (ESTABLISHED → CLOSE):
    /// move it, or it would outlive its new timeout by up to the old one.
    public func expiryShortened(_ slot: UInt32) {
        let entry = slots[Int(slot)]
        guard entry.live, Int(entry.wheelBucket) < Self.wheelSize,
              bucket(for: entry.expires) != Int(entry.wheelBucket) else { return }
        begin(.relink, slot)
        unlink(slot)
        link(slot)
        end()
    }

    public subscript(slot: UInt32) -> Connection {
        @inline(__always) get {
            assert(Int(slot) < slotsUsed, "slot beyond the slab")
            return slots[Int(slot)]
        }
        @inline(__always) _modify {
            assert(Int(slot) < slotsUsed, "slot beyond the slab")
            yield &slots[Int(slot)]
        }
    }

    /// Whether `slot` names a live entry (a controller read from the slab, before it is followed).
    func isLive(_ slot: UInt32) -> Bool { Int(slot) < slotsUsed && slots[Int(slot)].live }

    // MARK: Insert and remove

    /// A dead slot to reuse from the free stack, skipping entries an adopted file got wrong.
    private func popFree() -> UInt32? {
        while live.pointee.freeCount > 0 {
            live.pointee.freeCount -= 1
            let slot = freeSlots[live.pointee.freeCount]
            if Int(slot) < slotsUsed && !slots[Int(slot)].live { return slot }
        }
        return nil
    }

    /// Adds an IPv4 connection (or template) and arms its expiry; nil when the table is full or a key is
    /// taken.
    public func insert(_ connection: Connection) -> UInt32? {
        guard !isFull else { return nil }
        if connection.isTemplate {
            guard template(for: connection.templateKey) == nil else { return nil }
        } else {
            guard indexValue(connection.inboundKey) == nil, indexValue(connection.outboundKey) == nil,
                  connection.inboundKey != connection.outboundKey else { return nil }
            guard connection.controller == Self.noSlot || isLive(connection.controller) else { return nil }
        }
        var entry = connection
        entry.isIPv6 = false
        return place(entry, addresses: nil)
    }

    /// Adds an IPv6 connection (or template) with its addresses; `connection`'s own address fields are
    /// overwritten with their folds. nil when the table is full or a key is taken.
    public func insert(_ connection: Connection, addresses a: ConnectionAddresses6) -> UInt32? {
        guard !isFull else { return nil }
        var entry = connection
        entry.isIPv6 = true
        entry.client = IPv4Address(rawValue: a.client.folded)
        entry.virtualAddress = IPv4Address(rawValue: a.virtualAddress.folded)
        entry.server = IPv4Address(rawValue: a.server.folded)
        let inbound = Self.key6(entry, a, 0)
        if entry.isTemplate {
            guard template(for: inbound) == nil else { return nil }
        } else {
            let outbound = Self.key6(entry, a, 1)
            guard indexValue(inbound) == nil, indexValue(outbound) == nil, inbound != outbound else { return nil }
            guard entry.controller == Self.noSlot || isLive(entry.controller) else { return nil }
        }
        return place(entry, addresses: a)
    }

    /// Takes a slot for a checked entry, writes it (and its IPv6 addresses), indexes it and links it.
    private func place(_ connection: Connection, addresses: ConnectionAddresses6?) -> UInt32? {
        var entry = connection
        entry.live = true
        let slot: UInt32
        if let reused = popFree() {
            slot = reused
        } else if slotsUsed < capacity {
            slot = UInt32(slotsUsed)
            slotsUsed += 1
        } else if let swept = sweepFreeSlots() {
            slot = swept
        } else {
            return nil
        }
        begin(.insert, slot)
        // The addresses first: a kill between the two leaves a sidecar nobody reads (the slot is dead).
        if let addresses { sidecar[Int(slot)] = addresses }
        slots[Int(slot)] = entry
        let indexed: Bool
        if entry.isTemplate {
            indexed = templates.insert(entryHash(slot, 0, in: templates), slot)
        } else {
            let inbound = slot << 1 | UInt32(FlowDirection.inbound.rawValue)
            let inboundHash = entryHash(slot, 0, in: index)
            indexed = index.insert(inboundHash, inbound)
                && index.insert(entryHash(slot, 1, in: index), slot << 1 | UInt32(FlowDirection.outbound.rawValue))
            if !indexed { index.remove(inboundHash, inbound) }
        }
        guard indexed else {
            // Only an inconsistent adopted index is full before the table is: refuse, change nothing.
            slots[Int(slot)].live = false
            pushFree(slot)
            end()
            return nil
        }
        if entry.isTemplate {
            templateCount += 1
        } else {
            connectionCount += 1
            if entry.controller != Self.noSlot { slots[Int(entry.controller)].controlled &+= 1 }
        }
        link(slot)
        end()
        return slot
    }

    /// The table is not full, yet no slot is free: the free stack of an adopted file lost entries
    /// (`popFree` skipped damaged ones; a consistent table always has one there or past `slotsUsed`).
    /// One sweep of the slab puts every dead slot back and recounts the entries `isFull` goes by, so
    /// a table that lied once is not swept again. Never runs on a table this process kept itself.
    private func sweepFreeSlots() -> UInt32? {
        var free = 0, connections = 0, templateEntries = 0
        for i in 0..<slotsUsed {
            if !slots[i].live {
                freeSlots[free] = UInt32(i)
                free += 1
            } else if slots[i].isTemplate {
                templateEntries += 1
            } else {
                connections += 1
            }
        }
        live.pointee.freeCount = free
        connectionCount = connections
        templateCount = templateEntries
        return popFree()
    }

    private func pushFree(_ slot: UInt32) {
        guard live.pointee.freeCount < capacity else { return }
        freeSlots[live.pointee.freeCount] = slot
        live.pointee.freeCount += 1
    }

    /// Removes an entry now, whatever its expiry. A template that still controls connections stays.
    public func remove(_ slot: UInt32) {
        guard slots[Int(slot)].live else { return }
        begin(.remove, slot)
        unlink(slot)
        removeUnlinked(slot)
        end()
    }

    // MARK: Expiry

    /// Wrapping arithmetic: an adopted entry's `expires` may be any value and must not trap.
    static func tick(_ time: Int64) -> Int64 { time >= 0 ? time / nanosPerTick : (time &- nanosPerTick &+ 1) / nanosPerTick }

    /// Bucket due strictly after the entry's expiry second, so everything in a due bucket has expired
    /// unless a packet has moved its `expires` since.
    func bucket(for expires: Int64) -> Int {
        Int(truncatingIfNeeded: (Self.tick(expires) + 1) & Int64(Self.wheelSize - 1))
    }

    private func link(_ slot: UInt32) {
        let b = bucket(for: slots[Int(slot)].expires)
        let head = wheel[b]
        slots[Int(slot)].wheelBucket = UInt16(b)
        slots[Int(slot)].wheelPrev = Self.noSlot
        slots[Int(slot)].wheelNext = head
        if Int(head) < slotsUsed { slots[Int(head)].wheelPrev = slot }
        wheel[b] = slot
    }

    /// Unlinks from the wheel; tolerates a half-done link or unlink (only a neighbour that still names
    /// `slot` is changed), so the same code scrubs an interrupted operation.
    private func unlink(_ slot: UInt32) {
        let entry = slots[Int(slot)]
        let used = slotsUsed
        if entry.wheelPrev == Self.noSlot {
            if Int(entry.wheelBucket) < Self.wheelSize && wheel[Int(entry.wheelBucket)] == slot {
                wheel[Int(entry.wheelBucket)] = entry.wheelNext
            }
        } else if Int(entry.wheelPrev) < used && slots[Int(entry.wheelPrev)].wheelNext == slot {
            slots[Int(entry.wheelPrev)].wheelNext = entry.wheelNext
        }
        if Int(entry.wheelNext) < used && slots[Int(entry.wheelNext)].wheelPrev == slot {
            slots[Int(entry.wheelNext)].wheelPrev = entry.wheelPrev
        }
        slots[Int(slot)].wheelPrev = Self.noSlot
        slots[Int(slot)].wheelNext = Self.noSlot
        slots[Int(slot)].wheelBucket = UInt16(Self.wheelSize)  // sentinel: not in any bucket
    }

    /// The file's `lastTick` is not trusted: one in the future would stop expiry until the clock got
    /// there, one far in the past (`Int64.min`) would overflow `nowTick - last`. At the adopted table's
    /// first expiry, on the engine's clock (CLOCK_MONOTONIC in the daemon, as the header's clock id says;
    /// the capture's in a replay), a tick after `nowTick` or more than a wheel turn before it becomes
    /// `nowTick - wheelSize`: one full sweep, in which an entry not yet due is only re-armed.
    private func clampAdoptedTick(_ nowTick: Int64) {
        guard let last = lastTick else { return }
        let turn = Int64(Self.wheelSize)
        if last > nowTick || last < nowTick &- turn { lastTick = nowTick &- turn }
    }

    /// Whether `now` has entered a second the wheel has not processed yet: the packet path checks this
    /// (cheap) before calling `expire`.
    public func needsExpiry(at now: Int64) -> Bool {
        if adoptedTickUnchecked { return true }
        guard let last = lastTickValue else { return true }
        return Self.tick(now) > last
    }

    var lastTickValue: Int64? { lastTick }

    /// Expires every entry whose time has come by `now`, handing each removed one to `removed` first.
    /// A template that still controls connections is re-armed for another timeout (IPVS does the same).
    /// Each due bucket is walked in place (its next entry read first), each removal or relink one
    /// journaled operation, so a `kill -9` mid-bucket loses nothing of the rest.
    public func expire(now: Int64, _ removed: (Connection) -> Void) {
        let nowTick = Self.tick(now)
        if adoptedTickUnchecked {
            adoptedTickUnchecked = false
            clampAdoptedTick(nowTick)
        }
        guard let last = lastTick else {
            lastTick = nowTick
            return
        }
        guard nowTick > last else { return }
        let (gap, overflow) = nowTick.subtractingReportingOverflow(last)
        let steps = overflow ? Int64(Self.wheelSize) : min(gap, Int64(Self.wheelSize))
        for step in 1...steps {
            let b = Int(truncatingIfNeeded: (last &+ step) & Int64(Self.wheelSize - 1))
            var slot = wheel[b]
            var walked = 0
            while slot != Self.noSlot {
                guard Int(slot) < slotsUsed, walked <= slotsUsed, slots[Int(slot)].live else {
                    corruptLinks += 1  // a damaged adopted chain: end this bucket's walk
                    break
                }
                walked += 1
                let next = slots[Int(slot)].wheelNext
                expireOrRearm(slot, bucket: b, now: now, removed)
                slot = next
            }
        }
        lastTick = nowTick
    }

    private func expireOrRearm(_ slot: UInt32, bucket b: Int, now: Int64, _ removed: (Connection) -> Void) {
        let entry = slots[Int(slot)]
        if entry.expires > now {
            guard bucket(for: entry.expires) != b else { return }  // a wheel turn later: stays put
            begin(.relink, slot)
            unlink(slot)
            link(slot)
            end()
        } else if entry.isTemplate && entry.controlled > 0 {
            // IPVS `ip_vs_conn_expire`: a template still in use comes back in 60 s, again and again.
            begin(.relink, slot)
            unlink(slot)
            slots[Int(slot)].expires = now + Self.templateRecheck * Self.nanosPerTick
            link(slot)
            end()
        } else {
            begin(.remove, slot)
            unlink(slot)
            removeUnlinked(slot)
            end()
            // After the journaled remove: `removed` may free the entry's real-server record, which a live
            // entry must never name, even if a kill comes between the two.
            removed(entry)
        }
    }

    private func removeUnlinked(_ slot: UInt32) {
        let entry = slots[Int(slot)]
        if entry.isTemplate {
            templates.remove(entryHash(slot, 0, in: templates), slot)
            templateCount -= 1
        } else {
            index.remove(entryHash(slot, 0, in: index), slot << 1 | UInt32(FlowDirection.inbound.rawValue))
            index.remove(entryHash(slot, 1, in: index), slot << 1 | UInt32(FlowDirection.outbound.rawValue))
            connectionCount -= 1
            if entry.controller != Self.noSlot && isLive(entry.controller) && slots[Int(entry.controller)].controlled > 0 {
                slots[Int(entry.controller)].controlled -= 1
            }
        }
        slots[Int(slot)].live = false
        pushFree(slot)
    }

    // MARK: Adoption after a crash

    /// After an unclean exit: scrubs the journaled slot, then one sequential pass over the slab checks
    /// every live entry and recomputes what a `kill -9` may have left half-counted: the connection and
    /// template counts, every real server's ActiveConn/InActConn/PersistConn, every template's
    /// `controlled`, both index counts and the free stack.
    ///
    /// A live entry naming a freed service or real-server record whose contents still describe it (a
    /// kill between a flow's removal and its record's release, or an older build's order) revives the
    /// record, not in service: it drains as after a reload. A live entry whose own fields are impossible
    /// (protocol, state, an id with no record, a wheel bucket) is scrubbed alone, counted in
    /// `scrubbedSlots`, the first reason kept: one bad slot costs one flow, not the table. A connection
    /// whose controller is not a live template loses its controller.
    private func repairAfterCrash() {
        if let op = TableJournal.Op(rawValue: live.pointee.journalOp), op != .none {
            scrub(live.pointee.journalSlot, op)
            live.pointee.journalOp = TableJournal.Op.none.rawValue
        }
        let used = slotsUsed
        for id in 0..<registry.capacity where registry.destinations[id].inUse != 0 {
            registry.destinations[id].activeConnections = 0
            registry.destinations[id].inactiveConnections = 0
            registry.destinations[id].persistentConnections = 0
        }
        var connections = 0, templateEntries = 0, currentTemplates = 0, free = 0
        for i in 0..<used {
            let c = slots[i]
            guard c.live else {
                freeSlots[free] = UInt32(i)
                free += 1
                continue
            }
            if let problem = check(c, slot: UInt32(i)) {
                scrubbedSlots += 1
                if firstScrubReason == nil { firstScrubReason = "slot \(i): \(problem)" }
                scrub(UInt32(i), .remove)  // changes the liveness of slot i alone
                freeSlots[free] = UInt32(i)
                free += 1
                continue
            }
            let d = registry.destinations + Int(c.destinationID)  // checked above
            if c.isTemplate {
                templateEntries += 1
                slots[i].controlled = 0
                d.pointee.persistentConnections += 1
                if templates.contains(entryHash(UInt32(i), 0, in: templates), UInt32(i)) { currentTemplates += 1 }
            } else {
                connections += 1
                if c.countedActive { d.pointee.activeConnections += 1 } else { d.pointee.inactiveConnections += 1 }
            }
        }
        for i in 0..<used where slots[i].live && !slots[i].isTemplate && slots[i].controller != Self.noSlot {
            let controller = Int(slots[i].controller)
            guard controller < used, slots[controller].live, slots[controller].isTemplate else {
                slots[i].link = Self.noSlot
                continue
            }
            slots[controller].controlled += 1
        }
        connectionCount = connections
        templateCount = templateEntries
        live.pointee.flowIndexCount = 2 * connections
        live.pointee.templateIndexCount = currentTemplates
        live.pointee.freeCount = free
    }

    /// What makes a live entry impossible, or nil. A freed record the entry still describes is revived
    /// (only once the whole entry checks out, so a scrubbed one revives nothing).
    private func check(_ c: Connection, slot: UInt32) -> String? {
        switch c.proto {
        case .tcp: guard c.state.rawValue <= ConnectionState.synAck.rawValue else { return "bad TCP state \(c.state.rawValue)" }
        case .udp: guard c.state == .udp || (c.isTemplate && c.state == .none) else { return "bad UDP state \(c.state.rawValue)" }
        default: return "protocol \(c.proto.rawValue) is not TCP or UDP"
        }
        guard Int(c.wheelBucket) < Self.wheelSize else { return "wheel bucket \(c.wheelBucket) out of range" }
        guard let service = registry.service(c.serviceID) else { return "service id \(c.serviceID) out of range" }
        let reviveService = service.pointee.inUse == 0
        if reviveService {
            let r = service.pointee
            guard r.proto == c.proto.rawValue, r.isIPv6 == c.isIPv6,
                  c.isIPv6 ? r.address6 == sidecar[Int(slot)].virtualAddress : r.address == c.virtualAddress.rawValue,
                  r.port == c.virtualPort || r.port == 0 else {
                return "service id \(c.serviceID) has no record"
            }
        }
        guard let d = registry.destination(c.destinationID) else { return "real server id \(c.destinationID) out of range" }
        let reviveDestination = d.pointee.inUse == 0
        if reviveDestination {
            let r = d.pointee
            // A template's port is the service's (0 for a port-0 service's real server): not compared.
            guard r.proto == c.proto.rawValue, r.isIPv6 == c.isIPv6,
                  c.isIPv6 ? r.address6 == sidecar[Int(slot)].server : r.address == c.server.rawValue,
                  r.serviceID == c.serviceID,
                  c.isTemplate || r.port == c.serverPort || r.port == 0 else {
                return "real server id \(c.destinationID) has no record"
            }
        }
        if reviveService {
            service.pointee.inUse = 1
            service.pointee.inService = 0
            revivedRecords += 1
        }
        if reviveDestination {
            d.pointee.inUse = 1
            d.pointee.inService = 0
            d.pointee.activeConnections = 0
            d.pointee.inactiveConnections = 0
            d.pointee.persistentConnections = 0
            revivedRecords += 1
        }
        return nil
    }

    /// Undoes or finishes the one operation a `kill -9` interrupted, from whatever partial state it
    /// left (idempotent; the counts come from the recount pass that follows):
    /// - insert, remove: the slot leaves both indexes and the wheel and is dead (an insert rolled back:
    ///   that flow's first packet is retransmitted; a remove finished);
    /// - relink: unlinked (tolerating a half-done link or unlink) and, if live, linked into the bucket
    ///   of its `expires`; its index entries were never touched;
    /// - invalidate: the template's index entry goes (finished); the template lives on for the
    ///   connections it controls.
    func scrub(_ slot: UInt32, _ op: TableJournal.Op) {
        guard Int(slot) < slotsUsed else { return }
        let entry = slots[Int(slot)]
        let tracked = entry.proto == .tcp || entry.proto == .udp
        switch op {
        case .none:
            return
        case .invalidate:
            if tracked { templates.remove(entryHash(slot, 0, in: templates), slot) }
        case .relink:
            unlink(slot)
            if entry.live { link(slot) }
        case .insert, .remove:
            if tracked {
                index.remove(entryHash(slot, 0, in: index), slot << 1 | UInt32(FlowDirection.inbound.rawValue))
                index.remove(entryHash(slot, 1, in: index), slot << 1 | UInt32(FlowDirection.outbound.rawValue))
                templates.remove(entryHash(slot, 0, in: templates), slot)
            }
            unlink(slot)
            if Int(entry.wheelBucket) >= Self.wheelSize && entry.wheelPrev == Self.noSlot {
                // A damaged bucket number: the head naming the slot is found among the wheel's heads.
                let next = Int(entry.wheelNext) < slotsUsed ? entry.wheelNext : Self.noSlot
                for b in 0..<Self.wheelSize where wheel[b] == slot { wheel[b] = next }
            }
            slots[Int(slot)].live = false
        }
    }

    // MARK: Early drop

    /// conntrack's `early_drop`, IPVS's `drop_entry`: of up to `samples` slots drawn at random (by
    /// `random`, the caller's generator, so a replay stays deterministic), the live one `evictable`
    /// accepts that has been idle longest, or nil when none of them qualifies. Sampling keeps the cost
    /// bounded whatever the table holds: under a SYN flood nearly every draw is a half-open entry; in a
    /// table of established flows none qualifies and the new flow is refused.
    /// Each draw is a likely cache miss in a large table, so the search ends once `enough` candidates
    /// have been compared.
    public func evictionCandidate(samples: Int, enough: Int = 4, random: () -> UInt64,
                                  evictable: (UInt32, Connection) -> Bool) -> UInt32? {
        guard slotsUsed > 0 else { return nil }
        var best: UInt32?
        var bestSeen = Int64.max
        var found = 0
        for _ in 0..<samples where found < enough {
            let slot = Int(random() % UInt64(slotsUsed))
            let entry = slots[slot]
            guard entry.live, evictable(UInt32(slot), entry) else { continue }
            found += 1
            // Last activity: expiry minus the timeout it was armed with.
            let seen = entry.expires &- Int64(entry.timeout) &* Self.nanosPerTick
            if seen < bestSeen {
                bestSeen = seen
                best = UInt32(slot)
            }
        }
        return best
    }

    /// How full the table is, in 0...1 (templates included).
    public var fill: Double { Double(connectionCount + templateCount) / Double(capacity) }

    /// Live entries in slot order (deterministic), for dumps.
    public var liveEntries: [Connection] {
        var entries: [Connection] = []
        forEachLive { _, c in entries.append(c) }
        return entries
    }

    public func forEachLive(_ body: (UInt32, Connection) -> Void) {
        for i in 0..<slotsUsed where slots[i].live { body(UInt32(i), slots[i]) }
    }

    /// A slice of a walk in slot order, for walks done a piece at a time between packets (the sync
    /// refresh): live entries from slot `start` on, until `body` returns false (it took its last one)
    /// or `maximumSlots` slots have been looked at, so one slice costs a bounded time however sparse
    /// the slab is. Returns the slot the next slice starts at, or nil when the walk has passed the
    /// last slot in use. Entries inserted or removed between slices may be seen or missed, once.
    public func forEachLive(from start: UInt32, maximumSlots: Int,
                            _ body: (UInt32, Connection) -> Bool) -> UInt32? {
        var i = Int(start)
        let end = min(slotsUsed, i &+ max(maximumSlots, 1))
        while i < end {
            let slot = i
            i += 1
            if slots[slot].live && !body(UInt32(slot), slots[slot]) { break }
        }
        return i < slotsUsed ? UInt32(i) : nil
    }
}
