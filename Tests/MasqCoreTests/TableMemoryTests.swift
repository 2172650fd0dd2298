#if canImport(Glibc)
import Glibc
#endif
import MasqRules
import Testing
@testable import MasqCore

/// The state file's checks: anything that does not check out is replaced by an empty table with its
/// reason, never a crash; a file in use is refused.
@Suite struct TableMemoryTests {
    let capacity = 2048

    /// A file holding one established flow, marked clean.
    func written() throws -> StateFile {
        let file = StateFile()
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: capacity))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 1).0 == .rewritten(.inbound))
        engine.markCleanShutdown()
        return file
    }

    /// Opens the file again and checks it was replaced for `reason` by an empty, working table.
    func expectReplaced(_ file: StateFile, _ reason: String, capacity: Int? = nil) throws {
        let memory = try TableMemory.shared(path: file.path, capacity: capacity ?? self.capacity)
        // The header and live block are checked on opening, the slab (after a crash) by the table.
        let engine = Engine(configuration: try RulesFile.parse(tableRules), memory: memory)
        #expect(!memory.isAdopted)
        #expect(memory.replacedReason?.contains(reason) == true, "\(memory.replacedReason ?? "nil")")
        #expect(memory.generation == 1 && memory.capacity == (capacity ?? self.capacity))
        #expect(engine.adoption == nil && engine.table.connectionCount == 0)
        #expect(run(engine, c2v.tcp(40000, 80, flags: .syn), at: 2).0 == .rewritten(.inbound))
        #expect(file.size == memory.fileSize)
    }

    @Test func anAnonymousTableHasTheSameLayout() {
        let memory = TableMemory.anonymous(capacity: capacity)
        #expect(memory.path == nil && !memory.isAdopted && memory.fileSize == TableLayout(capacity: capacity, registryCapacity: TableMemory.registryCapacity).totalSize)
        #expect(memory.header.pointee.checksum == memory.header.pointee.computedChecksum)
    }

    @Test func aNewFileIsCreatedPrivate() throws {
        let file = StateFile()
        let memory = try TableMemory.shared(path: file.path, capacity: capacity)
        var st = stat()
        stat(file.path, &st)
        #expect(st.st_mode & 0o777 == 0o600 && Int(st.st_size) == memory.fileSize)
        #expect(memory.replacedReason == nil && !memory.isAdopted && !memory.wasCleanShutdown)
    }

    @Test func aSecondMasqOnTheSameFileIsRefused() throws {
        let file = StateFile()
        let first = try TableMemory.shared(path: file.path, capacity: capacity)
        #expect(throws: TableMemoryError.self) { try TableMemory.shared(path: file.path, capacity: capacity) }
        do {
            _ = try TableMemory.shared(path: file.path, capacity: capacity)
        } catch {
            #expect(error.description.contains("in use by another masq (pid \(getpid()))"))
        }
        withExtendedLifetime(first) {}
    }

    @Test func anUnusableDirectoryThrows() {
        #expect(throws: TableMemoryError.self) {
            try TableMemory.shared(path: "/proc/masq-no-such-dir/x.table", capacity: 16)
        }
    }

    @Test func freshStateReplaces() throws {
        let file = try written()
        let memory = try TableMemory.shared(path: file.path, capacity: capacity, fresh: true)
        #expect(!memory.isAdopted && memory.replacedReason == "--fresh-state")
    }

    @Test func badMagic() throws {
        let file = try written()
        file.write(Array("NOTMASQ\0".utf8), at: 0)
        try expectReplaced(file, "bad magic")
    }

    @Test func anotherLayoutVersion() throws {
        let file = try written()
        file.setHeader { $0.layoutVersion = 99 }
        try expectReplaced(file, "layout version 99, this masq reads \(TableMemory.layoutVersion)")
    }

    @Test func aDamagedHeader() throws {
        let file = try written()
        file.setHeader({ $0.generation = 1234 }, rechecksum: false)
        try expectReplaced(file, "header checksum mismatch")
    }

    @Test func anotherBuildsConnectionLayout() throws {
        let file = try written()
        file.setHeader { $0.fingerprint ^= 1 }
        try expectReplaced(file, "layout fingerprint differs")
    }

    @Test func anotherBoot() throws {
        let file = try written()
        file.setHeader { $0.bootID0 ^= 1 }
        try expectReplaced(file, "written before the last boot (boot id differs)")
    }

    @Test func truncated() throws {
        let file = try written()
        let full = file.size
        #expect(truncate(file.path, 4 << 20) == 0)
        try expectReplaced(file, "truncated: \(4 << 20) of \(full) bytes")
        #expect(truncate(file.path, 100) == 0)
        try expectReplaced(file, "truncated: 100 bytes, smaller than the header")
    }

    @Test func randomBytes() throws {
        let file = try written()
        var rng = SystemRandomNumberGenerator()
        file.write((0..<(1 << 16)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: 0)
        try expectReplaced(file, "bad magic")
    }

    @Test func aLiveBlockOutOfRange() throws {
        let file = try written()
        file.write(withUnsafeBytes(of: capacity + 1) { Array($0) }, at: TableMemory.liveOffset)
        try expectReplaced(file, "slotsUsed \(capacity + 1) beyond capacity")
    }

    @Test func aJournalSlotOutOfRange() throws {
        let file = try written()
        let journal = TableMemory.liveOffset + MemoryLayout<TableLive>.offset(of: \TableLive.journalOp)!
        file.write(withUnsafeBytes(of: (UInt32(1), UInt32(5000))) { Array($0) }, at: journal)
        try expectReplaced(file, "journal slot 5000 beyond slotsUsed 1")
    }

    /// After an unclean exit the recount pass checks every live entry: one no masq could write
    /// replaces the table.
    /// One impossible live entry after a crash costs that flow alone: it is scrubbed (counted, its
    /// reason in the report), the rest of the table is kept and consistent.
    @Test func aLiveEntryWithABadStateAfterACrash() throws {
        let file = StateFile()
        do {
            let engine = Engine(configuration: try RulesFile.parse(tableRules),
                                memory: try TableMemory.shared(path: file.path, capacity: capacity))
            #expect(run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
            #expect(run(engine, c2v.tcp(40001, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
            engine.table[0].state = ConnectionState(rawValue: 200)
        }
        let memory = try TableMemory.shared(path: file.path, capacity: capacity)
        let engine = Engine(configuration: try RulesFile.parse(tableRules), memory: memory)
        let report = try #require(engine.adoption)
        #expect(memory.isAdopted && memory.replacedReason == nil)
        #expect(report.scrubbedSlots == 1 && report.firstScrubReason == "slot 0: bad TCP state 200")
        #expect(report.connections == 1 && engine.table.connectionCount == 1)
        #expect(engine.table.lookup(inboundKey(40000)) == nil && engine.table.lookup(inboundKey(40001)) != nil)
        #expect(engine.destinations.compactMap { $0 }.map { Int($0.inactiveConnections) }.reduce(0, +) == 1)
        // The scrubbed slot is free again: a new flow takes it.
        #expect(run(engine, c2v.tcp(40002, 80, flags: .syn), at: 2).0 == .rewritten(.inbound))
        #expect(engine.table.lookup(inboundKey(40002))?.slot == 0)
    }

    /// A file of another capacity is adopted with its own (no flow lost), with a note.
    @Test func anotherCapacityIsAdoptedWithANote() throws {
        let file = try written()
        let memory = try TableMemory.shared(path: file.path, capacity: capacity * 4)
        #expect(memory.isAdopted && memory.capacity == capacity && memory.replacedReason == nil)
        #expect(memory.capacityNote == "capacity \(capacity) of the state file kept; --max-flows \(capacity * 4) applies from the next fresh start (--fresh-state)")
        let engine = Engine(configuration: try RulesFile.parse(tableRules), memory: memory)
        #expect(engine.table.connectionCount == 1 && engine.table.capacity == capacity)
    }

    /// Random damage to the live block, the first slots, the indexes' first entries and the registry's
    /// first records, after a clean or an unclean exit: whatever is adopted or replaced, packets,
    /// expiry, dumps and a reload run without a trap.
    @Test func randomDamageNeverTraps() throws {
        var rng = SystemRandomNumberGenerator()
        let configuration = try RulesFile.parse(adoptionRules)
        let layout = TableLayout(capacity: capacity, registryCapacity: TableMemory.registryCapacity)
        let regions = [(TableMemory.liveOffset, 96), (layout.slabOffset, 8 * MemoryLayout<Connection>.stride),
                       (layout.flowIndexOffset, 4096), (layout.templateIndexOffset, 4096), (layout.wheelOffset, 4096),
                       (layout.destinationsOffset, 4 * MemoryLayout<DestinationRecord>.stride),
                       (layout.servicesOffset, 4 * MemoryLayout<ServiceRecord>.stride), (layout.freeOffset, 64)]
        for round in 0..<60 {
            let file = StateFile()
            do {
                let engine = Engine(configuration: configuration, memory: try TableMemory.shared(path: file.path, capacity: capacity))
                for port: UInt16 in 40000..<40004 {
                    _ = run(engine, c2v.tcp(port, 80, flags: .syn), at: 1)
                    _ = run(engine, c2v.tcp(port, 22, flags: .syn), at: 1)
                }
                _ = run(engine, c2v.udp(5000, 53), at: 1)
                if round % 2 == 0 { engine.markCleanShutdown() }
            }
            for _ in 0..<(1 + round % 8) {
                let (start, length) = regions[Int.random(in: 0..<regions.count, using: &rng)]
                let width = [1, 2, 4, 8][Int.random(in: 0..<4, using: &rng)]
                let offset = start + Int.random(in: 0..<(length - width), using: &rng)
                file.write((0..<width).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: offset)
            }
            let engine = Engine(configuration: configuration, memory: try TableMemory.shared(path: file.path, capacity: capacity))
            for port: UInt16 in 40000..<40006 {
                _ = run(engine, c2v.tcp(port, 80, flags: .ack), at: 2)
                _ = run(engine, w1c.tcp(8080, port, flags: [.syn, .ack]), at: 2)
                _ = run(engine, c2v.tcp(port, 22, flags: .syn), at: 2)
            }
            _ = engine.flowRecords()
            engine.apply(try RulesFile.parse(tableRules))
            engine.advanceClock(to: 500 * 1_000_000_000)
            engine.advanceClock(to: 5_000 * 1_000_000_000)
            _ = engine.flowRecords()
        }
    }

    /// Damaged links in an adopted table (clean, so not recounted) end a walk instead of trapping.
    @Test func aDamagedChainIsNotFollowed() throws {
        let file = try written()
        do {
            let memory = try TableMemory.shared(path: file.path, capacity: capacity)
            let table = ConnectionTable(memory: memory)
            table[0].wheelNext = 999_999
            table[0].destinationID = 60_000
            table.memory.markClean()
        }
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: capacity))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2).0 == .rewritten(.inbound))
        engine.advanceClock(to: 3_000 * 1_000_000_000)
        #expect(engine.table.corruptLinks == 1 && engine.table.connectionCount == 0)
    }

    /// Found by the `table` fuzz target: a clean file whose live block was damaged since (here
    /// slotsUsed raised to the capacity, the free stack empty) was trusted as it was, so no slot was
    /// ever free again and every new flow was refused. The O(1) check of the live block's counts
    /// sends it through the recount pass instead, which puts the dead slots back.
    @Test func aCleanFileWhoseCountsDisagreeIsRecounted() throws {
        let file = try written()
        file.write(withUnsafeBytes(of: capacity) { Array($0) }, at: TableMemory.liveOffset)
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: capacity))
        #expect(engine.adoption?.clean == true && engine.adoption?.recountNanoseconds != nil)
        #expect(engine.adoption?.connections == 1 && engine.table.live.pointee.freeCount == capacity - 1)
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.tcp(40001, 80, flags: .syn), at: 2).0 == .rewritten(.inbound))
    }

    /// The same family: a clean file whose free-stack entries were damaged (its counts agree) loses
    /// those slots to `popFree`; once the slab is used up, one sweep of it finds them again instead
    /// of refusing every new flow of a table that is not full.
    @Test func lostFreeSlotsAreSweptBack() throws {
        let file = StateFile()
        let slots = 4
        do {
            let engine = Engine(configuration: try RulesFile.parse(tableRules),
                                memory: try TableMemory.shared(path: file.path, capacity: slots))
            for port: UInt16 in 40000..<40004 {
                #expect(run(engine, c2v.tcp(port, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
            }
            engine.advanceClock(to: 1_000 * 1_000_000_000)
            #expect(engine.table.connectionCount == 0 && engine.table.live.pointee.freeCount == slots)
            engine.markCleanShutdown()
        }
        let layout = TableLayout(capacity: slots, registryCapacity: TableMemory.registryCapacity)
        file.write([UInt8](repeating: 0xff, count: 4 * slots), at: layout.freeOffset)
        let engine = Engine(configuration: try RulesFile.parse(tableRules),
                            memory: try TableMemory.shared(path: file.path, capacity: slots))
        #expect(engine.adoption?.clean == true && engine.adoption?.recountNanoseconds == nil)
        for port: UInt16 in 41000..<41004 {
            #expect(run(engine, c2v.tcp(port, 80, flags: .syn), at: 1_001).0 == .rewritten(.inbound))
        }
        #expect(engine.table.connectionCount == slots && engine.table.isFull)
    }
}
