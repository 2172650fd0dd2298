import MasqRules
import Testing
@testable import MasqCore

@Suite struct ChecksumTests {
    /// RFC 1071 §3's worked example: 0001 f203 f4f5 f6f7 sums to ddf2.
    @Test func rfc1071Example() {
        var bytes: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        let folded = bytes.withUnsafeMutableBytes { InternetChecksum.fold(InternetChecksum.accumulate(PacketBytes($0))) }
        #expect(folded == 0xddf2)
    }

    @Test(arguments: 0..<7) func oddLengthsPadWithZero(_ extra: Int) {
        var rng = SystemRandomNumberGenerator()
        var bytes = (0..<(33 + extra)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let fast = bytes.withUnsafeMutableBytes { InternetChecksum.fold(InternetChecksum.accumulate(PacketBytes($0))) }
        #expect(fast == PacketBuilder.sum(bytes))
    }

    /// Randomised: rewriting addresses and ports with RFC 1624 updates gives what a full recomputation gives.
    @Test(arguments: [IPProtocol.tcp, .udp]) func incrementalMatchesFull(_ proto: IPProtocol) {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let src = IPv4Address(rawValue: UInt32.random(in: 0...UInt32.max, using: &rng))
            let dst = IPv4Address(rawValue: UInt32.random(in: 0...UInt32.max, using: &rng))
            let newDst = IPv4Address(rawValue: UInt32.random(in: 0...UInt32.max, using: &rng))
            let sport = UInt16.random(in: 0...UInt16.max, using: &rng)
            let dport = UInt16.random(in: 0...UInt16.max, using: &rng)
            let newPort = UInt16.random(in: 0...UInt16.max, using: &rng)
            let payload = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let b = PacketBuilder(source: src, destination: dst)
            var packet = proto == .tcp ? b.tcp(sport, dport, flags: .ack, payload: payload) : b.udp(sport, dport, payload: payload)
            packet.withUnsafeMutableBytes { raw in
                let ip = IPv4Header(PacketBytes(raw))
                let th = TransportHeader(ip.payload, proto: proto)
                ip.setDestination(newDst)
                th.addressChanged(from: dst, to: newDst)
                th.setDestinationPort(newPort)
            }
            let expected = PacketBuilder(source: src, destination: newDst)
            let rebuilt = proto == .tcp ? expected.tcp(sport, newPort, flags: .ack, payload: payload)
                : expected.udp(sport, newPort, payload: payload)
            #expect(checksumsValid(packet))
            // Bytes equal except where 0x0000 and 0xffff are the same ones'-complement value.
            if packet != rebuilt {
                let offset = 20 + (proto == .tcp ? 16 : 6)
                var a = packet, c = rebuilt
                for v in [offset, offset + 1] { a[v] = 0; c[v] = 0 }
                #expect(a == c)
                let pair = Set([UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1]),
                                UInt16(rebuilt[offset]) << 8 | UInt16(rebuilt[offset + 1])])
                #expect(pair == [0, 0xffff])
            }
        }
    }

    @Test func udpZeroChecksumStaysZero() {
        var packet = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
            .udp(5000, 53, payload: [1, 2, 3], zeroChecksum: true)
        packet.withUnsafeMutableBytes { raw in
            let ip = IPv4Header(PacketBytes(raw))
            let th = TransportHeader(ip.payload, proto: .udp)
            th.addressChanged(from: ip.destination, to: addr("198.19.0.201"))
            th.setDestinationPort(5353)
        }
        #expect(packet[26] == 0 && packet[27] == 0)
    }

    /// A UDP update that lands on 0 must be sent as 0xffff (RFC 768: 0 means "no checksum").
    @Test func udpComputedZeroBecomesAllOnes() {
        // Find a payload whose checksum after the port change is exactly 0 on the wire.
        let b = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        var hit = false
        for value in 0...0xffff {
            var packet = b.udp(5000, 53, payload: PacketBuilder.be16(UInt16(value)))
            packet.withUnsafeMutableBytes { raw in
                let th = TransportHeader(IPv4Header(PacketBytes(raw)).payload, proto: .udp)
                let predicted = InternetChecksum.update(th.checksum, old: UInt16(53), new: UInt16(5353))
                if predicted == 0 {
                    th.setDestinationPort(5353)
                    hit = true
                }
            }
            if hit {
                #expect(packet[26] == 0xff && packet[27] == 0xff)
                #expect(checksumsValid(packet))
                break
            }
        }
        #expect(hit)
    }

    /// A CHECKSUM_PARTIAL packet (field = pseudo-header sum) leaves with a finished checksum.
    @Test func partialChecksumIsFinished() {
        let engine = Engine(configuration: try! RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
            """))
        let b = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        var packet = b.tcp(40000, 80, flags: .syn, payload: Array(repeating: 7, count: 100))
        // Replace the checksum with the partial form the kernel leaves: the folded pseudo-header sum.
        let partial = PacketBuilder.sum(b.pseudo(6, packet.count - 20))
        packet[36] = UInt8(partial >> 8)
        packet[37] = UInt8(partial & 0xff)
        let (verdict, out) = run(engine, packet, meta: PacketMeta(partialChecksum: true))
        #expect(verdict == .rewritten(.inbound))
        #expect(checksumsValid(out))
        #expect(out == PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.19.0.201"))
            .tcp(40000, 8080, flags: .syn, payload: Array(repeating: 7, count: 100)))
    }

    /// A GSO packet's partial checksum (pseudo-header sum only) is updated as the kernel does for
    /// CHECKSUM_PARTIAL: the new addresses' pseudo-header sum, ports left out.
    @Test(arguments: [IPProtocol.tcp, .udp]) func keptPartialChecksumFollowsTheAddresses(_ proto: IPProtocol) {
        let engine = Engine(configuration: try! RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
            -A -u 198.18.0.1:80 -s rr
            -a -u 198.18.0.1:80 -r 198.19.0.201:8080 -m
            """))
        let b = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        var packet = proto == .tcp ? b.tcp(40000, 80, flags: .syn, payload: [1, 2, 3]) : b.udp(40000, 80, payload: [1, 2, 3])
        let offset = 20 + (proto == .tcp ? 16 : 6)
        let partial = PacketBuilder.sum(b.pseudo(proto.rawValue, packet.count - 20))
        packet[offset] = UInt8(partial >> 8)
        packet[offset + 1] = UInt8(partial & 0xff)
        let (verdict, out) = run(engine, packet, meta: PacketMeta(partialChecksumKept: true))
        #expect(verdict == .rewritten(.inbound))
        let after = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.19.0.201"))
        let expected = PacketBuilder.sum(after.pseudo(proto.rawValue, packet.count - 20))
        #expect(UInt16(out[offset]) << 8 | UInt16(out[offset + 1]) == expected)
    }
}
