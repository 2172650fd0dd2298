import Testing
@testable import MasqCore

@Suite struct Checksum6Tests {
    /// The pseudo-header sum against the RFC 8200 §8.1 layout summed as bytes, lengths past 16 bits too.
    @Test func pseudoHeaderMatchesItsBytes() {
        var rng = SplitMix64(seed: 8200)
        for _ in 0..<2000 {
            let source = IPv6Address(high: rng.next(), low: rng.next())
            let destination = IPv6Address(high: rng.next(), low: rng.next())
            let length = Int.random(in: 0...0x3_ffff, using: &rng)
            let proto = IPProtocol(rawValue: UInt8.random(in: 0...255, using: &rng))
            let layout = source.bytes + destination.bytes + PacketBuilder.be32(UInt32(length)) + [0, 0, 0, proto.rawValue]
            let sum = InternetChecksum.pseudoHeader(source: source, destination: destination, protocol: proto, length: length)
            #expect(InternetChecksum.fold(sum) == PacketBuilder.sum(layout))
        }
    }

    /// RFC 1624 eqn. 3 over eight words: updating a checksum for a 128-bit change of summed data gives
    /// the checksum recomputed over the changed data.
    @Test func update128MatchesFullRecompute() {
        var rng = SplitMix64(seed: 1624)
        for _ in 0..<5000 {
            let old = IPv6Address(high: rng.next(), low: rng.next())
            // Now and then a new address sharing most groups with the old one, or all zeros / all ones.
            let new: IPv6Address = switch rng.next() % 4 {
            case 0: IPv6Address(high: old.high, low: old.low ^ (rng.next() & 0xffff))
            case 1: rng.next() & 1 == 0 ? .unspecified : IPv6Address(high: .max, low: .max)
            default: IPv6Address(high: rng.next(), low: rng.next())
            }
            let rest = (0..<Int.random(in: 1...32, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let before = ~PacketBuilder.sum(old.bytes + rest)
            let after = ~PacketBuilder.sum(new.bytes + rest)
            let updated = InternetChecksum.update(before, old: old, new: new)
            // Ones'-complement equal: 0x0000 and 0xffff are the same value.
            #expect(updated == after || (updated ^ after) == 0xffff && (updated == 0 || after == 0),
                    "\(old) -> \(new)")
        }
    }

    /// NAT over IPv6: the destination and port rewritten with incremental updates gives the packet a
    /// from-scratch build gives, for TCP and UDP, and the result verifies.
    @Test(arguments: [IPProtocol.tcp, .udp]) func incrementalMatchesFull(_ proto: IPProtocol) {
        var rng = SplitMix64(seed: proto == .tcp ? 6 : 17)
        for _ in 0..<3000 {
            let source = IPv6Address(high: rng.next(), low: rng.next())
            let destination = IPv6Address(high: 0x2001_0002_0000_0000, low: rng.next())
            let newDestination = IPv6Address(high: 0x2001_0002_0000_0000 | rng.next() & 0xffff, low: rng.next())
            let sport = UInt16.random(in: 0...UInt16.max, using: &rng)
            let dport = UInt16.random(in: 0...UInt16.max, using: &rng)
            let newPort = UInt16.random(in: 0...UInt16.max, using: &rng)
            let payload = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let b = IPv6PacketBuilder(source: source, destination: destination)
            var packet = proto == .tcp ? b.tcp(sport, dport, payload: payload) : b.udp(sport, dport, payload: payload)
            packet.withUnsafeMutableBytes { raw in
                let ip = IPv6Header(PacketBytes(raw))
                let th = TransportHeader(ip.payload(from: 40), proto: proto)
                ip.setDestination(newDestination)
                th.addressChanged(from: destination, to: newDestination)
                th.setDestinationPort(newPort)
                #expect(th.isChecksumValid(source: source, destination: newDestination, proto: proto))
            }
            let rebuilt = IPv6PacketBuilder(source: source, destination: newDestination)
            let expected = proto == .tcp ? rebuilt.tcp(sport, newPort, payload: payload)
                : rebuilt.udp(sport, newPort, payload: payload)
            // Byte for byte: both checksums are ~fold of a non-zero sum (never 0xffff), UDP's 0 sent as 0xffff.
            #expect(packet == expected)
        }
    }

    /// RFC 8200 §8.1: over IPv6 a UDP checksum of 0 is invalid; over IPv4 it still means "none".
    @Test func udpZeroChecksumIsInvalidOverIPv6() {
        let b = IPv6PacketBuilder(source: v6("2001:2::12"), destination: v6("2001:2::1"))
        var packet = b.udp(5000, 53, payload: [1, 2, 3])
        packet[46] = 0
        packet[47] = 0
        packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            let th = TransportHeader(ip.payload(from: 40), proto: .udp)
            #expect(!th.isChecksumValid(source: ip.source, destination: ip.destination, proto: .udp))
        }
        var v4 = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
            .udp(5000, 53, payload: [1, 2, 3], zeroChecksum: true)
        v4.withUnsafeMutableBytes { raw in
            let ip = IPv4Header(PacketBytes(raw))
            #expect(TransportHeader(ip.payload, proto: .udp).isChecksumValid(
                source: ip.source, destination: ip.destination, proto: .udp))
        }
    }

    /// A UDP checksum that computes to 0 goes out as 0xffff, from scratch and incrementally.
    @Test func udpComputedZeroBecomesAllOnes() throws {
        let b = IPv6PacketBuilder(source: v6("2001:2::12"), destination: v6("2001:2::1"))
        var hits = 0
        for value in 0...0xffff {
            var packet = b.udp(5000, 53, payload: PacketBuilder.be16(UInt16(value)))
            packet.withUnsafeMutableBytes { raw in
                let th = TransportHeader(IPv6Header(PacketBytes(raw)).payload(from: 40), proto: .udp)
                th.finishChecksum(source: b.source, destination: b.destination, proto: .udp)
                if th.checksum == 0xffff {
                    hits += 1
                    #expect(th.isChecksumValid(source: b.source, destination: b.destination, proto: .udp))
                }
                #expect(th.checksum != 0)
            }
        }
        #expect(hits >= 1)
        // Incrementally: find the payload whose checksum after the port change computes to 0.
        var incrementalHits = 0
        for value in 0...0xffff {
            var packet = b.udp(5000, 53, payload: PacketBuilder.be16(UInt16(value)))
            packet.withUnsafeMutableBytes { raw in
                let th = TransportHeader(IPv6Header(PacketBytes(raw)).payload(from: 40), proto: .udp)
                if InternetChecksum.update(th.checksum, old: UInt16(53), new: UInt16(5353)) == 0 {
                    incrementalHits += 1
                    th.setDestinationPort(5353)
                    #expect(th.checksum == 0xffff)
                    #expect(th.isChecksumValid(source: b.source, destination: b.destination, proto: .udp))
                }
            }
        }
        #expect(incrementalHits >= 1)
    }

    /// Linux CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; after NAT rewrote an
    /// address in that sum, finishing the checksum gives a from-scratch build's packet.
    @Test(arguments: [IPProtocol.tcp, .udp]) func partialChecksumAfterNAT(_ proto: IPProtocol) {
        var rng = SplitMix64(seed: 0xc5)
        for _ in 0..<500 {
            let source = IPv6Address(high: rng.next(), low: rng.next())
            let destination = IPv6Address(high: rng.next(), low: rng.next())
            let newSource = IPv6Address(high: rng.next(), low: rng.next())
            let payload = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let b = IPv6PacketBuilder(source: source, destination: destination)
            var packet = proto == .tcp ? b.tcp(80, 40000, payload: payload) : b.udp(53, 5353, payload: payload)
            packet.withUnsafeMutableBytes { raw in
                let ip = IPv6Header(PacketBytes(raw))
                let th = TransportHeader(ip.payload(from: 40), proto: proto)
                let partial = InternetChecksum.fold(InternetChecksum.pseudoHeader(
                    source: source, destination: destination, protocol: proto, length: th.bytes.count))
                th.bytes.setU16(partial, th.checksumOffset)
                ip.setSource(newSource)
                th.pseudoHeaderSumAddressChanged(from: source, to: newSource)
                let expectedPartial = InternetChecksum.fold(InternetChecksum.pseudoHeader(
                    source: newSource, destination: destination, protocol: proto, length: th.bytes.count))
                #expect(th.checksum == expectedPartial || th.checksum ^ expectedPartial == 0xffff)
                th.finishChecksum(source: ip.source, destination: ip.destination, proto: proto)
                #expect(th.isChecksumValid(source: newSource, destination: destination, proto: proto))
            }
            let rebuilt = IPv6PacketBuilder(source: newSource, destination: destination)
            #expect(packet == (proto == .tcp ? rebuilt.tcp(80, 40000, payload: payload) : rebuilt.udp(53, 5353, payload: payload)))
        }
    }
}
