import Testing
@testable import MasqCore

// MARK: ICMPv6 errors about NATed flows (RFC 4443), translated both ways

let routerClientSide6 = addr6("2001:2::fe")

/// What a real server's side quotes: a datagram client → web1 (after NAT), and the same before NAT.
let quotedToWeb61 = c2w61.tcp(40000, 8080, flags: [.ack, .psh], seq: 1001, ack: 5001, payload: bigPayload)
let quotedToVip6 = c2v6.tcp(40000, 80, flags: [.ack, .psh], seq: 1001, ack: 5001, payload: bigPayload)
/// What the client's side quotes: a datagram VIP → client (after NAT), and the same before NAT.
let quotedFromVip6 = v2c6.tcp(80, 40000, flags: .ack, seq: 5001, ack: 1001, payload: Array(repeating: 0x42, count: 40))
let quotedFromWeb61 = w61c.tcp(8080, 40000, flags: .ack, seq: 5001, ack: 1001, payload: Array(repeating: 0x42, count: 40))
/// A full-size datagram, of which an error quotes only what fits (RFC 4443 §2.4(c)).
let largeToWeb61 = c2w61.tcp(40000, 8080, flags: .ack, seq: 1001, ack: 5001, payload: Array(repeating: 0x43, count: 1400))
let largeToVip6 = c2v6.tcp(40000, 80, flags: .ack, seq: 1001, ack: 5001, payload: Array(repeating: 0x43, count: 1400))

let fromRouter6 = V6Builder(source: router6, destination: client6)

let icmpCases6: [PacketCase] = [
    PacketCase(description: "packet too big from a router behind the director is translated outbound, MTU kept",
               setup: [syn6], input: fromRouter6.icmp6(type: 2, code: 0, rest: 1280, body: quotedToWeb61),
               verdict: .rewritten(.outbound), output: v2c6.icmp6(type: 2, code: 0, rest: 1280, body: quotedToVip6)),
    PacketCase(description: "port unreachable from the real server is translated outbound",
               setup: [syn6], input: w61c.icmp6(type: 1, code: 4, body: quotedToWeb61),
               verdict: .rewritten(.outbound), output: v2c6.icmp6(type: 1, code: 4, body: quotedToVip6)),
    PacketCase(description: "time exceeded quoting a datagram cut short (its payload length the original's)",
               setup: [syn6], input: fromRouter6.icmp6(type: 3, code: 0, body: Array(largeToWeb61.prefix(1232))),
               verdict: .rewritten(.outbound), output: v2c6.icmp6(type: 3, code: 0, body: Array(largeToVip6.prefix(1232)))),
    PacketCase(description: "a quote of the ports only (no L4 checksum to fix) is translated",
               setup: [syn6], input: fromRouter6.icmp6(type: 1, code: 3, body: Array(quotedToWeb61.prefix(48))),
               verdict: .rewritten(.outbound), output: v2c6.icmp6(type: 1, code: 3, body: Array(quotedToVip6.prefix(48)))),
    PacketCase(description: "a quote with extension headers is walked over the bytes present and translated",
               setup: [syn6],
               input: fromRouter6.icmp6(type: 1, code: 0, body: Array(c2w61.with(.destinationOptions).tcp(40000, 8080, flags: .ack,
                                                                                                    payload: bigPayload).prefix(90))),
               verdict: .rewritten(.outbound),
               output: v2c6.icmp6(type: 1, code: 0, body: Array(c2v6.with(.destinationOptions).tcp(40000, 80, flags: .ack,
                                                                                               payload: bigPayload).prefix(90)))),
    PacketCase(description: "parameter problem keeps its pointer",
               setup: [syn6], input: w61c.icmp6(type: 4, code: 0, rest: 40, body: quotedToWeb61),
               verdict: .rewritten(.outbound), output: v2c6.icmp6(type: 4, code: 0, rest: 40, body: quotedToVip6)),
    PacketCase(description: "an error through a hop-by-hop header keeps it",
               setup: [syn6], input: fromRouter6.with(.hopByHop).icmp6(type: 2, code: 0, rest: 1400, body: quotedToWeb61),
               verdict: .rewritten(.outbound),
               output: v2c6.with(.hopByHop).icmp6(type: 2, code: 0, rest: 1400, body: quotedToVip6)),
    PacketCase(description: "port unreachable from the client about a VIP datagram is translated inbound",
               setup: [syn6], input: c2v6.icmp6(type: 1, code: 4, body: quotedFromVip6),
               verdict: .rewritten(.inbound), output: c2w61.icmp6(type: 1, code: 4, body: quotedFromWeb61)),
    PacketCase(description: "packet too big from the client's side to the VIP goes to the real server, MTU kept",
               setup: [syn6],
               input: V6Builder(source: routerClientSide6, destination: vip6).icmp6(type: 2, code: 0, rest: 1280, body: quotedFromVip6),
               verdict: .rewritten(.inbound),
               output: V6Builder(source: routerClientSide6, destination: web61).icmp6(type: 2, code: 0, rest: 1280, body: quotedFromWeb61)),
    PacketCase(description: "an error about a UDP flow is translated, the quoted UDP checksum too",
               setup: [c2v6.udp(5000, 53, payload: [1])],
               input: fromRouter6.icmp6(type: 1, code: 0, body: c2w61.udp(5000, 5353, payload: [1, 2, 3])),
               verdict: .rewritten(.outbound), output: v2c6.icmp6(type: 1, code: 0, body: c2v6.udp(5000, 53, payload: [1, 2, 3]))),
    PacketCase(description: "an error with a bad ICMPv6 checksum about a NATed flow is dropped",
               setup: [syn6], input: corrupt(w61c.icmp6(type: 2, code: 0, rest: 1280, body: quotedToWeb61), at: 43),
               verdict: .drop(.badICMPChecksum)),
    PacketCase(description: "an error about no known flow passes untouched",
               input: fromRouter6.icmp6(type: 2, code: 0, rest: 1280, body: quotedToWeb61), verdict: .accept),
    PacketCase(description: "an error about an expired flow passes untouched",
               setup: [c2v6.udp(5000, 53, payload: [1])],
               input: fromRouter6.icmp6(type: 1, code: 0, body: c2w61.udp(5000, 5353, payload: [1])), verdict: .accept),
    PacketCase(description: "an error quoting a non-first fragment passes untouched",
               setup: [syn6],
               input: fromRouter6.icmp6(type: 3, code: 1, body: c2w61.with(.fragment(offset: 1232, more: false))
                   .ip(6, Array(quotedToWeb61[40...]))),
               verdict: .accept),
    PacketCase(description: "an error whose quote is shorter than an IPv6 header passes untouched",
               setup: [syn6], input: fromRouter6.icmp6(type: 1, code: 0, body: Array(quotedToWeb61.prefix(39))), verdict: .accept),
    PacketCase(description: "an error whose quote ends inside the ports passes untouched",
               setup: [syn6], input: fromRouter6.icmp6(type: 1, code: 0, body: Array(quotedToWeb61.prefix(45))), verdict: .accept),
    PacketCase(description: "an error whose quote has a bad chain passes untouched",
               setup: [syn6],
               input: fromRouter6.icmp6(type: 1, code: 0, body: c2w61.with(.destinationOptions, .hopByHop).tcp(40000, 8080, flags: .ack)),
               verdict: .accept),
    PacketCase(description: "echo request to the VIP passes untouched",
               input: c2v6.icmp6(type: 128, code: 0, rest: 0x0001_0001, body: [1, 2, 3]), verdict: .accept),
    PacketCase(description: "echo reply from a real server passes untouched",
               input: w61c.icmp6(type: 129, code: 0, rest: 0x0001_0001, body: [1, 2, 3]), verdict: .accept),
    PacketCase(description: "neighbour solicitation for the VIP passes untouched (RFC 4861)",
               input: { var b = V6Builder(source: client6, destination: addr6("ff02::1:ff00:1")); b.hopLimit = 255
                        return b.icmp6(type: 135, code: 0, body: vip6.bytes) }(),
               verdict: .accept),
    PacketCase(description: "neighbour advertisement from a real server passes untouched",
               input: { var b = V6Builder(source: web61, destination: addr6("fe80::1")); b.hopLimit = 255
                        return b.icmp6(type: 136, code: 0, rest: 0x6000_0000, body: web61.bytes) }(),
               verdict: .accept),
    PacketCase(description: "a fragment of an ICMPv6 message passes untouched",
               setup: [syn6],
               input: fromRouter6.with(.fragment(offset: 0, more: true)).icmp6(type: 2, code: 0, rest: 1280, body: quotedToWeb61),
               verdict: .accept),
]

// MARK: No real server: ICMPv6 port unreachable from the VIP

let unreachableRules6 = Configuration(services: [
    service6(.tcp, 80, [(web61, 80, 0)]),
    service6(.udp, 53, []),
    ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 80), scheduler: "rr",
                realServers: [RealServerSpec(address: web1, port: 80, weight: 0)]),
])

func drainedMessages(_ engine: Engine) -> [(bytes: [UInt8], destination: IPv4Address)] {
    var out: [(bytes: [UInt8], destination: IPv4Address)] = []
    engine.unreachable.drain { bytes, destination in out.append((Array(bytes), destination)) }
    return out
}

@Suite struct IPv6ICMPEngineTests {
    @Test(arguments: icmpCases6) func icmp(_ c: PacketCase) {
        let engine = Engine(configuration: rules6)
        for (i, p) in c.setup.enumerated() {
            let (v, _) = run(engine, p, at: Double(i) * 0.001)
            #expect(v.accepts, "setup packet \(i) was \(v)")
        }
        // The expired-flow case: past the UDP timeout; the others within every timeout.
        let at: Double = c.description.contains("expired") ? 400 : 1
        let (verdict, out) = run(engine, c.input, at: at)
        #expect(verdict == c.verdict)
        if verdict.accepts {
            #expect(out == (c.output ?? c.input))
            if case .rewritten = verdict { #expect(checksumsValid6(out)) }
        }
    }

    /// The translated error counts nothing against the connection (IPVS neither): its counters and
    /// state stay as the SYN left them.
    @Test func aTranslatedErrorLeavesTheConnectionAlone() throws {
        let engine = Engine(configuration: rules6)
        _ = run(engine, syn6, at: 0)
        _ = run(engine, fromRouter6.icmp6(type: 2, code: 0, rest: 1280, body: quotedToWeb61), at: 1)
        let key = FlowKey6(source: client6, destination: vip6, sourcePort: 40000, destinationPort: 80, proto: .tcp)
        let (slot, _) = try #require(engine.table.lookup(key))
        #expect(engine.table[slot].packetsIn == 1 && engine.table[slot].packetsOut == 0)
        #expect(engine.table[slot].state == .synRecv)
    }

    @Test(arguments: [
        ("TCP SYN, weight-0 server only", c2v6.tcp(40000, 80, flags: .syn)),
        ("UDP to a service without servers", c2v6.udp(40001, 53, payload: Array("query".utf8))),
        ("TCP SYN through extension headers", c2v6.with(.hopByHop, .destinationOptions).tcp(40002, 80, flags: .syn)),
        ("a datagram too large to quote whole", c2v6.udp(40003, 53, payload: Array(repeating: 0x51, count: 1400))),
        ("a datagram that just fits", c2v6.udp(40004, 53, payload: Array(repeating: 0x52, count: 1232 - 48))),
    ])
    func answersPortUnreachableFromTheVIP(_ name: String, _ packet: [UInt8]) throws {
        let engine = Engine(configuration: unreachableRules6)
        #expect(run(engine, packet, at: 1).0 == .drop(.noRealServer))
        let answers = drainedMessages(engine)
        try #require(answers.count == 1)
        let (icmp, destination) = answers[0]
        // Independently of the engine: VIP → client, hop limit 64, type 1 code 4, as much of the
        // packet as fits in 1280 bytes.
        let expected = v2c6.icmp6(type: 1, code: 4, body: Array(packet.prefix(1280 - 48)))
        #expect(icmp == expected, "\(name)")
        #expect(icmp.count <= 1280 && icmp[7] == 64)
        #expect(checksumsValid6(icmp))
        #expect(destination == IPv4Address(rawValue: 0))
        let message = icmp.withUnsafeBytes { UnreachableOutbox.destination(of: $0) }
        #expect(message == .v6(client6))
    }

    @Test func noAnswerToASourceThatNamesNoNode() {
        let engine = Engine(configuration: unreachableRules6)
        for source in ["::", "::1", "ff02::1"] {
            let p = V6Builder(source: addr6(source), destination: vip6).tcp(40000, 80, flags: .syn)
            #expect(run(engine, p, at: 1).0 == .drop(.noRealServer))
        }
        #expect(engine.unreachable.count == 0)
        #expect(engine.unreachable.unanswerable == 3)
    }

    /// One bucket for both families, as the kernel's `icmp_global_allow` is one for both.
    @Test func rateLimitedWithIPv4sAnswers() {
        let engine = Engine(configuration: unreachableRules6)
        for port in 0..<30 {
            _ = run(engine, c2v6.tcp(UInt16(20000 + port), 80, flags: .syn), at: 1)
            _ = run(engine, c2v.tcp(UInt16(20000 + port), 80, flags: .syn), at: 1)
        }
        let answers = drainedMessages(engine)
        #expect(answers.count == 50)
        #expect(answers.filter { $0.bytes[0] >> 4 == 6 }.count == 25)
        #expect(answers.filter { $0.bytes[0] >> 4 == 4 }.allSatisfy { $0.destination == client && checksumsValid($0.bytes) })
        #expect(answers.filter { $0.bytes[0] >> 4 == 6 }.allSatisfy { checksumsValid6($0.bytes) })
        #expect(engine.unreachable.rateLimited == 10)
        #expect(engine.counters[.noRealServer] == 60)
    }

    /// A persistent service with no server to schedule answers the same way.
    @Test func aPersistentServiceWithoutServersAnswers() {
        let engine = Engine(configuration: Configuration(services: [
            service6(.tcp, 443, persistence: 60, prefixLength: 64, [(web61, 443, 0)]),
        ]))
        let p = c2v6.tcp(40000, 443, flags: .syn)
        #expect(run(engine, p, at: 1).0 == .drop(.noRealServer))
        #expect(drainedMessages(engine).map(\.bytes) == [v2c6.icmp6(type: 1, code: 4, body: p)])
        #expect(engine.table.templateCount == 0)
    }
}
