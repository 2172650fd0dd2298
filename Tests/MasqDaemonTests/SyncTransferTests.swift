import MasqControl
import MasqRules
import MasqSync
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// The master's packing and the backup's receiving, without sockets: updates packed into datagrams
/// as a master sends them reach a backup engine through `SyncReceiver`, and forged or malformed
/// datagrams are counted and change nothing they must not.
@Suite struct SyncTransferTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
        -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m -w 1
        -A -u 198.18.0.1:53 -s rr -p 120
        -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m -w 1

        """
    static let vip = IPv4Address(198, 18, 0, 1)
    static let web1 = IPv4Address(198, 19, 0, 201), web2 = IPv4Address(198, 19, 0, 202)

    static func backup(capacity: Int = 4096) throws -> SharedEngine {
        SharedEngine(Engine(configuration: try RulesFile.parse(rules), capacity: capacity))
    }

    static func tcp(_ n: Int, state: ConnectionState = .established, server: IPv4Address = web1,
                    vip: IPv4Address = vip, port: UInt16 = 80) -> SyncUpdate {
        SyncUpdate(proto: .tcp, state: state, isActive: state == .established,
                   client: IPv4Address(198, 18, 0, UInt8(10 + n % 200)), clientPort: UInt16(40_000 + n),
                   virtualAddress: vip, virtualPort: port, server: server, serverPort: 80, timeout: 900, fwmark: 0)
    }

    /// Packs `updates` as a master does and returns the datagrams with their entry counts.
    static func pack(_ updates: [SyncUpdate], syncID: UInt8 = 7, maxLength: Int = 1472) -> [([UInt8], Int)] {
        var packer = SyncPacker(syncID: syncID, maxLength: maxLength)
        var out: [([UInt8], Int)] = []
        let send: SyncPacker.Send = { bytes, entries in out.append((Array(bytes), entries)) }
        for update in updates { packer.add(update, send: send) }
        packer.flush(send: send)
        return out
    }

    static func receive(_ datagram: [UInt8], syncID: UInt8 = 7, into engine: SharedEngine,
                        counters: inout SyncCounters) -> SyncReceipt {
        let receipt = datagram.withUnsafeBytes { SyncReceiver.receive($0, cut: false, syncID: syncID, engine: engine) }
        counters.record(receipt, at: 1)
        return receipt
    }

    @Test func packedDatagramsFitAndCarryEverything() {
        let updates = (0..<600).map { Self.tcp($0) }
        let datagrams = Self.pack(updates)
        // 40 bare entries fit in 1472 bytes (8 + 40 × 36); 600 entries: 15 datagrams.
        #expect(datagrams.count == 15)
        #expect(datagrams.allSatisfy { $0.0.count <= 1472 })
        #expect(datagrams.reduce(0) { $0 + $1.1 } == 600)
        let small = Self.pack(updates, maxLength: 10)  // raised to one header and one entry
        #expect(small.count == 600 && small.allSatisfy { $0.0.count == SyncEncoder.minimumMaxLength })
    }

    @Test func aBackupEngineTakesWhatTheMasterSends() throws {
        let engine = try Self.backup()
        var updates = (0..<50).map { Self.tcp($0, server: $0 % 2 == 0 ? Self.web1 : Self.web2) }
        updates.append(Self.tcp(60, state: .timeWait))
        updates.append(SyncUpdate(proto: .udp, state: .udp, isActive: true, client: IPv4Address(198, 18, 0, 12),
                                  clientPort: 5000, virtualAddress: Self.vip, virtualPort: 53, server: Self.web1,
                                  serverPort: 53, timeout: 300, fwmark: 0))
        updates.append(SyncUpdate(proto: .udp, state: .none, isTemplate: true, isActive: false,
                                  client: IPv4Address(198, 18, 0, 12), clientPort: 0, virtualAddress: Self.vip,
                                  virtualPort: 53, server: Self.web1, serverPort: 53, timeout: 120, fwmark: 0))
        var counters = SyncCounters()
        for (datagram, _) in Self.pack(updates) {
            _ = Self.receive(datagram, into: engine, counters: &counters)
        }
        #expect(counters.applied == ["created": 53])
        #expect(counters.rejected.isEmpty)
        #expect(counters.entriesReceived == 53 && counters.datagramsReceived == 2)
        let flows = engine.withLock { $0.engine.flowRecords() }
        #expect(flows.count == 53)
        #expect(flows.filter { $0.state == .established }.count == 50)
        #expect(flows.contains { $0.isTemplate && $0.protoName == "udp" })
        // The same again: updates, not new entries.
        for (datagram, _) in Self.pack(updates) { _ = Self.receive(datagram, into: engine, counters: &counters) }
        #expect(counters.applied["updated"] == 53)
        #expect(engine.withLock { $0.engine.flowRecords() }.count == 53)
    }

    @Test func entriesAppliedToAFreshEngineLiveTheirTimeout() throws {
        // A backup just started: its engine's clock is still at 0 when the first datagram comes.
        let engine = try Self.backup()
        #expect(engine.withLock { $0.engine.now } == 0)
        let now: Int64 = 5_000 * 1_000_000_000
        let receipt = Self.pack([Self.tcp(1)])[0].0.withUnsafeBytes {
            SyncReceiver.receive($0, cut: false, syncID: 7, engine: engine, now: now)
        }
        #expect(receipt.results == [.created])
        // The queue thread's next tick, a second later: the entry (900 s) is still there.
        engine.withLock { $0.engine.advanceClock(to: now + 1_000_000_000) }
        let flows = engine.withLock { $0.engine.flowRecords() }
        #expect(flows.count == 1 && flows[0].expiresIn >= 898)
    }

    @Test func forgedEntriesAreCountedByReason() throws {
        let engine = try Self.backup()
        let updates = [
            Self.tcp(1, vip: IPv4Address(198, 18, 0, 9)),            // no such service
            Self.tcp(2, server: IPv4Address(198, 19, 0, 209)),       // no such real server
            Self.tcp(3, port: 443),                                  // no such service either
            Self.tcp(4),                                             // fine
        ]
        var counters = SyncCounters()
        for (datagram, _) in Self.pack(updates) { _ = Self.receive(datagram, into: engine, counters: &counters) }
        #expect(counters.applied == ["created": 1])
        #expect(counters.rejected == ["unknown_service": 2, "no_destination": 1])
    }

    @Test func aForgedFloodNeverGrowsTheTablePastItsLimit() throws {
        let engine = try Self.backup(capacity: 64)
        var counters = SyncCounters()
        for (datagram, _) in Self.pack((0..<1000).map { Self.tcp($0) }) {
            _ = Self.receive(datagram, into: engine, counters: &counters)
        }
        let entries = engine.withLock { $0.engine.table.connectionCount + $0.engine.table.templateCount }
        #expect(entries <= 64)
        #expect(counters.rejected["table_full", default: 0] > 0)
        #expect(counters.applied["created", default: 0] + counters.rejected["table_full", default: 0]
                    + counters.rejected["conflict", default: 0] == 1000)
    }

    @Test func wrongSyncIDAndMalformedDatagramsChangeNothing() throws {
        let engine = try Self.backup()
        var counters = SyncCounters()
        let datagram = Self.pack([Self.tcp(1)], syncID: 9)[0].0
        _ = Self.receive(datagram, syncID: 7, into: engine, counters: &counters)
        var short = datagram
        short.removeLast()
        _ = Self.receive(short, into: engine, counters: &counters)
        _ = Self.receive([1, 2, 3], into: engine, counters: &counters)
        let cut = datagram.withUnsafeBytes { SyncReceiver.receive($0, cut: true, syncID: 0, engine: engine) }
        counters.record(cut, at: 2)
        #expect(counters.rejected == ["syncid_mismatch": 1, "size_mismatch": 1, "header_too_short": 1, "longer_than_maxlen": 1])
        #expect(counters.datagramsReceived == 4 && counters.applied.isEmpty)
        #expect(engine.withLock { $0.engine.flowRecords() }.isEmpty)
        // syncid 0 takes every id.
        _ = Self.receive(datagram, syncID: 0, into: engine, counters: &counters)
        #expect(counters.applied == ["created": 1])
    }

    @Test func entriesMasqCannotUseAreRefused() throws {
        let engine = try Self.backup()
        let base = SyncEntry(Self.tcp(1))
        var routed = base
        routed.flags.insert(.directRoute)
        var withPE = SyncEntry(Self.tcp(2))
        withPE.persistenceEngineName = Array("sip".utf8)
        var datagram: [UInt8] = []
        try SyncEncoder.encode([routed, withPE, SyncEntry(Self.tcp(3))], syncID: 7, into: &datagram)
        var counters = SyncCounters()
        _ = Self.receive(datagram, into: engine, counters: &counters)
        #expect(counters.rejected == ["forwarding_method": 1, "persistence_engine": 1])
        #expect(counters.applied == ["created": 1])
    }

    @Test func controlMessagesAreReturnedForTheirSyncID() throws {
        let engine = try Self.backup()
        let done = SyncControlMessage(.resyncDone, syncID: 7, sequence: 42)
        let mine = done.bytes.withUnsafeBytes { SyncReceiver.receive($0, cut: false, syncID: 7, engine: engine) }
        #expect(mine.control == done && mine.refused.isEmpty)
        let other = done.bytes.withUnsafeBytes { SyncReceiver.receive($0, cut: false, syncID: 8, engine: engine) }
        #expect(other.control == nil && other.refused == ["syncid_mismatch"])
        var bad = done.bytes
        bad[12] = 77
        let malformed = bad.withUnsafeBytes { SyncReceiver.receive($0, cut: false, syncID: 7, engine: engine) }
        #expect(malformed.control == nil && malformed.refused == ["malformed_control"])
    }
}
