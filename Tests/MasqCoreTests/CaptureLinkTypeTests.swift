import Foundation
import MasqCapture
import MasqRules
import Testing
@testable import MasqCore

/// Where each link type masq reads puts the IP header, for IPv4 and IPv6 (RFC 8200 over EtherType
/// 0x86DD; raw IP tells the family by the version nibble), and that `masq replay` hands IPv6 to the
/// engine and writes it back with the input's link type.
@Suite struct CaptureLinkTypeTests {
    static let mac = [UInt8](repeating: 0x02, count: 12)
    static let ipv4Start: [UInt8] = [0x45, 0, 0, 20]
    static let ipv6Start: [UInt8] = [0x60, 0, 0, 0]

    static func ethernet(_ tags: [UInt16], _ etherType: UInt16) -> [UInt8] {
        var header = mac
        for tag in tags { header += [UInt8(tag >> 8), UInt8(tag & 0xff), 0x00, 0x05] }
        return header + [UInt8(etherType >> 8), UInt8(etherType & 0xff)]
    }

    /// Linux cooked header v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
    static func sll(_ proto: UInt16) -> [UInt8] {
        [0, 0, 0, 1, 0, 6] + [UInt8](repeating: 0x02, count: 8) + [UInt8(proto >> 8), UInt8(proto & 0xff)]
    }

    /// Linux cooked header v2: protocol first, then reserved, interface index, ARPHRD, type, address.
    static func sll2(_ proto: UInt16) -> [UInt8] {
        [UInt8(proto >> 8), UInt8(proto & 0xff), 0, 0, 0, 0, 0, 2, 0, 1, 0, 6] + [UInt8](repeating: 0x02, count: 8)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let linkType: LinkType
        let frame: [UInt8]
        /// `ipOffset`: IPv4 or IPv6.
        let ip: Int?
        /// `ipv4Offset`: IPv4 only, as before IPv6.
        let ipv4: Int?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "Ethernet IPv4", linkType: .ethernet, frame: ethernet([], 0x0800) + ipv4Start, ip: 14, ipv4: 14),
        Case(name: "Ethernet IPv6", linkType: .ethernet, frame: ethernet([], 0x86DD) + ipv6Start, ip: 14, ipv4: nil),
        Case(name: "802.1Q IPv4", linkType: .ethernet, frame: ethernet([0x8100], 0x0800) + ipv4Start, ip: 18, ipv4: 18),
        Case(name: "802.1Q IPv6", linkType: .ethernet, frame: ethernet([0x8100], 0x86DD) + ipv6Start, ip: 18, ipv4: nil),
        Case(name: "802.1ad+802.1Q IPv6", linkType: .ethernet, frame: ethernet([0x88a8, 0x8100], 0x86DD) + ipv6Start,
             ip: 22, ipv4: nil),
        Case(name: "Ethernet ARP", linkType: .ethernet, frame: ethernet([], 0x0806) + [0, 1], ip: nil, ipv4: nil),
        Case(name: "Ethernet cut inside a VLAN tag", linkType: .ethernet, frame: mac + [0x81, 0x00, 0x00],
             ip: nil, ipv4: nil),
        Case(name: "Ethernet cut before the EtherType", linkType: .ethernet, frame: Array(mac.prefix(13)), ip: nil, ipv4: nil),
        Case(name: "SLL IPv4", linkType: .linuxSLL, frame: sll(0x0800) + ipv4Start, ip: 16, ipv4: 16),
        Case(name: "SLL IPv6", linkType: .linuxSLL, frame: sll(0x86DD) + ipv6Start, ip: 16, ipv4: nil),
        Case(name: "SLL ARP", linkType: .linuxSLL, frame: sll(0x0806), ip: nil, ipv4: nil),
        Case(name: "SLL cut short", linkType: .linuxSLL, frame: Array(sll(0x86DD).prefix(15)), ip: nil, ipv4: nil),
        Case(name: "SLL2 IPv4", linkType: .linuxSLL2, frame: sll2(0x0800) + ipv4Start, ip: 20, ipv4: 20),
        Case(name: "SLL2 IPv6", linkType: .linuxSLL2, frame: sll2(0x86DD) + ipv6Start, ip: 20, ipv4: nil),
        Case(name: "SLL2 cut short", linkType: .linuxSLL2, frame: Array(sll2(0x86DD).prefix(19)), ip: nil, ipv4: nil),
        Case(name: "raw IPv4", linkType: .raw, frame: ipv4Start, ip: 0, ipv4: 0),
        Case(name: "raw IPv6", linkType: .raw, frame: ipv6Start, ip: 0, ipv4: nil),
        Case(name: "raw version 5", linkType: .raw, frame: [0x50, 0, 0, 0], ip: nil, ipv4: nil),
        Case(name: "raw empty", linkType: .raw, frame: [], ip: nil, ipv4: nil),
        Case(name: "DLT_IPV4 IPv4", linkType: .ipv4, frame: ipv4Start, ip: 0, ipv4: 0),
        Case(name: "DLT_IPV4 carrying version 6", linkType: .ipv4, frame: ipv6Start, ip: nil, ipv4: nil),
        Case(name: "DLT_IPV6 IPv6", linkType: .ipv6, frame: ipv6Start, ip: 0, ipv4: nil),
        Case(name: "DLT_IPV6 carrying version 4", linkType: .ipv6, frame: ipv4Start, ip: nil, ipv4: nil),
        Case(name: "DLT_IPV6 empty", linkType: .ipv6, frame: [], ip: nil, ipv4: nil),
    ]

    @Test(arguments: cases) func offsets(_ c: Case) {
        var frame = c.frame
        frame.withUnsafeMutableBytes { raw in
            let bytes = PacketBytes(raw)
            #expect(c.linkType.ipOffset(bytes) == c.ip)
            #expect(c.linkType.ipv4Offset(bytes) == c.ipv4)
        }
    }

    @Test func supportedLinkTypes() {
        for linkType in [LinkType.ethernet, .raw, .linuxSLL, .linuxSLL2, .ipv4, .ipv6] {
            #expect(linkType.isSupported, "\(linkType.rawValue)")
        }
        #expect(!LinkType(rawValue: 105).isSupported)  // IEEE 802.11
        #expect(CaptureError.unsupportedLinkType(path: "x.pcap", linkType: 105).description
            == "x.pcap: link type 105 is not supported (Ethernet, Linux cooked SLL/SLL2, raw IP, raw IPv4 and raw IPv6 are)")
    }

    /// An IPv6 UDP datagram 2001:2::12:40000 -> 2001:2::99:53 (a host no rule names), checksum over the
    /// RFC 8200 §8.1 pseudo-header.
    static func ipv6Datagram() -> [UInt8] {
        let source = IPv6Address("2001:2::12")!.bytes, destination = IPv6Address("2001:2::99")!.bytes
        let payload: [UInt8] = Array("masq".utf8)
        let udpLength = 8 + payload.count
        var udp: [UInt8] = [0x9c, 0x40, 0x00, 0x35, UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0] + payload
        var sum: UInt32 = 17 + UInt32(udpLength)
        for chunk in [source, destination, udp] {
            let padded = chunk + (chunk.count % 2 == 1 ? [0] : [])
            for i in stride(from: 0, to: padded.count, by: 2) { sum += UInt32(padded[i]) << 8 | UInt32(padded[i + 1]) }
        }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        udp[6] = UInt8(checksum >> 8)
        udp[7] = UInt8(checksum & 0xff)
        return [0x60, 0, 0, 0, UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 17, 64] + source + destination + udp
    }

    struct ReplayCase: CustomTestStringConvertible, Sendable {
        let name: String
        let linkType: LinkType
        let header: [UInt8]
        var testDescription: String { name }
    }

    static let replayCases: [ReplayCase] = [
        ReplayCase(name: "Ethernet", linkType: .ethernet, header: ethernet([], 0x86DD)),
        ReplayCase(name: "802.1Q", linkType: .ethernet, header: ethernet([0x8100], 0x86DD)),
        ReplayCase(name: "SLL", linkType: .linuxSLL, header: sll(0x86DD)),
        ReplayCase(name: "SLL2", linkType: .linuxSLL2, header: sll2(0x86DD)),
        ReplayCase(name: "raw IP", linkType: .raw, header: []),
        ReplayCase(name: "DLT_IPV6", linkType: .ipv6, header: []),
    ]

    static func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("masq-link-\(getpid())-\(UUID().uuidString)-\(name)").path
    }

    static func writeCapture(_ path: String, _ linkType: LinkType, _ frames: [[UInt8]]) throws {
        let writer = try CaptureWriter(path: path, linkType: linkType)
        for (i, frame) in frames.enumerated() {
            // The writer is ~Copyable: a closure would consume it, so the frame goes into a buffer here.
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 16)
            defer { buffer.deallocate() }
            buffer.copyBytes(from: frame)
            try writer.write(PacketBytes(buffer), wireLength: frame.count,
                             timestamp: 1_700_000_000_000_000_000 + Int64(i) * 1_000_000, packet: "frame \(i)")
        }
        try writer.flush()
    }

    /// An IPv6 frame enters the engine (a verdict, not nil as for a frame without IP), and what is
    /// written keeps the input's link type and bytes (the engine accepts a datagram to no service).
    @Test(arguments: replayCases) func ipv6EntersTheEngine(_ c: ReplayCase) throws {
        let input = Self.temporary("in.pcap"), output = Self.temporary("out.pcap")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let frame = c.header + Self.ipv6Datagram()
        try Self.writeCapture(input, c.linkType, [frame])
        let engine = Engine(configuration: try RulesFile.parse("""
            -A -u 198.18.0.1:53 -s rr
            -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
            """))
        let summary = try replay(engine, input: input, output: output, recordVerdicts: true)
        #expect(summary.verdicts == [.accept])
        #expect(summary.notIP == 0 && summary.written == 1)
        var reader = try CaptureReader(path: output)
        #expect(reader.linkType == c.linkType)
        let written = try reader.next()
        #expect(written?.bytes.bytes == frame)
        #expect(try reader.next() == nil)
    }

    /// What carries no IP at all still passes untouched, outside the engine, and is counted as such.
    @Test func aFrameWithoutIPStaysOutsideTheEngine() throws {
        let input = Self.temporary("in.pcap"), output = Self.temporary("out.pcap")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let arp = Self.ethernet([], 0x0806) + [UInt8](repeating: 0, count: 28)
        try Self.writeCapture(input, .ethernet, [arp, Self.ethernet([], 0x86DD) + Self.ipv6Datagram()])
        let engine = Engine(configuration: try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n"))
        let summary = try replay(engine, input: input, output: output, recordVerdicts: true)
        #expect(summary.verdicts == [nil, .accept])
        #expect(summary.notIP == 1 && summary.written == 2)
        #expect(summary.text.contains("(1 not IP, 0 truncated by the capture)"))
    }
}
