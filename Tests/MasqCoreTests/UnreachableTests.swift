import MasqRules
import Testing
@testable import MasqCore

/// No real server available: the client is answered ICMP port unreachable, as IPVS does (issue 11).
@Suite struct UnreachableTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 0
        -A -u 198.18.0.1:53 -s rr
        """

    func drained(_ engine: Engine) -> [[UInt8]] {
        var out: [[UInt8]] = []
        engine.unreachable.drain { bytes, _ in out.append(Array(bytes)) }
        return out
    }

    @Test(arguments: [
        ("TCP SYN, weight-0 server only", c2v.tcp(40000, 80, flags: .syn)),
        ("UDP to a service without servers", c2v.udp(40001, 53, payload: Array("query".utf8))),
        ("TCP SYN with IP options", withOptions(c2v).tcp(40002, 80, flags: .syn)),
    ])
    func answersPortUnreachableFromTheVIPQuotingTheDatagram(_ name: String, _ packet: [UInt8]) throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(run(engine, packet, at: 1).0 == .drop(.noRealServer))
        let answers = drained(engine)
        try #require(answers.count == 1)
        let icmp = answers[0]
        let ihl = Int(packet[0] & 0x0f) * 4
        // Independently of the engine: IP from the VIP to the client, ICMP 3/3, the quote as sent.
        let expected = v2c.icmp(type: 3, code: 3, body: Array(packet[0..<(ihl + 8)]))
        #expect(icmp[9] == 1 && icmp[1] == 0xc0 && icmp[8] == 64)
        #expect(Array(icmp[12..<20]) == Array(expected[12..<20]))
        #expect(Array(icmp[20...]) == Array(expected[20...]), "\(name)")
        #expect(checksumsValid(icmp))
    }

    @Test func rateLimitedLikeTheKernelsICMP() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        for port in 0..<60 { _ = run(engine, c2v.tcp(UInt16(20000 + port), 80, flags: .syn), at: 1) }
        #expect(drained(engine).count == 50)  // the burst
        #expect(engine.unreachable.rateLimited == 10)
        for port in 0..<30 { _ = run(engine, c2v.tcp(UInt16(21000 + port), 80, flags: .syn), at: 1.02) }
        #expect(drained(engine).count == 20)  // 20 ms at 1000/s
        #expect(engine.unreachable.sent == 70)
        #expect(engine.counters[.noRealServer] == 90)
    }

    @Test func aServedConnectionIsNotAnswered() throws {
        let engine = Engine(configuration: try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m"))
        #expect(run(engine, c2v.tcp(40000, 80, flags: .syn), at: 1).0 == .rewritten(.inbound))
        #expect(engine.unreachable.count == 0)
    }
}
