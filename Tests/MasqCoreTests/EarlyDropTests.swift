import MasqRules
import Testing
@testable import MasqCore

/// A full table under a SYN flood (issue 11): early drop evicts half-open entries, never established
/// ones; pressure mode shortens half-open timeouts; both are counted.
@Suite struct EarlyDropTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
        """

    /// A spoofed client's SYN (sources from 198.18.64.0/18) that never completes its handshake.
    static func spoofedSYN(_ i: Int) -> [UInt8] {
        let source = IPv4Address(rawValue: 0xC612_4000 | UInt32(i & 0x3fff))  // 198.18.64.0 + i
        return PacketBuilder(source: source, destination: vip).tcp(UInt16(10000 + i / 0x4000), 80, flags: .syn)
    }

    /// Client 198.18.0.12's handshake through the VIP: SYN, the real server's SYN-ACK, the ACK.
    static func handshake(_ engine: Engine, port: UInt16, at t: Double) -> Bool {
        let w = PacketBuilder(source: web1, destination: client)
        let (v1, _) = run(engine, c2v.tcp(port, 80, flags: .syn), at: t)
        let (v2, _) = run(engine, w.tcp(80, port, flags: [.syn, .ack], seq: 5000, ack: 1001), at: t)
        let (v3, _) = run(engine, c2v.tcp(port, 80, flags: .ack, seq: 1001, ack: 5001), at: t)
        return v1 == .rewritten(.inbound) && v2 == .rewritten(.outbound) && v3 == .rewritten(.inbound)
    }

    @Test func aFloodOfHalfOpenEntriesNeverLocksOutANewClient() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 1000)
        for i in 0..<1000 { _ = run(engine, Self.spoofedSYN(i), at: 1) }
        #expect(engine.table.isFull)
        // The flood goes on; each new SYN takes a half-open slot, and so does a real client's.
        for i in 1000..<3000 { #expect(run(engine, Self.spoofedSYN(i), at: 2).0 == .rewritten(.inbound)) }
        #expect(Self.handshake(engine, port: 40000, at: 2))
        #expect(engine.counters[.tableFull] == 0)
        #expect(engine.counters[EvictionReason.halfOpenTCP] == 2001)
        #expect(engine.table.connectionCount == 1000)
        // The established client survives any further flood: only half-open entries are evicted.
        for i in 3000..<6000 { _ = run(engine, Self.spoofedSYN(i), at: 3) }
        let data = c2v.tcp(40000, 80, flags: [.ack, .psh], seq: 1001, ack: 5001, payload: [1, 2, 3])
        #expect(run(engine, data, at: 3).0 == .rewritten(.inbound))
    }

    @Test func aTableOfEstablishedFlowsRefusesNewOnesAndEvictsNone() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 50)
        for port in 0..<50 { #expect(Self.handshake(engine, port: UInt16(30000 + port), at: 1)) }
        #expect(run(engine, Self.spoofedSYN(1), at: 1).0 == .drop(.tableFull))
        #expect(engine.counters.evicted.reduce(0, +) == 0)
        #expect(engine.table.connectionCount == 50)
    }

    @Test func unansweredUDPIsEvictableAnsweredIsNot() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 2)
        let answered = c2v.udp(5000, 53, payload: [1])
        #expect(run(engine, answered, at: 1).0 == .rewritten(.inbound))
        let reply = PacketBuilder(source: web1, destination: client).udp(53, 5000, payload: [2])
        #expect(run(engine, reply, at: 1).0 == .rewritten(.outbound))
        #expect(run(engine, c2v.udp(5001, 53, payload: [1]), at: 1).0 == .rewritten(.inbound))
        // Full: the unanswered flow (5001) makes room for a new one; the answered (5000) stays.
        for _ in 0..<20 { #expect(run(engine, c2v.udp(5002, 53, payload: [1]), at: 2).0 == .rewritten(.inbound)) }
        #expect(engine.counters[EvictionReason.unansweredUDP] == 1)
        #expect(run(engine, reply, at: 2).0 == .rewritten(.outbound))
    }

    @Test func pressureModeShortensHalfOpenTimeoutsWithHysteresis() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 100)
        for i in 0..<74 { _ = run(engine, Self.spoofedSYN(i), at: 0) }
        #expect(!engine.pressure)
        #expect(engine.table.liveEntries.allSatisfy { $0.timeout == 60 })  // SYN_RECV, IPVS's 60 s
        for i in 74..<90 { _ = run(engine, Self.spoofedSYN(i), at: 0) }
        #expect(engine.pressure)
        #expect(engine.counters.pressureEntered == 1)
        // Entries made under pressure leave after 5 s; the 75 made before it after 60 s.
        engine.advanceClock(to: 6_000_000_000)
        #expect(engine.table.connectionCount == 75)
        // Still at 75 % full: the mode holds until the table falls below half.
        _ = run(engine, Self.spoofedSYN(500), at: 6)
        #expect(engine.pressure)
        engine.advanceClock(to: 61_000_000_000)
        _ = run(engine, Self.spoofedSYN(501), at: 61)
        #expect(!engine.pressure)
        // A client completing its handshake under pressure gets the ordinary ESTABLISHED timeout.
        for i in 600..<700 { _ = run(engine, Self.spoofedSYN(i), at: 62) }
        #expect(engine.pressure)
        #expect(Self.handshake(engine, port: 41000, at: 62))
        let entry = try #require(engine.table.liveEntries.first { $0.clientPort == 41000 })
        #expect(entry.state == .established && entry.timeout == 900)
    }
}

/// Early drop with persistence, and what it must not do to passive health (review of issue 11).
@Suite struct EarlyDropPersistenceTests {
    static let rules = """
        -A -t 198.18.0.1:22 -s rr -p 300
        -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
        """

    static func spoofed(_ i: Int) -> [UInt8] {
        PacketBuilder(source: IPv4Address(rawValue: 0xC612_4000 | UInt32(i)), destination: vip).tcp(10000, 22, flags: .syn)
    }

    /// Each spoofed source leaves a template; once its connection is evicted the template is idle and
    /// evictable too, so a persistent service is not locked out by templates.
    @Test func idleTemplatesAreEvictedForNewFlows() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 100)
        for i in 0..<3000 { _ = run(engine, Self.spoofed(i), at: 1) }
        #expect(engine.counters[.tableFull] == 0)
        #expect(engine.counters[EvictionReason.idleTemplate] > 0)
        #expect(run(engine, c2v.tcp(40000, 22, flags: .syn), at: 1).0 == .rewritten(.inbound))
        // Counts stay whole: one template per connection (or fewer), PersistConn as many as templates.
        let d = try #require(engine.destinations.compactMap { $0 }.first)
        #expect(Int(d.persistentConnections) == engine.table.templateCount)
    }

    @Test func evictionsAndAnsweredSYNsAreNoRealServerFailure() throws {
        let engine = Engine(configuration: try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m"), capacity: 10)
        let w = PacketBuilder(source: web1, destination: IPv4Address(rawValue: 0xC612_4000 | 49))  // the newest, not evicted
        for i in 0..<50 { _ = run(engine, EarlyDropTests.spoofedSYN(i), at: 1) }
        #expect(engine.counters[EvictionReason.halfOpenTCP] == 40)
        // The real server answered this one; the (spoofed) client never did, and it expires.
        _ = run(engine, w.tcp(80, 10000, flags: [.syn, .ack], seq: 1, ack: 1001), at: 1)
        engine.advanceClock(to: 200_000_000_000)
        // Nine entries nobody answered expired: those count; the evicted forty and the answered one do not.
        #expect(engine.handshakeFailures(ServiceKey(proto: .tcp, address: vip, port: 80), .v4(web1), 80) == 9)
        #expect(!engine.pressure)  // re-checked as the table emptied, without a new flow
    }
}
