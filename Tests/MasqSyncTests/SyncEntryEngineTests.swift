import MasqCore
import Testing
@testable import MasqSync

/// The engine's `SyncUpdate` and the wire's `SyncEntry`, each way, and a master engine's outbox
/// carried through the encoder and decoder into a backup engine: the backup ends up with the
/// master's table.
@Suite struct SyncEntryEngineTests {
    static let client = IPv4Address(198, 18, 0, 12), vip = IPv4Address(198, 18, 0, 1)
    static let rs1 = IPv4Address(198, 19, 0, 201), rs2 = IPv4Address(198, 19, 0, 202)

    static func update(_ proto: IPProtocol = .tcp, _ state: ConnectionState, template: Bool = false,
                       active: Bool = false, port: UInt16 = 40000, timeout: UInt32 = 900) -> SyncUpdate {
        SyncUpdate(proto: proto, state: state, isTemplate: template, isActive: active, client: client,
                   clientPort: template ? 0 : port, virtualAddress: vip, virtualPort: 80, server: rs1,
                   serverPort: 8080, timeout: timeout)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var description: String
        var update: SyncUpdate
        var flags: SyncFlags
        var state: SyncState
        var testDescription: String { description }
    }

    static let cases: [Case] = [
        Case(description: "ESTABLISHED, active: no flag", update: update(.tcp, .established, active: true),
             flags: [], state: .tcpEstablished),
        Case(description: "FIN_WAIT: INACTIVE", update: update(.tcp, .finWait, timeout: 120),
             flags: [.inactive], state: .tcpFinWait),
        Case(description: "TIME_WAIT: INACTIVE", update: update(.tcp, .timeWait, timeout: 120),
             flags: [.inactive], state: .tcpTimeWait),
        Case(description: "UDP: INACTIVE, NORMAL", update: update(.udp, .udp, timeout: 300),
             flags: [.inactive], state: .udpNormal),
        Case(description: "template: TEMPLATE, no INACTIVE, state NONE",
             update: update(.tcp, .none, template: true, timeout: 300), flags: [.template], state: .templateNone),
    ]

    @Test(arguments: cases)
    func toTheWireAndBack(_ c: Case) throws {
        let entry = SyncEntry(c.update)
        #expect(entry.flags == c.flags)
        #expect(entry.flags.forwarding == .masquerade)
        #expect(entry.state == c.state)
        #expect(entry.proto == c.update.proto && entry.fwmark == 0)
        #expect(entry.clientAddress == c.update.client && entry.clientPort == c.update.clientPort)
        #expect(entry.virtualAddress == c.update.virtualAddress && entry.virtualPort == c.update.virtualPort)
        #expect(entry.destinationAddress == c.update.server && entry.destinationPort == c.update.serverPort)
        #expect(entry.timeoutSeconds == c.update.timeout)
        #expect(entry.sequence == nil && entry.persistenceEngineName == nil)
        #expect(entry.update == c.update)
        // Through the codec, as a backup receives it.
        var datagram: [UInt8] = []
        #expect(try SyncEncoder.encode([entry], syncID: 1, into: &datagram) == 1)
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.isComplete)
        #expect(decoded.entries.map(\.update) == [c.update])
    }

    /// Entries whose state means nothing for their protocol have no update (the receiver counts them).
    @Test(arguments: [
        SyncEntry(proto: .tcp, state: SyncState(rawValue: 11), clientAddress: client, clientPort: 1,
                  virtualAddress: vip, virtualPort: 80, destinationAddress: rs1, destinationPort: 80),
        SyncEntry(proto: .udp, state: SyncState(rawValue: 1), clientAddress: client, clientPort: 1,
                  virtualAddress: vip, virtualPort: 53, destinationAddress: rs1, destinationPort: 53),
        SyncEntry(proto: .tcp, flags: .template, state: SyncState(rawValue: 2), clientAddress: client,
                  clientPort: 0, virtualAddress: vip, virtualPort: 80, destinationAddress: rs1, destinationPort: 80),
        SyncEntry(proto: IPProtocol(rawValue: 132), state: .tcpEstablished, clientAddress: client, clientPort: 1,
                  virtualAddress: vip, virtualPort: 80, destinationAddress: rs1, destinationPort: 80),
    ])
    func noUpdateForAStateThatMeansNothing(_ entry: SyncEntry) {
        #expect(entry.update == nil)
    }

    /// A kernel master's ASSURED template is a template to masq (its state NONE), and a kernel
    /// master's INACTIVE flag on a template is not an inactive connection.
    @Test func kernelTemplateFlags() {
        let entry = SyncEntry(proto: .tcp, flags: [.template, .inactive], state: .templateAssured,
                              clientAddress: Self.client, clientPort: 0, virtualAddress: Self.vip, virtualPort: 80,
                              destinationAddress: Self.rs1, destinationPort: 8080, timeoutSeconds: 360)
        let u = entry.update
        #expect(u?.isTemplate == true && u?.state == ConnectionState.none && u?.isActive == false)
    }

    // MARK: master → wire → backup

    static let configuration = Configuration(services: [
        ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 80), scheduler: "rr",
                    realServers: [RealServerSpec(address: rs1, port: 8080), RealServerSpec(address: rs2, port: 8080)]),
        ServiceSpec(key: ServiceKey(proto: .udp, address: vip, port: 53), scheduler: "rr",
                    realServers: [RealServerSpec(address: rs1, port: 53), RealServerSpec(address: rs2, port: 53)]),
        ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 22), scheduler: "rr", persistence: 300,
                    realServers: [RealServerSpec(address: rs1, port: 22), RealServerSpec(address: rs2, port: 22)]),
    ])

    /// Clients' traffic through a master engine with an outbox; the updates drained, encoded into
    /// datagrams of at most 1472 bytes, decoded and applied to a backup engine with the same services:
    /// the backup holds every connection the master would sync, on the same real servers, in the same
    /// states, and its real servers' counts match.
    @Test func aBackupGetsTheMastersTable() throws {
        let master = Engine(configuration: Self.configuration)
        let backup = Engine(configuration: Self.configuration)
        let outbox = SyncOutbox(capacity: 1024)
        master.syncOutbox = outbox
        var time: Int64 = 1_000_000_000
        func send(_ packet: [UInt8]) {
            var bytes = packet
            let verdict = bytes.withUnsafeMutableBytes { master.process(PacketBytes($0), now: time) }
            #expect(verdict != .accept)
            time += 1_000_000
        }
        for i in 0..<40 {
            let client = IPv4Address(198, 18, 2, UInt8(i))
            let port = UInt16(40000 + i)
            switch i % 4 {
            case 0, 1:  // web: established, 3 client packets
                send(tcpPacket(client, port, Self.vip, 80, flags: 0x02))
                for _ in 0..<2 { send(tcpPacket(client, port, Self.vip, 80, flags: 0x10)) }
            case 2:  // ssh, persistent: established; the template follows its connection
                send(tcpPacket(client, port, Self.vip, 22, flags: 0x02))
                for _ in 0..<2 { send(tcpPacket(client, port, Self.vip, 22, flags: 0x10)) }
                send(tcpPacket(client, port, Self.vip, 22, flags: 0x11))  // FIN: CLOSE_WAIT at once
            default:  // dns
                for _ in 0..<3 { send(udpPacket(client, port, Self.vip, 53)) }
            }
        }
        var buffer = [SyncUpdate](repeating: Self.update(.tcp, .none), count: 256)
        var updates: [SyncUpdate] = []
        while true {
            let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
            if n == 0 { break }
            updates += buffer.prefix(n)
        }
        #expect(updates.count == 20 + 10 * 2 + 10 * 2 + 10)  // web, ssh ES + CW each with its template, dns
        let datagrams = try SyncEncoder.encodeAll(updates.map(SyncEntry.init), syncID: 9)
        #expect(datagrams.allSatisfy { $0.count <= 1472 })
        backup.advanceClock(to: time)
        var results: [SyncApplyResult: Int] = [:]
        for datagram in datagrams {
            let decoding = SyncDecoder.decode(datagram, syncID: 9)
            #expect(decoding.isComplete)
            for entry in decoding.entries {
                let u = try #require(entry.update)
                results[backup.applySynced(u), default: 0] += 1
            }
        }
        #expect(results == [.created: 50, .updated: 20])  // ssh: CW updates the ES entry, the template comes again
        func shape(_ e: Engine) -> [String] {
            e.table.liveEntries.map { "\($0.proto) \($0.client):\($0.clientPort) \($0.virtualAddress):\($0.virtualPort) \($0.server):\($0.serverPort) \($0.state) \($0.isTemplate) \($0.timeout)" }.sorted()
        }
        #expect(shape(backup) == shape(master))
        for (m, b) in zip(master.destinations, backup.destinations) {
            #expect(m?.activeConnections == b?.activeConnections)
            #expect(m?.inactiveConnections == b?.inactiveConnections)
            #expect(m?.persistentConnections == b?.persistentConnections)
        }
        #expect(backup.table.liveEntries.allSatisfy { $0.isSynced })
        #expect(!master.table.liveEntries.contains { $0.isSynced })
    }
}

// Minimal IPv4 packets with valid checksums (MasqCoreTests has the full PacketBuilder).

private func checksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
    var sum = initial
    var i = 0
    while i + 1 < bytes.count {
        sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
    while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

private func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
private func be32(_ v: UInt32) -> [UInt8] { be16(UInt16(v >> 16)) + be16(UInt16(v & 0xffff)) }

private func ipPacket(_ proto: UInt8, _ source: IPv4Address, _ destination: IPv4Address, _ l4: [UInt8]) -> [UInt8] {
    var l4 = l4
    let pseudo = be32(source.rawValue) + be32(destination.rawValue) + [0, proto] + be16(UInt16(l4.count))
    let offset = proto == 6 ? 16 : 6
    let c = checksum(pseudo + l4)
    l4[offset] = UInt8(c >> 8)
    l4[offset + 1] = UInt8(c & 0xff)
    var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + l4.count)) + [0, 1, 0x40, 0, 64, proto, 0, 0]
    ip += be32(source.rawValue) + be32(destination.rawValue)
    let h = checksum(ip)
    ip[10] = UInt8(h >> 8)
    ip[11] = UInt8(h & 0xff)
    return ip + l4
}

private func tcpPacket(_ source: IPv4Address, _ sport: UInt16, _ destination: IPv4Address, _ dport: UInt16,
                       flags: UInt8) -> [UInt8] {
    ipPacket(6, source, destination, be16(sport) + be16(dport) + be32(1) + be32(1) + [0x50, flags] + be16(65535) + [0, 0, 0, 0])
}

private func udpPacket(_ source: IPv4Address, _ sport: UInt16, _ destination: IPv4Address, _ dport: UInt16) -> [UInt8] {
    ipPacket(17, source, destination, be16(sport) + be16(dport) + be16(9) + [0, 0, 0x42])
}
