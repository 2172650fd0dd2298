import Testing
@testable import MasqCore

/// Connection sync's engine side for IPv6 entries (IPVS `ip_vs_sync_v6`): what a master pushes for an
/// IPv6 connection and template, what `applySynced` makes of it on a backup, the whole-table walk, and
/// a round trip master → backup after which the backup NATs the flow as the master did.
@Suite struct IPv6SyncEngineTests {
    static let configuration = Configuration(services: [
        service6(.tcp, 80, [(web61, 8080, 1), (web62, 8080, 1)]),
        service6(.udp, 53, [(web61, 5353, 1)]),
        service6(.tcp, 22, persistence: 300, prefixLength: 64, [(web61, 22, 1), (web62, 22, 1)]),
        // web1:8080 behind a second port: its connections' reply tuples can collide with port 80's.
        service6(.tcp, 8000, [(web61, 8080, 1)]),
    ])

    static func popAll(_ outbox: SyncOutbox) -> [SyncUpdate] {
        let blank = SyncUpdate(proto: .tcp, state: .none, isActive: false, client: IPv4Address(rawValue: 0),
                               clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0,
                               server: IPv4Address(rawValue: 0), serverPort: 0, timeout: 0)
        let buffer = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: 256)
        buffer.initialize(repeating: blank)
        defer { buffer.deallocate() }
        return Array(buffer[0..<outbox.pop(into: buffer)])
    }

    static func tcp6(_ state: ConnectionState, client: IPv6Address = client6, port: UInt16 = 40000,
                     server: IPv6Address = web61, timeout: UInt32 = 900, active: Bool? = nil) -> SyncUpdate {
        SyncUpdate(proto: .tcp, state: state, isActive: active ?? (state == .established), client: .v6(client),
                   clientPort: port, virtualAddress: .v6(vip6), virtualPort: 80, server: .v6(server), serverPort: 8080,
                   timeout: timeout)
    }

    static func template6(client: IPv6Address, server: IPv6Address = web62) -> SyncUpdate {
        SyncUpdate(proto: .tcp, state: .none, isTemplate: true, isActive: false, client: .v6(client), clientPort: 0,
                   virtualAddress: .v6(vip6), virtualPort: 22, server: .v6(server), serverPort: 22, timeout: 300)
    }

    /// The master pushes an IPv6 UDP flow (threshold 1: its first packet) and an established TCP
    /// connection with its IPv6 addresses, and a persistent connection's template after it.
    @Test func theMasterPushesIPv6Entries() {
        let master = Engine(configuration: Self.configuration)
        let outbox = SyncOutbox(capacity: 64)
        master.syncOutbox = outbox
        master.syncSettings = SyncSettings(threshold: 1, period: 0)
        _ = run(master, c2v6.udp(5000, 53, payload: [1]), at: 0)
        #expect(Self.popAll(outbox) == [SyncUpdate(proto: .udp, state: .udp, isActive: false, client: .v6(client6),
                                                   clientPort: 5000, virtualAddress: .v6(vip6), virtualPort: 53,
                                                   server: .v6(web61), serverPort: 5353, timeout: 300)])
        master.syncSettings = SyncSettings()
        _ = run(master, c2v6.tcp(40022, 22, flags: .syn), at: 1)
        _ = run(master, w61c.tcp(22, 40022, flags: [.syn, .ack], seq: 5000, ack: 1001), at: 1)
        _ = run(master, c2v6.tcp(40022, 22, flags: .ack, seq: 1001, ack: 5001), at: 1)
        _ = run(master, c2v6.tcp(40022, 22, flags: .ack, seq: 1001, ack: 5001), at: 1)
        let pushed = Self.popAll(outbox)
        #expect(pushed == [
            SyncUpdate(proto: .tcp, state: .established, isActive: true, client: .v6(client6), clientPort: 40022,
                       virtualAddress: .v6(vip6), virtualPort: 22, server: .v6(web61), serverPort: 22, timeout: 900),
            SyncUpdate(proto: .tcp, state: .none, isTemplate: true, isActive: false, client: .v6(addr6("2001:2::")),
                       clientPort: 0, virtualAddress: .v6(vip6), virtualPort: 22, server: .v6(web61), serverPort: 22,
                       timeout: 300),
        ])
    }

    /// The whole-table walk sends IPv6 entries with their addresses, IPv4 ones beside them.
    @Test func theWalkIncludesIPv6Entries() {
        let master = Engine(configuration: Configuration(services: Self.configuration.services + [
            ServiceSpec(key: ServiceKey(proto: .udp, address: vip, port: 53), scheduler: "rr",
                        realServers: [RealServerSpec(address: web1, port: 53)]),
        ]))
        _ = run(master, c2v6.udp(5000, 53, payload: [1]), at: 0)
        _ = run(master, c2v.udp(5001, 53, payload: [1]), at: 0)
        _ = run(master, c2v6.tcp(40022, 22, flags: .syn), at: 0)  // SYN_RECV: not sent; its template is
        var cursor: UInt32? = 0
        let buffer = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: 16)
        buffer.initialize(repeating: SyncUpdate(proto: .tcp, state: .none, isActive: false, client: IPv4Address(rawValue: 0),
                                                clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0,
                                                server: IPv4Address(rawValue: 0), serverPort: 0, timeout: 0))
        defer { buffer.deallocate() }
        var walked: [SyncUpdate] = []
        while cursor != nil { walked += buffer[0..<master.collectSyncable(from: &cursor, into: buffer)] }
        #expect(walked.count == 3)
        #expect(walked.contains { $0.client == .v6(client6) && $0.server == .v6(web61) && $0.proto == .udp })
        #expect(walked.contains { $0.client == .v4(client) && $0.server == .v4(web1) })
        #expect(walked.contains { $0.isTemplate && $0.client == .v6(addr6("2001:2::")) && $0.virtualAddress == .v6(vip6) })
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var description: String
        var before: [SyncUpdate] = []
        var update: SyncUpdate
        var expected: SyncApplyResult
        var connections = 0
        var templates = 0
        var testDescription: String { description }
    }

    static let cases: [Case] = [
        Case(description: "an established connection is created", update: tcp6(.established), expected: .created,
             connections: 1),
        Case(description: "the same again updates it", before: [tcp6(.synRecv)], update: tcp6(.established),
             expected: .updated, connections: 1),
        Case(description: "another real server replaces it", before: [tcp6(.established)],
             update: tcp6(.established, server: web62), expected: .replaced, connections: 1),
        Case(description: "an INACTIVE update for one bound elsewhere is ignored", before: [tcp6(.established)],
             update: tcp6(.close, server: web62, active: false), expected: .staleIgnored, connections: 1),
        Case(description: "no such real server", update: tcp6(.established, server: addr6("2001:2:0:1::209")),
             expected: .noDestination),
        Case(description: "an IPv6 client for an IPv4 address is refused",
             update: SyncUpdate(proto: .tcp, state: .established, isActive: true, client: .v6(client6), clientPort: 1,
                                virtualAddress: .v4(vip), virtualPort: 80, server: .v6(web61), serverPort: 8080, timeout: 900),
             expected: .unknownService),
        Case(description: "an IPv6 service's entry with an IPv4 real server is refused",
             update: SyncUpdate(proto: .tcp, state: .established, isActive: true, client: .v6(client6), clientPort: 1,
                                virtualAddress: .v6(vip6), virtualPort: 80, server: .v4(web1), serverPort: 8080, timeout: 900),
             expected: .unknownService),
        Case(description: "a connection whose reply tuple another connection holds conflicts",
             before: [tcp6(.established)],
             update: SyncUpdate(proto: .tcp, state: .established, isActive: true, client: .v6(client6), clientPort: 40000,
                                virtualAddress: .v6(vip6), virtualPort: 8000, server: .v6(web61), serverPort: 8080, timeout: 900),
             expected: .conflict, connections: 1),
        Case(description: "a template is created under the local prefix length",
             update: template6(client: addr6("2001:2::77")), expected: .created, templates: 1),
        Case(description: "a template from another real server replaces the old one",
             before: [template6(client: addr6("2001:2::"))], update: template6(client: addr6("2001:2::"), server: web61),
             expected: .replaced, templates: 1),
    ]

    @Test(arguments: cases) func apply(_ c: Case) {
        let backup = Engine(configuration: Self.configuration)
        for u in c.before { #expect([.created, .replaced].contains(backup.applySynced(u)), "before: \(u)") }
        #expect(backup.applySynced(c.update) == c.expected)
        #expect(backup.table.connectionCount == c.connections)
        #expect(backup.table.templateCount == c.templates)
    }

    /// Master → backup: every update the master pushed, applied on the backup, gives the backup the
    /// flow (its reply NATed from the VIP, its next client packet to the same real server, not
    /// rescheduled) and the template (a new connection of the same /64 goes to the template's server).
    @Test func aRoundTripThroughApplySynced() throws {
        let master = Engine(configuration: Self.configuration)
        let outbox = SyncOutbox(capacity: 64)
        master.syncOutbox = outbox
        // web2 first on the master (rr already used web1 once), so the backup's own rr would differ.
        _ = run(master, c2v6.tcp(39999, 22, flags: .syn), at: 0)
        let handshake: [[UInt8]] = [
            V6Builder(source: addr6("2001:2:0:7::5"), destination: vip6).tcp(40022, 22, flags: .syn),
            V6Builder(source: web62, destination: addr6("2001:2:0:7::5")).tcp(22, 40022, flags: [.syn, .ack], seq: 5000, ack: 1001),
            V6Builder(source: addr6("2001:2:0:7::5"), destination: vip6).tcp(40022, 22, flags: .ack, seq: 1001, ack: 5001),
            V6Builder(source: addr6("2001:2:0:7::5"), destination: vip6).tcp(40022, 22, flags: .ack, seq: 1001, ack: 5001),
        ]
        for p in handshake { #expect(run(master, p, at: 1).0.accepts) }
        let updates = Self.popAll(outbox)
        #expect(updates.count == 2)
        let backup = Engine(configuration: Self.configuration)
        for u in updates { #expect(backup.applySynced(u) == .created) }
        let key = FlowKey6(source: addr6("2001:2:0:7::5"), destination: vip6, sourcePort: 40022, destinationPort: 22, proto: .tcp)
        let (slot, _) = try #require(backup.table.lookup(key))
        #expect(backup.table[slot].isSynced && backup.table[slot].state == .established)
        #expect(backup.table.addresses6(slot).server == web62)
        let web2 = try #require(backup.service(ServiceKey(proto: .tcp, address: vip6, port: 22))?.destinations[1])
        #expect(web2.address == .v6(web62) && web2.activeConnections == 1 && web2.persistentConnections == 1)
        // The reply on the backup leaves from the VIP; the client's next packet goes to web2.
        let reply = V6Builder(source: web62, destination: addr6("2001:2:0:7::5")).tcp(22, 40022, flags: .ack, seq: 5001, ack: 1001)
        let (v, out) = run(backup, reply, at: 2)
        #expect(v == .rewritten(.outbound))
        #expect(out == V6Builder(source: vip6, destination: addr6("2001:2:0:7::5")).tcp(22, 40022, flags: .ack, seq: 5001, ack: 1001))
        let (v2, out2) = run(backup, handshake[3], at: 2)
        #expect(v2 == .rewritten(.inbound))
        #expect(out2 == V6Builder(source: addr6("2001:2:0:7::5"), destination: web62).tcp(40022, 22, flags: .ack, seq: 1001, ack: 5001))
        // A new client of the same /64 follows the synced template: web2, where the backup's rr would
        // have started with web1.
        let (v3, out3) = run(backup, V6Builder(source: addr6("2001:2:0:7::9"), destination: vip6).tcp(41000, 22, flags: .syn), at: 3)
        #expect(v3 == .rewritten(.inbound))
        #expect(out3 == V6Builder(source: addr6("2001:2:0:7::9"), destination: web62).tcp(41000, 22, flags: .syn))
        #expect(backup.counters.syncedCreated == 2 && backup.counters.templatesCreated == 0)
    }
}
