#if canImport(Glibc)
import Glibc
#endif
import MasqRules
import Testing
@testable import MasqCore

/// The inbound key of a client's TCP flow to the VIP (`c2v`'s tuple).
func inboundKey(_ clientPort: UInt16, _ port: UInt16 = 80) -> FlowKey {
    FlowKey(source: client, destination: vip, sourcePort: clientPort, destinationPort: port, proto: .tcp)
}

/// What an adopted table does with what a kill, another user or a full /dev/shm can leave behind, and
/// what an engine refuses once it has marked its table clean.
@Suite struct AdoptionRepairTests {
    let capacity = 2048

    /// `tableRules` without web1:8080, so web1's record drains.
    let withoutWeb1 = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m
        """

    // MARK: A flow's removal and its record's release

    /// Expiry takes an entry out of the table before it hands it over for release (which may free its
    /// real server's record): a kill between the two never leaves a live entry naming a freed record.
    @Test func expiryRemovesBeforeItReleases() throws {
        let table = ConnectionTable(capacity: capacity)
        let engine = Engine(configuration: try RulesFile.parse(tableRules), capacity: capacity)
        _ = run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1)
        let entry = engine.table[0]
        #expect(table.insert(entry) != nil)
        var released = 0
        table.expire(now: 1_000_000_000) { _ in }
        table.expire(now: 3_000 * 1_000_000_000) { c in
            released += 1
            #expect(table.lookup(c.inboundKey) == nil && table.connectionCount == 0)
        }
        #expect(released == 1)
    }

    /// The state an older order left at a kill: a draining real server's record freed (and its
    /// service's, had it gone too) while its last flow was still live. The recount revives the record,
    /// not in service: the flow goes on to its real server, which drains and is released after it.
    @Test func aFreedRecordALiveEntryNamesIsRevived() throws {
        let file = StateFile()
        var web1ID: UInt32 = 0
        do {
            let engine = Engine(configuration: try RulesFile.parse(tableRules),
                                memory: try TableMemory.shared(path: file.path, capacity: capacity))
            let (v, out) = run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1)
            #expect(v == .rewritten(.inbound) && Array(out[16..<20]) == [198, 19, 0, 201])
            engine.apply(try RulesFile.parse(withoutWeb1))
            let removed = try #require(engine.destinations.compactMap { $0 }.first { $0.address == web1 && $0.port == 8080 })
            #expect(!removed.inService)
            web1ID = removed.id
            engine.table.registry.destinations[Int(web1ID)].inUse = 0  // released, the flow not yet removed
        }
        let memory = try TableMemory.shared(path: file.path, capacity: capacity)
        let engine = Engine(configuration: try RulesFile.parse(withoutWeb1), memory: memory)
        let report = try #require(engine.adoption)
        #expect(memory.isAdopted && memory.replacedReason == nil)
        #expect(report.revivedRecords == 1 && report.scrubbedSlots == 0 && report.connections == 1)
        #expect(report.onRemovedRealServers == 1)
        #expect(engine.drainingRealServers.map { "\($0.address):\($0.port)" } == ["198.19.0.201:8080"])
        #expect(engine.destination(web1ID)?.inactiveConnections == 1)
        let (v, out) = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2)
        #expect(v == .rewritten(.inbound) && Array(out[16..<20]) == [198, 19, 0, 201])
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.drainingRealServers.isEmpty && engine.table.registry.destinations[Int(web1ID)].inUse == 0)
    }

    /// A live entry naming a freed record that now describes another real server is not revived: that
    /// one slot is scrubbed, the table kept.
    @Test func aFreedRecordOfAnotherServerScrubsTheSlot() throws {
        let file = StateFile()
        do {
            let engine = Engine(configuration: try RulesFile.parse(tableRules),
                                memory: try TableMemory.shared(path: file.path, capacity: capacity))
            _ = run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1)  // web1
            _ = run(engine, c2v.tcp(40001, 80, flags: .syn), at: 1)  // web2
            let id = Int(engine.table[0].destinationID)
            engine.table.registry.destinations[id].inUse = 0
            engine.table.registry.destinations[id].port = 9999
        }
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: capacity))
        let report = try #require(engine.adoption)
        #expect(report.scrubbedSlots == 1 && report.revivedRecords == 0 && report.connections == 1)
        #expect(report.firstScrubReason?.hasPrefix("slot 0: real server id") == true)
        #expect(engine.table.lookup(inboundKey(40000)) == nil && engine.table.lookup(inboundKey(40001)) != nil)
    }

    // MARK: lastTick from the file

    func adoptWithLastTick(_ tick: Int64) throws -> Engine {
        let file = StateFile()
        do {
            let engine = Engine(configuration: try RulesFile.parse(tableRules),
                                memory: try TableMemory.shared(path: file.path, capacity: capacity))
            _ = run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1)
            engine.markCleanShutdown()
        }
        let field = TableMemory.liveOffset + MemoryLayout<TableLive>.offset(of: \TableLive.lastTick)!
        file.write(withUnsafeBytes(of: tick) { Array($0) }, at: field)
        return Engine(configuration: try RulesFile.parse(tableRules),
                      memory: try TableMemory.shared(path: file.path, capacity: capacity))
    }

    /// A lastTick of `Int64.min` must not overflow the expiry's arithmetic.
    @Test func aLastTickFarInThePastDoesNotTrap() throws {
        let engine = try adoptWithLastTick(.min)
        #expect(engine.table.connectionCount == 1)
        engine.advanceClock(to: 2_000_000_000)
        #expect(engine.table.lastTickValue == 2 && engine.table.connectionCount == 1)
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0)
    }

    /// A lastTick in the future must not stop expiry until the clock gets there: one full sweep runs.
    @Test func aLastTickInTheFutureDoesNotStopExpiry() throws {
        let engine = try adoptWithLastTick(1 << 40)
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.table.lastTickValue == 3_000 && engine.table.connectionCount == 0)
    }

    // MARK: Who owns the file

    func expectRefused(_ path: String, _ message: String) {
        do {
            _ = try TableMemory.shared(path: path, capacity: capacity)
            Issue.record("\(path) adopted; expected: \(message)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }

    @Test func aFileOthersCanReadIsRefused() throws {
        let file = StateFile()
        _ = try TableMemory.shared(path: file.path, capacity: capacity)
        chmod(file.path, 0o644)
        expectRefused(file.path, "mode 644 lets other users read or write it (masq creates it 0600): remove it")
    }

    @Test func aFileWithAnotherLinkIsRefused() throws {
        let file = StateFile()
        _ = try TableMemory.shared(path: file.path, capacity: capacity)
        let other = file.path + ".link"
        #expect(link(file.path, other) == 0)
        defer { unlink(other) }
        expectRefused(file.path, "has 2 links")
    }

    /// Another user's file, even in a sticky directory where `fs.protected_regular` makes the kernel
    /// refuse the open itself: the same hint.
    @Test(.enabled(if: geteuid() == 0, "chown needs root"))
    func aFileOfAnotherUserIsRefused() throws {
        var template = Array("/tmp/masq-sticky-XXXXXX".utf8CString)
        let directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { rmdir(directory) }
        chmod(directory, 0o1777)
        let path = directory + "/table"
        defer { unlink(path) }
        _ = try TableMemory.shared(path: path, capacity: capacity)
        #expect(chown(path, 4242, 4242) == 0)
        expectRefused(path, "owned by uid 4242, not by masq (uid 0): remove it")
    }

    // MARK: Free space

    @Test func lowFreeSpaceIsNoted() {
        let mib = 1 << 20
        #expect(TableMemory.spaceNote(path: "/dev/shm/masq.table", free: 100 * mib, held: 10 * mib, fileSize: 300 * mib)
            == "/dev/shm has 100 MiB free; a full table needs 290 MiB more (300 MiB in all): masq dies of SIGBUS if it "
            + "fills; enlarge /dev/shm or lower --max-flows")
        #expect(TableMemory.spaceNote(path: "/dev/shm/masq.table", free: 290 * mib, held: 10 * mib, fileSize: 300 * mib) == nil)
        let file = StateFile()
        let memory = try? TableMemory.shared(path: file.path, capacity: capacity)
        #expect(memory != nil && memory?.spaceNote == nil)  // a small table on a roomy /tmp
    }

    // MARK: After markCleanShutdown

    @Test func nothingChangesAfterMarkCleanShutdown() throws {
        let file = StateFile()
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: capacity))
        _ = run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1)
        let service = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
        let update = SyncUpdate(engine.table[0])
        engine.markCleanShutdown()
        let exited = engine.table.memory.live.pointee.lastActivity
        let before = (engine.flowRecords(), counts(engine), engine.serviceStats[Int(service.id)], engine.counters.packets)

        engine.apply(try RulesFile.parse(withoutWeb1))
        #expect(engine.drainingRealServers.isEmpty && engine.services.count == 2)
        #expect(run(engine, c2v.tcp(40001, 80, flags: .syn), at: 2).0 == .drop(.tableFull))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2).0 == .drop(.tableFull))
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        engine.zeroCounters()
        var timeouts = engine.timeouts
        timeouts.seconds = timeouts.seconds.map { $0 + 1 }
        engine.setTimeouts(timeouts)
        #expect(engine.timeouts != timeouts)
        #expect(engine.applySynced(update) == .tableFull)
        engine.noteActivity()
        #expect(engine.flowRecords() == before.0 && counts(engine) == before.1)
        #expect(engine.serviceStats[Int(service.id)] == before.2 && engine.counters.packets == before.3)
        #expect(engine.table.memory.live.pointee.lastActivity == exited && engine.table.memory.live.pointee.cleanShutdown == 1)
    }

    // MARK: Two records of one address:port

    /// web1 removed while a flow drains it, then added again: two records for web1:8080. The next masq
    /// binds the configured web1 to the record that was in service, not to the draining one.
    @Test func adoptionPrefersTheInServiceRecord() throws {
        let file = StateFile()
        var drainingID: UInt32 = 0, configuredID: UInt32 = 0
        do {
            let engine = Engine(configuration: try RulesFile.parse(tableRules),
                                memory: try TableMemory.shared(path: file.path, capacity: capacity))
            _ = run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1)  // web1
            drainingID = engine.table[0].destinationID
            engine.apply(try RulesFile.parse(withoutWeb1))
            engine.apply(try RulesFile.parse(tableRules))
            let web80 = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
            configuredID = try #require(web80.destinations.first { $0.address == web1 }).id
            #expect(configuredID != drainingID && engine.destination(drainingID)?.inService == false)
            engine.markCleanShutdown()
        }
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: capacity))
        let web80 = try #require(engine.service(ServiceKey(proto: .tcp, address: vip, port: 80)))
        #expect(web80.destinations.first { $0.address == web1 }?.id == configuredID)
        #expect(engine.destination(drainingID)?.inService == false && engine.destination(configuredID)?.inService == true)
        #expect(engine.adoption?.onRemovedRealServers == 1)
    }
}
