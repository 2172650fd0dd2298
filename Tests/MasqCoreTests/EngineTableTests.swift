import MasqRules
import Testing
@testable import MasqCore

/// Katran-style packet tests: each case is a description, the packets before it (to set up state), the
/// input packet, the expected verdict and the expected output bytes, built independently.
struct PacketCase: CustomTestStringConvertible, Sendable {
    var description: String
    var setup: [[UInt8]] = []
    var input: [UInt8]
    var verdict: Verdict
    /// nil: the output must equal the input.
    var output: [UInt8]?
    var testDescription: String { description }
}

let client = addr("198.18.0.12")
let vip = addr("198.18.0.1")
let web1 = addr("198.19.0.201")
let web2 = addr("198.19.0.202")
let router = addr("198.19.0.254")

let c2v = PacketBuilder(source: client, destination: vip)
let c2w1 = PacketBuilder(source: client, destination: web1)
let w1c = PacketBuilder(source: web1, destination: client)
let v2c = PacketBuilder(source: vip, destination: client)

let tableRules = """
    -A -t 198.18.0.1:80 -s rr
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 1
    -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
    -A -u 198.18.0.1:53 -s rr
    -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m
    """

/// A datagram client → web1 (after NAT) as a real server would quote it in an ICMP error.
let quotedToWeb1 = c2w1.tcp(40000, 8080, flags: [.ack, .psh], seq: 1001, ack: 5001, payload: Array(repeating: 0x41, count: 60))
let quotedToVip = c2v.tcp(40000, 80, flags: [.ack, .psh], seq: 1001, ack: 5001, payload: Array(repeating: 0x41, count: 60))
let quotedFromVip = v2c.tcp(80, 40000, flags: [.ack], seq: 5001, ack: 1001, payload: Array(repeating: 0x42, count: 40))
let quotedFromWeb1 = w1c.tcp(8080, 40000, flags: [.ack], seq: 5001, ack: 1001, payload: Array(repeating: 0x42, count: 40))
let syn = c2v.tcp(40000, 80, flags: .syn)

func withOptions(_ b: PacketBuilder) -> PacketBuilder {
    var b = b
    b.options = [0x01, 0x01, 0x01, 0x00]  // NOP NOP NOP EOL: IHL 6
    return b
}

func corrupt(_ p: [UInt8], at index: Int) -> [UInt8] {
    var p = p
    p[index] ^= 0xff
    return p
}

let packetCases: [PacketCase] = [
    PacketCase(description: "SYN to the VIP goes to the first real server, port rewritten",
               input: syn, verdict: .rewritten(.inbound), output: c2w1.tcp(40000, 8080, flags: .syn)),
    PacketCase(description: "second connection goes to web2 (rr)",
               setup: [syn], input: c2v.tcp(40001, 80, flags: .syn), verdict: .rewritten(.inbound),
               output: PacketBuilder(source: client, destination: web2).tcp(40001, 8080, flags: .syn)),
    PacketCase(description: "SYN-ACK from the real server leaves from the VIP",
               setup: [syn], input: w1c.tcp(8080, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001),
               verdict: .rewritten(.outbound), output: v2c.tcp(80, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001)),
    PacketCase(description: "data on an established flow follows it",
               setup: [syn], input: c2v.tcp(40000, 80, flags: .ack, seq: 1001, payload: Array("GET / HTTP/1.0\r\n\r\n".utf8)),
               verdict: .rewritten(.inbound),
               output: c2w1.tcp(40000, 8080, flags: .ack, seq: 1001, payload: Array("GET / HTTP/1.0\r\n\r\n".utf8))),
    PacketCase(description: "a non-SYN to the VIP with no connection passes untouched (IPVS)",
               input: c2v.tcp(40000, 80, flags: .ack), verdict: .accept),
    PacketCase(description: "SYN+RST does not start a connection",
               input: c2v.tcp(40000, 80, flags: [.syn, .rst]), verdict: .accept),
    PacketCase(description: "a reply from a real server with no connection passes untouched",
               input: w1c.tcp(8080, 40000, flags: [.syn, .ack]), verdict: .accept),
    PacketCase(description: "traffic to another port of the VIP passes untouched",
               input: c2v.tcp(40000, 443, flags: .syn), verdict: .accept),
    PacketCase(description: "traffic to another address passes untouched",
               input: PacketBuilder(source: client, destination: addr("198.18.0.99")).tcp(40000, 80, flags: .syn),
               verdict: .accept),
    PacketCase(description: "UDP datagram starts a flow, port rewritten",
               input: c2v.udp(5000, 53, payload: [1, 2, 3, 4]), verdict: .rewritten(.inbound),
               output: c2w1.udp(5000, 5353, payload: [1, 2, 3, 4])),
    PacketCase(description: "UDP reply leaves from the VIP",
               setup: [c2v.udp(5000, 53, payload: [1])], input: w1c.udp(5353, 5000, payload: [9, 9]),
               verdict: .rewritten(.outbound), output: v2c.udp(53, 5000, payload: [9, 9])),
    PacketCase(description: "UDP checksum 0 stays 0",
               input: c2v.udp(5001, 53, payload: [1, 2], zeroChecksum: true), verdict: .rewritten(.inbound),
               output: c2w1.udp(5001, 5353, payload: [1, 2], zeroChecksum: true)),
    PacketCase(description: "IP options are kept and the header checksum stays valid",
               input: withOptions(c2v).tcp(40000, 80, flags: .syn), verdict: .rewritten(.inbound),
               output: withOptions(c2w1).tcp(40000, 8080, flags: .syn)),
    PacketCase(description: "ICMP echo to the VIP passes untouched",
               input: c2v.icmp(type: 8, code: 0, rest: 0x0001_0001, body: [1, 2, 3]), verdict: .accept),
    PacketCase(description: "frag-needed from the real server about a NATed flow is translated outbound",
               setup: [syn], input: w1c.icmp(type: 3, code: 4, rest: 1400, body: quotedToWeb1),
               verdict: .rewritten(.outbound), output: v2c.icmp(type: 3, code: 4, rest: 1400, body: quotedToVip)),
    PacketCase(description: "time-exceeded from a router behind the director is translated, source becomes the VIP",
               setup: [syn], input: PacketBuilder(source: router, destination: client).icmp(type: 11, code: 0, body: quotedToWeb1),
               verdict: .rewritten(.outbound), output: v2c.icmp(type: 11, code: 0, body: quotedToVip)),
    PacketCase(description: "port-unreachable from the client about a VIP datagram is translated inbound",
               setup: [syn], input: c2v.icmp(type: 3, code: 3, body: quotedFromVip),
               verdict: .rewritten(.inbound), output: c2w1.icmp(type: 3, code: 3, body: quotedFromWeb1)),
    PacketCase(description: "an ICMP error with a bad checksum about a NATed flow is dropped",
               setup: [syn], input: corrupt(w1c.icmp(type: 3, code: 4, rest: 1400, body: quotedToWeb1), at: 23),
               verdict: .drop(.badICMPChecksum)),
    PacketCase(description: "an ICMP error about no known flow passes untouched",
               input: w1c.icmp(type: 3, code: 4, rest: 1400, body: quotedToWeb1), verdict: .accept),
    PacketCase(description: "IHL < 5 is dropped as malformed",
               input: { var p = syn; p[0] = 0x44; return p }(), verdict: .drop(.malformedIP)),
    PacketCase(description: "total length beyond the bytes is dropped as malformed",
               input: Array(syn.prefix(30)), verdict: .drop(.malformedIP)),
    PacketCase(description: "a bad IP header checksum is dropped",
               input: corrupt(syn, at: 11), verdict: .drop(.badIPChecksum)),
    PacketCase(description: "a truncated TCP header to the VIP is dropped",
               input: c2v.ip(6, Array(c2v.tcp(40000, 80, flags: .syn)[20..<30])), verdict: .drop(.malformedL4)),
    PacketCase(description: "a truncated TCP header to another host passes untouched",
               input: PacketBuilder(source: client, destination: addr("198.18.0.99")).ip(6, [1, 2, 3]),
               verdict: .accept),
    PacketCase(description: "a non-first fragment to the VIP is dropped",
               input: { var b = c2v; b.flagsAndFragment = 0x0010; return b.ip(6, Array(repeating: 0, count: 24)) }(),
               verdict: .drop(.fragment)),
    PacketCase(description: "a first fragment (MF) to the VIP is dropped",
               input: { var b = c2v; b.flagsAndFragment = 0x2000; return b.tcp(40000, 80, flags: .syn) }(),
               verdict: .drop(.fragment)),
    PacketCase(description: "a fragment to another host passes untouched",
               input: { var b = PacketBuilder(source: client, destination: addr("198.18.0.99")); b.flagsAndFragment = 0x0010
                        return b.ip(6, Array(repeating: 0, count: 24)) }(),
               verdict: .accept),
    PacketCase(description: "a packet too short for an IPv4 header is dropped", input: [0x45, 0, 0], verdict: .drop(.malformedIP)),
]

@Suite struct EngineTableTests {
    @Test(arguments: packetCases) func packet(_ c: PacketCase) throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        for (i, p) in c.setup.enumerated() {
            let (v, _) = run(engine, p, at: Double(i) * 0.001)
            #expect(v.accepts, "setup packet \(i) was \(v)")
        }
        let (verdict, out) = run(engine, c.input, at: 1)
        #expect(verdict == c.verdict)
        if verdict.accepts {
            #expect(out == (c.output ?? c.input))
            if case .rewritten = verdict { #expect(checksumsValid(out)) }
        }
    }

    /// Full of flows that completed their handshakes (none evictable: see EarlyDropTests).
    @Test func tableFullDropsNewFlowsAndCounts() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules), capacity: 2)
        for (port, server) in [(UInt16(1), web1), (2, web2)] {
            #expect(run(engine, c2v.tcp(port, 80, flags: .syn)).0 == .rewritten(.inbound))
            let synAck = PacketBuilder(source: server, destination: client).tcp(8080, port, flags: [.syn, .ack], ack: 1001)
            #expect(run(engine, synAck).0 == .rewritten(.outbound))
            #expect(run(engine, c2v.tcp(port, 80, flags: .ack, seq: 1001, ack: 1001)).0 == .rewritten(.inbound))
        }
        #expect(run(engine, c2v.tcp(3, 80, flags: .syn)).0 == .drop(.tableFull))
        // Established flows keep working.
        #expect(run(engine, c2v.tcp(1, 80, flags: .ack)).0 == .rewritten(.inbound))
        #expect(engine.counters[.tableFull] == 1)
    }

    @Test func noAvailableServerDrops() throws {
        let engine = Engine(configuration: try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 0
            """))
        #expect(run(engine, syn).0 == .drop(.noRealServer))
    }

    @Test func persistenceKeepsAClientOnOneServer() throws {
        let engine = Engine(configuration: try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr -p 60 -M 255.255.255.0
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m
            """))
        let other = PacketBuilder(source: addr("198.18.0.13"), destination: vip)
        let far = PacketBuilder(source: addr("198.18.1.13"), destination: vip)
        func server(_ p: [UInt8], at t: Double) -> IPv4Address? {
            let (v, out) = run(engine, p, at: t)
            guard v == .rewritten(.inbound) else { return nil }
            return IPv4Address(rawValue: UInt32(out[16]) << 24 | UInt32(out[17]) << 16 | UInt32(out[18]) << 8 | UInt32(out[19]))
        }
        #expect(server(c2v.tcp(1, 80, flags: .syn), at: 0) == web1)
        #expect(server(c2v.tcp(2, 80, flags: .syn), at: 1) == web1)      // same client
        #expect(server(other.tcp(3, 80, flags: .syn), at: 2) == web1)    // same /24
        #expect(server(far.tcp(4, 80, flags: .syn), at: 3) == web2)      // another /24: scheduled
        #expect(engine.table.templateCount == 2)
        // The template outlives its 60 s while it controls connections, then goes after they do.
        let (v, _) = run(engine, c2v.tcp(1, 80, flags: .rst), at: 4)
        #expect(v == .rewritten(.inbound))
        engine.advanceClock(to: 2_000 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0)
        // A template still controlling connections when its time came is re-checked 60 s later (IPVS).
        engine.advanceClock(to: 2_061 * 1_000_000_000)
        #expect(engine.table.templateCount == 0)
        #expect(engine.table.connectionCount == 0)
    }

    /// Review finding: a template not in slot 0 was looked up at twice its slot.
    @Test func persistenceWithManyClientsAndConnections() throws {
        let engine = Engine(configuration: try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr -p 60
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m
            """))
        var first: [UInt32: UInt8] = [:]
        for round in 0..<3 {
            for c in 0..<8 {
                let b = PacketBuilder(source: IPv4Address(rawValue: 0xC612_0100 + UInt32(c)), destination: vip)
                let (v, out) = run(engine, b.tcp(UInt16(1000 + round * 10 + c), 80, flags: .syn), at: Double(round))
                #expect(v == .rewritten(.inbound))
                if round == 0 { first[UInt32(c)] = out[19] } else { #expect(out[19] == first[UInt32(c)]) }
            }
        }
        #expect(engine.table.templateCount == 8)
    }

    /// Review finding: removing and re-adding a persistent client's server locked the client out.
    @Test func persistentClientSurvivesServerFlap() throws {
        let both = """
            -A -t 198.18.0.1:80 -s rr -p 60
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m
            """
        let engine = Engine(configuration: try RulesFile.parse(both))
        #expect(run(engine, c2v.tcp(1, 80, flags: .syn), at: 0).0 == .rewritten(.inbound))  // web1, live
        engine.apply(try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr -p 60
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m
            """))
        let (v, out) = run(engine, c2v.tcp(2, 80, flags: .syn), at: 1)
        #expect(v == .rewritten(.inbound) && out[19] == 202)
        engine.apply(try RulesFile.parse(both))
        #expect(run(engine, c2v.tcp(3, 80, flags: .syn), at: 2).0 == .rewritten(.inbound))
    }

    /// Review finding: ESTABLISHED (900 s) → CLOSE (10 s) must expire after 10 s, not 900.
    @Test func shortenedTimeoutExpiresOnTime() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        _ = run(engine, syn, at: 0)
        _ = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 1)
        _ = run(engine, c2v.tcp(40000, 80, flags: .rst), at: 100)
        engine.advanceClock(to: 112 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0)
    }

    /// IPVS conn_reuse_mode: a new SYN on a TIME_WAIT connection is scheduled afresh.
    @Test func newSynOnTimeWaitIsRescheduled() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        let flows: [(FlowDirection, TCPFlags)] = [(.inbound, .syn), (.outbound, [.syn, .ack]), (.inbound, .ack),
                                                  (.inbound, [.fin, .ack]), (.outbound, [.fin, .ack]), (.inbound, .ack)]
        for (i, (d, f)) in flows.enumerated() {
            _ = run(engine, d == .inbound ? c2v.tcp(40000, 80, flags: f) : w1c.tcp(8080, 40000, flags: f), at: Double(i))
        }
        let (v, out) = run(engine, syn, at: 10)
        #expect(v == .rewritten(.inbound) && out[19] == 202)  // rr moved on to web2
    }

    /// `-d` of a real server: its flows live on (IPVS default), or are dropped with expire_nodest_conn.
    @Test(arguments: [false, true]) func removedRealServersFlows(_ expireNodest: Bool) throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        engine.expireNodestConnections = expireNodest
        _ = run(engine, syn, at: 0)
        var c = try RulesFile.parse(tableRules)
        try c.apply(try IPVSCommandParser.parse(["-d", "-t", "198.18.0.1:80", "-r", "198.19.0.201:8080"]))
        engine.apply(c)
        let (v, _) = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 1)
        #expect(v == (expireNodest ? .drop(.realServerRemoved) : .rewritten(.inbound)))
        #expect(engine.table.connectionCount == (expireNodest ? 0 : 1))
    }

    /// The passive health signal: resets of new connections and handshakes that never complete.
    @Test func handshakeFailuresAreCountedPerRealServer() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules))
        let key = ServiceKey(proto: .tcp, address: vip, port: 80)
        for port: UInt16 in [1, 3] {  // rr: both go to web1
            _ = run(engine, c2v.tcp(port, 80, flags: .syn), at: 0)
            _ = run(engine, c2v.tcp(port + 1, 80, flags: .syn), at: 0)  // web2, left alone
            _ = run(engine, w1c.tcp(8080, port, flags: [.rst, .ack]), at: 0.1)
        }
        #expect(engine.handshakeFailures(key, .v4(web1), 8080) == 2)
        engine.advanceClock(to: 70 * 1_000_000_000)  // web2's two SYN_RECV expire unanswered
        #expect(engine.handshakeFailures(key, .v4(web2), 8080) == 2)
        _ = run(engine, c2v.tcp(9, 80, flags: .syn), at: 71)
        _ = run(engine, c2v.tcp(9, 80, flags: .ack), at: 71.1)   // completes: web1's count starts over
        #expect(engine.handshakeFailures(key, .v4(web1), 8080, reset: false) == 0)
    }
}
