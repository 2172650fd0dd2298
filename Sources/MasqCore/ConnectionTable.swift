import CMasqShims

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
    private var flags: UInt8
    /// The state last handed to the sync outbox (IPVS `cp->old_state`): a change into a closing TCP
    /// state is sent at the next client packet even when a reply made it. In the layout's last spare byte.
    var syncedState: ConnectionState

    private static let templateFlag: UInt8 = 1, activeFlag: UInt8 = 2, liveFlag: UInt8 = 4, syncFlag: UInt8 = 8

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
/// Slab and index are reserved once for `capacity` (see `PageMemory`): about 80 bytes of slab and
/// 32 of index per connection, resident as used.
///
/// Expiry is driven by the caller's clock (capture timestamps in replay, a monotonic clock in the daemon),
/// so replay is deterministic. The wheel re-arms lazily: a packet only moves `expires`; an entry found in
/// a due bucket with a later `expires` is moved to its new bucket then, so the packet path never relinks.
public final class ConnectionTable {
    public static let noSlot = UInt32.max
    static let wheelSize = 1024
    public static let nanosPerTick: Int64 = 1_000_000_000
    static let templateRecheck: Int64 = 60
    /// Slot numbers must fit the index's value (slot << 1 | direction).
    public static let maximumCapacity = 1 << 30

    private let slots: UnsafeMutablePointer<Connection>
    /// Slots ever used (the slab's high-water mark); those below it that are free are in `freeSlots`.
    private var slotsUsed = 0
    private var freeSlots: [UInt32] = []
    /// Slot << 1 | direction.
    private var index: FlowIndex
    private var templates: [FlowKey: UInt32] = [:]
    private var wheel: [UInt32] = Array(repeating: noSlot, count: wheelSize)
    private var lastTick: Int64?
    /// The most connections (templates included) the table holds; a new flow beyond it is refused.
    public let capacity: Int
    public private(set) var connectionCount = 0
    public private(set) var templateCount = 0

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Self.maximumCapacity, "table capacity out of range")
        self.capacity = capacity
        slots = PageMemory.reserve(byteCount: capacity * MemoryLayout<Connection>.stride)
            .bindMemory(to: Connection.self, capacity: capacity)
        index = FlowIndex(maximumCount: capacity * 2)
        freeSlots.reserveCapacity(capacity)  // malloc'd lazily too: resident only as slots are freed
    }

    deinit {
        index.deallocate()
        PageMemory.release(slots, byteCount: capacity * MemoryLayout<Connection>.stride)
    }

    public var isFull: Bool { connectionCount + templateCount >= capacity }

    /// Bytes reserved for slab and index (resident as they fill).
    public var reservedBytes: Int { capacity * MemoryLayout<Connection>.stride + index.byteCount }

    // MARK: Lookup

    /// The slot and direction of the connection a packet with this tuple belongs to.
    @inline(__always)
    public func lookup(_ key: FlowKey) -> (slot: UInt32, direction: FlowDirection)? {
        guard let value = indexValue(key) else { return nil }
        return (value >> 1, FlowDirection(rawValue: UInt8(value & 1))!)
    }

    @inline(__always) func indexValue(_ key: FlowKey) -> UInt32? {
        let slots = self.slots
        return index.find(index.hash(key)) { value in slots[Int(value >> 1)].key(value & 1) == key }
    }

    /// Prefetching ahead of a batch (see `Engine.prefetching`): first the key's index bucket...
    @inline(__always) func prefetchBucket(_ key: FlowKey) -> UInt32 {
        let hash = index.hash(key)
        index.prefetch(hash)
        return hash
    }

    /// ...then, once that bucket is in cache, the connection it most likely names (both its lines).
    @inline(__always) func prefetchConnection(hash: UInt32) {
        guard let value = index.candidate(hash) else { return }
        let connection = UnsafeRawPointer(slots + Int(value >> 1))
        masq_prefetch_for_write(connection)
        masq_prefetch_for_write(connection + MemoryLayout<Connection>.stride - 1)
    }

    public func template(for key: FlowKey) -> UInt32? { templates[key] }

    /// Whether the template in `slot` still answers lookups for its key (not invalidated, see
    /// `invalidateTemplate`): a replaced one only waits for its connections to end.
    public func isCurrentTemplate(_ slot: UInt32) -> Bool { templates[slots[Int(slot)].templateKey] == slot }

    /// IPVS `ip_vs_check_template` failing: the template no longer answers lookups (a fresh one can be
    /// made for the same client), but stays until the connections it controls are gone.
    public func invalidateTemplate(_ slot: UInt32) {
        let key = slots[Int(slot)].templateKey
        if templates[key] == slot { templates[key] = nil }
    }

    /// A packet moved an entry's expiry earlier than the wheel bucket it sits in (ESTABLISHED → CLOSE):
    /// move it, or it would outlive its new timeout by up to the old one.
    public func expiryShortened(_ slot: UInt32) {
        let entry = slots[Int(slot)]
        guard entry.live, Int(entry.wheelBucket) < Self.wheelSize,
              bucket(for: entry.expires) != Int(entry.wheelBucket) else { return }
        unlink(slot)
        link(slot)
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

    // MARK: Insert and remove

    /// Adds a connection (or template) and arms its expiry; nil when the table is full or a key is taken.
    public func insert(_ connection: Connection) -> UInt32? {
        guard !isFull else { return nil }
        if connection.isTemplate {
            guard templates[connection.templateKey] == nil else { return nil }
        } else {
            guard indexValue(connection.inboundKey) == nil, indexValue(connection.outboundKey) == nil,
                  connection.inboundKey != connection.outboundKey else { return nil }
        }
        var entry = connection
        entry.live = true
        let slot: UInt32
        if let reused = freeSlots.popLast() {
            slot = reused
            slots[Int(slot)] = entry
        } else {
            slot = UInt32(slotsUsed)
            (slots + slotsUsed).initialize(to: entry)
            slotsUsed += 1
        }
        if entry.isTemplate {
            templates[entry.templateKey] = slot
            templateCount += 1
        } else {
            index.insert(index.hash(entry.inboundKey), slot << 1 | UInt32(FlowDirection.inbound.rawValue))
            index.insert(index.hash(entry.outboundKey), slot << 1 | UInt32(FlowDirection.outbound.rawValue))
            connectionCount += 1
            if entry.controller != Self.noSlot { slots[Int(entry.controller)].controlled += 1 }
        }
        link(slot)
        return slot
    }

    /// Removes an entry now, whatever its expiry. A template that still controls connections stays.
    public func remove(_ slot: UInt32) {
        guard slots[Int(slot)].live else { return }
        unlink(slot)
        removeDetached(slot)
    }

    // MARK: Expiry

    static func tick(_ time: Int64) -> Int64 { time >= 0 ? time / nanosPerTick : (time - nanosPerTick + 1) / nanosPerTick }

    /// Bucket due strictly after the entry's expiry second, so everything in a due bucket has expired
    /// unless a packet has moved its `expires` since.
    private func bucket(for expires: Int64) -> Int {
        Int(truncatingIfNeeded: (Self.tick(expires) + 1) & Int64(Self.wheelSize - 1))
    }

    private func link(_ slot: UInt32) {
        let b = bucket(for: slots[Int(slot)].expires)
        let head = wheel[b]
        slots[Int(slot)].wheelBucket = UInt16(b)
        slots[Int(slot)].wheelPrev = Self.noSlot
        slots[Int(slot)].wheelNext = head
        if head != Self.noSlot { slots[Int(head)].wheelPrev = slot }
        wheel[b] = slot
    }

    private func unlink(_ slot: UInt32) {
        let entry = slots[Int(slot)]
        if entry.wheelPrev != Self.noSlot {
            slots[Int(entry.wheelPrev)].wheelNext = entry.wheelNext
        } else {
            wheel[Int(entry.wheelBucket)] = entry.wheelNext
        }
        if entry.wheelNext != Self.noSlot { slots[Int(entry.wheelNext)].wheelPrev = entry.wheelPrev }
    }

    /// Whether `now` has entered a second the wheel has not processed yet: the packet path checks this
    /// (cheap) before calling `expire`.
    public func needsExpiry(at now: Int64) -> Bool {
        guard let last = lastTickValue else { return true }
        return Self.tick(now) > last
    }

    var lastTickValue: Int64? { lastTick }

    /// Expires every entry whose time has come by `now`, handing each removed one to `removed` first.
    /// A template that still controls connections is re-armed for another timeout (IPVS does the same).
    public func expire(now: Int64, _ removed: (Connection) -> Void) {
        let nowTick = Self.tick(now)
        guard let last = lastTick else {
            lastTick = nowTick
            return
        }
        guard nowTick > last else { return }
        lastTick = nowTick
        let steps = min(nowTick - last, Int64(Self.wheelSize))
        for step in 1...steps {
            let b = Int(truncatingIfNeeded: (last + step) & Int64(Self.wheelSize - 1))
            var slot = wheel[b]
            wheel[b] = Self.noSlot
            while slot != Self.noSlot {
                let next = slots[Int(slot)].wheelNext
                expireOrRearm(slot, now: now, removed)
                slot = next
            }
        }
    }

    private func expireOrRearm(_ slot: UInt32, now: Int64, _ removed: (Connection) -> Void) {
        let entry = slots[Int(slot)]
        if entry.expires > now {
            link(slot)
        } else if entry.isTemplate && entry.controlled > 0 {
            // IPVS `ip_vs_conn_expire`: a template still in use comes back in 60 s, again and again.
            slots[Int(slot)].expires = now + Self.templateRecheck * Self.nanosPerTick
            link(slot)
        } else {
            // Already unlinked from the wheel (the bucket was detached); mark so remove skips unlink.
            slots[Int(slot)].wheelPrev = Self.noSlot
            slots[Int(slot)].wheelBucket = UInt16(Self.wheelSize)  // sentinel: not in any bucket
            removed(entry)
            removeDetached(slot)
        }
    }

    private func removeDetached(_ slot: UInt32) {
        let entry = slots[Int(slot)]
        if entry.isTemplate {
            if templates[entry.templateKey] == slot { templates[entry.templateKey] = nil }
            templateCount -= 1
        } else {
            index.remove(index.hash(entry.inboundKey), slot << 1 | UInt32(FlowDirection.inbound.rawValue))
            index.remove(index.hash(entry.outboundKey), slot << 1 | UInt32(FlowDirection.outbound.rawValue))
            connectionCount -= 1
            if entry.controller != Self.noSlot { slots[Int(entry.controller)].controlled -= 1 }
        }
        slots[Int(slot)].live = false
        freeSlots.append(slot)
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
