import Testing
@testable import MasqCore

/// Parses hex text (two digits a byte) into bytes.
func hexBytes(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8)
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
}

@Suite struct ICMPv6Tests {
    /// Written with scapy 2.5.0 (/usr/bin/python3), independently of masq's checksum code:
    /// `raw(IPv6(src="2001:2::1", dst="2001:2::2", hlim=64)/ICMPv6EchoRequest(id=0x1234, seq=1, data=b"masq"))`;
    /// scapy's checksum field: 0x4ca8.
    static let scapyEchoRequest = hexBytes(
        "60000000000c3a40200100020000000000000000000000012001000200000000000000000000000280004ca8123400016d617371")

    /// Also scapy 2.5.0: a packet too big (MTU 1280) from 2001:2::ff quoting a whole UDP datagram
    /// `IPv6(src="2001:2::2", dst="2001:2:0:1::5", hlim=63)/UDP(sport=5353, dport=53)/b"abcdefgh"`;
    /// scapy's checksums: ICMPv6 0x4650, the quoted UDP 0x190d.
    static let scapyPacketTooBig = hexBytes(
        "6000000000403a40200100020000000000000000000000ff200100020000000000000000000000020200465000000500"
            + "600000000010113f200100020000000000000000000000022001000200000001000000000000000514e900350010190d"
            + "6162636465666768")

    @Test func scapyEchoRequestVerifies() throws {
        var packet = Self.scapyEchoRequest
        try packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            let upper = try ip.upperLayer()
            #expect(upper == IPv6UpperLayer(proto: .icmpv6, offset: 40))
            let icmp = ICMPv6Header(ip.payload(from: upper.offset))
            #expect(icmp.type == .echoRequest && icmp.code == 0)
            #expect(icmp.checksum == 0x4ca8)
            #expect(icmp.isChecksumValid(source: ip.source, destination: ip.destination))
            // The pseudo-header matters: the same message between other addresses does not verify.
            #expect(!icmp.isChecksumValid(source: ip.destination, destination: v6("2001:2::3")))
            icmp.recomputeChecksum(source: ip.source, destination: ip.destination)
            #expect(icmp.checksum == 0x4ca8)
        }
        #expect(packet == Self.scapyEchoRequest)
    }

    @Test func scapyPacketTooBigQuotesTheDatagram() throws {
        var packet = Self.scapyPacketTooBig
        try packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            let icmp = ICMPv6Header(ip.payload(from: try ip.upperLayer().offset))
            #expect(icmp.type == .packetTooBig && icmp.type.isError && icmp.type.quotesDatagram)
            #expect(icmp.mtu == 1280)
            #expect(icmp.checksum == 0x4650)
            #expect(icmp.isChecksumValid(source: ip.source, destination: ip.destination))
            let inner = IPv6Header(icmp.quoted)
            #expect(inner.source == v6("2001:2::2") && inner.destination == v6("2001:2:0:1::5"))
            let innerUpper = try inner.upperLayer()
            #expect(innerUpper == IPv6UpperLayer(proto: .udp, offset: 40))
            let udp = TransportHeader(inner.payload(from: innerUpper.offset), proto: .udp)
            #expect(udp.sourcePort == 5353 && udp.destinationPort == 53 && udp.checksum == 0x190d)
            #expect(udp.isChecksumValid(source: inner.source, destination: inner.destination, proto: .udp))
        }
    }

    @Test func flippedByteFailsTheChecksum() {
        for index in 40..<Self.scapyEchoRequest.count {
            var packet = Self.scapyEchoRequest
            packet[index] ^= 0x10
            packet.withUnsafeMutableBytes { raw in
                let ip = IPv6Header(PacketBytes(raw))
                #expect(!ICMPv6Header(ip.payload(from: 40)).isChecksumValid(source: ip.source, destination: ip.destination))
            }
        }
    }

    @Test func parameterProblemPointer() {
        let b = IPv6PacketBuilder(source: v6("2001:2::ff"), destination: v6("2001:2::12"))
        var packet = b.ip(58, b.icmpv6Message(type: 4, code: 1, rest: 40, body: Self.scapyEchoRequest))
        packet.withUnsafeMutableBytes { raw in
            let ip = IPv6Header(PacketBytes(raw))
            let icmp = ICMPv6Header(ip.payload(from: 40))
            #expect(icmp.type == .parameterProblem && icmp.code == 1 && icmp.pointer == 40)
            #expect(icmp.isChecksumValid(source: ip.source, destination: ip.destination))
            #expect(icmp.quoted.bytes == Self.scapyEchoRequest)
        }
    }

    struct TypeCase: Sendable, CustomTestStringConvertible {
        var type: UInt8
        var isError: Bool
        var quotesDatagram: Bool
        var isNeighborDiscovery: Bool
        var testDescription: String { "type \(type)" }
    }

    static let typeCases: [TypeCase] = [
        .init(type: 0, isError: true, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.destinationUnreachable.rawValue, isError: true, quotesDatagram: true, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.packetTooBig.rawValue, isError: true, quotesDatagram: true, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.timeExceeded.rawValue, isError: true, quotesDatagram: true, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.parameterProblem.rawValue, isError: true, quotesDatagram: true, isNeighborDiscovery: false),
        .init(type: 5, isError: true, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: 127, isError: true, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.echoRequest.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.echoReply.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: 132, isError: false, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: ICMPv6Type.routerSolicitation.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: true),
        .init(type: ICMPv6Type.routerAdvertisement.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: true),
        .init(type: ICMPv6Type.neighborSolicitation.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: true),
        .init(type: ICMPv6Type.neighborAdvertisement.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: true),
        .init(type: ICMPv6Type.redirect.rawValue, isError: false, quotesDatagram: false, isNeighborDiscovery: true),
        .init(type: 138, isError: false, quotesDatagram: false, isNeighborDiscovery: false),
        .init(type: 255, isError: false, quotesDatagram: false, isNeighborDiscovery: false),
    ]

    @Test(arguments: typeCases) func typeClasses(_ c: TypeCase) {
        let type = ICMPv6Type(rawValue: c.type)
        #expect(type.isError == c.isError)
        #expect(type.quotesDatagram == c.quotesDatagram)
        #expect(type.isNeighborDiscovery == c.isNeighborDiscovery)
    }

    @Test func typeNumbers() {
        let expected: [(ICMPv6Type, UInt8)] = [
            (.destinationUnreachable, 1), (.packetTooBig, 2), (.timeExceeded, 3), (.parameterProblem, 4),
            (.echoRequest, 128), (.echoReply, 129), (.routerSolicitation, 133), (.routerAdvertisement, 134),
            (.neighborSolicitation, 135), (.neighborAdvertisement, 136), (.redirect, 137),
        ]
        for (type, value) in expected { #expect(type.rawValue == value) }
    }

    /// NAT of an echo request's destination: the incremental update gives the full recomputation's value.
    @Test func addressChangeMatchesRecompute() {
        var rng = SplitMix64(seed: 58)
        for _ in 0..<2000 {
            let source = IPv6Address(high: 0x2001_0002_0000_0000 | rng.next() & 0xffff, low: rng.next())
            let destination = IPv6Address(high: 0x2001_0002_0000_0000, low: rng.next())
            let newDestination = IPv6Address(high: 0x2001_0002_0000_0001, low: rng.next())
            let body = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var packet = IPv6PacketBuilder(source: source, destination: destination)
                .ip(58, IPv6PacketBuilder(source: source, destination: destination)
                    .icmpv6Message(type: 128, code: 0, rest: UInt32.random(in: 0...UInt32.max, using: &rng), body: body))
            packet.withUnsafeMutableBytes { raw in
                let ip = IPv6Header(PacketBytes(raw))
                let icmp = ICMPv6Header(ip.payload(from: 40))
                ip.setDestination(newDestination)
                icmp.addressChanged(from: destination, to: newDestination)
                #expect(icmp.isChecksumValid(source: source, destination: newDestination))
                let incremental = icmp.checksum
                icmp.recomputeChecksum(source: source, destination: newDestination)
                // Exactly equal: both are ~fold of a non-zero sum, so neither is 0xffff (the other zero).
                #expect(incremental == icmp.checksum)
            }
        }
    }

    @Test func ipProtocolNames() {
        #expect(IPProtocol.icmpv6.description == "ICMPv6")
        #expect(IPProtocol.tcp.description == "TCP" && IPProtocol.udp.description == "UDP")
        #expect(IPProtocol.icmp.description == "ICMP")
        #expect(IPProtocol.esp.description == "IP(50)")
        let numbers: [(IPProtocol, UInt8)] = [
            (.hopByHop, 0), (.routing, 43), (.fragment, 44), (.esp, 50), (.ah, 51), (.icmpv6, 58),
            (.noNextHeader, 59), (.destinationOptions, 60), (.mobility, 135), (.hip, 139), (.shim6, 140),
        ]
        for (proto, value) in numbers { #expect(proto.rawValue == value) }
    }
}
