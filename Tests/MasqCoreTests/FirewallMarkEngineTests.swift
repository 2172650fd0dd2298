import Testing
@testable import MasqCore

/// Firewall-mark services (ipvsadm `-f`, IPVS `ip_vs_service_find` by `skb->mark`) and one-packet
/// scheduling (`-o`, IPVS `IP_VS_CONN_F_ONE_PACKET`) on the packet path, with Configuration values
/// built directly (the rules-file syntax is another suite's).
@Suite struct FirewallMarkEngineTests {
    static let client = addr("198.18.0.12")
    static let vip = addr("198.18.0.1")
    static let otherVIP = addr("198.18.0.2")
    static let web1 = addr("198.19.0.201")
    static let web2 = addr("198.19.0.202")
    static let marked = PacketMeta(mark: 1)

    static func fwmarkService(mark: UInt32 = 1, persistence: UInt32? = nil, ports: (UInt16, UInt16) = (0, 0),
                              onePacket: Bool = false) -> ServiceSpec {
        ServiceSpec(key: ServiceKey(fwmark: mark), scheduler: "rr", persistence: persistence, onePacket: onePacket,
                    realServers: [RealServerSpec(address: web1, port: ports.0), RealServerSpec(address: web2, port: ports.1)])
    }

    static func engine(_ services: ServiceSpec...) -> Engine {
        Engine(configuration: Configuration(services: services), capacity: 1024)
    }

    /// The real server and port a rewritten client packet went to.
    static func destination(_ bytes: [UInt8]) -> (IPv4Address, UInt16) {
        (IPv4Address(rawValue: UInt32(bytes[16]) << 24 | UInt32(bytes[17]) << 16 | UInt32(bytes[18]) << 8 | UInt32(bytes[19])),
         UInt16(bytes[22]) << 8 | UInt16(bytes[23]))
    }

    static func source(_ bytes: [UInt8]) -> (IPv4Address, UInt16) {
        (IPv4Address(rawValue: UInt32(bytes[12]) << 24 | UInt32(bytes[13]) << 16 | UInt32(bytes[14]) << 8 | UInt32(bytes[15])),
         UInt16(bytes[20]) << 8 | UInt16(bytes[21]))
    }

    struct MarkCase: CustomTestStringConvertible, Sendable {
        var description: String
        var mark: UInt32
        var proto: IPProtocol
        var destination: IPv4Address
        var port: UInt16
        /// nil: accepted untouched.
        var expected: (IPv4Address, UInt16)?
        var testDescription: String { description }
    }

    static let markCases: [MarkCase] = [
        MarkCase(description: "marked TCP to any address goes to the mark's service, its port kept (port-0 real server)",
                 mark: 1, proto: .tcp, destination: otherVIP, port: 443, expected: (web1, 443)),
        MarkCase(description: "marked UDP too: a firewall-mark service takes both protocols",
                 mark: 1, proto: .udp, destination: vip, port: 53, expected: (web1, 53)),
        MarkCase(description: "marked before the address service of the same VIP:port (fwmark first)",
                 mark: 1, proto: .tcp, destination: vip, port: 80, expected: (web1, 80)),
        MarkCase(description: "unmarked to the address service: looked up by address as before",
                 mark: 0, proto: .tcp, destination: vip, port: 80, expected: (web2, 8080)),
        MarkCase(description: "unmarked elsewhere: untouched",
                 mark: 0, proto: .tcp, destination: otherVIP, port: 443, expected: nil),
        MarkCase(description: "a mark without a service falls back to the address lookup",
                 mark: 7, proto: .tcp, destination: vip, port: 80, expected: (web2, 8080)),
        MarkCase(description: "a mark without a service and no address service: untouched",
                 mark: 7, proto: .tcp, destination: otherVIP, port: 80, expected: nil),
    ]

    @Test(arguments: markCases)
    func lookup(_ c: MarkCase) {
        let address = ServiceSpec(key: ServiceKey(proto: .tcp, address: Self.vip, port: 80), scheduler: "rr",
                                  realServers: [RealServerSpec(address: Self.web2, port: 8080)])
        let engine = Self.engine(Self.fwmarkService(), address)
        let b = PacketBuilder(source: Self.client, destination: c.destination)
        let packet = c.proto == .tcp ? b.tcp(40000, c.port, flags: .syn) : b.udp(40000, c.port, payload: [1, 2, 3])
        let (verdict, out) = run(engine, packet, meta: PacketMeta(mark: c.mark))
        if let expected = c.expected {
            #expect(verdict == .rewritten(.inbound))
            #expect(Self.destination(out) == expected)
            #expect(checksumsValid(out))
        } else {
            #expect(verdict == .accept && out == packet)
        }
    }

    /// A firewall-mark service of the other family does not take the packet (`__ip_vs_svc_fwm_find`
    /// matches the family): an IPv6-only mark leaves an IPv4 packet alone.
    @Test func markOfTheOtherFamily() {
        var v6 = Self.fwmarkService()
        v6.key = ServiceKey(fwmark: 1, ipv6: true)
        v6.realServers = [RealServerSpec(address: .v6(IPv6Address("2001:2::201")!), port: 0)]
        let engine = Self.engine(v6)
        let packet = PacketBuilder(source: Self.client, destination: Self.vip).tcp(40000, 80, flags: .syn)
        #expect(run(engine, packet, meta: Self.marked).0 == .accept)
    }

    /// The flow's later packets and its replies follow the entry (keyed by 5-tuple), marked or not;
    /// a real server with a port is sent to that port whatever the client asked for.
    @Test func flowAndReplies() {
        let engine = Self.engine(Self.fwmarkService(ports: (8080, 8080)))
        let c2v = PacketBuilder(source: Self.client, destination: Self.vip)
        let (v1, o1) = run(engine, c2v.tcp(40000, 443, flags: .syn), meta: Self.marked)
        #expect(v1 == .rewritten(.inbound) && Self.destination(o1) == (Self.web1, 8080))
        let reply = PacketBuilder(source: Self.web1, destination: Self.client).tcp(8080, 40000, flags: [.syn, .ack])
        let (v2, o2) = run(engine, reply)
        #expect(v2 == .rewritten(.outbound) && Self.source(o2) == (Self.vip, 443) && checksumsValid(o2))
        let (v3, o3) = run(engine, c2v.tcp(40000, 443, flags: .ack), meta: PacketMeta())
        #expect(v3 == .rewritten(.inbound) && Self.destination(o3) == (Self.web1, 8080))
        let records = engine.flowRecords()
        #expect(records.count == 1 && records[0].virtualAddress == .v4(Self.vip) && records[0].virtualPort == 443)
        // rr: the next connection goes to web2.
        let (_, o4) = run(engine, c2v.tcp(40001, 80, flags: .syn), meta: Self.marked)
        #expect(Self.destination(o4) == (Self.web2, 8080))
    }

    /// Persistence: IPVS's fwmark template `<IPPROTO_IP, caddr, 0, fwmark, 0>`: one client's flows to
    /// any address, port and protocol of the mark share the real server.
    @Test func persistenceTemplate() {
        let engine = Self.engine(Self.fwmarkService(persistence: 300))
        let b1 = PacketBuilder(source: Self.client, destination: Self.vip)
        let b2 = PacketBuilder(source: Self.client, destination: Self.otherVIP)
        let (_, first) = run(engine, b1.tcp(40000, 80, flags: .syn), meta: Self.marked)
        let (_, second) = run(engine, b2.tcp(40001, 443, flags: .syn), meta: Self.marked)
        let (_, third) = run(engine, b1.udp(40002, 53, payload: [1]), meta: Self.marked)
        #expect(Self.destination(first) == (Self.web1, 80))
        #expect(Self.destination(second) == (Self.web1, 443))
        #expect(Self.destination(third) == (Self.web1, 53))
        let templates = engine.flowRecords().filter(\.isTemplate)
        #expect(templates.count == 1)
        #expect(templates.first?.virtualAddress == .v4(IPv4Address(rawValue: 1)) && templates.first?.virtualPort == 0)
        // Another client is scheduled anew: web2.
        let other = PacketBuilder(source: addr("198.18.0.13"), destination: Self.vip)
        #expect(Self.destination(run(engine, other.tcp(40000, 80, flags: .syn), meta: Self.marked).1) == (Self.web2, 80))
    }

    /// `-o`: each datagram scheduled alone (rr alternates within one client socket), no entry kept,
    /// every datagram a connection in `--stats`; the answers leave from the VIP and port, reversed by
    /// real server endpoint.
    @Test func onePacketScheduling() {
        let spec = ServiceSpec(key: ServiceKey(proto: .udp, address: Self.vip, port: 53), scheduler: "rr", onePacket: true,
                               realServers: [RealServerSpec(address: Self.web1, port: 5353), RealServerSpec(address: Self.web2, port: 0)])
        let engine = Self.engine(spec)
        let c2v = PacketBuilder(source: Self.client, destination: Self.vip)
        var servers: [(IPv4Address, UInt16)] = []
        for _ in 0..<4 {
            let (verdict, out) = run(engine, c2v.udp(40000, 53, payload: [1, 2]))
            #expect(verdict == .rewritten(.inbound) && checksumsValid(out))
            servers.append(Self.destination(out))
        }
        #expect(servers.map(\.0) == [Self.web1, Self.web2, Self.web1, Self.web2])
        #expect(servers.map(\.1) == [5353, 53, 5353, 53])
        #expect(engine.flowRecords().isEmpty && engine.table.connectionCount == 0)
        let service = engine.services[0]
        #expect(engine.serviceStats[Int(service.id)].connections == 4)
        #expect(service.destinations.allSatisfy { $0.activeConnections == 0 && $0.inactiveConnections == 0 })
        for (server, port) in [(Self.web1, UInt16(5353)), (Self.web2, 53)] {
            let answer = PacketBuilder(source: server, destination: Self.client).udp(port, 40000, payload: [3, 4, 5])
            let (verdict, out) = run(engine, answer)
            #expect(verdict == .rewritten(.outbound))
            #expect(Self.source(out) == (Self.vip, 53) && checksumsValid(out))
        }
        #expect(engine.serviceStats[Int(service.id)].packetsOut == 2)
        // The real server's other traffic is left alone.
        let unrelated = PacketBuilder(source: Self.web1, destination: Self.client).udp(5354, 40000, payload: [1])
        #expect(run(engine, unrelated).0 == .accept)
    }

    /// `-o` on a TCP service (or a firewall-mark one) changes nothing: connections keep their entries.
    @Test func onePacketOnlyForUDPAddressServices() {
        let engine = Self.engine(Self.fwmarkService(onePacket: true))
        let b = PacketBuilder(source: Self.client, destination: Self.vip)
        #expect(run(engine, b.udp(40000, 53, payload: [1]), meta: Self.marked).0 == .rewritten(.inbound))
        #expect(engine.table.connectionCount == 1)
        #expect(engine.onePacketReplies.isEmpty)
    }

    /// Sync: a firewall-mark service's connection and template carry the mark (the template with
    /// protocol 0, as the kernel's); a backup with the same service takes them by mark.
    @Test func syncCarriesTheMark() {
        let master = Self.engine(Self.fwmarkService(persistence: 300))
        let outbox = SyncOutbox(capacity: 16)
        master.syncOutbox = outbox
        master.syncSettings = SyncSettings(threshold: 1, period: 0)
        let b = PacketBuilder(source: Self.client, destination: Self.vip)
        _ = run(master, b.udp(40000, 53, payload: [1]), meta: Self.marked)
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 16)
        let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
        let updates = Array(buffer[0..<n])
        #expect(updates.count == 2)
        #expect(updates.allSatisfy { $0.fwmark == 1 })
        #expect(updates.first { !$0.isTemplate }?.proto == .udp)
        #expect(updates.first { $0.isTemplate }?.proto == IPProtocol(rawValue: 0))

        let backup = Self.engine(Self.fwmarkService(persistence: 300))
        #expect(updates.map { backup.applySynced($0) } == [.created, .created])
        #expect(backup.table.connectionCount == 1 && backup.table.templateCount == 1)
        // The backup's template is the one its packet path finds: a new flow of the client after
        // takeover goes to the same real server.
        let (_, out) = run(backup, b.tcp(40001, 80, flags: .syn), meta: Self.marked)
        #expect(Self.destination(out) == (Self.web1, 80))
        // Without the fwmark service, the backup refuses them.
        let plain = Self.engine(ServiceSpec(key: ServiceKey(proto: .udp, address: Self.vip, port: 53),
                                            realServers: [RealServerSpec(address: Self.web1, port: 53)]))
        #expect(updates.map { plain.applySynced($0) } == [.unknownService, .unknownService])
    }

    /// One-packet datagrams are never synced: no entry.
    @Test func onePacketNotSynced() {
        let spec = ServiceSpec(key: ServiceKey(proto: .udp, address: Self.vip, port: 53), onePacket: true,
                               realServers: [RealServerSpec(address: Self.web1, port: 53)])
        let engine = Self.engine(spec)
        let outbox = SyncOutbox(capacity: 16)
        engine.syncOutbox = outbox
        engine.syncSettings = SyncSettings(threshold: 1, period: 0)
        _ = run(engine, PacketBuilder(source: Self.client, destination: Self.vip).udp(40000, 53, payload: [1]))
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 16)
        #expect(buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) } == 0)
    }

    /// The state file's service record tells a firewall-mark service apart: after adoption the same
    /// service keeps its id and its flows.
    @Test func adoptionKeepsTheFirewallMarkService() {
        let memory = TableMemory.anonymous(capacity: 1024)
        let configuration = Configuration(services: [
            ServiceSpec(key: ServiceKey(proto: .tcp, address: IPv4Address(rawValue: 0), port: 0)),
            Self.fwmarkService(),
        ])
        let first = Engine(configuration: configuration, memory: memory)
        let record = first.registry.services[Int(first.services[1].id)]
        #expect(record.key == ServiceKey(fwmark: 1) && record.fwmark == 1)
        #expect(first.registry.services[Int(first.services[0].id)].key == configuration.services[0].key)
        var fw6 = ServiceKey(fwmark: 9, ipv6: true)
        fw6.fwmark = 9
        let record6 = ServiceRecord(inUse: 1, inService: 1, port: 0, proto: 6, family: 6, kind: ServiceRecord.firewallMarkKind,
                                    reserved: 0, address: 9, address6: .unspecified, stats: TrafficCounters())
        #expect(record6.key == fw6)
    }
}
