#if canImport(Glibc)
import Glibc
#endif
import MasqRules
import Testing
@testable import MasqCore

/// A state file path of its own per test (removed by `StateFile.deinit`).
final class StateFile {
    let path: String
    init() {
        path = "/tmp/masq-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).table"
    }
    deinit { unlink(path) }

    /// Overwrites `bytes` at `offset`.
    func write(_ bytes: [UInt8], at offset: Int) {
        let fd = open(path, O_RDWR)
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
    }

    func header() -> TableHeader {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return TableMemory.readHeader(fd: fd)!
    }

    func setHeader(_ change: (inout TableHeader) -> Void, rechecksum: Bool = true) {
        var h = header()
        change(&h)
        if rechecksum { h.checksum = h.computedChecksum }
        write(withUnsafeBytes(of: h) { Array($0) }, at: 0)
    }

    var size: Int {
        var st = stat()
        stat(path, &st)
        return Int(st.st_size)
    }
}

/// The persistent service and a UDP one on top of `tableRules`'s: templates survive too.
let adoptionRules = tableRules + """

    -A -t 198.18.0.1:22 -s rr -p 300
    -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
    -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
    """

/// Counts the admin tools show, by real server address:port.
func counts(_ engine: Engine) -> [String: [Int32]] {
    var result: [String: [Int32]] = [:]
    for case let d? in engine.destinations {
        result["\(d.address):\(d.port)"] = [d.activeConnections, d.inactiveConnections, d.persistentConnections]
    }
    return result
}

/// Restart, upgrade and crash: a table in a shared file adopted by the next engine.
@Suite struct AdoptionTests {
    let capacity = 4096

    /// An established TCP flow, a half-open one, a UDP flow and a persistent connection with its
    /// template, at t = 1 s.
    func fill(_ engine: Engine) {
        #expect(run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 1).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.tcp(40001, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.udp(5000, 53, payload: [1]), at: 1).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.tcp(40002, 22, flags: .syn), at: 1).0 == .rewritten(.inbound))
    }

    @Test func aCleanRestartAdoptsEverything() throws {
        let file = StateFile()
        let configuration = try RulesFile.parse(adoptionRules)
        var before: (records: [FlowRecord], counts: [String: [Int32]], stats: TrafficCounters, tick: Int64?)
        var exit: ClosedRange<Int64> = 0...0
        do {
            let memory = try TableMemory.shared(path: file.path, capacity: capacity)
            #expect(!memory.isAdopted && memory.replacedReason == nil && memory.generation == 1)
            let engine = Engine(configuration: configuration, memory: memory)
            #expect(engine.adoption == nil)
            fill(engine)
            engine.noteActivity()
            let exitStarted = TableMemory.clock(CLOCK_MONOTONIC)
            engine.markCleanShutdown()
            exit = exitStarted...TableMemory.clock(CLOCK_MONOTONIC)
            let service = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
            before = (engine.flowRecords(), counts(engine), engine.serviceStats[Int(service.id)], engine.table.lastTickValue)
        }
        let memory = try TableMemory.shared(path: file.path, capacity: capacity)
        #expect(memory.isAdopted && memory.wasCleanShutdown && memory.replacedReason == nil)
        #expect(memory.generation == 2 && memory.previousOwnerPID == getpid())
        // A clean exit's last activity is the exit itself (CLOCK_MONOTONIC), not the last batch.
        #expect(memory.previousActivity.map(exit.contains) == true)
        let engine = Engine(configuration: configuration, memory: memory)
        let report = try #require(engine.adoption)
        #expect(report.clean && report.generation == 2 && report.connections == 4 && report.templates == 1)
        #expect(report.onRemovedRealServers == 0 && report.repairedSlot == nil && report.recountNanoseconds == nil)
        engine.advanceClock(to: 1_000_000_000)  // the same clock as before the restart
        #expect(engine.flowRecords() == before.records)
        #expect(counts(engine) == before.counts)
        #expect(engine.table.lastTickValue == before.tick)
        let service = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
        #expect(engine.serviceStats[Int(service.id)] == before.stats)
        // The flows go on: the established one to its real server, the persistent client to its.
        let (v, out) = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2)
        #expect(v == .rewritten(.inbound) && Array(out[16..<20]) == [198, 19, 0, 201])
        let (v2, out2) = run(engine, c2v.tcp(40003, 22, flags: .syn), at: 2)
        #expect(v2 == .rewritten(.inbound) && Array(out2[16..<20]) == [198, 19, 0, 201])
        // Expiry goes on across the gap: everything idle for longer than its timeout leaves.
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0 && engine.table.templateCount == 0)
        #expect(counts(engine).values.allSatisfy { $0 == [0, 0, 0] })
    }

    /// The configuration of the next masq applies as a reload: a removed real server drains, an added
    /// one gets a fresh id, a removed service leaves `services`.
    @Test func adoptionAppliesTheNewConfiguration() throws {
        let file = StateFile()
        do {
            let engine = Engine(configuration: try RulesFile.parse(adoptionRules),
                                memory: try TableMemory.shared(path: file.path, capacity: capacity))
            fill(engine)
            engine.markCleanShutdown()
        }
        let changed = try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
            -a -t 198.18.0.1:80 -r 198.19.0.203:8080 -m -w 1
            -A -u 198.18.0.1:53 -s rr
            -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m
            """)
        let engine = Engine(configuration: changed, memory: try TableMemory.shared(path: file.path, capacity: capacity))
        let report = try #require(engine.adoption)
        // web1:8080 had the established flow; web1:22 the persistent connection (its template counts
        // as PersistConn, not as a connection).
        #expect(report.onRemovedRealServers == 2)
        let draining = Set(engine.drainingRealServers.map { "\($0.address):\($0.port)" })
        #expect(draining.contains("198.19.0.201:8080") && draining.contains("198.19.0.201:22"))
        #expect(engine.service(ServiceKey(proto: .tcp, address: vip, port: 22)) == nil)
        let web80 = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
        let ids = engine.destinations.compactMap { $0?.id }
        #expect(Set(ids).count == ids.count)  // the new real server took a free id
        #expect(web80.destinations.map(\.address4) == [web2, addr("198.19.0.203")])
        // The drained flow is still NATed to web1.
        let (v, out) = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2)
        #expect(v == .rewritten(.inbound) && Array(out[16..<20]) == [198, 19, 0, 201])
        // Once its flows end, the removed real servers and the removed service are released.
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.drainingRealServers.isEmpty)
        let registry = engine.table.registry
        #expect(!(0..<registry.capacity).contains { registry.services[$0].inUse != 0 && registry.services[$0].port == 22 })
    }

    /// Without `markCleanShutdown` (a crash) the recount pass runs and finds what a clean exit kept.
    @Test func anUncleanExitIsRecounted() throws {
        let file = StateFile()
        let configuration = try RulesFile.parse(adoptionRules)
        var before: (records: [FlowRecord], counts: [String: [Int32]])
        do {
            let engine = Engine(configuration: configuration, memory: try TableMemory.shared(path: file.path, capacity: capacity))
            fill(engine)
            before = (engine.flowRecords(), counts(engine))
            // Counts a kill -9 could leave wrong are recomputed, not trusted.
            engine.destinations.compactMap { $0 }.first!.activeConnections = 77
        }
        let memory = try TableMemory.shared(path: file.path, capacity: capacity)
        #expect(memory.isAdopted && !memory.wasCleanShutdown)
        let engine = Engine(configuration: configuration, memory: memory)
        engine.advanceClock(to: 1_000_000_000)
        let report = try #require(engine.adoption)
        #expect(!report.clean && report.recountNanoseconds != nil && report.repairedSlot == nil)
        #expect(engine.flowRecords() == before.records)
        #expect(counts(engine) == before.counts)
        #expect(engine.table.memory.live.pointee.freeCount == 0)
    }

    /// The state `body` leaves in an engine that then dies without marking the table clean; returns
    /// the next engine on the file.
    func crash(_ body: (Engine) throws -> Void) throws -> Engine {
        let file = StateFile()
        let configuration = try RulesFile.parse(adoptionRules)
        do {
            let engine = Engine(configuration: configuration, memory: try TableMemory.shared(path: file.path, capacity: capacity))
            fill(engine)
            try body(engine)
        }
        let next = Engine(configuration: configuration, memory: try TableMemory.shared(path: file.path, capacity: capacity))
        #expect(next.table.memory.isAdopted, "\(next.table.memory.replacedReason ?? "")")
        return next
    }

    /// After a repair: every live entry is found by its keys, nothing else is, the free stack holds
    /// exactly the dead slots, and once everything expires the table and the counts are empty.
    func expectConsistent(_ engine: Engine) {
        let table = engine.table
        var live = 0
        table.forEachLive { slot, c in
            live += 1
            if c.isTemplate {
                if table.isCurrentTemplate(slot) { #expect(table.template(for: c.templateKey) == slot) }
            } else {
                #expect(table.lookup(c.inboundKey)?.slot == slot && table.lookup(c.outboundKey)?.slot == slot)
            }
        }
        #expect(live == table.connectionCount + table.templateCount)
        #expect(table.memory.live.pointee.flowIndexCount == 2 * table.connectionCount)
        #expect(table.memory.live.pointee.freeCount + live == table.memory.live.pointee.slotsUsed)
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(table.connectionCount == 0 && table.templateCount == 0 && table.corruptLinks == 0)
        #expect(counts(engine).values.allSatisfy { $0 == [0, 0, 0] })
        #expect(table.memory.live.pointee.flowIndexCount == 0 && table.memory.live.pointee.templateIndexCount == 0)
    }

    /// Killed inside an insert, after the indexes took the new entry, half-way through linking it
    /// (its neighbour points back at it, the bucket's head does not yet): rolled back.
    @Test func aKillInsideAnInsertIsRolledBack() throws {
        var slot: UInt32 = 0
        let engine = try crash { engine in
            #expect(run(engine, c2v.tcp(40100, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
            let table = engine.table
            slot = table.lookup(FlowKey(source: client, destination: vip, sourcePort: 40100, destinationPort: 80, proto: .tcp))!.slot
            let c = table[slot]
            table.wheel[Int(c.wheelBucket)] = c.wheelNext  // the link's last store not made
            table.live.pointee.journalSlot = slot
            table.live.pointee.journalOp = TableJournal.Op.insert.rawValue
        }
        #expect(engine.adoption?.repairedSlot == slot)
        #expect(engine.table.lookup(FlowKey(source: client, destination: vip, sourcePort: 40100, destinationPort: 80, proto: .tcp)) == nil)
        #expect(engine.table.connectionCount == 4)
        // The client's retransmitted SYN makes the flow again.
        #expect(run(engine, c2v.tcp(40100, 80, flags: .syn), at: 2).0 == .rewritten(.inbound))
        expectConsistent(engine)
    }

    /// Killed inside a remove, after the unlink and the index removals, before the slot was marked
    /// dead: finished.
    @Test func aKillInsideARemoveIsFinished() throws {
        let key = FlowKey(source: client, destination: vip, sourcePort: 40001, destinationPort: 80, proto: .tcp)
        let engine = try crash { engine in
            let table = engine.table
            let slot = table.lookup(key)!.slot
            table.remove(slot)
            table[slot].live = true
            table.live.pointee.journalSlot = slot
            table.live.pointee.journalOp = TableJournal.Op.remove.rawValue
        }
        #expect(engine.table.lookup(key) == nil && engine.table.connectionCount == 3)
        expectConsistent(engine)
    }

    /// Killed inside a relink, after the first store of the unlink (the bucket's head moved past it):
    /// linked again where its expiry says.
    @Test func aKillInsideARelinkIsFinished() throws {
        let key = FlowKey(source: client, destination: vip, sourcePort: 40002, destinationPort: 22, proto: .tcp)
        let engine = try crash { engine in
            let table = engine.table
            let slot = table.lookup(key)!.slot
            let c = table[slot]
            #expect(c.wheelPrev == ConnectionTable.noSlot)  // the last one linked in its bucket
            table.wheel[Int(c.wheelBucket)] = c.wheelNext
            table.live.pointee.journalSlot = slot
            table.live.pointee.journalOp = TableJournal.Op.relink.rawValue
        }
        let slot = try #require(engine.table.lookup(key)?.slot)
        let c = engine.table[slot]
        #expect(engine.table.wheel[Int(c.wheelBucket)] == slot && Int(c.wheelBucket) == engine.table.bucket(for: c.expires))
        expectConsistent(engine)
    }

    /// Killed inside a template's invalidation, before its index entry went: finished; the template
    /// lives on for its connection.
    @Test func aKillInsideAnInvalidationIsFinished() throws {
        let templateKey = FlowKey(source: client, destination: vip, sourcePort: 0, destinationPort: 22, proto: .tcp)
        var slot: UInt32 = 0
        let engine = try crash { engine in
            slot = engine.table.template(for: templateKey)!
            engine.table.live.pointee.journalSlot = slot
            engine.table.live.pointee.journalOp = TableJournal.Op.invalidate.rawValue
        }
        #expect(engine.table.template(for: templateKey) == nil)
        #expect(engine.table[slot].live && engine.table[slot].controlled == 1)
        expectConsistent(engine)
    }

    /// Expiry walks a due bucket in place: entries removed, re-armed elsewhere and left (a wheel turn
    /// later) in one walk, and every one after them still seen.
    @Test func expiryWalksABucketInPlace() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules), capacity: 64)
        for port: UInt16 in 41000..<41006 { _ = run(engine, c2v.udp(port, 53), at: 1) }  // 300 s each
        // One refreshed to expire later (re-armed into another bucket at the walk), one a wheel turn
        // later (the same bucket: it stays put).
        _ = run(engine, c2v.udp(41002, 53), at: 100)
        let turn = try #require(engine.table.lookup(FlowKey(source: client, destination: vip, sourcePort: 41004,
                                                             destinationPort: 53, proto: .udp))).slot
        engine.table[turn].expires += Int64(ConnectionTable.wheelSize) * ConnectionTable.nanosPerTick
        engine.advanceClock(to: 302 * 1_000_000_000)
        let left = engine.table.liveEntries.map(\.clientPort).sorted()
        #expect(left == [41002, 41004] && engine.table.corruptLinks == 0)
        #expect(engine.table[turn].wheelBucket == UInt16(engine.table.bucket(for: engine.table[turn].expires)))
        engine.advanceClock(to: 1_200 * 1_000_000_000)  // 41002 expired at 400 s, 41004 expires at 1325 s
        #expect(engine.table.liveEntries.map(\.clientPort) == [41004])
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0 && engine.table.memory.live.pointee.freeCount == 6)
    }

    /// A registry smaller than the configuration: the real server without a record is left out (never
    /// scheduled) and counted; nothing traps.
    @Test func aFullRegistryLeavesARealServerOut() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: TableMemory.anonymous(capacity: 64, registryCapacity: 2))
        #expect(engine.counters.registryFull == 1)
        let web = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
        #expect(web.destinations.count == 2)
        #expect(engine.service(ServiceKey(proto: .udp, address: vip, port: 53))?.destinations.isEmpty == true)
        #expect(run(engine, c2v.udp(5000, 53), at: 1).0 == .drop(.noRealServer))
    }
}
