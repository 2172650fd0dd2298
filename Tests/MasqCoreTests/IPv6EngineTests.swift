import Testing
@testable import MasqCore

// MARK: A builder of IPv6 test packets

/// One extension header (RFC 8200 §4) as the builder lays it out: its type and its bytes, whose first
/// byte (the next header) the builder fills in when it chains them.
struct Extension6: Sendable {
    var type: UInt8
    var bytes: [UInt8]

    /// Hop-by-hop (0), routing (43), destination options (60): `(hdrExtLen + 1) * 8` bytes.
    static func options(_ type: UInt8, hdrExtLen: UInt8 = 0) -> Extension6 {
        var body = [0, hdrExtLen] + [UInt8](repeating: 0, count: (Int(hdrExtLen) + 1) * 8 - 2)
        if type != 43 { body[2] = 1; body[3] = UInt8(body.count - 4) }  // one PadN option filling it
        return Extension6(type: type, bytes: body)
    }

    static let hopByHop = options(0)
    static let destinationOptions = options(60)
    /// A type 4 (segment routing) header with segments left 0: nothing for a router to act on.
    static let routing = Extension6(type: 43, bytes: [0, 0, 4, 0, 0, 0, 0, 0])

    /// A fragment header (RFC 8200 §4.5): offset in bytes (a multiple of 8), the M flag.
    static func fragment(offset: Int, more: Bool, id: UInt32 = 0x1234_5678) -> Extension6 {
        Extension6(type: 44, bytes: [0, 0] + PacketBuilder.be16(UInt16(offset) | (more ? 1 : 0)) + PacketBuilder.be32(id))
    }
}

/// Builds IPv6 packets byte by byte with every checksum summed from scratch over the RFC 8200 §8.1
/// pseudo-header laid out as bytes: the oracle the engine's rewrites are checked against. No code
/// shared with the engine beyond the address type and `PacketBuilder`'s byte helpers.
struct V6Builder: Sendable {
    var source: IPv6Address
    var destination: IPv6Address
    var hopLimit: UInt8 = 64
    var extensions: [Extension6] = []

    func with(_ extensions: Extension6...) -> V6Builder {
        var b = self
        b.extensions = extensions
        return b
    }

    static func sum(_ bytes: [UInt8]) -> UInt16 { PacketBuilder.sum(bytes) }

    func pseudo(_ proto: UInt8, _ length: Int) -> [UInt8] {
        source.bytes + destination.bytes + PacketBuilder.be32(UInt32(length)) + [0, 0, 0, proto]
    }

    /// The fixed header, the extension headers chained, then `upper` (of protocol `proto`);
    /// `payloadLength` overrides the field.
    func ip(_ proto: UInt8, _ upper: [UInt8], payloadLength: Int? = nil) -> [UInt8] {
        var chain: [UInt8] = []
        for (i, e) in extensions.enumerated() {
            var bytes = e.bytes
            bytes[0] = i + 1 < extensions.count ? extensions[i + 1].type : proto
            chain += bytes
        }
        let first = extensions.first?.type ?? proto
        let payload = chain + upper
        return [0x60, 0, 0, 0] + PacketBuilder.be16(UInt16(payloadLength ?? payload.count)) + [first, hopLimit]
            + source.bytes + destination.bytes + payload
    }

    func checksummed(_ proto: UInt8, _ segment: [UInt8], at offset: Int) -> [UInt8] {
        var s = segment
        var c = ~Self.sum(pseudo(proto, s.count) + s)
        if proto == 17 && c == 0 { c = 0xffff }
        s[offset] = UInt8(c >> 8)
        s[offset + 1] = UInt8(c & 0xff)
        return s
    }

    func tcpSegment(_ sport: UInt16, _ dport: UInt16, flags: TCPFlags, seq: UInt32 = 1000, ack: UInt32 = 0,
                    payload: [UInt8] = []) -> [UInt8] {
        var t = PacketBuilder.be16(sport) + PacketBuilder.be16(dport) + PacketBuilder.be32(seq) + PacketBuilder.be32(ack)
        t += [0x50, flags.rawValue] + PacketBuilder.be16(64240) + [0, 0, 0, 0] + payload
        return checksummed(6, t, at: 16)
    }

    func tcp(_ sport: UInt16, _ dport: UInt16, flags: TCPFlags, seq: UInt32 = 1000, ack: UInt32 = 0,
             payload: [UInt8] = []) -> [UInt8] {
        ip(6, tcpSegment(sport, dport, flags: flags, seq: seq, ack: ack, payload: payload))
    }

    func udpSegment(_ sport: UInt16, _ dport: UInt16, payload: [UInt8] = [], zeroChecksum: Bool = false) -> [UInt8] {
        let u = PacketBuilder.be16(sport) + PacketBuilder.be16(dport) + PacketBuilder.be16(UInt16(8 + payload.count))
            + [0, 0] + payload
        return zeroChecksum ? u : checksummed(17, u, at: 6)
    }

    func udp(_ sport: UInt16, _ dport: UInt16, payload: [UInt8] = [], zeroChecksum: Bool = false) -> [UInt8] {
        ip(17, udpSegment(sport, dport, payload: payload, zeroChecksum: zeroChecksum))
    }

    /// An ICMPv6 message (RFC 4443): type, code, the 32-bit field (`rest`: an MTU, a pointer, an echo's
    /// id and sequence) and `body` (an error's quote, an echo's data).
    func icmp6(type: UInt8, code: UInt8, rest: UInt32 = 0, body: [UInt8] = []) -> [UInt8] {
        ip(58, checksummed(58, [type, code, 0, 0] + PacketBuilder.be32(rest) + body, at: 2))
    }
}

/// True when the upper-layer checksum of an IPv6 TCP, UDP or ICMPv6 packet verifies from scratch,
/// the chain walked here on its own (hop-by-hop, routing, destination options, fragment). A UDP
/// checksum of 0 is invalid (RFC 8200 §8.1).
func checksumsValid6(_ packet: [UInt8]) -> Bool {
    guard packet.count >= 40 else { return false }
    var next = packet[6]
    var offset = 40
    while [0, 43, 60, 44].contains(next) {
        let length = next == 44 ? 8 : (Int(packet[offset + 1]) + 1) * 8
        next = packet[offset]
        offset += length
    }
    let end = 40 + (Int(packet[4]) << 8 | Int(packet[5]))
    let upper = Array(packet[offset..<end])
    let pseudo = Array(packet[8..<40]) + PacketBuilder.be32(UInt32(upper.count)) + [0, 0, 0, next]
    if next == 17 && upper[6] == 0 && upper[7] == 0 { return false }
    return [6, 17, 58].contains(next) && PacketBuilder.sum(pseudo + upper) == 0xffff
}

/// An IPv6 literal in a test (2001:2::/48 only: the benchmarking range RFC 5180 sets aside).
func addr6(_ text: String) -> IPv6Address { IPv6Address(text)! }

let client6 = addr6("2001:2::12")
let vip6 = addr6("2001:2::1")
let web61 = addr6("2001:2:0:1::201")
let web62 = addr6("2001:2:0:1::202")
let router6 = addr6("2001:2:0:1::fe")
let elsewhere6 = addr6("2001:2::99")

let c2v6 = V6Builder(source: client6, destination: vip6)
let c2w61 = V6Builder(source: client6, destination: web61)
let c2w62 = V6Builder(source: client6, destination: web62)
let w61c = V6Builder(source: web61, destination: client6)
let v2c6 = V6Builder(source: vip6, destination: client6)

/// A service of the IPv6 tests, built as `Engine.apply` takes it (not through the rules parser).
func service6(_ proto: IPProtocol, _ port: UInt16, scheduler: String = "rr", persistence: UInt32? = nil,
              prefixLength: UInt8 = 128, _ servers: [(IPv6Address, UInt16, Int32)]) -> ServiceSpec {
    ServiceSpec(key: ServiceKey(proto: proto, address: vip6, port: port), scheduler: scheduler,
                persistence: persistence, prefixLength: prefixLength,
                realServers: servers.map { RealServerSpec(address: $0.0, port: $0.1, weight: $0.2) })
}

/// rr over web1 and web2 on TCP 80 (ports 8080), one server on UDP 53 (port 5353).
let rules6 = Configuration(services: [
    service6(.tcp, 80, [(web61, 8080, 1), (web62, 8080, 1)]),
    service6(.udp, 53, [(web61, 5353, 1)]),
])

let syn6 = c2v6.tcp(40000, 80, flags: .syn)
let bigPayload = Array(repeating: UInt8(0x41), count: 60)

/// Replaces bytes `range` of `p` (a quote cut short, a field set by hand).
func replacing(_ p: [UInt8], _ range: Range<Int>, with bytes: [UInt8]) -> [UInt8] {
    var p = p
    p.replaceSubrange(range, with: bytes)
    return p
}

let packetCases6: [PacketCase] = [
    PacketCase(description: "SYN to the VIP goes to the first real server, port rewritten",
               input: syn6, verdict: .rewritten(.inbound), output: c2w61.tcp(40000, 8080, flags: .syn)),
    PacketCase(description: "the second connection goes to web2 (rr alternates)",
               setup: [syn6], input: c2v6.tcp(40001, 80, flags: .syn), verdict: .rewritten(.inbound),
               output: c2w62.tcp(40001, 8080, flags: .syn)),
    PacketCase(description: "the third goes back to web1",
               setup: [syn6, c2v6.tcp(40001, 80, flags: .syn)], input: c2v6.tcp(40002, 80, flags: .syn),
               verdict: .rewritten(.inbound), output: c2w61.tcp(40002, 8080, flags: .syn)),
    PacketCase(description: "the SYN-ACK from the real server leaves from the VIP",
               setup: [syn6], input: w61c.tcp(8080, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001),
               verdict: .rewritten(.outbound), output: v2c6.tcp(80, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001)),
    PacketCase(description: "data on an established flow follows it",
               setup: [syn6], input: c2v6.tcp(40000, 80, flags: .ack, seq: 1001, payload: bigPayload),
               verdict: .rewritten(.inbound), output: c2w61.tcp(40000, 8080, flags: .ack, seq: 1001, payload: bigPayload)),
    PacketCase(description: "a FIN on an established flow is NATed",
               setup: [syn6], input: c2v6.tcp(40000, 80, flags: [.fin, .ack], seq: 1001),
               verdict: .rewritten(.inbound), output: c2w61.tcp(40000, 8080, flags: [.fin, .ack], seq: 1001)),
    PacketCase(description: "the real server's RST is NATed",
               setup: [syn6], input: w61c.tcp(8080, 40000, flags: .rst, seq: 5000),
               verdict: .rewritten(.outbound), output: v2c6.tcp(80, 40000, flags: .rst, seq: 5000)),
    PacketCase(description: "a non-SYN to the VIP with no connection passes untouched (IPVS)",
               input: c2v6.tcp(40000, 80, flags: .ack), verdict: .accept),
    PacketCase(description: "a reply from a real server with no connection passes untouched",
               input: w61c.tcp(8080, 40000, flags: [.syn, .ack]), verdict: .accept),
    PacketCase(description: "traffic to another port of the VIP passes untouched",
               input: c2v6.tcp(40000, 443, flags: .syn), verdict: .accept),
    PacketCase(description: "traffic to another address passes untouched",
               input: V6Builder(source: client6, destination: elsewhere6).tcp(40000, 80, flags: .syn), verdict: .accept),
    PacketCase(description: "a UDP datagram starts a flow, port rewritten",
               input: c2v6.udp(5000, 53, payload: [1, 2, 3, 4]), verdict: .rewritten(.inbound),
               output: c2w61.udp(5000, 5353, payload: [1, 2, 3, 4])),
    PacketCase(description: "a UDP reply leaves from the VIP",
               setup: [c2v6.udp(5000, 53, payload: [1])], input: w61c.udp(5353, 5000, payload: [9, 9, 9]),
               verdict: .rewritten(.outbound), output: v2c6.udp(53, 5000, payload: [9, 9, 9])),
    PacketCase(description: "UDP checksum 0 to the VIP is dropped (RFC 8200 §8.1)",
               input: c2v6.udp(5001, 53, payload: [1, 2], zeroChecksum: true), verdict: .drop(.udpZeroChecksum)),
    PacketCase(description: "UDP checksum 0 on an established flow is dropped",
               setup: [c2v6.udp(5000, 53, payload: [1])], input: w61c.udp(5353, 5000, payload: [9], zeroChecksum: true),
               verdict: .drop(.udpZeroChecksum)),
    PacketCase(description: "UDP checksum 0 to another host passes untouched (not masq's to judge)",
               input: V6Builder(source: client6, destination: elsewhere6).udp(5001, 53, zeroChecksum: true),
               verdict: .accept),
    PacketCase(description: "hop-by-hop and destination options are kept byte for byte",
               input: c2v6.with(.hopByHop, .destinationOptions).tcp(40000, 80, flags: .syn), verdict: .rewritten(.inbound),
               output: c2w61.with(.hopByHop, .destinationOptions).tcp(40000, 8080, flags: .syn)),
    PacketCase(description: "a routing header (segments left 0) is kept byte for byte",
               input: c2v6.with(.routing).udp(5002, 53, payload: [7]), verdict: .rewritten(.inbound),
               output: c2w61.with(.routing).udp(5002, 5353, payload: [7])),
    PacketCase(description: "an atomic fragment (offset 0, no M: RFC 6946) is a whole datagram and NATed",
               input: c2v6.with(.fragment(offset: 0, more: false)).tcp(40000, 80, flags: .syn),
               verdict: .rewritten(.inbound), output: c2w61.with(.fragment(offset: 0, more: false)).tcp(40000, 8080, flags: .syn)),
    PacketCase(description: "a first fragment (M) to the VIP is dropped: masq does not reassemble",
               input: c2v6.with(.fragment(offset: 0, more: true)).tcp(40000, 80, flags: .syn), verdict: .drop(.fragment)),
    PacketCase(description: "a non-first fragment to the VIP is dropped",
               input: c2v6.with(.fragment(offset: 1232, more: false)).ip(6, Array(repeating: 0, count: 24)),
               verdict: .drop(.fragment)),
    PacketCase(description: "a non-first fragment from a real server is dropped",
               input: w61c.with(.fragment(offset: 1232, more: true)).ip(17, Array(repeating: 0, count: 24)),
               verdict: .drop(.fragment)),
    PacketCase(description: "a non-first fragment to the VIP whose fragmentable part starts with options is dropped",
               input: c2v6.with(.fragment(offset: 8, more: false)).ip(60, Array(repeating: 0, count: 16)),
               verdict: .drop(.fragment)),
    PacketCase(description: "a fragment to another host passes untouched",
               input: V6Builder(source: client6, destination: elsewhere6).with(.fragment(offset: 1232, more: false))
                   .ip(6, Array(repeating: 0, count: 24)),
               verdict: .accept),
    PacketCase(description: "a hop-by-hop header after another header is dropped",
               input: c2v6.with(.destinationOptions, .hopByHop).tcp(40000, 80, flags: .syn),
               verdict: .drop(.malformedExtensionHeaders)),
    PacketCase(description: "nine extension headers are dropped (more than masq walks)",
               input: c2v6.with(.destinationOptions, .destinationOptions, .destinationOptions, .destinationOptions,
                                .destinationOptions, .destinationOptions, .destinationOptions, .destinationOptions,
                                .destinationOptions).tcp(40000, 80, flags: .syn),
               verdict: .drop(.malformedExtensionHeaders)),
    PacketCase(description: "eight extension headers are walked and kept",
               input: c2v6.with(.destinationOptions, .destinationOptions, .destinationOptions, .destinationOptions,
                                .destinationOptions, .destinationOptions, .destinationOptions, .destinationOptions)
                   .tcp(40000, 80, flags: .syn),
               verdict: .rewritten(.inbound),
               output: c2w61.with(.destinationOptions, .destinationOptions, .destinationOptions, .destinationOptions,
                                  .destinationOptions, .destinationOptions, .destinationOptions, .destinationOptions)
                   .tcp(40000, 8080, flags: .syn)),
    PacketCase(description: "an extension header running past the payload length is dropped",
               input: c2v6.with(.options(60, hdrExtLen: 4)).ip(6, [], payloadLength: 16) + Array(repeating: 0, count: 24),
               verdict: .drop(.malformedExtensionHeaders)),
    PacketCase(description: "a payload length beyond the bytes is dropped",
               input: Array(syn6.dropLast(4)), verdict: .drop(.malformedExtensionHeaders)),
    PacketCase(description: "a payload length of 0 (a jumbogram, RFC 2675) is dropped",
               input: replacing(syn6, 4..<6, with: [0, 0]), verdict: .drop(.malformedExtensionHeaders)),
    PacketCase(description: "bytes after the payload length (link padding) are left alone",
               input: syn6 + [0xee, 0xee], verdict: .rewritten(.inbound),
               output: c2w61.tcp(40000, 8080, flags: .syn) + [0xee, 0xee]),
    PacketCase(description: "a packet too short for the fixed header is dropped as malformed",
               input: Array(syn6.prefix(30)), verdict: .drop(.malformedIP)),
    PacketCase(description: "a truncated TCP header to the VIP is dropped",
               input: c2v6.ip(6, Array(syn6[40..<50])), verdict: .drop(.malformedL4)),
    PacketCase(description: "a UDP length beyond its datagram from a real server is dropped",
               input: replacing(w61c.udp(5353, 5000, payload: [1]), 44..<46, with: [0, 99]), verdict: .drop(.malformedL4)),
    PacketCase(description: "a truncated TCP header to another host passes untouched",
               input: V6Builder(source: client6, destination: elsewhere6).ip(6, [1, 2, 3]), verdict: .accept),
    PacketCase(description: "ESP to the VIP passes untouched (no ports to look up)",
               input: c2v6.ip(50, Array(repeating: 0x5a, count: 24)), verdict: .accept),
]

@Suite struct IPv6EngineTests {
    @Test(arguments: packetCases6) func packet(_ c: PacketCase) {
        let engine = Engine(configuration: rules6)
        for (i, p) in c.setup.enumerated() {
            let (v, _) = run(engine, p, at: Double(i) * 0.001)
            #expect(v.accepts, "setup packet \(i) was \(v)")
        }
        let (verdict, out) = run(engine, c.input, at: 1)
        #expect(verdict == c.verdict)
        if verdict.accepts {
            #expect(out == (c.output ?? c.input))
            if case .rewritten = verdict { #expect(checksumsValid6(out)) }
        }
        if case .drop(let reason) = c.verdict { #expect(engine.counters[reason] == 1) }
    }

    /// The new drop reasons go at the end: counters are indexed by raw value, metrics named by these.
    @Test func newDropReasonsAreAppendedWithTheirNames() {
        let all = DropReason.allCases
        #expect(all.suffix(2) == [.malformedExtensionHeaders, .udpZeroChecksum])
        #expect(all.suffix(2).map(\.description) == ["malformed-extension-headers", "udp-zero-checksum"])
        #expect(DropReason.realServerRemoved.rawValue == 8)
    }

    /// A whole TCP flow: handshake, data both ways, FIN both ways, the states IPVS moves through and
    /// the real server's counts; then the connection's key in each direction.
    @Test func aTCPFlowLivesAndClosesAsOverIPv4() throws {
        let engine = Engine(configuration: rules6)
        let steps: [([UInt8], Verdict, ConnectionState)] = [
            (syn6, .rewritten(.inbound), .synRecv),
            (w61c.tcp(8080, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001), .rewritten(.outbound), .synRecv),
            (c2v6.tcp(40000, 80, flags: .ack, seq: 1001, ack: 5001), .rewritten(.inbound), .established),
            (w61c.tcp(8080, 40000, flags: .ack, seq: 5001, ack: 1001, payload: bigPayload), .rewritten(.outbound), .established),
            // IPVS's tables: the client's FIN in ESTABLISHED is CLOSE_WAIT, the server's then TIME_WAIT.
            (c2v6.tcp(40000, 80, flags: [.fin, .ack], seq: 1001, ack: 5061), .rewritten(.inbound), .closeWait),
            (w61c.tcp(8080, 40000, flags: [.fin, .ack], seq: 5061, ack: 1002), .rewritten(.outbound), .timeWait),
        ]
        let key = FlowKey6(source: client6, destination: vip6, sourcePort: 40000, destinationPort: 80, proto: .tcp)
        var activeSeen = false
        for (i, (packet, verdict, state)) in steps.enumerated() {
            #expect(run(engine, packet, at: Double(i)).0 == verdict, "step \(i)")
            let (slot, direction) = try #require(engine.table.lookup(key))
            #expect(direction == .inbound)
            #expect(engine.table[slot].state == state, "step \(i)")
            activeSeen = activeSeen || engine.destinations[0]?.activeConnections == 1
        }
        #expect(activeSeen)
        let d = try #require(engine.destinations[0])
        #expect(d.activeConnections == 0 && d.inactiveConnections == 1)
        let (slot, _) = try #require(engine.table.lookup(key))
        let c = engine.table[slot]
        #expect(c.isIPv6 && c.packetsIn == 3 && c.packetsOut == 3)
        #expect(c.bytesIn == UInt64(syn6.count + 2 * (syn6.count)))
        let addresses = engine.table.addresses6(slot)
        #expect(addresses.client == client6 && addresses.virtualAddress == vip6 && addresses.server == web61)
        let reply = FlowKey6(source: web61, destination: client6, sourcePort: 8080, destinationPort: 40000, proto: .tcp)
        #expect(engine.table.lookup(reply)?.direction == .outbound)
        // The IPv4 lookups never see it.
        #expect(engine.table.connectionCount == 1)
        #expect(engine.counters.connectionsCreated == 1)
        #expect(engine.serviceStats[0].connections == 1)
        // A new SYN on the closed connection (TIME_WAIT) starts a new one: rr's next server.
        let (v, out) = run(engine, syn6, at: 10)
        #expect(v == .rewritten(.inbound) && out == c2w62.tcp(40000, 8080, flags: .syn))
    }

    /// The client's RST closes an established connection (CLOSE, 10 s), which then expires.
    @Test func anRSTClosesAndTheConnectionExpires() throws {
        let engine = Engine(configuration: rules6)
        _ = run(engine, syn6, at: 0)
        _ = run(engine, w61c.tcp(8080, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001), at: 0)
        _ = run(engine, c2v6.tcp(40000, 80, flags: .ack, seq: 1001, ack: 5001), at: 0)
        #expect(engine.destinations[0]?.activeConnections == 1)
        #expect(run(engine, c2v6.tcp(40000, 80, flags: .rst, seq: 1001), at: 1).0 == .rewritten(.inbound))
        let key = FlowKey6(source: client6, destination: vip6, sourcePort: 40000, destinationPort: 80, proto: .tcp)
        let (slot, _) = try #require(engine.table.lookup(key))
        #expect(engine.table[slot].state == .close)
        engine.advanceClock(to: 12 * 1_000_000_000)
        #expect(engine.table.lookup(key) == nil)
        #expect(engine.table.connectionCount == 0)
        #expect(engine.destinations[0]?.inactiveConnections == 0)
    }

    /// `-p 60 -M 64`: clients of one /64 share a real server while their template lives; a client of
    /// another /64 is scheduled (rr: the next server).
    @Test func persistenceGroupsClientsByPrefixLength() throws {
        let engine = Engine(configuration: Configuration(services: [
            service6(.tcp, 80, persistence: 60, prefixLength: 64, [(web61, 80, 1), (web62, 80, 1)]),
        ]))
        func server(_ client: String, _ port: UInt16, at t: Double) -> IPv6Address? {
            let (v, out) = run(engine, V6Builder(source: addr6(client), destination: vip6).tcp(port, 80, flags: .syn), at: t)
            guard v == .rewritten(.inbound) else { return nil }
            return out.withUnsafeBytes { raw in
                IPv6Address(PacketBytes(base: UnsafeMutableRawPointer(mutating: raw.baseAddress!), count: raw.count), at: 24)
            }
        }
        #expect(server("2001:2::12", 1, at: 0) == web61)
        #expect(server("2001:2::12", 2, at: 1) == web61)            // same client
        #expect(server("2001:2::ffff:1", 3, at: 2) == web61)        // same /64
        #expect(server("2001:2:0:5::12", 4, at: 3) == web62)        // another /64: scheduled
        #expect(server("2001:2:0:5::77", 5, at: 4) == web62)
        #expect(engine.table.templateCount == 2)
        #expect(engine.counters.templatesCreated == 2)
        let key = FlowKey6(source: addr6("2001:2::"), destination: vip6, sourcePort: 0, destinationPort: 80, proto: .tcp)
        let template = try #require(engine.table.template(for: key))
        #expect(engine.table[template].isTemplate && engine.table[template].controlled == 3)
        #expect(engine.table.addresses6(template).server == web61)
        #expect(engine.destinations[0]?.persistentConnections == 1)
        // The connections expire; a template still controlling them when its time came is re-checked
        // 60 s later (IPVS) and goes then.
        engine.advanceClock(to: 2_000 * 1_000_000_000)
        #expect(engine.table.connectionCount == 0)
        engine.advanceClock(to: 2_061 * 1_000_000_000)
        #expect(engine.table.templateCount == 0)
        #expect(engine.destinations[0]?.persistentConnections == 0)
    }

    /// sh hashes an IPv6 client's fold (`ip_vs_sh_hashkey`): the engine picks the server the fold's
    /// bucket holds, computed here from the address bytes.
    @Test func sourceHashingSpreadsIPv6ClientsByTheirFold() throws {
        let engine = Engine(configuration: Configuration(services: [
            service6(.tcp, 80, scheduler: "sh", [(web61, 80, 1), (web62, 80, 1)]),
        ]))
        var seen = Set<IPv6Address>()
        for i in 0..<16 {
            let client = IPv6Address(high: 0x2001_0002_0000_0000, low: 0x12 &+ UInt64(i) &* 7)
            let bytes = client.bytes
            var fold: UInt32 = 0
            for w in 0..<4 { fold ^= UInt32(bytes[4 * w]) << 24 | UInt32(bytes[4 * w + 1]) << 16 | UInt32(bytes[4 * w + 2]) << 8 | UInt32(bytes[4 * w + 3]) }
            // 256 buckets, weights 1:1: even buckets web1, odd ones web2.
            let bucket = Int((UInt64(fold) &* 2_654_435_761) & 255)
            let expected = bucket % 2 == 0 ? web61 : web62
            let (v, out) = run(engine, V6Builder(source: client, destination: vip6).tcp(40000, 80, flags: .syn), at: Double(i))
            #expect(v == .rewritten(.inbound))
            #expect(out == V6Builder(source: client, destination: expected).tcp(40000, 80, flags: .syn), "client \(client)")
            seen.insert(expected)
        }
        #expect(seen.count == 2)
    }

    /// CHECKSUM_PARTIAL (the field holds the folded pseudo-header sum): the rewritten packet leaves with
    /// its checksum finished; a kept partial checksum follows the new addresses.
    @Test(arguments: [(IPProtocol.tcp, false), (.tcp, true), (.udp, false), (.udp, true)])
    func partialChecksums(_ proto: IPProtocol, _ kept: Bool) {
        let engine = Engine(configuration: Configuration(services: [
            service6(.tcp, 80, [(web61, 8080, 1)]), service6(.udp, 80, [(web61, 8080, 1)]),
        ]))
        let payload = Array(repeating: UInt8(7), count: 101)
        var packet = proto == .tcp ? c2v6.tcp(40000, 80, flags: .syn, payload: payload) : c2v6.udp(40000, 80, payload: payload)
        let upperLength = packet.count - 40
        let offset = 40 + (proto == .tcp ? 16 : 6)
        let partial = V6Builder.sum(c2v6.pseudo(proto.rawValue, upperLength))
        packet[offset] = UInt8(partial >> 8)
        packet[offset + 1] = UInt8(partial & 0xff)
        let meta = kept ? PacketMeta(partialChecksumKept: true) : PacketMeta(partialChecksum: true)
        let (verdict, out) = run(engine, packet, meta: meta)
        #expect(verdict == .rewritten(.inbound))
        if kept {
            let expected = V6Builder.sum(c2w61.pseudo(proto.rawValue, upperLength))
            #expect(UInt16(out[offset]) << 8 | UInt16(out[offset + 1]) == expected)
        } else {
            #expect(out == (proto == .tcp ? c2w61.tcp(40000, 8080, flags: .syn, payload: payload)
                                           : c2w61.udp(40000, 8080, payload: payload)))
            #expect(checksumsValid6(out))
        }
    }

    /// IPv4 and IPv6 flows side by side in one table: neither family's lookups see the other's.
    @Test func bothFamiliesShareOneTable() throws {
        let engine = Engine(configuration: Configuration(services: rules6.services + [
            ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 80), scheduler: "rr",
                        realServers: [RealServerSpec(address: web1, port: 8080)]),
        ]))
        #expect(run(engine, syn).0 == .rewritten(.inbound))
        #expect(run(engine, syn6).0 == .rewritten(.inbound))
        #expect(engine.table.connectionCount == 2)
        let (v4, out4) = run(engine, w1c.tcp(8080, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001))
        #expect(v4 == .rewritten(.outbound) && out4 == v2c.tcp(80, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001))
        let (v6, out6) = run(engine, w61c.tcp(8080, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001))
        #expect(v6 == .rewritten(.outbound) && out6 == v2c6.tcp(80, 40000, flags: [.syn, .ack], seq: 5000, ack: 1001))
        let records = engine.flowRecords()
        #expect(records.count == 2)
    }

    /// The batch driver's look-ahead reads IPv6 tuples too: a batch of both families is NATed as
    /// packet by packet.
    @Test func prefetchingBatchesOfIPv6() {
        let engine = Engine(configuration: rules6)
        var packets = (0..<20).map { c2v6.tcp(UInt16(41000 + $0), 80, flags: .syn) }
        packets += [c2v6.with(.hopByHop).tcp(42000, 80, flags: .syn), Array(syn6.prefix(20)), [0x60]]
        var verdicts: [Verdict] = []
        let buffers = packets.map { p -> UnsafeMutableRawBufferPointer in
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: p.count, alignment: 8)
            b.copyBytes(from: p)
            return b
        }
        defer { buffers.forEach { $0.deallocate() } }
        engine.prefetching(count: buffers.count, bytes: { PacketBytes(buffers[$0]) }) { i in
            verdicts.append(engine.process(PacketBytes(buffers[i]), now: 1_000_000_000))
        }
        #expect(verdicts.prefix(21).allSatisfy { $0 == .rewritten(.inbound) })
        #expect(verdicts.suffix(2) == [.drop(.malformedIP), .drop(.malformedIP)])
        #expect(engine.table.connectionCount == 21)
    }
}
