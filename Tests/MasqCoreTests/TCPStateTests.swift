import MasqRules
import Testing
@testable import MasqCore

@Suite struct TCPStateTests {
    typealias Step = (FlowDirection, TCPFlags, ConnectionState)

    static let paths: [(String, [Step])] = [
        ("handshake, client closes", [
            (.inbound, .syn, .synRecv), (.outbound, [.syn, .ack], .synRecv), (.inbound, .ack, .established),
            (.inbound, [.fin, .ack], .closeWait), (.outbound, .ack, .closeWait), (.outbound, [.fin, .ack], .timeWait),
            (.inbound, .ack, .timeWait),
        ]),
        ("handshake, server closes", [
            (.inbound, .syn, .synRecv), (.outbound, [.syn, .ack], .synRecv), (.inbound, .ack, .established),
            (.outbound, [.fin, .ack], .finWait), (.inbound, .ack, .finWait), (.inbound, [.fin, .ack], .timeWait),
        ]),
        ("reset by the client", [
            (.inbound, .syn, .synRecv), (.outbound, [.syn, .ack], .synRecv), (.inbound, .ack, .established),
            (.inbound, .rst, .close),
        ]),
        ("refused by the server", [(.inbound, .syn, .synRecv), (.outbound, [.rst, .ack], .close)]),
        ("a segment without flags closes", [(.inbound, .syn, .synRecv), (.inbound, [], .close)]),
    ]

    @Test(arguments: paths) func ipvsTransitions(_ name: String, _ steps: [Step]) {
        var state = ConnectionState.none
        for (i, (direction, flags, expected)) in steps.enumerated() {
            state = TCPProtocol.transition(from: state, direction: direction, flags: flags)
            #expect(state == expected, "\(name) step \(i)")
        }
    }

    @Test func defaultTimeoutsAreIpvss() {
        let t = Timeouts()
        #expect(t[.established] == 900 && t[.synSent] == 120 && t[.synRecv] == 60 && t[.finWait] == 120)
        #expect(t[.timeWait] == 120 && t[.close] == 10 && t[.closeWait] == 60 && t[.lastAck] == 30)
        #expect(t[.udp] == 300)
    }

    @Test func activeAndInactiveCountsFollowTheState() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        let d = { engine.service(ServiceKey(proto: .tcp, address: vip, port: 80))!.destinations[0] }
        _ = run(engine, syn, at: 0)
        #expect(d().activeConnections == 0 && d().inactiveConnections == 1)
        _ = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 0.1)
        #expect(d().activeConnections == 1 && d().inactiveConnections == 0)
        _ = run(engine, c2v.tcp(40000, 80, flags: [.fin, .ack]), at: 0.2)
        #expect(d().activeConnections == 0 && d().inactiveConnections == 1)
    }

    /// Expiry is driven by packet time: a connection lives its state's timeout after its last packet.
    @Test func idleConnectionsExpireByPacketTime() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        _ = run(engine, syn, at: 0)                                       // SYN_RECV: 60 s
        _ = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 1)          // ESTABLISHED: 900 s
        engine.advanceClock(to: 900 * 1_000_000_000)
        #expect(engine.table.connectionCount == 1)
        engine.advanceClock(to: 902 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0)
        let d = engine.service(ServiceKey(proto: .tcp, address: vip, port: 80))!.destinations[0]
        #expect(d.activeConnections == 0 && d.inactiveConnections == 0)
        // A packet of the old flow after expiry is no longer rewritten (non-SYN: untouched).
        #expect(run(engine, c2v.tcp(40000, 80, flags: .ack), at: 903).0 == .accept)
    }

    @Test func expiryIsExactWithinTheSecond() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        _ = run(engine, c2v.udp(5000, 53), at: 0.5)
        // 300.4 s later the flow is alive; 300.6 s later it is gone, although the wheel ticks by seconds.
        #expect(run(engine, w1c.udp(5353, 5000), at: 300.4).0 == .rewritten(.outbound))
        #expect(run(engine, w1c.udp(5353, 5000), at: 600.9).0 == .accept)
    }

    @Test func setTimeoutsLikeIpvsadm() {
        var t = Timeouts()
        t.set(tcp: 30, tcpFin: 0, udp: 5)
        #expect(t[.established] == 30 && t[.finWait] == 120 && t[.udp] == 5)
    }

    @Test func manyFlowsExpireAcrossTheWheel() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        for i in 0..<3000 {
            _ = run(engine, c2v.udp(UInt16(1000 + i), 53), at: Double(i))
        }
        // Flow i expires at i + 300 and sits in the wheel bucket of second i + 301: by 3100.5 the buckets
        // up to 3100 have run, so flows 0...2799 are gone (packets see exact expiry; the sweep trails ≤ 1 s).
        engine.advanceClock(to: 3_100_500_000_000)
        #expect(engine.table.connectionCount == 200)
        engine.advanceClock(to: 4000 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0)
    }
}
