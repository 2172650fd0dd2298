import MasqCore
import Testing
@testable import MasqSync

/// IPv6 entries (`struct ip_vs_sync_v6`, net/netfilter/ipvs/ip_vs_sync.c) through the encoder and the
/// decoder, alone and mixed with IPv4 ones in one message as the kernel's master mixes them.
/// Addresses from 2001:2::/48 and 198.18.0.0/15 only.
private let client6 = IPv6Address("2001:2:0:1::10")!
private let vip6 = IPv6Address("2001:2:0:2::1")!
private let rs6 = IPv6Address("2001:2:0:3::101")!
private let client4 = IPv4Address(198, 18, 0, 10)
private let vip4 = IPv4Address(198, 18, 1, 1)
private let rs4 = IPv4Address(198, 19, 0, 101)

private func tcp6(_ state: SyncState = .tcpEstablished, port: UInt16 = 40_000, flags: SyncFlags = [],
                  timeout: UInt32 = 900) -> SyncEntry {
    SyncEntry(proto: .tcp, flags: flags, state: state, clientAddress: .v6(client6), clientPort: port,
              virtualAddress: .v6(vip6), virtualPort: 80, destinationAddress: .v6(rs6), destinationPort: 8080,
              timeoutSeconds: timeout)
}

private func tcp4(port: UInt16 = 40_000) -> SyncEntry {
    SyncEntry(proto: .tcp, state: .tcpEstablished, clientAddress: client4, clientPort: port,
              virtualAddress: vip4, virtualPort: 80, destinationAddress: rs4, destinationPort: 8080,
              timeoutSeconds: 900)
}

private let sequence = SyncSequenceData(
    inbound: SyncSequenceAdjustment(initialSequence: 0x1111_1111, delta: 5, previousDelta: 3),
    outbound: SyncSequenceAdjustment(initialSequence: 0x2222_2222, delta: 0xffff_fffb, previousDelta: 0))

private func encode(_ entries: [SyncEntry], syncID: UInt8 = 7, maxLength: Int = 1472) throws -> [UInt8] {
    var datagram: [UInt8] = []
    let taken = try SyncEncoder.encode(entries, syncID: syncID, maxLength: maxLength, into: &datagram)
    #expect(taken == entries.count)
    return datagram
}

/// IPv6 entries of every kind the codec carries, for the round-trip table.
struct SyncIPv6Case: Sendable, CustomTestStringConvertible {
    var testDescription: String
    var entry: SyncEntry
}

let syncIPv6Cases: [SyncIPv6Case] = {
    var withSequence = tcp6(flags: .sequenceMask)
    withSequence.sequence = sequence
    var withEngine = SyncEntry(proto: .udp, state: .udpNormal, clientAddress: .v6(client6), clientPort: 5060,
                               virtualAddress: .v6(vip6), virtualPort: 5060, destinationAddress: .v6(rs6),
                               destinationPort: 5060, timeoutSeconds: 300)
    withEngine.persistenceEngineData = [1, 2, 3, 4, 5]
    withEngine.persistenceEngineName = Array("sip".utf8)
    var everything = withSequence
    everything.persistenceEngineData = [0xaa]
    everything.persistenceEngineName = Array("sip".utf8)
    let fwmarkTemplate = SyncEntry(proto: IPProtocol(rawValue: 0), flags: .template, state: .templateAssured,
                                   clientAddress: .v6(client6), clientPort: 0, virtualAddress: .v6(vip6),
                                   virtualPort: 0, destinationAddress: .v6(rs6), destinationPort: 0,
                                   fwmark: 0x0102_0304, timeoutSeconds: 360)
    return [
        SyncIPv6Case(testDescription: "TCP ESTABLISHED", entry: tcp6()),
        SyncIPv6Case(testDescription: "TCP FIN_WAIT, INACTIVE", entry: tcp6(.tcpFinWait, flags: .inactive, timeout: 120)),
        SyncIPv6Case(testDescription: "UDP NORMAL", entry: SyncEntry(
            proto: .udp, state: .udpNormal, clientAddress: .v6(client6), clientPort: 50_000, virtualAddress: .v6(vip6),
            virtualPort: 53, destinationAddress: .v6(rs6), destinationPort: 53, timeoutSeconds: 300)),
        SyncIPv6Case(testDescription: "TCP template", entry: tcp6(.templateNone, port: 0, flags: .template, timeout: 360)),
        SyncIPv6Case(testDescription: "fwmark template, ASSURED", entry: fwmarkTemplate),
        SyncIPv6Case(testDescription: "SEQ_DATA (98 bytes)", entry: withSequence),
        SyncIPv6Case(testDescription: "PE_DATA and PE_NAME (84 bytes)", entry: withEngine),
        SyncIPv6Case(testDescription: "every option (106 bytes)", entry: everything),
        SyncIPv6Case(testDescription: "all-ones ports, flags' low 16 bits, timeout", entry: SyncEntry(
            proto: .tcp, flags: SyncFlags(rawValue: 0xffff & ~SyncFlags.sequenceMask.rawValue), state: .tcpSynAck,
            clientAddress: .v6(IPv6Address("2001:2:0:ffff:ffff:ffff:ffff:ffff")!), clientPort: .max,
            virtualAddress: .v6(IPv6Address("2001:2::")!), virtualPort: .max,
            destinationAddress: .v6(IPv6Address("2001:2:0:ffff::1")!), destinationPort: .max,
            fwmark: .max, timeoutSeconds: .max)),
    ]
}()

@Suite struct SyncIPv6CodecTests {
    // MARK: exact bytes

    /// A v1 datagram written out field by field from `struct ip_vs_sync_v6`'s layout: an IPv6 entry
    /// with SEQ_DATA, the padding, an IPv4 entry, then a bare IPv6 entry.
    @Test func v6BytesFieldByField() throws {
        var established = tcp6(flags: .sequenceMask)
        established.sequence = sequence
        let template = tcp6(.templateNone, port: 0, flags: .template, timeout: 360)
        let expected: [UInt8] = [
            // header (8)
            0x00, 0x07,              // reserved, syncid 7
            0x00, 0xd8,              // size 216 = 8 + 98 + 2 (pad) + 36 + 72
            0x03, 0x01, 0x00, 0x00,  // nr_conns 3, version 1, spare
            // entry 1: IPv6 TCP ESTABLISHED with sequence data (72 + 2 + 24 = 98)
            0x01,                    // type STYPE_F_INET6
            0x06,                    // protocol TCP
            0x00, 0x62,              // ver_size: version 0, length 98
            0x00, 0x00, 0x06, 0x00,  // flags IN_SEQ | OUT_SEQ
            0x00, 0x01,              // state ESTABLISHED
            0x9c, 0x40,              // cport 40000
            0x00, 0x50,              // vport 80
            0x1f, 0x90,              // dport 8080
            0x00, 0x00, 0x00, 0x00,  // fwmark
            0x00, 0x00, 0x03, 0x84,  // timeout 900 s
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x10,  // caddr 2001:2:0:1::10
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0x00, 0x01,  // vaddr 2001:2:0:2::1
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0x01, 0x01,  // daddr 2001:2:0:3::101
            0x01, 0x18,              // option SEQ_DATA, length 24
            0x11, 0x11, 0x11, 0x11, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x03,  // in_seq
            0x22, 0x22, 0x22, 0x22, 0xff, 0xff, 0xff, 0xfb, 0x00, 0x00, 0x00, 0x00,  // out_seq
            0x00, 0x00,              // padding: the next entry starts at 108
            // entry 2: IPv4, as ever (36)
            0x00, 0x06, 0x00, 0x24,  // type IPv4, TCP, ver_size 36
            0x00, 0x00, 0x00, 0x00,  // flags
            0x00, 0x01, 0x9c, 0x41, 0x00, 0x50, 0x1f, 0x90,  // state, cport 40001, vport, dport
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x84,  // fwmark, timeout
            198, 18, 0, 10, 198, 18, 1, 1, 198, 19, 0, 101,
            // entry 3: an IPv6 persistence template (72), the last, not padded
            0x01, 0x06, 0x00, 0x48,  // type IPv6, TCP, ver_size 72
            0x00, 0x00, 0x10, 0x00,  // flags TEMPLATE
            0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x1f, 0x90,  // state NONE, cport 0, vport, dport
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x68,  // fwmark, timeout 360 s
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x10,
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0x00, 0x01,
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0x01, 0x01,
        ]
        #expect(expected.count == 216)
        let entries = [established, tcp4(port: 40_001), template]
        #expect(entries.map(\.wireLength) == [98, 36, 72])
        #expect(try encode(entries) == expected)
        let decoded = SyncDecoder.decode(expected)
        #expect(decoded.isComplete)
        #expect(decoded.header == SyncHeader(version: .v1, syncID: 7, count: 3, size: 216))
        #expect(decoded.entries == entries)
    }

    // MARK: round trips

    @Test(arguments: syncIPv6Cases)
    func roundTripsAlone(_ c: SyncIPv6Case) throws {
        #expect(c.entry.isIPv6 && c.entry.addressesShareFamily)
        let datagram = try encode([c.entry])
        #expect(datagram.count == 8 + c.entry.wireLength)
        #expect(datagram[8] == SyncEntryType.ipv6)
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.isComplete)
        #expect(decoded.entries == [c.entry])
    }

    /// Every case between IPv4 entries, then all of them in one message: each entry starts on a
    /// 4-byte boundary whatever the family before it, and the order is kept.
    @Test(arguments: syncIPv6Cases)
    func roundTripsBetweenIPv4Entries(_ c: SyncIPv6Case) throws {
        let entries = [tcp4(port: 1), c.entry, tcp4(port: 2), c.entry, tcp4(port: 3)]
        let decoded = SyncDecoder.decode(try encode(entries))
        #expect(decoded.isComplete)
        #expect(decoded.entries == entries)
    }

    @Test func allCasesMixedInOneMessage() throws {
        let entries = syncIPv6Cases.enumerated().flatMap { i, c in [c.entry, tcp4(port: UInt16(i))] }
        let datagram = try encode(entries, maxLength: SyncEncoder.maximumMaxLength)
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.isComplete)
        #expect(decoded.entries == entries)
        #expect(decoded.entries.map(\.isIPv6) == entries.map(\.isIPv6))
    }

    // MARK: packing

    @Test func packsIPv6EntriesUpToMaxLength() throws {
        let entries = (0..<50).map { tcp6(port: UInt16(30_000 + $0)) }
        var datagram: [UInt8] = []
        // 8 + 20 × 72 = 1448 ≤ 1472 < 1520: the default length takes 20.
        #expect(try SyncEncoder.encode(entries, syncID: 1, into: &datagram) == 20)
        #expect(datagram.count == 1448)
        // A header and one bare IPv6 entry: 80. One byte less holds none.
        #expect(try SyncEncoder.encode(entries, syncID: 1, maxLength: 80, into: &datagram) == 1)
        #expect(datagram.count == 80)
        #expect(throws: SyncEncodingError.entryTooLarge(length: 72, maxLength: 79)) {
            try SyncEncoder.encode(entries, syncID: 1, maxLength: 79, into: &datagram)
        }
        // Mixed: 8 + 72 + 36 = 116 takes two, 115 one; an IPv4 entry first then fits at 44.
        let mixed = [tcp6(), tcp4(), tcp6()]
        #expect(try SyncEncoder.encode(mixed, syncID: 1, maxLength: 116, into: &datagram) == 2)
        #expect(try SyncEncoder.encode(mixed, syncID: 1, maxLength: 115, into: &datagram) == 1)
        #expect(try SyncEncoder.encode(mixed.dropFirst(), syncID: 1, maxLength: 44, into: &datagram) == 1)
        // encodeAll splits a mixed list and keeps its order.
        let many = (0..<90).map { $0 % 3 == 0 ? tcp4(port: UInt16($0)) : tcp6(port: UInt16($0)) }
        let messages = try SyncEncoder.encodeAll(many, syncID: 9)
        #expect(messages.allSatisfy { $0.count <= 1472 })
        #expect(messages.flatMap { SyncDecoder.decode($0, syncID: 9).entries } == many)
    }

    /// 77-byte IPv6 entries (PE_NAME of 3 bytes): 3 bytes of padding before the next, counted.
    @Test func ipv6PaddingCountsAgainstMaxLength() throws {
        var named = tcp6()
        named.persistenceEngineData = [9]
        named.persistenceEngineName = Array("ab".utf8)
        #expect(named.wireLength == 72 + 3 + 4)
        let entries = [named, named]
        // 8 + 79 + 1 (pad) + 79 = 167.
        var datagram: [UInt8] = []
        #expect(try SyncEncoder.encode(entries, syncID: 0, maxLength: 167, into: &datagram) == 2)
        #expect(datagram.count == 167)
        #expect(datagram[8 + 79] == 0)
        #expect(try SyncEncoder.encode(entries, syncID: 0, maxLength: 166, into: &datagram) == 1)
        #expect(SyncDecoder.decode(try encode(entries)).entries == entries)
    }

    // MARK: refusals

    /// An entry has room for one family: the encoder refuses addresses of two.
    @Test(arguments: [
        (IPAddress.v4(client4), IPAddress.v6(vip6), IPAddress.v6(rs6)),
        (IPAddress.v6(client6), IPAddress.v4(vip4), IPAddress.v6(rs6)),
        (IPAddress.v6(client6), IPAddress.v6(vip6), IPAddress.v4(rs4)),
        (IPAddress.v4(client4), IPAddress.v4(vip4), IPAddress.v6(rs6)),
    ])
    func mixedFamiliesAreRefused(client: IPAddress, virtual: IPAddress, server: IPAddress) {
        let entry = SyncEntry(proto: .tcp, state: .tcpEstablished, clientAddress: client, clientPort: 1,
                              virtualAddress: virtual, virtualPort: 80, destinationAddress: server, destinationPort: 80)
        #expect(!entry.addressesShareFamily)
        var datagram: [UInt8] = []
        #expect(throws: SyncEncodingError.mixedAddressFamilies) {
            try SyncEncoder.encode([tcp4(), entry], syncID: 0, into: &datagram)
        }
    }

    // MARK: the engine's update

    /// An IPv6 connection's update becomes an IPv6 entry and back, through the codec.
    @Test(arguments: [
        SyncUpdate(proto: .tcp, state: .established, isActive: true, client: .v6(client6), clientPort: 40_000,
                   virtualAddress: .v6(vip6), virtualPort: 80, server: .v6(rs6), serverPort: 8080, timeout: 900),
        SyncUpdate(proto: .udp, state: .udp, isActive: false, client: .v6(client6), clientPort: 50_000,
                   virtualAddress: .v6(vip6), virtualPort: 53, server: .v6(rs6), serverPort: 53, timeout: 300),
        SyncUpdate(proto: .tcp, state: .none, isTemplate: true, isActive: false, client: .v6(client6), clientPort: 0,
                   virtualAddress: .v6(vip6), virtualPort: 80, server: .v6(rs6), serverPort: 8080, timeout: 360),
    ])
    func ipv6UpdatesToTheWireAndBack(_ update: SyncUpdate) throws {
        let entry = SyncEntry(update)
        #expect(entry.isIPv6)
        #expect(entry.clientAddress == update.client && entry.virtualAddress == update.virtualAddress
                && entry.destinationAddress == update.server)
        #expect(entry.update == update)
        let decoded = SyncDecoder.decode(try encode([SyncEntry(update), tcp4()]))
        #expect(decoded.isComplete)
        #expect(decoded.entries.first?.update == update)
    }
}
