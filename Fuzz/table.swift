// libFuzzer target: a small connection table in a state file of its own, driven through packets,
// clock steps, reloads and restarts decoded from the input. A restart drops the engine, its table and
// its memory and opens the file again, as the next masq does: clean (`markCleanShutdown` first),
// crashed (no mark: repair and recount; sometimes inside a table operation, its journal left set),
// or damaged (fuzz-chosen bytes overwritten in the header, the live block, the wheel, the registry,
// the free stack, the indexes or the slab, or the file cut short, before the reopen). The table holds
// 64 connections and its registry 256 records (`registryCapacity`), so an input runs in about a ms.
//
// Oracles, while no damage was done since the last fresh table: after every restart and every few
// packets, every live connection is found by both its keys and nothing is found wrong, the table's
// counts, index counts, free stack and wheel agree with a walk, each real server's
// ActiveConn/InActConn/PersistConn equal a recount, an adoption reports the flows held before the
// restart, and a packet of each flow held before it is rewritten to the same real server after it.
// After damage: no crash, no trap, no hang (libFuzzer's -timeout), and the table stays usable (once
// everything has had time to expire, a new flow is created and expiry runs).
//
// Built by scripts/fuzz against MasqCore (compiled with -enable-testing) and the unit tests'
// PacketBuilder (checksums from scratch), with Fuzz/lab.swift (the input reader, the lab's addresses,
// the packet helpers it shares with `engine`).
#if canImport(Glibc)
import Glibc
#endif
@testable import MasqCore

// MARK: The fixed lab set-up (198.18.0.0/15 only; vip1, vip2 and the clients are lab.swift's)

/// The usability probe's client: no packet of the input comes from it.
let probeClient = IPv4Address(198, 18, 2, 50)

/// The configurations a restart (or a reload) picks from; the first is the one a run starts with.
/// Against the first: a real server removed from two services (its flows drain), real servers added,
/// two services removed (their flows live out their timeouts). Every one keeps TCP 198.18.0.1:80 with
/// a real server of weight > 0, which the usability probe needs.
let base = labRules(sshPersistence: 60)
let variants = parseVariants([
    base,
    base.split(separator: "\n").filter { !$0.contains("198.19.0.202:8080") && !$0.contains("198.19.0.201:22") }
        .joined(separator: "\n"),
    base + """

        -a -t 198.18.0.1:80 -r 198.19.0.203:8080 -m -w 3
        -a -u 198.18.0.1:53 -r 198.19.0.203:5353 -m
        """,
    base.split(separator: "\n").filter { !$0.contains(":53 ") && !$0.contains(":22 ") && !$0.hasSuffix(":53") && !$0.hasSuffix(":22") }
        .joined(separator: "\n"),
])

let tableCapacity = 64
/// Service and real-server records: a handful are used, and adoption and the recount walk them all,
/// so a small registry keeps inputs fast (its layout is otherwise the daemon's; the header records it).
let registryCapacity = 256
/// One file per process (libFuzzer's -jobs/-fork run several), replaced at every input.
let statePath = "/dev/shm/masq-fuzz-table-\(getpid()).table"
let nanos: Int64 = 1_000_000_000

/// `precondition` with its message kept: -O builds drop precondition messages, fatalError keeps its.
@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("table oracle: " + message()) }
}

// MARK: Packets

/// The TCP flags a byte picks: mostly those of a connection's life, sometimes any.
func tcpFlags(_ b: UInt8) -> TCPFlags {
    let common: [TCPFlags] = [.syn, .ack, [.syn, .ack], [.fin, .ack], .rst, [.rst, .ack], [.psh, .ack]]
    return b < 224 ? common[Int(b) % common.count] : TCPFlags(rawValue: b & 0x3f)
}

/// One packet from the input: a new TCP or UDP flow to a service, or a packet on a live connection
/// either way (client → VIP, real server → client), so that handshakes, data, FIN/RST and replies run.
func buildPacket(_ input: inout FuzzInput, _ engine: Engine) -> [UInt8] {
    let kind = input.byte() % 4
    let conn = pickConnection(engine, input.byte())
    let payload = [UInt8](repeating: 0x41, count: Int(input.byte() % 24))
    switch kind {
    case 0:  // a new TCP connection (or anything TCP) to a service
        let (client, sport) = newFlowSource(&input, from: clients)
        let which = input.byte()
        let (vip, dport): (IPv4Address, UInt16) = switch which % 3 {
        case 0: (vip1, 80)
        case 1: (vip1, 22)
        default: (vip2, UInt16(which >> 2) | 1000)
        }
        return PacketBuilder(source: client, destination: vip).tcp(sport, dport, flags: tcpFlags(input.byte()), payload: payload)
    case 1:  // a new UDP flow
        let (client, sport) = newFlowSource(&input, from: clients)
        return PacketBuilder(source: client, destination: vip1).udp(sport, 53, payload: payload)
    default:  // on a live connection, from the client or from the real server
        let flags = tcpFlags(input.byte())
        guard let c = conn else {
            return PacketBuilder(source: clients[0], destination: vip1).udp(40000, 53, payload: payload)
        }
        let b = kind == 2 ? PacketBuilder(source: c.client, destination: c.virtualAddress)
                          : PacketBuilder(source: c.server, destination: c.client)
        let (sp, dp) = kind == 2 ? (c.clientPort, c.virtualPort) : (c.serverPort, c.clientPort)
        return c.proto == .tcp ? b.tcp(sp, dp, flags: flags, payload: payload) : b.udp(sp, dp, payload: payload)
    }
}

/// A rewrite follows the connection the packet's tuple names: inbound to its real server, outbound
/// from its VIP.
func checkRewrite(_ engine: Engine, _ before: [UInt8], _ after: [UInt8], _ verdict: Verdict) {
    guard case .rewritten(let direction) = verdict else { return }
    let key = FlowKey(source: IPv4Address(rawValue: be32(before, 12)), destination: IPv4Address(rawValue: be32(before, 16)),
                      sourcePort: be16(before, 20), destinationPort: be16(before, 22), proto: IPProtocol(rawValue: before[9]))
    guard let (slot, found) = engine.table.lookup(key), found == direction else {
        fatalError("table oracle: rewritten \(direction) but no connection answers for the packet's tuple")
    }
    let c = engine.table[slot]
    let (address, port) = direction == .inbound ? (be32(after, 16), be16(after, 22)) : (be32(after, 12), be16(after, 20))
    let (wantAddress, wantPort) = direction == .inbound ? (c.server.rawValue, c.serverPort)
                                                        : (c.virtualAddress.rawValue, c.virtualPort)
    require(address == wantAddress && port == wantPort, "rewritten \(direction) elsewhere than its connection says")
}

// MARK: Oracles

/// The table against a walk of it: both keys of every live connection find it, the index holds
/// nothing else, every template the template index answers for is a live one, the counts, the free
/// stack and the wheel agree with the slab, the real servers' counts with the connections naming them.
func checkTable(_ engine: Engine, now: Int64) {
    let table = engine.table
    let used = table.live.pointee.slotsUsed
    var connections = 0, templates = 0, currentTemplates = 0
    let n = engine.destinations.count
    var active = [Int32](repeating: 0, count: n), inactive = active, persistent = active
    var controlled: [UInt32: UInt32] = [:]
    var liveSlots = Set<UInt32>()
    table.forEachLive { slot, c in
        liveSlots.insert(slot)
        let id = Int(c.destinationID)
        require(id < n, "slot \(slot) names real server \(id) of \(n)")
        guard let d = engine.destinations[id] else { fatalError("table oracle: slot \(slot) names a released real server") }
        require(d.serviceID == c.serviceID, "slot \(slot)'s service is not its real server's")
        require(ConnectionTable.tick(c.expires) >= ConnectionTable.tick(now), "slot \(slot) is live past its expiry second")
        if c.isTemplate {
            templates += 1
            persistent[id] += 1
            if let t = table.template(for: c.templateKey) {
                require(table[t].isTemplate && table[t].templateKey == c.templateKey, "a template key finds another entry")
                if t == slot { currentTemplates += 1 }
            }
        } else {
            connections += 1
            if c.countedActive { active[id] += 1 } else { inactive[id] += 1 }
            require(c.countedActive == (c.state == .established), "a \(c.state) connection counted \(c.countedActive ? "active" : "inactive")")
            let inbound = table.lookup(c.inboundKey), outbound = table.lookup(c.outboundKey)
            require(inbound?.slot == slot && inbound?.direction == .inbound, "slot \(slot)'s inbound key finds \(String(describing: inbound))")
            require(outbound?.slot == slot && outbound?.direction == .outbound, "slot \(slot)'s outbound key finds \(String(describing: outbound))")
            if c.controller != ConnectionTable.noSlot { controlled[c.controller, default: 0] += 1 }
        }
    }
    require(table.connectionCount == connections, "connectionCount \(table.connectionCount), \(connections) live connections")
    require(table.templateCount == templates, "templateCount \(table.templateCount), \(templates) live templates")
    require(table.index.count == 2 * connections, "flow index holds \(table.index.count) entries for \(connections) connections")
    require(table.templates.count == currentTemplates, "template index holds \(table.templates.count) entries for \(currentTemplates) current templates")
    for slot in liveSlots where table[slot].isTemplate {
        require(table[slot].controlled == controlled[slot] ?? 0,
                "template in slot \(slot) controls \(table[slot].controlled), \(controlled[slot] ?? 0) connections name it")
    }
    for (slot, _) in controlled { require(liveSlots.contains(slot) && table[slot].isTemplate, "a controller is no live template") }
    // The free stack: every dead slot below slotsUsed, once.
    let free = table.live.pointee.freeCount
    require(free == used - liveSlots.count, "free stack holds \(free) slots, \(used - liveSlots.count) are dead")
    var freeSeen = Set<UInt32>()
    for i in 0..<free {
        let s = table.freeSlots[i]
        require(Int(s) < used && !liveSlots.contains(s) && freeSeen.insert(s).inserted, "free stack entry \(i) (slot \(s)) is wrong")
    }
    // The wheel: every live entry in the bucket it names, once, its links both ways.
    var linked = Set<UInt32>()
    for b in 0..<ConnectionTable.wheelSize {
        var prev = ConnectionTable.noSlot
        var slot = table.wheel[b]
        while slot != ConnectionTable.noSlot {
            require(liveSlots.contains(slot) && linked.insert(slot).inserted, "wheel bucket \(b) links slot \(slot) wrongly")
            let c = table[slot]
            require(Int(c.wheelBucket) == b && c.wheelPrev == prev, "slot \(slot) in wheel bucket \(b) has bucket \(c.wheelBucket), prev \(c.wheelPrev)")
            prev = slot
            slot = c.wheelNext
        }
    }
    require(linked == liveSlots, "\(liveSlots.count - linked.count) live entries are in no wheel bucket")
    for (i, d) in engine.destinations.enumerated() {
        guard let d else { continue }
        require(d.activeConnections == active[i] && d.inactiveConnections == inactive[i] && d.persistentConnections == persistent[i],
                "\(d.address):\(d.port) counts \(d.activeConnections)/\(d.inactiveConnections)/\(d.persistentConnections), the table has \(active[i])/\(inactive[i])/\(persistent[i])")
    }
    require(table.corruptLinks == 0, "corrupt wheel links in an undamaged table")
}

/// A connection held before a restart: its key, and where its packets went.
struct Held {
    var slot: UInt32
    var key: FlowKey
    var proto: IPProtocol
    var server: IPv4Address
    var serverPort: UInt16
}

// MARK: Restarts

/// Overwrites fuzz-chosen bytes of the (closed) state file, or cuts it short.
func damage(_ input: inout FuzzInput, _ layout: TableLayout) {
    let fd = open(statePath, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { fatalError("fuzz set-up: cannot open \(statePath) (errno \(errno))") }
    defer { close(fd) }
    let regions: [(offset: Int, length: Int)] = [
        (0, MemoryLayout<TableHeader>.size),
        (TableMemory.liveOffset, MemoryLayout<TableLive>.size),
        (layout.wheelOffset, ConnectionTable.wheelSize * 4),
        (layout.servicesOffset, 8 * MemoryLayout<ServiceRecord>.stride),
        (layout.destinationsOffset, 8 * MemoryLayout<DestinationRecord>.stride),
        (layout.freeOffset, layout.capacity * 4),
        (layout.templateIndexOffset, layout.templateIndexEntries * FlowIndex.entryStride),
        (layout.flowIndexOffset, layout.flowIndexEntries * FlowIndex.entryStride),
        (layout.slabOffset, layout.capacity * MemoryLayout<Connection>.stride),
    ]
    var header = false
    for _ in 0..<(Int(input.byte() % 6) + 1) {
        let how = input.byte()
        if how == 0xff {  // cut short
            _ = ftruncate(fd, off_t(Int(input.u16()) * 4096 % layout.totalSize))
            continue
        }
        let region = regions[Int(how) % regions.count]
        header = header || region.offset == 0
        let width = [1, 2, 4, 8][Int(how >> 4) % 4]
        let offset = region.offset + Int(input.u16()) % (region.length - width + 1)
        let value: [UInt8] = switch how >> 6 {
        case 0: (0..<width).map { _ in input.byte() }
        case 1: [UInt8](repeating: 0, count: width)
        case 2: [UInt8](repeating: 0xff, count: width)
        default: [input.byte() % 80] + [UInt8](repeating: 0, count: width - 1)  // a small number, little-endian
        }
        _ = value.withUnsafeBytes { pwrite(fd, $0.baseAddress, width, off_t(offset)) }
    }
    if header && input.byte() & 1 != 0, var h = TableMemory.readHeader(fd: fd) {
        h.checksum = h.computedChecksum  // damage the header checks cannot see
        _ = withUnsafeBytes(of: h) { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
}

/// The run's state: one engine on the state file, replaced at each restart.
struct Run {
    var engine: Engine?
    var now: Int64 = 0
    /// Damage was done since the last fresh table: only "no trap" holds.
    var damaged = false
    var generation: UInt64 = 1

    var e: Engine { engine! }

    mutating func open(_ configuration: Configuration, capacity: Int = tableCapacity, fresh: Bool = false) -> TableMemory {
        let memory: TableMemory
        do {
            memory = try TableMemory.shared(path: statePath, capacity: capacity, registryCapacity: registryCapacity, fresh: fresh)
        } catch {
            fatalError("table oracle: the state file cannot be opened again: \(error)")  // e.g. a leaked lock
        }
        engine = Engine(configuration: configuration, memory: memory)
        if !memory.isAdopted { damaged = false }
        e.advanceClock(to: now)
        return memory
    }

    /// A `kill -9` inside a table operation, at a point where the slab is whole: the journal names the
    /// operation and its slot, as right after `begin` or right before `end`. The next masq scrubs it:
    /// an insert is rolled back and a remove finished (that entry is gone), a relink or an
    /// invalidation finished (nothing lost). An operation no masq makes (a template that still
    /// controls connections inserted or removed, a connection invalidated) becomes a relink.
    func interrupt(_ input: inout FuzzInput, _ held: inout [Held], _ templates: inout Int) -> UInt32? {
        let table = e.table
        let used = table.live.pointee.slotsUsed
        let b = input.byte()
        guard used > 0 else { return nil }
        let slot = UInt32(Int(input.byte()) % used)
        let c = table[slot]
        var op = TableJournal.Op(rawValue: UInt32(b % 4) + 1)!
        if op == .invalidate && !(c.live && c.isTemplate) { op = .relink }
        if (op == .insert || op == .remove) && c.live && c.isTemplate && c.controlled > 0 { op = .relink }
        if (op == .insert || op == .remove) && c.live {
            if c.isTemplate { templates -= 1 } else { held.removeAll { $0.slot == slot } }
        }
        table.live.pointee.journalSlot = slot
        table.live.pointee.journalOp = op.rawValue
        return slot
    }

    /// Drops the engine, its table and its memory (the flock goes), optionally damages the file, and
    /// opens it again as the next masq does; `killing`: a crash inside an operation (`interrupt`).
    mutating func restart(_ input: inout FuzzInput, clean: Bool, damaging: Bool, killing: Bool = false) {
        let setup = input.byte()
        let configuration = variants[Int(setup) % variants.count]
        let capacity = setup & 0x80 != 0 ? 2 * tableCapacity : tableCapacity
        let gap = setup & 0x40 != 0 ? Int64(input.byte()) * 100_000_000 : 0
        var held: [Held] = []
        e.table.forEachLive { slot, c in
            if !c.isTemplate { held.append(Held(slot: slot, key: c.inboundKey, proto: c.proto, server: c.server, serverPort: c.serverPort)) }
        }
        var templates = e.table.templateCount
        let layout = e.table.memory.layout
        let killed = killing ? interrupt(&input, &held, &templates) : nil
        if clean { e.markCleanShutdown() }
        engine = nil
        if damaging {
            damage(&input, layout)
            damaged = true
        }
        let wasDamaged = damaged
        let memory = open(configuration, capacity: capacity)
        if wasDamaged {
            generation = memory.generation
            return
        }
        require(memory.isAdopted && memory.replacedReason == nil, "an undamaged file was replaced: \(memory.replacedReason ?? "?")")
        require(memory.wasCleanShutdown == clean, "clean \(memory.wasCleanShutdown), the exit was \(clean ? "clean" : "a crash")")
        require(memory.generation == generation + 1, "generation \(memory.generation) after \(generation)")
        generation = memory.generation
        require(memory.capacity == layout.capacity && (memory.capacityNote != nil) == (capacity != layout.capacity),
                "capacity \(memory.capacity), note \(memory.capacityNote ?? "nil") (asked \(capacity), the file's \(layout.capacity))")
        guard let report = e.adoption else { fatalError("table oracle: an adopted table has no adoption report") }
        require(report.connections == held.count && report.templates == templates,
                "adopted \(report.connections) connections and \(report.templates) templates, \(held.count) and \(templates) were held")
        require(report.clean == clean && (clean ? report.recountNanoseconds == nil : report.recountNanoseconds != nil)
                && report.repairedSlot == killed, "adoption report \(report)")
        checkTable(e, now: now)
        for h in held {
            guard let (slot, direction) = e.table.lookup(h.key) else { fatalError("table oracle: a held flow is gone after the restart") }
            require(direction == .inbound && e.table[slot].server == h.server && e.table[slot].serverPort == h.serverPort,
                    "a held flow's key finds another connection after the restart")
        }
        // The gap counts as elapsed time; then a packet of every flow still live goes where it went.
        now += gap
        e.advanceClock(to: now)
        checkTable(e, now: now)
        for h in held {
            guard let (slot, _) = e.table.lookup(h.key) else { continue }  // expired in the gap
            guard e.table[slot].expires > now else { continue }  // due this second: its next packet ends it
            let b = PacketBuilder(source: IPv4Address(rawValue: h.key.source), destination: IPv4Address(rawValue: h.key.destination))
            let sport = UInt16(h.key.ports >> 16), dport = UInt16(h.key.ports & 0xffff)
            let packet = h.proto == .tcp ? b.tcp(sport, dport, flags: .ack) : b.udp(sport, dport, payload: [1])
            let (verdict, after) = process(e, packet, at: now)
            require(verdict == .rewritten(.inbound), "a held flow's packet after the restart: \(verdict)")
            require(be32(after, 16) == h.server.rawValue && be16(after, 22) == h.serverPort,
                    "a held flow's packet went to another real server after the restart")
        }
        checkTable(e, now: now)
    }

    /// After damage: once everything has had the time to expire, expiry runs and a new flow is made.
    mutating func checkUsable() {
        for _ in 0..<3 {
            now += 3_000 * nanos
            e.advanceClock(to: now)
        }
        let packet = PacketBuilder(source: probeClient, destination: vip1).tcp(50000, 80, flags: .syn)
        let (verdict, _) = process(e, packet, at: now)
        require(verdict == .rewritten(.inbound), "after damage, a new flow once all had expired: \(verdict) "
                + "(\(e.table.connectionCount) connections, \(e.table.templateCount) templates left)")
    }
}

private let removeStateFile: @convention(c) () -> Void = { unlink(statePath) }

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    atexit(removeStateFile)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data: data, size: size)
    var run = Run()
    _ = run.open(variants[0], fresh: true)
    var steps = 0, sinceCheck = 0
    while !input.exhausted && steps < 200 {
        steps += 1
        let op = input.byte()
        switch op & 0x0f {
        case 0...8:  // one packet, after a clock step of up to 25.5 s
            run.now += Int64(input.byte()) * 100_000_000
            let packet = buildPacket(&input, run.e)
            let (verdict, after) = process(run.e, packet, at: run.now)
            if !run.damaged { checkRewrite(run.e, packet, after, verdict) }
            sinceCheck += 1
        case 9:  // the clock alone, as the daemon's timer moves it; sometimes past a whole wheel turn
            let b = input.byte()
            run.now += (b & 0x80 != 0 ? Int64(b & 0x7f) * 64 : Int64(b)) * nanos + Int64(input.byte()) * 3_900_000
            run.e.advanceClock(to: run.now)
            sinceCheck = 4
        case 10:  // a reload
            run.e.apply(variants[Int(input.byte()) % variants.count])
            sinceCheck = 4
        case 11, 12:  // a restart: clean (SIGTERM, SIGUSR2) or after a crash (kill -9)
            run.restart(&input, clean: op & 0x0f == 11, damaging: false)
        case 13:  // a restart on a damaged file, after a clean exit or a crash
            run.restart(&input, clean: op & 0x10 != 0, damaging: true)
        case 14:  // a restart after a kill inside a table operation
            run.restart(&input, clean: false, damaging: false, killing: true)
        default:  // a batch of packets at one time
            for _ in 0..<(Int(op >> 4) % 4 + 2) {
                let packet = buildPacket(&input, run.e)
                let (verdict, after) = process(run.e, packet, at: run.now)
                if !run.damaged { checkRewrite(run.e, packet, after, verdict) }
            }
            sinceCheck = 4
        }
        if !run.damaged && sinceCheck >= 4 {
            checkTable(run.e, now: run.now)
            sinceCheck = 0
        }
    }
    if run.damaged { run.checkUsable() } else { checkTable(run.e, now: run.now) }
    return 0
}
