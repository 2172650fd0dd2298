import Testing
@testable import MasqCore

/// Builds IPv6 packets byte by byte, every checksum summed from scratch over the RFC 8200 §8.1
/// pseudo-header laid out in bytes: the oracle for the header views and the incremental updates.
struct IPv6PacketBuilder {
    var source: IPv6Address
    var destination: IPv6Address
    var hopLimit: UInt8 = 64
    var trafficClass: UInt8 = 0
    var flowLabel: UInt32 = 0

    func pseudo(_ proto: UInt8, _ length: Int) -> [UInt8] {
        source.bytes + destination.bytes + PacketBuilder.be32(UInt32(length)) + [0, 0, 0, proto]
    }

    /// The fixed header and `payload` (extension headers and upper layer); `payloadLength` overrides
    /// the field, `padding` appends bytes beyond it (as a link layer's minimum frame would).
    func ip(_ nextHeader: UInt8, _ payload: [UInt8], payloadLength: Int? = nil, padding: Int = 0) -> [UInt8] {
        let word = UInt32(6) << 28 | UInt32(trafficClass) << 20 | flowLabel & 0xfffff
        var h = PacketBuilder.be32(word) + PacketBuilder.be16(UInt16(payloadLength ?? payload.count))
        h += [nextHeader, hopLimit] + source.bytes + destination.bytes
        return h + payload + [UInt8](repeating: 0xee, count: padding)
    }

    func checksummed(_ proto: UInt8, _ segment: [UInt8], at offset: Int, udp: Bool = false) -> [UInt8] {
        var s = segment
        var c = ~PacketBuilder.sum(pseudo(proto, s.count) + s)
        if udp && c == 0 { c = 0xffff }
        s[offset] = UInt8(c >> 8)
        s[offset + 1] = UInt8(c & 0xff)
        return s
    }

    func tcpSegment(_ sport: UInt16, _ dport: UInt16, flags: TCPFlags = .ack, payload: [UInt8] = []) -> [UInt8] {
        var t = PacketBuilder.be16(sport) + PacketBuilder.be16(dport) + PacketBuilder.be32(1000) + PacketBuilder.be32(0)
        t += [0x50, flags.rawValue] + PacketBuilder.be16(64240) + [0, 0, 0, 0] + payload
        return checksummed(6, t, at: 16)
    }

    func udpSegment(_ sport: UInt16, _ dport: UInt16, payload: [UInt8] = []) -> [UInt8] {
        let u = PacketBuilder.be16(sport) + PacketBuilder.be16(dport) + PacketBuilder.be16(UInt16(8 + payload.count))
            + [0, 0] + payload
        return checksummed(17, u, at: 6, udp: true)
    }

    func icmpv6Message(type: UInt8, code: UInt8, rest: UInt32 = 0, body: [UInt8] = []) -> [UInt8] {
        checksummed(58, [type, code, 0, 0] + PacketBuilder.be32(rest) + body, at: 2)
    }

    func tcp(_ sport: UInt16, _ dport: UInt16, flags: TCPFlags = .ack, payload: [UInt8] = []) -> [UInt8] {
        ip(6, tcpSegment(sport, dport, flags: flags, payload: payload))
    }

    func udp(_ sport: UInt16, _ dport: UInt16, payload: [UInt8] = []) -> [UInt8] {
        ip(17, udpSegment(sport, dport, payload: payload))
    }
}

/// Extension headers as bytes (RFC 8200 §4.3-§4.6, RFC 4302 §2).
enum Ext {
    /// Hop-by-hop, routing, destination options, mobility, HIP, shim6: (hdrExtLen + 1) * 8 bytes.
    static func options(_ next: IPProtocol, hdrExtLen: UInt8 = 0) -> [UInt8] {
        [next.rawValue, hdrExtLen] + [UInt8](repeating: 0, count: (Int(hdrExtLen) + 1) * 8 - 2)
    }

    static func fragment(_ next: IPProtocol, offset: Int, more: Bool, id: UInt32) -> [UInt8] {
        [next.rawValue, 0] + PacketBuilder.be16(UInt16(offset) & 0xfff8 | (more ? 1 : 0)) + PacketBuilder.be32(id)
    }

    /// AH: (payloadLen + 2) * 4 bytes (RFC 4302 §2.2).
    static func ah(_ next: IPProtocol, payloadLen: UInt8) -> [UInt8] {
        [next.rawValue, payloadLen] + [UInt8](repeating: 0xa5, count: (Int(payloadLen) + 2) * 4 - 2)
    }
}

@Suite struct IPv6HeaderTests {
    static let builder = IPv6PacketBuilder(source: v6("2001:2::12"), destination: v6("2001:2::1"))
    static let tcp20 = builder.tcpSegment(40000, 80)
    static let udp8 = builder.udpSegment(5353, 53)

    enum Outcome: Sendable, Equatable {
        case upper(IPv6UpperLayer)
        case error(IPv6ChainError)
    }

    struct ChainCase: Sendable, CustomTestStringConvertible {
        var description: String
        var first: IPProtocol
        var payload: [UInt8]
        var payloadLength: Int? = nil
        var padding = 0
        /// Cut the packet to this many bytes after building it.
        var cutTo: Int? = nil
        var expected: Outcome
        var testDescription: String { description }
    }

    static func upper(_ proto: IPProtocol, _ offset: Int, _ fragment: IPv6Fragment? = nil) -> Outcome {
        .upper(IPv6UpperLayer(proto: proto, offset: offset, fragment: fragment))
    }

    static let nineOptions = (0..<9).flatMap { i in Ext.options(i == 8 ? .tcp : .destinationOptions) }
    static let eightOptions = (0..<8).flatMap { i in Ext.options(i == 7 ? .tcp : .destinationOptions) }

    static let chains: [ChainCase] = [
        .init(description: "TCP directly", first: .tcp, payload: tcp20, expected: upper(.tcp, 40)),
        // Segments Left 1 (the fourth byte): the destination is a waypoint, not the final one.
        .init(description: "routing with segments left, TCP: routed onward", first: .routing,
              payload: { var r = Ext.options(.tcp, hdrExtLen: 2); r[3] = 1; return r }() + tcp20,
              expected: .upper(IPv6UpperLayer(proto: .tcp, offset: 64, routedOnward: true))),
        .init(description: "UDP directly, padding after the payload", first: .udp, payload: udp8, padding: 6,
              expected: upper(.udp, 40)),
        .init(description: "ICMPv6 directly", first: .icmpv6, payload: [128, 0, 0, 0, 0, 1, 0, 1],
              expected: upper(.icmpv6, 40)),
        .init(description: "hop-by-hop, UDP", first: .hopByHop, payload: Ext.options(.udp) + udp8,
              expected: upper(.udp, 48)),
        .init(description: "hop-by-hop (16), destination options, TCP", first: .hopByHop,
              payload: Ext.options(.destinationOptions, hdrExtLen: 1) + Ext.options(.tcp) + tcp20,
              expected: upper(.tcp, 64)),
        .init(description: "routing (24), TCP", first: .routing, payload: Ext.options(.tcp, hdrExtLen: 2) + tcp20,
              expected: upper(.tcp, 64)),
        .init(description: "first fragment, UDP", first: .fragment,
              payload: Ext.fragment(.udp, offset: 0, more: true, id: 0xdead_beef) + udp8,
              expected: upper(.udp, 48, IPv6Fragment(offset: 0, moreFragments: true, identification: 0xdead_beef))),
        .init(description: "first fragment, destination options, TCP: walked on", first: .fragment,
              payload: Ext.fragment(.destinationOptions, offset: 0, more: true, id: 7) + Ext.options(.tcp) + tcp20,
              expected: upper(.tcp, 56, IPv6Fragment(offset: 0, moreFragments: true, identification: 7))),
        .init(description: "later fragment stops at its fragment header", first: .fragment,
              payload: Ext.fragment(.udp, offset: 1232, more: true, id: 9) + [UInt8](repeating: 0x3c, count: 16),
              expected: upper(.udp, 48, IPv6Fragment(offset: 1232, moreFragments: true, identification: 9))),
        .init(description: "last fragment: data that looks like a header is not walked", first: .fragment,
              payload: Ext.fragment(.destinationOptions, offset: 8, more: false, id: 10) + [0x3c, 0xff, 0, 0, 0, 0, 0, 0],
              expected: upper(.destinationOptions, 48, IPv6Fragment(offset: 8, moreFragments: false, identification: 10))),
        .init(description: "atomic fragment, TCP", first: .fragment,
              payload: Ext.fragment(.tcp, offset: 0, more: false, id: 11) + tcp20,
              expected: upper(.tcp, 48, IPv6Fragment(offset: 0, moreFragments: false, identification: 11))),
        .init(description: "AH (24), TCP", first: .ah, payload: Ext.ah(.tcp, payloadLen: 4) + tcp20,
              expected: upper(.tcp, 64)),
        .init(description: "AH of 12 bytes (RFC 4302 wants 8n over IPv6): walked by its length, UDP", first: .ah, payload: Ext.ah(.udp, payloadLen: 1) + udp8,
              expected: upper(.udp, 52)),
        .init(description: "mobility, no next header, nothing after", first: .mobility,
              payload: Ext.options(.noNextHeader), expected: upper(.noNextHeader, 48)),
        .init(description: "HIP, shim6, UDP", first: .hip,
              payload: Ext.options(.shim6) + Ext.options(.udp, hdrExtLen: 1) + udp8, expected: upper(.udp, 64)),
        .init(description: "ESP ends the walk", first: .esp, payload: [UInt8](repeating: 0x42, count: 24),
              expected: upper(.esp, 40)),
        .init(description: "destination options, ESP", first: .destinationOptions,
              payload: Ext.options(.esp) + [UInt8](repeating: 0x42, count: 24), expected: upper(.esp, 48)),
        .init(description: "no next header with bytes after it", first: .noNextHeader, payload: [1, 2, 3, 4],
              expected: upper(.noNextHeader, 40)),
        .init(description: "an unknown protocol is the upper layer", first: IPProtocol(rawValue: 253),
              payload: [1, 2, 3, 4], expected: upper(IPProtocol(rawValue: 253), 40)),
        .init(description: "routing header ending the payload: the upper layer starts at its end", first: .routing,
              payload: Ext.options(.tcp), expected: upper(.tcp, 48)),
        .init(description: "eight extension headers", first: .destinationOptions, payload: eightOptions + tcp20,
              expected: upper(.tcp, 104)),
        .init(description: "nine extension headers", first: .destinationOptions, payload: nineOptions + tcp20,
              expected: .error(.tooLong)),
        .init(description: "destination options, hop-by-hop", first: .destinationOptions,
              payload: Ext.options(.hopByHop) + Ext.options(.tcp) + tcp20, expected: .error(.hopByHopNotFirst)),
        .init(description: "hop-by-hop, hop-by-hop", first: .hopByHop,
              payload: Ext.options(.hopByHop) + Ext.options(.tcp) + tcp20, expected: .error(.hopByHopNotFirst)),
        .init(description: "first fragment, hop-by-hop", first: .fragment,
              payload: Ext.fragment(.hopByHop, offset: 0, more: true, id: 1) + Ext.options(.udp) + udp8,
              expected: .error(.hopByHopNotFirst)),
        .init(description: "destination options longer than the packet", first: .destinationOptions,
              payload: Array(Ext.options(.tcp, hdrExtLen: 5).prefix(16)), expected: .error(.truncated)),
        .init(description: "destination options beyond the payload length, within the padding",
              first: .destinationOptions, payload: Ext.options(.tcp, hdrExtLen: 1), payloadLength: 8, padding: 8,
              expected: .error(.truncated)),
        .init(description: "hop-by-hop of 2048 bytes in a short packet", first: .hopByHop,
              payload: Ext.options(.udp, hdrExtLen: 255).prefix(8) + udp8, expected: .error(.truncated)),
        .init(description: "an extension header's length byte beyond the payload", first: .destinationOptions,
              payload: [6], expected: .error(.truncated)),
        .init(description: "a fragment header of 4 bytes", first: .fragment,
              payload: Array(Ext.fragment(.udp, offset: 0, more: true, id: 1).prefix(4)), expected: .error(.truncated)),
        .init(description: "AH cut short", first: .ah, payload: Array(Ext.ah(.tcp, payloadLen: 4).prefix(20)),
              expected: .error(.truncated)),
        .init(description: "payload length beyond the bytes", first: .tcp, payload: tcp20, payloadLength: 21,
              expected: .error(.payloadLengthBeyondPacket)),
        .init(description: "payload length 0: a jumbogram, not done", first: .hopByHop,
              payload: [17, 0, 0xc2, 4, 0, 1, 0, 0x30] + udp8, payloadLength: 0, expected: .error(.truncated)),
        .init(description: "payload length 0, no next header", first: .noNextHeader, payload: [],
              expected: .error(.truncated)),
        .init(description: "39 bytes: no fixed header", first: .tcp, payload: tcp20, cutTo: 39,
              expected: .error(.truncated)),
    ]

    func outcome(_ packet: inout [UInt8]) -> Outcome {
        packet.withUnsafeMutableBytes { raw in
            do throws(IPv6ChainError) { return .upper(try IPv6Header(PacketBytes(raw)).upperLayer()) } catch { return .error(error) }
        }
    }

    @Test(arguments: chains) func extensionChain(_ c: ChainCase) {
        var packet = Self.builder.ip(c.first.rawValue, c.payload, payloadLength: c.payloadLength, padding: c.padding)
        if let cut = c.cutTo { packet = Array(packet.prefix(cut)) }
        #expect(outcome(&packet) == c.expected)
    }

    @Test func fixedHeaderFields() {
        var b = IPv6PacketBuilder(source: v6("2001:2::12"), destination: v6("2001:2:0:1::5"))
        b.trafficClass = 0xb9
        b.flowLabel = 0xabcde
        b.hopLimit = 7
        var packet = b.udp(5353, 53, payload: [1, 2, 3])
        packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            #expect(ip.version == 6)
            #expect(ip.trafficClass == 0xb9)
            #expect(ip.flowLabel == 0xabcde)
            #expect(ip.payloadLength == 11)
            #expect(ip.totalLength == 51)
            #expect(ip.nextHeader == .udp)
            #expect(ip.hopLimit == 7)
            #expect(ip.source == v6("2001:2::12"))
            #expect(ip.destination == v6("2001:2:0:1::5"))
        }
    }

    /// The address setters write 16 bytes each and nothing else (there is no header checksum).
    @Test func settersRewriteOnlyTheAddress() {
        let original = Self.builder.tcp(40000, 80, payload: [9, 8, 7])
        var packet = original
        packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            ip.setSource(v6("2001:2:ffff::1"))
            ip.setDestination(v6("2001:2:0:1::5"))
            #expect(ip.source == v6("2001:2:ffff::1"))
            #expect(ip.destination == v6("2001:2:0:1::5"))
        }
        #expect(Array(packet[8..<24]) == v6("2001:2:ffff::1").bytes)
        #expect(Array(packet[24..<40]) == v6("2001:2:0:1::5").bytes)
        #expect(Array(packet[..<8]) == Array(original[..<8]))
        #expect(Array(packet[40...]) == Array(original[40...]))
    }

    /// `payload(from:)` ends where the payload length says, not at the end of the bytes.
    @Test func payloadExcludesPadding() throws {
        var packet = Self.builder.ip(IPProtocol.hopByHop.rawValue, Ext.options(.udp) + Self.udp8, padding: 10)
        try packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            let upper = try ip.upperLayer()
            let payload = ip.payload(from: upper.offset)
            #expect(payload.count == 8)
            #expect(payload.bytes == Self.udp8)
            #expect(TransportHeader(payload, proto: .udp).isChecksumValid(
                source: ip.source, destination: ip.destination, proto: .udp))
        }
    }

    /// Seeded random chains and random bytes: every outcome is defined, and a found upper layer lies
    /// within the payload length, which lies within the bytes.
    @Test func randomChainsAreBounded() {
        var rng = SplitMix64(seed: 0x1_6006)
        var seen: Set<String> = []
        let kinds: [IPProtocol] = [.hopByHop, .routing, .fragment, .destinationOptions, .ah, .mobility, .hip,
                                   .shim6, .tcp, .udp, .icmpv6, .esp, .noNextHeader]
        for round in 0..<20000 {
            var payload: [UInt8] = []
            let first = kinds.randomElement(using: &rng)!
            var proto = first
            for _ in 0..<Int.random(in: 0...10, using: &rng) {
                let next = kinds.randomElement(using: &rng)!
                switch proto {
                case .fragment:
                    payload += Ext.fragment(next, offset: Bool.random(using: &rng) ? 0 : 8 * Int.random(in: 1...8000, using: &rng),
                                            more: Bool.random(using: &rng), id: UInt32.random(in: 0...UInt32.max, using: &rng))
                case .ah: payload += Ext.ah(next, payloadLen: UInt8.random(in: 1...6, using: &rng))
                case .tcp, .udp, .icmpv6, .esp, .noNextHeader: break
                default: payload += Ext.options(next, hdrExtLen: UInt8.random(in: 0...3, using: &rng))
                }
                proto = next
            }
            payload += (0..<Int.random(in: 0...24, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Now and then garbage: a random payload length, random bytes in the chain, a cut.
            var packet = Self.builder.ip(first.rawValue, payload, padding: Int.random(in: 0...3, using: &rng))
            if round % 3 == 0 && packet.count > 40 {
                for _ in 0..<4 { packet[Int.random(in: 40..<packet.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            }
            if round % 5 == 0 { packet[4] = UInt8.random(in: 0...255, using: &rng); packet[5] = UInt8.random(in: 0...255, using: &rng) }
            if round % 7 == 0 { packet = Array(packet.prefix(Int.random(in: 0...packet.count, using: &rng))) }
            packet.withUnsafeMutableBytes { raw in
                let ip = IPv6Header(PacketBytes(raw))
                do throws(IPv6ChainError) {
                    let upper = try ip.upperLayer()
                    seen.insert(upper.isFragment ? "fragment" : "upper")
                    #expect(ip.totalLength <= raw.count)
                    #expect(upper.offset >= IPv6Header.length && upper.offset <= ip.totalLength)
                    #expect(ip.payload(from: upper.offset).count == ip.totalLength - upper.offset)
                } catch {
                    seen.insert("\(error)")
                }
            }
        }
        // The seeded rounds reach every outcome, so each branch of the walk ran on odd input.
        #expect(seen == ["upper", "fragment", "truncated", "tooLong", "hopByHopNotFirst", "payloadLengthBeyondPacket"])
    }
}
