import MasqRules
import Testing
@testable import MasqCore

/// The destination record: one per real server, its weight, its service, in service or draining.
@Suite struct DestinationTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s wrr
        -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 3
        -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
        """
    static let key = ServiceKey(proto: .tcp, address: vip, port: 80)

    func record(_ engine: Engine, _ address: IPv4Address) throws -> Destination {
        try #require(engine.destinations.compactMap { $0 }.first { $0.address == address })
    }

    @Test func aRecordKnowsItsServiceAndWeight() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let service = try #require(engine.service(Self.key))
        for (d, weight) in zip(service.destinations, [Int32(3), 1]) {
            #expect(d.serviceID == service.id && d.proto == .tcp && d.port == 8080)
            #expect(d.weight == weight && d.lastWeight == weight && d.isAvailable && d.inService)
            #expect(engine.destinations[Int(d.id)] === d)
        }
    }

    /// Weight 0 quiesces: no new connections, the last weight kept for the hashing schedulers, the
    /// existing connection still NATed.
    @Test func weightZeroQuiesces() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(run(engine, syn, at: 0).0 == .rewritten(.inbound))  // wrr: web1 first
        let web1Record = try record(engine, web1)
        var configuration = try RulesFile.parse(Self.rules)
        configuration.services[0].realServers[0].weight = 0
        engine.apply(configuration)
        #expect(web1Record.weight == 0 && web1Record.lastWeight == 3 && !web1Record.isAvailable)
        #expect(web1Record.inService)
        for port: UInt16 in 41000..<41004 {
            let (v, out) = run(engine, c2v.tcp(port, 80, flags: .syn), at: 1)
            #expect(v == .rewritten(.inbound) && Array(out[16..<20]) == [198, 19, 0, 202])
        }
        #expect(run(engine, w1c.tcp(8080, 40000, flags: [.syn, .ack]), at: 1).0 == .rewritten(.outbound))
        #expect(web1Record.inactiveConnections == 1)
    }

    /// A real server removed with a connection still open drains: out of its service (and of ipvsadm's
    /// list), its replies still NATed, its record kept until that connection ends, then released.
    @Test func aRemovedRealServerDrainsThenIsReleased() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(run(engine, syn, at: 0).0 == .rewritten(.inbound))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 0.1).0 == .rewritten(.inbound))
        let web1Record = try record(engine, web1)
        #expect(web1Record.activeConnections == 1)
        engine.apply(try RulesFile.parse("-A -t 198.18.0.1:80 -s wrr\n-a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m"))
        #expect(!web1Record.inService && web1Record.weight == 0)
        #expect(engine.service(Self.key)!.destinations.map(\.address4) == [web2])
        let draining = engine.drainingRealServers
        #expect(draining.count == 1 && draining[0].address == web1 && draining[0].port == 8080 && draining[0].proto == .tcp)
        #expect(run(engine, w1c.tcp(8080, 40000, flags: .ack), at: 1).0 == .rewritten(.outbound))
        #expect(web1Record.stats.packetsOut == 1 && web1Record.stats.packetsIn == 2)
        // The connection closes and expires: nothing names the record any more.
        _ = run(engine, c2v.tcp(40000, 80, flags: .rst), at: 2)
        engine.advanceClock(to: 20 * 1_000_000_000)
        #expect(engine.destinations[Int(web1Record.id)] == nil)
        #expect(engine.drainingRealServers.isEmpty)
        // Added back, it is a new record with counters of its own, on the id it freed (ids are reused,
        // so they stay below the registry's size for a configuration's life).
        engine.apply(try RulesFile.parse(Self.rules))
        let again = try record(engine, web1)
        #expect(again !== web1Record && again.id == web1Record.id && again.inService && again.stats == TrafficCounters())
    }

    /// The record counts what ipvsadm shows for it: connections, packets, bytes; zeroing clears them.
    @Test func aRecordCountsItsTraffic() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let synLength = UInt64(syn.count)
        _ = run(engine, syn, at: 0)
        let reply = w1c.tcp(8080, 40000, flags: [.syn, .ack], payload: [1, 2, 3])
        _ = run(engine, reply, at: 0.1)
        let web1Record = try record(engine, web1)
        #expect(web1Record.stats.connections == 1)
        #expect(web1Record.stats.packetsIn == 1 && web1Record.stats.bytesIn == synLength)
        #expect(web1Record.stats.packetsOut == 1 && web1Record.stats.bytesOut == UInt64(reply.count))
        #expect(engine.serviceStats[Int(web1Record.serviceID)] == web1Record.stats)
        engine.zeroCounters(Self.key)
        #expect(web1Record.stats == TrafficCounters())
        #expect(web1Record.inactiveConnections == 1)  // zeroing leaves the connection counts
    }
}
