import MasqRules
import Testing
@testable import MasqCore

/// The whole-table walk a master's refresh and full resend run by slices (`collectSyncable`): every
/// syncable entry once, in slot order, nothing that a packet would not send, and an end.
@Suite struct SyncWalkTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
        -A -t 198.18.0.1:22 -s rr -p 300
        -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
        """

    func walk(_ engine: Engine, slice: Int, refresh: Bool = false) -> (updates: [SyncUpdate], slices: Int) {
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: slice)
        var cursor: UInt32? = 0
        var updates: [SyncUpdate] = []
        var slices = 0
        while cursor != nil {
            let n = buffer.withUnsafeMutableBufferPointer { engine.collectSyncable(from: &cursor, into: $0, refresh: refresh) }
            #expect(n <= slice)
            updates += buffer.prefix(n)
            slices += 1
            if slices > 100_000 { break }
        }
        return (updates, slices)
    }

    /// A table of every kind: handshakes (not sent), established and closing TCP, UDP, templates.
    func mixedTable() throws -> (Engine, expected: [String]) {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        var expected: [String] = []
        for i in 0..<300 {
            let port = UInt16(10000 + i)
            switch i % 5 {
            case 0:  // SYN_RECV: not sent
                _ = run(engine, client.tcp(port, 80, flags: .syn), at: 1)
            case 1:  // ESTABLISHED
                _ = run(engine, client.tcp(port, 80, flags: .syn), at: 1)
                _ = run(engine, client.tcp(port, 80, flags: .ack), at: 1)
                expected.append("tcp \(port) ESTABLISHED")
            case 2:  // CLOSE_WAIT
                _ = run(engine, client.tcp(port, 80, flags: .syn), at: 1)
                _ = run(engine, client.tcp(port, 80, flags: .ack), at: 1)
                _ = run(engine, client.tcp(port, 80, flags: [.fin, .ack]), at: 1)
                expected.append("tcp \(port) CLOSE_WAIT")
            case 3:  // UDP
                _ = run(engine, client.udp(port, 53), at: 1)
                expected.append("udp \(port) UDP")
            default:  // persistent: its template once (one client), the connection in SYN_RECV not sent
                _ = run(engine, client.tcp(port, 22, flags: .syn), at: 1)
            }
        }
        expected.append("tcp 0 NONE")  // the one template
        return (engine, expected.sorted())
    }

    func names(_ updates: [SyncUpdate]) -> [String] {
        updates.map { "\($0.proto == .udp ? "udp" : "tcp") \($0.clientPort) \($0.state)" }.sorted()
    }

    @Test(arguments: [1, 7, 256, 10_000])
    func everySyncableEntryOnce(slice: Int) throws {
        let (engine, expected) = try mixedTable()
        let (updates, slices) = walk(engine, slice: slice)
        #expect(names(updates) == expected)
        #expect(slices >= (expected.count + slice - 1) / slice)
        // The updates are what the packet path would push for each entry.
        for u in updates where !u.isTemplate {
            let key = FlowKey(source: u.client.v4!, destination: u.virtualAddress.v4!, sourcePort: u.clientPort,
                              destinationPort: u.virtualPort, proto: u.proto)
            let (slot, _) = try #require(engine.table.lookup(key))
            #expect(SyncUpdate(engine.table[slot]) == u)
        }
    }

    /// A sparse slab (most slots freed): slices end in bounded work, and the walk still ends with
    /// every entry.
    @Test func aSparseTableEndsInBoundedSlices() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        for i in 0..<2000 { _ = run(engine, client.udp(UInt16(10000 + i), 53), at: 1) }
        // Replies keep every 100th flow; the rest are unanswered and expire under a short timeout.
        let server = PacketBuilder(source: addr("198.19.0.201"), destination: addr("198.18.0.12"))
        for i in stride(from: 0, to: 2000, by: 100) { _ = run(engine, server.udp(53, UInt16(10000 + i)), at: 200) }
        engine.advanceClock(to: 302 * ConnectionTable.nanosPerTick)
        #expect(engine.table.connectionCount == 20)
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 4)
        var cursor: UInt32? = 0
        var total = 0, slices = 0
        while let start = cursor {
            let n = buffer.withUnsafeMutableBufferPointer { engine.collectSyncable(from: &cursor, into: $0) }
            if let next = cursor { #expect(Int(next - start) <= 4 * Engine.syncWalkSlotsPerEntry) }
            total += n
            slices += 1
        }
        #expect(total == 20)
        #expect(slices >= 2000 / (4 * Engine.syncWalkSlotsPerEntry))
    }

    /// A template replaced because its real server left the service lives on for its connections,
    /// but is not sent: neither by the walk nor after its connection; the new one is.
    @Test func aReplacedTemplateIsNotSent() throws {
        let two = """
            -A -t 198.18.0.1:22 -s rr -p 300
            -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
            -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
            """
        let engine = Engine(configuration: try RulesFile.parse(two))
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        _ = run(engine, client.tcp(1000, 22, flags: .syn), at: 1)
        _ = run(engine, client.tcp(1000, 22, flags: .ack), at: 1)
        engine.apply(try RulesFile.parse("""
            -A -t 198.18.0.1:22 -s rr -p 300
            -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
            """))
        _ = run(engine, client.tcp(1001, 22, flags: .syn), at: 2)  // a new template, on .202
        _ = run(engine, client.tcp(1001, 22, flags: .ack), at: 2)
        #expect(engine.table.templateCount == 2)
        let templates = walk(engine, slice: 16).updates.filter(\.isTemplate)
        #expect(templates.map(\.server) == [.v4(addr("198.19.0.202"))])
        let outbox = SyncOutbox(capacity: 8)
        engine.syncOutbox = outbox
        _ = run(engine, client.tcp(1000, 22, flags: .ack), at: 3)  // the old flow's 3rd packet: sent alone
        _ = run(engine, client.tcp(1001, 22, flags: .ack), at: 3)  // the new one's: with its template
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 8)
        let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
        #expect(buffer.prefix(n).map { "\($0.clientPort) \($0.server) \($0.isTemplate)" }
                == ["1000 198.19.0.201 false", "1001 198.19.0.202 false", "0 198.19.0.202 true"])
    }

    @Test func doneAndEmptyWalks() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 4)
        var cursor: UInt32? = 0
        #expect(buffer.withUnsafeMutableBufferPointer { engine.collectSyncable(from: &cursor, into: $0) } == 0)
        #expect(cursor == nil)  // an empty table: done at once
        #expect(buffer.withUnsafeMutableBufferPointer { engine.collectSyncable(from: &cursor, into: $0) } == 0)
        #expect(cursor == nil)
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        _ = run(engine, client.udp(1000, 53), at: 1)
        cursor = 0
        var none: [SyncUpdate] = []
        #expect(none.withUnsafeMutableBufferPointer { engine.collectSyncable(from: &cursor, into: $0) } == 0)
        #expect(cursor == 0)  // no room: nothing consumed
        // An entry past its expiry, not collected yet, is not sent.
        engine.advanceClock(to: 301 * ConnectionTable.nanosPerTick + 500_000_000)
        #expect(engine.table.connectionCount == 1)
        #expect(buffer.withUnsafeMutableBufferPointer { engine.collectSyncable(from: &cursor, into: $0) } == 0)
    }

    /// A refresh leaves out what came from a peer and carried nothing here since (with both daemons
    /// on both directors, two refreshes would keep such entries alive forever between them); a
    /// resend a backup asked for sends them too, and a synced entry that carried a packet is sent.
    @Test func aRefreshLeavesOutUnusedSyncedEntries() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let synced = SyncUpdate(proto: .tcp, state: .established, isActive: true, client: addr("198.18.0.77"),
                                clientPort: 5000, virtualAddress: addr("198.18.0.1"), virtualPort: 80,
                                server: addr("198.19.0.201"), serverPort: 8080, timeout: 900)
        var used = synced
        used.clientPort = 5001
        #expect(engine.applySynced(synced) == .created && engine.applySynced(used) == .created)
        let client = PacketBuilder(source: addr("198.18.0.77"), destination: addr("198.18.0.1"))
        #expect(run(engine, client.tcp(5001, 80, flags: .ack), at: 1).0 == .rewritten(.inbound))
        #expect(walk(engine, slice: 8).updates.map(\.clientPort).sorted() == [5000, 5001])
        #expect(walk(engine, slice: 8, refresh: true).updates.map(\.clientPort) == [5001])
    }
}
