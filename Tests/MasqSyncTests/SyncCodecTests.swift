import MasqCore
import Testing
@testable import MasqSync

/// Lab addresses only (198.18.0.0/15): client, virtual service, real servers.
private let client = IPv4Address(198, 18, 0, 10)
private let vip = IPv4Address(198, 18, 1, 1)
private let rs1 = IPv4Address(198, 19, 0, 101)
private let rs2 = IPv4Address(198, 19, 0, 102)

private func tcp(_ state: SyncState, port: UInt16 = 40_000, flags: SyncFlags = [], timeout: UInt32 = 900) -> SyncEntry {
    SyncEntry(proto: .tcp, flags: flags, state: state, clientAddress: client, clientPort: port,
              virtualAddress: vip, virtualPort: 80, destinationAddress: rs1, destinationPort: 8080,
              timeoutSeconds: timeout)
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

@Suite struct SyncCodecTests {
    // MARK: exact bytes

    /// A v1 datagram written out field by field from ip_vs_sync.c's layout (struct ip_vs_sync_mesg,
    /// struct ip_vs_sync_v4, the SEQ_DATA option, the padding before the next entry).
    @Test func v1BytesFieldByField() throws {
        let established = SyncEntry(
            proto: .tcp, flags: [.outSequence, .inSequence], state: .tcpEstablished,
            clientAddress: client, clientPort: 40_000, virtualAddress: vip, virtualPort: 80,
            destinationAddress: rs1, destinationPort: 8080, fwmark: 0, timeoutSeconds: 900, sequence: sequence)
        let template = SyncEntry(
            proto: .tcp, flags: [.template], state: .templateNone,
            clientAddress: client, clientPort: 0, virtualAddress: vip, virtualPort: 80,
            destinationAddress: rs2, destinationPort: 8080, timeoutSeconds: 360)
        let expected: [UInt8] = [
            // header (8)
            0x00,                    // reserved: 0 (v0's nr_conns)
            0x07,                    // syncid 7
            0x00, 0x6c,              // size 108 = 8 + 62 + 2 (pad) + 36
            0x02,                    // nr_conns 2
            0x01,                    // version 1
            0x00, 0x00,              // spare
            // entry 1: TCP ESTABLISHED with sequence data (36 + 2 + 24 = 62)
            0x00,                    // type 0: IPv4
            0x06,                    // protocol TCP
            0x00, 0x3e,              // ver_size: version 0, length 62
            0x00, 0x00, 0x06, 0x00,  // flags IN_SEQ | OUT_SEQ
            0x00, 0x01,              // state 1 ESTABLISHED
            0x9c, 0x40,              // cport 40000
            0x00, 0x50,              // vport 80
            0x1f, 0x90,              // dport 8080
            0x00, 0x00, 0x00, 0x00,  // fwmark 0
            0x00, 0x00, 0x03, 0x84,  // timeout 900 s
            198, 18, 0, 10,          // caddr
            198, 18, 1, 1,           // vaddr
            198, 19, 0, 101,         // daddr
            0x01, 0x18,              // option SEQ_DATA, length 24
            0x11, 0x11, 0x11, 0x11,  // in_seq.init_seq
            0x00, 0x00, 0x00, 0x05,  // in_seq.delta
            0x00, 0x00, 0x00, 0x03,  // in_seq.previous_delta
            0x22, 0x22, 0x22, 0x22,  // out_seq.init_seq
            0xff, 0xff, 0xff, 0xfb,  // out_seq.delta (−5)
            0x00, 0x00, 0x00, 0x00,  // out_seq.previous_delta
            0x00, 0x00,              // padding: the next entry starts at 72, a 4-byte boundary
            // entry 2: a persistence template (36), not padded: it is the last
            0x00, 0x06,              // type IPv4, protocol TCP (the service's)
            0x00, 0x24,              // ver_size 36
            0x00, 0x00, 0x10, 0x00,  // flags TEMPLATE
            0x00, 0x00,              // state NONE
            0x00, 0x00,              // cport 0
            0x00, 0x50,              // vport 80
            0x1f, 0x90,              // dport 8080
            0x00, 0x00, 0x00, 0x00,  // fwmark
            0x00, 0x00, 0x01, 0x68,  // timeout 360 s
            198, 18, 0, 10,
            198, 18, 1, 1,
            198, 19, 0, 102,
        ]
        #expect(try encode([established, template]) == expected)
        let decoded = SyncDecoder.decode(expected)
        #expect(decoded.isComplete)
        #expect(decoded.header == SyncHeader(version: .v1, syncID: 7, count: 2, size: 108))
        #expect(decoded.entries == [established, template])
    }

    /// A v0 datagram (struct ip_vs_sync_mesg_v0, struct ip_vs_sync_conn_v0, raw sequence options).
    @Test func v0BytesFieldByField() {
        let v0: [UInt8] = [
            // header (4)
            0x02,                    // nr_conns 2
            0x05,                    // syncid 5
            0x00, 0x4c,              // size 76 = 4 + 24 + 48
            // entry 1: UDP NORMAL (24)
            0x00,                    // reserved
            0x11,                    // protocol UDP
            0xc3, 0x50,              // cport 50000
            0x00, 0x35,              // vport 53
            0x00, 0x35,              // dport 53
            198, 18, 0, 10,          // caddr
            198, 18, 1, 1,           // vaddr
            198, 19, 0, 101,         // daddr
            0x01, 0x00,              // flags INACTIVE (16 bits in v0)
            0x00, 0x00,              // state NORMAL
            // entry 2: TCP FIN_WAIT with IN_SEQ: 24 + 24 bytes of sequence data in the master's
            // (little-endian) byte order
            0x00, 0x06,
            0x9c, 0x41,              // cport 40001
            0x00, 0x50,              // vport 80
            0x1f, 0x90,              // dport 8080
            198, 18, 0, 10,
            198, 18, 1, 1,
            198, 19, 0, 102,
            0x04, 0x00,              // flags IN_SEQ
            0x00, 0x04,              // state 4 FIN_WAIT
            0x11, 0x11, 0x11, 0x11,  // in_seq.init_seq
            0x05, 0x00, 0x00, 0x00,  // in_seq.delta 5, little-endian
            0x03, 0x00, 0x00, 0x00,  // in_seq.previous_delta 3
            0x22, 0x22, 0x22, 0x22,  // out_seq.init_seq
            0xfb, 0xff, 0xff, 0xff,  // out_seq.delta −5
            0x00, 0x00, 0x00, 0x00,  // out_seq.previous_delta
        ]
        let decoded = SyncDecoder.decode(v0)
        #expect(decoded.isComplete)
        #expect(decoded.header == SyncHeader(version: .v0, syncID: 5, count: 2, size: 76))
        #expect(decoded.entries == [
            SyncEntry(proto: .udp, flags: [.inactive], state: .udpNormal, clientAddress: client, clientPort: 50_000,
                      virtualAddress: vip, virtualPort: 53, destinationAddress: rs1, destinationPort: 53),
            SyncEntry(proto: .tcp, flags: [.inSequence], state: .tcpFinWait, clientAddress: client, clientPort: 40_001,
                      virtualAddress: vip, virtualPort: 80, destinationAddress: rs2, destinationPort: 8080,
                      sequence: sequence),
        ])
        #expect(decoded.entries[0].connectionState == .udp)
        #expect(decoded.entries[1].flags.received(as: .v0) == [.inSequence, .sync])
    }

    // MARK: round trips, values

    @Test func roundTripsEveryOption() throws {
        let entries = [
            tcp(.tcpEstablished),
            tcp(.tcpTimeWait, port: 40_001, flags: [.inactive], timeout: 120),
            SyncEntry(proto: .udp, state: .udpNormal, clientAddress: client, clientPort: 5353, virtualAddress: vip,
                      virtualPort: 53, destinationAddress: rs2, destinationPort: 53, timeoutSeconds: 300),
            SyncEntry(proto: IPProtocol(rawValue: 0), flags: [.template], state: .templateAssured,
                      clientAddress: client, clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0,
                      destinationAddress: rs1, destinationPort: 0, fwmark: 42, timeoutSeconds: 360),
            SyncEntry(proto: .udp, state: .udpNormal, clientAddress: client, clientPort: 5060, virtualAddress: vip,
                      virtualPort: 5060, destinationAddress: rs1, destinationPort: 5060, timeoutSeconds: 300,
                      sequence: sequence, persistenceEngineData: Array("call-id@198.18.0.10".utf8),
                      persistenceEngineName: Array("sip".utf8)),
            SyncEntry(proto: .tcp, state: .tcpClose, clientAddress: client, clientPort: 1, virtualAddress: vip,
                      virtualPort: 80, destinationAddress: rs1, destinationPort: 80,
                      persistenceEngineData: [UInt8](repeating: 0xab, count: 255),
                      persistenceEngineName: [UInt8](repeating: 0x61, count: 16)),
        ]
        let datagram = try encode(entries)
        #expect(datagram.count == Int(datagram[2]) << 8 | Int(datagram[3]))
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.isComplete)
        #expect(decoded.entries == entries)
        #expect(decoded.entries[3].connectionState == ConnectionState.none)
    }

    @Test func statesMapToMasqAndBack() {
        for raw in UInt8(0)..<11 {
            let state = ConnectionState(rawValue: raw)
            let ipvs = SyncState(state, proto: .tcp, isTemplate: false)
            #expect(ipvs?.rawValue == UInt16(raw))
            #expect(ipvs?.connectionState(proto: .tcp, isTemplate: false) == state)
        }
        #expect(SyncState(.udp, proto: .tcp, isTemplate: false) == nil)
        #expect(SyncState(.udp, proto: .udp, isTemplate: false) == .udpNormal)
        #expect(SyncState(.established, proto: .udp, isTemplate: false) == nil)
        #expect(SyncState.udpNormal.connectionState(proto: .udp, isTemplate: false) == .udp)
        #expect(SyncState(rawValue: 1).connectionState(proto: .udp, isTemplate: false) == nil)
        #expect(SyncState(rawValue: 11).connectionState(proto: .tcp, isTemplate: false) == nil)
        #expect(SyncState(.none, proto: .tcp, isTemplate: true) == .templateNone)
        #expect(SyncState.templateAssured.connectionState(proto: .tcp, isTemplate: true) == ConnectionState.none)
        #expect(SyncState(rawValue: 2).connectionState(proto: .tcp, isTemplate: true) == nil)
        #expect(SyncState(.established, proto: IPProtocol(rawValue: 132), isTemplate: false) == nil)
    }

    @Test func flagsAsABackupKeepsThem() {
        let wire: SyncFlags = [.hashed, .inactive, .noOutput, .template, .onePacket, SyncFlags(rawValue: 1 << 16)]
        #expect(wire.received(as: .v1) == [.inactive, .noOutput, .template, .sync])
        #expect(SyncFlags.directRoute.forwarding == .directRoute)
        #expect(SyncFlags([.inactive, .tunnel]).forwarding == .tunnel)
        #expect(SyncFlags.backupMask.rawValue == 0x1f87)
        #expect(SyncFlags.backupUpdateMask.rawValue == 0x0700)
    }

    // MARK: packing

    @Test func packsUpToMaxLengthExactly() throws {
        let entries = (0..<100).map { tcp(.tcpEstablished, port: UInt16(30_000 + $0)) }
        // 8 + 40 × 36 = 1448 ≤ 1472 < 1484: the default length takes 40.
        var datagram: [UInt8] = []
        #expect(try SyncEncoder.encode(entries, syncID: 1, into: &datagram) == 40)
        #expect(datagram.count == 1448)
        // Exactly at the boundary: 8 + 3 × 36 = 116 takes three; 115 takes two.
        #expect(try SyncEncoder.encode(entries, syncID: 1, maxLength: 116, into: &datagram) == 3)
        #expect(datagram.count == 116)
        #expect(try SyncEncoder.encode(entries, syncID: 1, maxLength: 115, into: &datagram) == 2)
        #expect(datagram.count == 80)
        // The smallest length takes one bare entry.
        #expect(try SyncEncoder.encode(entries, syncID: 1, maxLength: 44, into: &datagram) == 1)
        // nr_conns is one byte: never more than 255, even when more would fit.
        let many = (0..<300).map { tcp(.tcpEstablished, port: UInt16(10_000 + $0)) }
        #expect(try SyncEncoder.encode(many, syncID: 1, maxLength: 65_507, into: &datagram) == 255)
        #expect(SyncDecoder.decode(datagram).entries.count == 255)
    }

    @Test func paddingCountsAgainstMaxLength() throws {
        // 62-byte entries: 8 + 62 = 70, then 2 bytes of padding before the next: 8 + 62 + 2 + 62 = 134.
        let withSequence = (0..<4).map {
            SyncEntry(proto: .tcp, flags: .sequenceMask, state: .tcpEstablished, clientAddress: client,
                      clientPort: UInt16(20_000 + $0), virtualAddress: vip, virtualPort: 21,
                      destinationAddress: rs1, destinationPort: 21, sequence: sequence)
        }
        var datagram: [UInt8] = []
        #expect(try SyncEncoder.encode(withSequence, syncID: 0, maxLength: 134, into: &datagram) == 2)
        #expect(datagram.count == 134)
        #expect(try SyncEncoder.encode(withSequence, syncID: 0, maxLength: 133, into: &datagram) == 1)
        #expect(datagram.count == 70)
    }

    @Test func encodeAllSplitsAndKeepsOrder() throws {
        let entries = (0..<100).map { tcp(.tcpEstablished, port: UInt16(30_000 + $0)) }
        let messages = try SyncEncoder.encodeAll(entries, syncID: 9)
        #expect(messages.map(\.count) == [1448, 1448, 728])
        #expect(messages.allSatisfy { $0.count <= 1472 })
        #expect(messages.flatMap { SyncDecoder.decode($0, syncID: 9).entries } == entries)
    }

    @Test func encoderRefusals() {
        var datagram: [UInt8] = []
        #expect(throws: SyncEncodingError.maxLengthOutOfRange(43)) {
            try SyncEncoder.encode([tcp(.tcpEstablished)], syncID: 0, maxLength: 43, into: &datagram)
        }
        #expect(throws: SyncEncodingError.maxLengthOutOfRange(65_508)) {
            try SyncEncoder.encode([tcp(.tcpEstablished)], syncID: 0, maxLength: 65_508, into: &datagram)
        }
        var big = tcp(.tcpEstablished)
        big.sequence = sequence
        #expect(throws: SyncEncodingError.entryTooLarge(length: 62, maxLength: 69)) {
            try SyncEncoder.encode([big], syncID: 0, maxLength: 69, into: &datagram)
        }
        var empty = tcp(.tcpEstablished)
        empty.persistenceEngineData = []
        empty.persistenceEngineName = Array("sip".utf8)
        #expect(throws: SyncEncodingError.persistenceEngineOptionLength(option: "PE_DATA", length: 0)) {
            try SyncEncoder.encode([empty], syncID: 0, into: &datagram)
        }
        var longName = tcp(.tcpEstablished)
        longName.persistenceEngineData = [1]
        longName.persistenceEngineName = [UInt8](repeating: 0x61, count: 17)
        #expect(throws: SyncEncodingError.persistenceEngineOptionLength(option: "PE_NAME", length: 17)) {
            try SyncEncoder.encode([longName], syncID: 0, into: &datagram)
        }
        var nameless = tcp(.tcpEstablished)
        nameless.persistenceEngineData = [1]
        #expect(throws: SyncEncodingError.persistenceEngineDataWithoutName) {
            try SyncEncoder.encode([nameless], syncID: 0, into: &datagram)
        }
        // No entries: a header-only message.
        #expect((try? SyncEncoder.encode([SyncEntry](), syncID: 3, into: &datagram)) == 0)
        #expect(datagram == [0, 3, 0, 8, 0, 1, 0, 0])
    }
}
