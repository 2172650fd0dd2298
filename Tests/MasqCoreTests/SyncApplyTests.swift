import Foundation
import MasqRules
import Testing
@testable import MasqCore

/// The backup's side of connection sync (IPVS `ip_vs_proc_conn`, reference §1.5): a table of
/// {description, updates applied before, the update, expected result, expected table and real-server
/// counts}, then what the table does with a synced entry, a full table, and a fuzz-ish loop of random
/// updates that must never grow the table past its capacity or leave a count wrong.
@Suite struct SyncApplyTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
        -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m
        -A -t 198.18.0.3:80 -s rr
        -a -t 198.18.0.3:80 -r 198.19.0.201:8080 -m
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
        -A -t 198.18.0.1:22 -s rr -p 300 -M 255.255.255.0
        -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
        -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
        -A -t 198.18.0.2:0 -s rr -p 600
        -a -t 198.18.0.2:0 -r 198.19.0.203 -m
        """

    static func tcp(_ state: ConnectionState, client: String = "198.18.0.12", port: UInt16 = 40000,
                    vip: String = "198.18.0.1", vport: UInt16 = 80, server: String = "198.19.0.201",
                    sport: UInt16 = 8080, timeout: UInt32 = 900, active: Bool? = nil) -> SyncUpdate {
        SyncUpdate(proto: .tcp, state: state, isActive: active ?? (state == .established),
                   client: addr(client), clientPort: port, virtualAddress: addr(vip), virtualPort: vport,
                   server: addr(server), serverPort: sport, timeout: timeout)
    }

    static func udp(client: String = "198.18.0.12", port: UInt16 = 40000, server: String = "198.19.0.201",
                    state: ConnectionState = .udp, timeout: UInt32 = 300) -> SyncUpdate {
        SyncUpdate(proto: .udp, state: state, isActive: false, client: addr(client), clientPort: port,
                   virtualAddress: addr("198.18.0.1"), virtualPort: 53, server: addr(server), serverPort: 53,
                   timeout: timeout)
    }

    static func template(client: String = "198.18.0.0", vip: String = "198.18.0.1", vport: UInt16 = 22,
                         server: String = "198.19.0.201", sport: UInt16 = 22, timeout: UInt32 = 300,
                         state: ConnectionState = .none) -> SyncUpdate {
        SyncUpdate(proto: .tcp, state: state, isTemplate: true, isActive: false, client: addr(client),
                   clientPort: 0, virtualAddress: addr(vip), virtualPort: vport, server: addr(server),
                   serverPort: sport, timeout: timeout)
    }

    /// A real server's ActiveConn, InActConn and PersistConn.
    struct Counts: Equatable, CustomStringConvertible {
        var active: Int32 = 0, inactive: Int32 = 0, persistent: Int32 = 0
        var description: String { "\(active)/\(inactive)/\(persistent)" }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var description: String
        var before: [SyncUpdate] = []
        var update: SyncUpdate
        var expected: SyncApplyResult
        var connections = 0
        var templates = 0
        /// "address:port of service/address:port of real server" → counts; real servers not named: 0/0/0.
        var counts: [String: Counts] = [:]
        /// The entry's state and timeout afterwards, when it is in the table.
        var state: ConnectionState? = nil
        var timeout: UInt32? = nil
        var testDescription: String { description }
    }

    static let web1 = "198.18.0.1:80/198.19.0.201:8080", web2 = "198.18.0.1:80/198.19.0.202:8080"
    static let ssh1 = "198.18.0.1:22/198.19.0.201:22", ssh2 = "198.18.0.1:22/198.19.0.202:22"

    static let cases: [Case] = [
        Case(description: "new ESTABLISHED: created, active", update: tcp(.established), expected: .created,
             connections: 1, counts: [web1: Counts(active: 1)], state: .established, timeout: 900),
        Case(description: "new FIN_WAIT: created, inactive", update: tcp(.finWait, timeout: 120), expected: .created,
             connections: 1, counts: [web1: Counts(inactive: 1)], state: .finWait, timeout: 120),
        Case(description: "new SYN_RECV (a kernel master never sends it, but it is a TCP state)",
             update: tcp(.synRecv, timeout: 60), expected: .created, connections: 1,
             counts: [web1: Counts(inactive: 1)]),
        Case(description: "new UDP", update: udp(), expected: .created, connections: 1,
             counts: ["198.18.0.1:53/198.19.0.201:53": Counts(inactive: 1)], state: .udp, timeout: 300),
        Case(description: "timeout above the local one: clamped", update: tcp(.established, timeout: 100_000),
             expected: .created, connections: 1, counts: [web1: Counts(active: 1)], timeout: 900),
        Case(description: "timeout 0 (v0): the local one", update: tcp(.closeWait, timeout: 0),
             expected: .created, connections: 1, counts: [web1: Counts(inactive: 1)], timeout: 60),
        Case(description: "timeout below the local one: kept", update: tcp(.established, timeout: 30),
             expected: .created, connections: 1, counts: [web1: Counts(active: 1)], timeout: 30),
        Case(description: "unknown virtual address", update: tcp(.established, vip: "198.18.0.9"),
             expected: .unknownService),
        Case(description: "unknown virtual port", update: tcp(.established, vport: 81), expected: .unknownService),
        Case(description: "a protocol masq does not forward",
             update: SyncUpdate(proto: .icmp, state: .none, isActive: false, client: addr("198.18.0.12"),
                                clientPort: 0, virtualAddress: addr("198.18.0.1"), virtualPort: 80,
                                server: addr("198.19.0.201"), serverPort: 8080, timeout: 60),
             expected: .unknownService),
        Case(description: "a fwmark service", update: {
            var u = tcp(.established)
            u.fwmark = 7
            return u
        }(), expected: .unknownService),
        Case(description: "a real server this backup does not have", update: tcp(.established, server: "198.19.0.209"),
             expected: .noDestination),
        Case(description: "the real server's address on another port", update: tcp(.established, sport: 80),
             expected: .noDestination),
        Case(description: "TCP state number 11 (UDP's)", update: tcp(.udp), expected: .badState),
        Case(description: "TCP state number 200", update: tcp(ConnectionState(rawValue: 200)), expected: .badState),
        Case(description: "UDP in a TCP state", update: udp(state: .established), expected: .badState),
        Case(description: "a template in a connection state", update: template(state: .established),
             expected: .badState),
        Case(description: "existing ESTABLISHED, now FIN_WAIT: updated, moved to inactive",
             before: [tcp(.established)], update: tcp(.finWait, timeout: 120), expected: .updated,
             connections: 1, counts: [web1: Counts(inactive: 1)], state: .finWait, timeout: 120),
        Case(description: "existing FIN_WAIT, now ESTABLISHED: updated, moved to active",
             before: [tcp(.finWait, timeout: 120)], update: tcp(.established), expected: .updated,
             connections: 1, counts: [web1: Counts(active: 1)], state: .established, timeout: 900),
        Case(description: "existing, same state: updated, counts unchanged",
             before: [tcp(.established)], update: tcp(.established, timeout: 500), expected: .updated,
             connections: 1, counts: [web1: Counts(active: 1)], state: .established, timeout: 500),
        Case(description: "existing on another real server: replaced",
             before: [tcp(.established)], update: tcp(.established, server: "198.19.0.202"), expected: .replaced,
             connections: 1, counts: [web2: Counts(active: 1)], state: .established),
        Case(description: "existing on another real server, update INACTIVE: a stale expiry, ignored",
             before: [tcp(.established)], update: tcp(.finWait, server: "198.19.0.202"), expected: .staleIgnored,
             connections: 1, counts: [web1: Counts(active: 1)], state: .established),
        Case(description: "its reply tuple taken by another connection (same client to another VIP, same real server)",
             before: [tcp(.established)], update: tcp(.established, vip: "198.18.0.3"), expected: .conflict,
             connections: 1, counts: [web1: Counts(active: 1)]),
        Case(description: "its client tuple is another connection's reply tuple",
             before: [tcp(.established, client: "198.18.0.3", port: 80)],
             update: tcp(.established, client: "198.19.0.201", port: 8080, vip: "198.18.0.3", vport: 80),
             expected: .conflict, connections: 1, counts: [web1: Counts(active: 1)]),
        Case(description: "a real server as the client: its tuples are distinct, created",
             update: tcp(.established, client: "198.19.0.201", port: 8080, vip: "198.18.0.1", vport: 80,
                         server: "198.19.0.201", sport: 8080),
             expected: .created, connections: 1, counts: [web1: Counts(active: 1)]),
        Case(description: "new template: created, PersistConn", update: template(), expected: .created,
             templates: 1, counts: [ssh1: Counts(persistent: 1)], state: ConnectionState.none, timeout: 300),
        Case(description: "template's client under the local netmask", update: template(client: "198.18.0.77"),
             expected: .created, templates: 1, counts: [ssh1: Counts(persistent: 1)]),
        Case(description: "template again: updated", before: [template()], update: template(timeout: 200),
             expected: .updated, templates: 1, counts: [ssh1: Counts(persistent: 1)], timeout: 200),
        Case(description: "template for another real server: replaced", before: [template()],
             update: template(server: "198.19.0.202"), expected: .replaced, templates: 1,
             counts: [ssh2: Counts(persistent: 1)]),
        Case(description: "template timeout clamped to the persistence timeout", update: template(timeout: 5000),
             expected: .created, templates: 1, counts: [ssh1: Counts(persistent: 1)], timeout: 300),
        Case(description: "template for a service without persistence", update: template(vport: 80, sport: 8080),
             expected: .unknownService),
        Case(description: "template of a port-0 service", update: template(vip: "198.18.0.2", vport: 0,
                                                                            server: "198.19.0.203", sport: 0),
             expected: .created, templates: 1, counts: ["198.18.0.2:0/198.19.0.203:0": Counts(persistent: 1)],
             timeout: 300),
        Case(description: "connection of a port-0 service: bound to the port-0 real server, the client's port",
             update: tcp(.established, vip: "198.18.0.2", vport: 443, server: "198.19.0.203", sport: 443),
             expected: .created, connections: 1, counts: ["198.18.0.2:0/198.19.0.203:0": Counts(active: 1)]),
        Case(description: "connection of a port-0 service to another port of the real server",
             update: tcp(.established, vip: "198.18.0.2", vport: 443, server: "198.19.0.203", sport: 444),
             expected: .noDestination),
    ]

    func counts(_ engine: Engine) -> [String: Counts] {
        var result: [String: Counts] = [:]
        for service in engine.services {
            for d in service.destinations {
                let c = Counts(active: d.activeConnections, inactive: d.inactiveConnections,
                               persistent: d.persistentConnections)
                if c != Counts() {
                    result["\(service.key.address):\(service.key.port)/\(d.address):\(d.port)"] = c
                }
            }
        }
        return result
    }

    @Test(arguments: cases)
    func applies(_ c: Case) throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        engine.advanceClock(to: 10 * ConnectionTable.nanosPerTick)
        for u in c.before { #expect(engine.applySynced(u) == .created) }
        let createdBefore = engine.counters.syncedCreated
        #expect(engine.applySynced(c.update) == c.expected)
        #expect(engine.table.connectionCount == c.connections)
        #expect(engine.table.templateCount == c.templates)
        #expect(counts(engine) == c.counts)
        #expect(engine.counters.connectionsCreated == 0 && engine.counters.templatesCreated == 0)
        let created = c.expected == .created || c.expected == .replaced
        #expect(engine.counters.syncedCreated == createdBefore + (created ? 1 : 0))
        let entries = engine.table.liveEntries
        if c.state != nil || c.timeout != nil {
            let entry = try #require(entries.last)
            if let state = c.state { #expect(entry.state == state) }
            if let timeout = c.timeout {
                #expect(entry.timeout == timeout)
                #expect(entry.expires == engine.now + Int64(timeout) * ConnectionTable.nanosPerTick)
            }
        }
        for entry in entries where c.before.isEmpty || created {
            #expect(entry.isSynced)
            #expect(entry.countedActive == (!entry.isTemplate && entry.state == .established))
        }
    }

    /// After takeover, a synced connection carries the client's packets to its real server and the
    /// replies back, and a synced template sends the client's new connections to its real server
    /// whatever the scheduler would pick.
    @Test func syncedEntriesCarryTrafficAfterTakeover() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(engine.applySynced(Self.tcp(.established, server: "198.19.0.202")) == .created)
        #expect(engine.applySynced(Self.template(server: "198.19.0.202")) == .created)
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        let (verdict, rewritten) = run(engine, client.tcp(40000, 80, flags: .ack), at: 1)
        #expect(verdict == .rewritten(.inbound))
        #expect(Array(rewritten[16..<20]) == [198, 19, 0, 202])
        let server = PacketBuilder(source: addr("198.19.0.202"), destination: addr("198.18.0.12"))
        #expect(run(engine, server.tcp(8080, 40000, flags: .ack), at: 1).0 == .rewritten(.outbound))
        // rr would pick .201 first; the template says .202 for 198.18.0.0/24.
        let other = PacketBuilder(source: addr("198.18.0.99"), destination: addr("198.18.0.1"))
        let (sshVerdict, ssh) = run(engine, other.tcp(50000, 22, flags: .syn), at: 2)
        #expect(sshVerdict == .rewritten(.inbound))
        #expect(Array(ssh[16..<20]) == [198, 19, 0, 202])
        #expect(engine.counters.templatesCreated == 0)
        #expect(engine.table.liveEntries.first { $0.isTemplate }?.controlled == 1)
    }

    /// A synced entry's flow record says so (`"origin":"sync"` last, as /proc/net/ip_vs_conn_sync's
    /// Origin column), and reads back; a local one's line is unchanged.
    @Test func flowRecordsShowTheOrigin() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(engine.applySynced(Self.tcp(.established)) == .created)
        let client = PacketBuilder(source: addr("198.18.0.13"), destination: addr("198.18.0.1"))
        _ = run(engine, client.tcp(40000, 80, flags: .syn))
        let records = engine.flowRecords()
        #expect(records.map(\.isSynced) == [true, false])
        #expect(records[0].jsonLine == #"{"proto":"tcp","client":"198.18.0.12:40000","vip":"198.18.0.1:80","real_server":"198.19.0.201:8080","state":"ESTABLISHED","expires":900,"template":false,"packets_in":0,"packets_out":0,"bytes_in":0,"bytes_out":0,"origin":"sync"}"#)
        #expect(!records[1].jsonLine.contains("origin"))
        for record in records {
            #expect(try JSONDecoder().decode(FlowRecord.self, from: Data(record.jsonLine.utf8)) == record)
            #expect(try JSONDecoder().decode(FlowRecord.self, from: JSONEncoder().encode(record)) == record)
        }
        let bad = records[0].jsonLine.replacingOccurrences(of: "\"sync\"", with: "\"elsewhere\"")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(FlowRecord.self, from: Data(bad.utf8)) }
    }

    /// After takeover the new master re-syncs what it was sent, once packets arrive: at the
    /// threshold of its own count (which starts at 0 here), as any entry.
    @Test func syncedEntriesAreSentOnAfterTakeover() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(engine.applySynced(Self.tcp(.established)) == .created)
        let outbox = SyncOutbox(capacity: 8)
        engine.syncOutbox = outbox
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        for _ in 0..<2 { #expect(run(engine, client.tcp(40000, 80, flags: .ack), at: 1).0 == .rewritten(.inbound)) }
        #expect(outbox.count == 0)
        #expect(run(engine, client.tcp(40000, 80, flags: .ack), at: 1).0 == .rewritten(.inbound))
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 8)
        let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
        #expect(Array(buffer.prefix(n)) == [Self.tcp(.established)])
        // The client's FIN: CLOSE_WAIT at once, as for a local entry.
        #expect(run(engine, client.tcp(40000, 80, flags: [.fin, .ack]), at: 2).0 == .rewritten(.inbound))
        #expect(outbox.count == 1)
    }

    /// A synced entry lives one timeout after its last update, not longer, and gives its counts back.
    @Test func syncedEntriesExpire() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(engine.applySynced(Self.tcp(.established, timeout: 30)) == .created)
        #expect(engine.applySynced(Self.template(timeout: 20)) == .created)
        for t in 1...19 { engine.advanceClock(to: Int64(t) * ConnectionTable.nanosPerTick) }
        #expect(engine.applySynced(Self.tcp(.close, timeout: 10)) == .updated)  // expiry moved earlier: 29 s
        for t in 20...30 { engine.advanceClock(to: Int64(t) * ConnectionTable.nanosPerTick) }
        #expect(engine.table.connectionCount == 0 && engine.table.templateCount == 0)
        #expect(counts(engine).isEmpty)
    }

    /// A table full of established entries refuses a new one and evicts nothing; one holding a
    /// half-open entry makes room by early drop, as a new flow would.
    @Test func aFullTableRefusesNeverEvictingEstablished() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 2)
        #expect(engine.applySynced(Self.tcp(.established, port: 1)) == .created)
        #expect(engine.applySynced(Self.tcp(.established, port: 2)) == .created)
        #expect(engine.applySynced(Self.tcp(.established, port: 3)) == .tableFull)
        #expect(engine.applySynced(Self.template()) == .tableFull)
        #expect(engine.applySynced(Self.tcp(.finWait, port: 1, timeout: 120)) == .updated)  // an update needs no room
        #expect(engine.table.connectionCount == 2)
        #expect(counts(engine) == [Self.web1: Counts(active: 1, inactive: 1)])

        let flooded = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 2)
        #expect(flooded.applySynced(Self.tcp(.established, port: 1)) == .created)
        let client = PacketBuilder(source: addr("198.18.0.66"), destination: addr("198.18.0.1"))
        #expect(run(flooded, client.tcp(999, 80, flags: .syn)).0 == .rewritten(.inbound))  // SYN_RECV
        #expect(flooded.applySynced(Self.tcp(.established, port: 3)) == .created)
        #expect(flooded.table.connectionCount == 2)
        #expect(flooded.counters[EvictionReason.halfOpenTCP] == 1)
        #expect(flooded.table.liveEntries.allSatisfy { $0.state == .established })
    }

    /// A template the master moved to another real server, in a table full of established flows
    /// whose old template still controls a connection: refused, and the old template still answers.
    @Test func aRefusedTemplateReplacementChangesNothing() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: 2)
        let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        _ = run(engine, client.tcp(40022, 22, flags: .syn), at: 1)   // template (→ web1) + connection
        _ = run(engine, client.tcp(40022, 22, flags: .ack), at: 1)   // established: not evictable
        let before = engine.table.liveEntries.map(\.server)
        #expect(engine.applySynced(Self.template(server: "198.19.0.202")) == .tableFull)
        #expect(engine.table.liveEntries.map(\.server) == before)
        let key = FlowKey(source: addr("198.18.0.0"), destination: addr("198.18.0.1"), sourcePort: 0,  // -M /24
                          destinationPort: 22, proto: .tcp)
        #expect(engine.table.template(for: key) != nil)
    }

    /// A synced entry's expiry is no verdict on its real server: its handshake was on the master
    /// (a forged SYN_RECV left to expire must not count as a failed handshake here).
    @Test func syncedEntriesAreNoHealthSignal() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(engine.applySynced(Self.tcp(.synRecv, timeout: 5)) == .created)
        for t in 1...10 { engine.advanceClock(to: Int64(t) * ConnectionTable.nanosPerTick) }
        #expect(engine.table.connectionCount == 0)
        #expect(engine.destinations.compactMap { $0 }.allSatisfy { $0.handshakeFailures == 0 })
    }

    /// Random updates, forged as a hostile sender would (services, servers, states, protocols and
    /// timeouts drawn from pools that mix valid and invalid ones), mixed with packets on the same
    /// tuples and the clock moving on: the table never exceeds its capacity, every real server's
    /// counts equal the entries that name it, and once everything has expired the counts are all zero.
    @Test(arguments: [1, 2, 3, 4])
    func randomUpdatesKeepTheCountsRight(seed: UInt64) throws {
        let capacity = 24
        let engine = Engine(configuration: try RulesFile.parse(Self.rules), capacity: capacity)
        var random = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func next(_ n: Int) -> Int {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            return Int(random % UInt64(n))
        }
        // What a master could send (service, real server, template or not), then spoiled at random.
        let shapes: [(IPProtocol, String, UInt16, String, UInt16, Bool)] = [
            (.tcp, "198.18.0.1", 80, "198.19.0.201", 8080, false), (.tcp, "198.18.0.1", 80, "198.19.0.202", 8080, false),
            (.tcp, "198.18.0.3", 80, "198.19.0.201", 8080, false), (.udp, "198.18.0.1", 53, "198.19.0.201", 53, false),
            (.tcp, "198.18.0.1", 22, "198.19.0.201", 22, false), (.tcp, "198.18.0.1", 22, "198.19.0.202", 22, true),
            (.tcp, "198.18.0.1", 22, "198.19.0.201", 22, true), (.tcp, "198.18.0.2", 0, "198.19.0.203", 0, true),
            (.tcp, "198.18.0.2", 443, "198.19.0.203", 443, false),
        ]
        let tcpStates: [ConnectionState] = [.established, .established, .finWait, .closeWait, .timeWait, .close, .synRecv]
        var results: [SyncApplyResult: Int] = [:]
        var time: Int64 = 0
        let flags: [TCPFlags] = [.syn, .ack, .ack, [.fin, .ack], .rst, [.syn, .ack]]
        for _ in 0..<6000 {
            let (proto, vip, vport, server, sport, isTemplate) = shapes[next(shapes.count)]
            if next(3) == 0 {
                // Traffic as after a takeover, on the same tuples: clients' packets and real servers'
                // answers, creating and moving entries of their own among the synced ones.
                let client = addr("198.18.0.\(10 + next(4))"), port = UInt16(40000 + next(8))
                let servicePort = vport == 0 ? 443 : vport, serverPort = sport == 0 ? 443 : sport
                let bytes: [UInt8]
                if next(2) == 0 {
                    let b = PacketBuilder(source: client, destination: addr(vip))
                    bytes = proto == .udp ? b.udp(port, servicePort) : b.tcp(port, servicePort, flags: flags[next(flags.count)])
                } else {
                    let b = PacketBuilder(source: addr(server), destination: client)
                    bytes = proto == .udp ? b.udp(serverPort, port) : b.tcp(serverPort, port, flags: flags[next(flags.count)])
                }
                _ = run(engine, bytes, at: Double(time) / 1e9)
                try checkCounts(engine, capacity: capacity)
                continue
            }
            let state: ConnectionState = next(10) == 0 ? ConnectionState(rawValue: UInt8(next(13)))
                : isTemplate ? .none : proto == .udp ? .udp : tcpStates[next(tcpStates.count)]
            var update = SyncUpdate(
                proto: proto, state: state, isTemplate: isTemplate, isActive: next(3) != 0 && state == .established,
                client: addr("198.18.0.\(10 + next(4))"), clientPort: isTemplate ? 0 : UInt16(40000 + next(8)),
                virtualAddress: addr(vip), virtualPort: vport, server: addr(server), serverPort: sport,
                timeout: UInt32([0, 1, 5, 30, 900, UInt32.max][next(6)]))
            switch next(24) {
            case 0: update.proto = [.icmp, .udp, .tcp][next(3)]
            case 1: update.virtualAddress = .v4(addr("198.18.0.9"))
            case 2: update.virtualPort = [81, 0, 53][next(3)]
            case 3: update.server = .v4(addr("198.19.0.9"))
            case 4: update.serverPort = [1, 80, 8080][next(3)]
            case 5: update.fwmark = 1
            case 6: update.isActive.toggle()
            default: break
            }
            results[engine.applySynced(update), default: 0] += 1
            if next(16) == 0 {
                time += Int64(next(20)) * ConnectionTable.nanosPerTick
                engine.advanceClock(to: time)
            }
            try checkCounts(engine, capacity: capacity)
        }
        // Every outcome was reached, so the loop exercised every path.
        for result in SyncApplyResult.allCases { #expect(results[result, default: 0] > 0, "\(result)") }
        // Past every timeout; then a template whose last connection ended in that sweep (re-armed for
        // 60 s, as IPVS does) has its turn.
        engine.advanceClock(to: time + 2000 * ConnectionTable.nanosPerTick)
        engine.advanceClock(to: time + 2100 * ConnectionTable.nanosPerTick)
        #expect(engine.counters.connectionsCreated > 0 && engine.counters.templatesCreated > 0)
        #expect(engine.table.connectionCount == 0 && engine.table.templateCount == 0)
        #expect(counts(engine).isEmpty)
    }

    func checkCounts(_ engine: Engine, capacity: Int) throws {
        let entries = engine.table.liveEntries
        #expect(entries.count <= capacity)
        #expect(entries.count == engine.table.connectionCount + engine.table.templateCount)
        var expected: [UInt32: Counts] = [:]
        for e in entries {
            #expect(e.countedActive == (!e.isTemplate && e.state == .established))
            #expect(e.timeout <= 900)
            if e.isTemplate {
                expected[e.destinationID, default: Counts()].persistent += 1
            } else if e.countedActive {
                expected[e.destinationID, default: Counts()].active += 1
            } else {
                expected[e.destinationID, default: Counts()].inactive += 1
            }
        }
        for case let d? in engine.destinations {
            let c = Counts(active: d.activeConnections, inactive: d.inactiveConnections, persistent: d.persistentConnections)
            #expect(c == expected[d.id, default: Counts()], "\(d.address):\(d.port)")
            if c != expected[d.id, default: Counts()] { throw CountsWrong() }
        }
    }

    struct CountsWrong: Error {}
}
