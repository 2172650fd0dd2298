import Testing
@testable import MasqCore

/// IPv6 entries in the connection table: found by their own 128-bit tuples only, never by an IPv4
/// lookup that happens to carry their folds; removed, templated, adopted and repaired as IPv4 ones.
@Suite struct TableIPv6Tests {
    static let client = IPv6Address("2001:2::12")!
    static let vip = IPv6Address("2001:2::1")!
    static let server = IPv6Address("2001:2:0:1::201")!
    static let addresses = ConnectionAddresses6(client: client, virtualAddress: vip, server: server)

    static func entry(clientPort: UInt16 = 40000, serviceID: UInt32 = 0, destinationID: UInt32 = 0,
                      template: Bool = false) -> Connection {
        let zero = IPv4Address(rawValue: 0)
        return Connection(proto: .tcp, state: template ? .none : .synRecv, isTemplate: template, countedActive: false,
                          client: zero, clientPort: template ? 0 : clientPort, virtualAddress: zero, virtualPort: 80,
                          server: zero, serverPort: 80, serviceID: serviceID, destinationID: destinationID,
                          controller: ConnectionTable.noSlot, timeout: 60, expires: 60_000_000_000,
                          packetsIn: 1, packetsOut: 0, bytesIn: 60, bytesOut: 0)
    }

    static var inbound: FlowKey6 {
        FlowKey6(source: client, destination: vip, sourcePort: 40000, destinationPort: 80, proto: .tcp)
    }

    static var outbound: FlowKey6 {
        FlowKey6(source: server, destination: client, sourcePort: 80, destinationPort: 40000, proto: .tcp)
    }

    @Test func anIPv6EntryIsFoundByItsOwnTuplesOnly() throws {
        let table = ConnectionTable(capacity: 64)
        let slot = try #require(table.insert(Self.entry(), addresses: Self.addresses))
        #expect(table[slot].isIPv6)
        #expect(table.addresses6(slot) == Self.addresses)
        #expect(table.lookup(Self.inbound).map { [$0.slot, UInt32($0.direction.rawValue)] } == [slot, 0])
        #expect(table.lookup(Self.outbound).map { [$0.slot, UInt32($0.direction.rawValue)] } == [slot, 1])
        // The IPv4 fields hold the folds: an IPv4 packet with those addresses finds nothing...
        let folds = FlowKey(source: IPv4Address(rawValue: Self.client.folded), destination: IPv4Address(rawValue: Self.vip.folded),
                            sourcePort: 40000, destinationPort: 80, proto: .tcp)
        #expect(table.lookup(folds) == nil)
        // ...and an IPv4 connection on exactly those values is a different entry, both found apart.
        var v4 = Self.entry()
        v4.client = IPv4Address(rawValue: Self.client.folded)
        v4.virtualAddress = IPv4Address(rawValue: Self.vip.folded)
        v4.server = IPv4Address(rawValue: Self.server.folded)
        let v4Slot = try #require(table.insert(v4))
        #expect(table.lookup(folds)?.slot == v4Slot)
        #expect(table.lookup(Self.inbound)?.slot == slot)
        // A second IPv6 entry with the same tuples is refused; another client port is not.
        #expect(table.insert(Self.entry(), addresses: Self.addresses) == nil)
        #expect(table.insert(Self.entry(clientPort: 40001), addresses: Self.addresses) != nil)
        #expect(table.connectionCount == 3)
        table.remove(slot)
        #expect(table.lookup(Self.inbound) == nil && table.lookup(Self.outbound) == nil)
        #expect(table.lookup(folds)?.slot == v4Slot)
        #expect(table.connectionCount == 2)
    }

    @Test func anIPv6TemplateIsKeyedByItsMaskedClient() throws {
        let table = ConnectionTable(capacity: 64)
        let prefix = Self.client.masked(prefixLength: 64)
        let a = ConnectionAddresses6(client: prefix, virtualAddress: Self.vip, server: Self.server)
        let slot = try #require(table.insert(Self.entry(template: true), addresses: a))
        let key = FlowKey6(source: prefix, destination: Self.vip, sourcePort: 0, destinationPort: 80, proto: .tcp)
        #expect(table.template(for: key) == slot)
        #expect(table.isCurrentTemplate(slot))
        #expect(table.template(for: FlowKey(source: IPv4Address(rawValue: prefix.folded),
                                            destination: IPv4Address(rawValue: Self.vip.folded),
                                            sourcePort: 0, destinationPort: 80, proto: .tcp)) == nil)
        table.invalidateTemplate(slot)
        #expect(table.template(for: key) == nil && !table.isCurrentTemplate(slot))
    }

    @Test func anIPv6EntryExpiresLikeAnyOther() throws {
        let table = ConnectionTable(capacity: 64)
        _ = try #require(table.insert(Self.entry(), addresses: Self.addresses))
        var removed: [Connection] = []
        table.expire(now: 0) { removed.append($0) }
        table.expire(now: 61_000_000_000) { removed.append($0) }
        #expect(removed.count == 1 && removed[0].isIPv6)
        #expect(table.lookup(Self.inbound) == nil && table.connectionCount == 0)
    }

    static func configuration() -> Configuration {
        Configuration(services: [ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 80),
                                             realServers: [RealServerSpec(address: server, port: 80)])])
    }

    /// An IPv6 service's records and an IPv6 flow outlive a clean restart and a crash: the next engine
    /// binds the same ids, finds the flow by its tuples and recounts the real server's InActConn.
    @Test(arguments: [true, false])
    func anIPv6FlowIsAdopted(clean: Bool) throws {
        let file = StateFile()
        do {
            let engine = Engine(configuration: Self.configuration(), memory: try TableMemory.shared(path: file.path, capacity: 64))
            let service = try #require(engine.services.first)
            let d = try #require(service.destinations.first)
            #expect(d.address == Self.server && d.address6 == Self.server)
            _ = try #require(engine.table.insert(Self.entry(serviceID: service.id, destinationID: d.id), addresses: Self.addresses))
            d.inactiveConnections += 1
            if clean { engine.markCleanShutdown() }
        }
        let engine = Engine(configuration: Self.configuration(), memory: try TableMemory.shared(path: file.path, capacity: 64))
        #expect(engine.adoption?.clean == clean)
        #expect(engine.adoption?.scrubbedSlots == 0)
        let slot = try #require(engine.table.lookup(Self.inbound)?.slot)
        #expect(engine.table.addresses6(slot) == Self.addresses)
        let d = try #require(engine.services.first?.destinations.first)
        #expect(d.address == Self.server && d.inactiveConnections == 1 && d.id == engine.table[slot].destinationID)
        let record = try #require(engine.flowRecords().first)
        #expect(record.client == Self.client && record.virtualAddress == Self.vip && record.server == Self.server)
        #expect(record.jsonLine.hasPrefix(
            #"{"proto":"tcp","client":"[2001:2::12]:40000","vip":"[2001:2::1]:80","real_server":"[2001:2:0:1::201]:80","#))
        #expect(try FlowFilter("client=[2001:2::12]:40000 vip=2001:2::1").matches(record))
        #expect(try !FlowFilter("client=[2001:2::13]").matches(record))
    }

    @Test func endpointsOfEitherFamilyParse() {
        #expect(IPAddress.endpoint("198.18.0.1:80").map { "\($0.address) \($0.port ?? 0)" } == "198.18.0.1 80")
        #expect(IPAddress.endpoint("198.18.0.1").map { "\($0.address) \($0.port.map(String.init) ?? "-")" } == "198.18.0.1 -")
        #expect(IPAddress.endpoint("[2001:2::1]:80").map { "\($0.address) \($0.port ?? 0)" } == "2001:2::1 80")
        #expect(IPAddress.endpoint("[2001:2::1]").map { "\($0.address) \($0.port.map(String.init) ?? "-")" } == "2001:2::1 -")
        #expect(IPAddress.endpoint("2001:2::1").map { "\($0.address) \($0.port.map(String.init) ?? "-")" } == "2001:2::1 -")
        for bad in ["[2001:2::1]:", "[2001:2::1]80", "[2001:2::1", "198.18.0.1:", "198.18.0.1:70000", "2001:2::1:80:x", ""] {
            #expect(IPAddress.endpoint(Substring(bad)) == nil, "\(bad)")
        }
    }
}
