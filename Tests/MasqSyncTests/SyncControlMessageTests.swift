import MasqCore
import Testing
@testable import MasqSync

@Suite struct SyncControlMessageTests {
    @Test func exactBytes() {
        let bytes = SyncControlMessage(.resyncDone, syncID: 7, sequence: 0x0102_0304).bytes
        #expect(bytes == [0, 7, 0, 20, 0, 1, 0, 0, 0x4d, 0x41, 0x53, 0x51, 3, 0, 0, 0, 1, 2, 3, 4])
    }

    @Test(arguments: SyncControlKind.allCases)
    func roundTrip(_ kind: SyncControlKind) {
        let message = SyncControlMessage(kind, syncID: 200, sequence: 0xdead_beef)
        #expect(SyncControlMessage.read(message.bytes) == .message(message))
    }

    @Test func aKernelBackupSeesAnEmptyV1Message() {
        // ip_vs_process_message: size equals the length, v1, nr_conns 0: accepted, nothing applied.
        let decoding = SyncDecoder.decode(SyncControlMessage(.heartbeat, syncID: 7).bytes, syncID: 7)
        #expect(decoding.header == SyncHeader(version: .v1, syncID: 7, count: 0, size: 20))
        #expect(decoding.isComplete && decoding.entries.isEmpty)
    }

    @Test func syncDataIsNotAControlMessage() throws {
        var datagram: [UInt8] = []
        try SyncEncoder.encode([SyncEntry](), syncID: 1, into: &datagram)
        #expect(SyncControlMessage.read(datagram) == nil)
        let entry = SyncEntry(proto: .tcp, state: .tcpEstablished, clientAddress: IPv4Address(198, 18, 0, 12),
                              clientPort: 40000, virtualAddress: IPv4Address(198, 18, 0, 1), virtualPort: 80,
                              destinationAddress: IPv4Address(198, 19, 0, 201), destinationPort: 80)
        try SyncEncoder.encode([entry], syncID: 1, into: &datagram)
        #expect(SyncControlMessage.read(datagram) == nil)
    }

    @Test func malformed() {
        var unknownKind = SyncControlMessage(.heartbeat, syncID: 0).bytes
        unknownKind[12] = 9
        #expect(SyncControlMessage.read(unknownKind) == .malformed)
        var reserved = SyncControlMessage(.heartbeat, syncID: 0).bytes
        reserved[15] = 1
        #expect(SyncControlMessage.read(reserved) == .malformed)
        // Not the magic, a wrong size or length, entries announced: not masq's at all.
        for (offset, value) in [(8, UInt8(0x6d)), (3, 16), (4, 1), (5, 0)] {
            var other = SyncControlMessage(.heartbeat, syncID: 0).bytes
            other[offset] = value
            #expect(SyncControlMessage.read(other) == nil, "byte \(offset)")
        }
        #expect(SyncControlMessage.read(Array(SyncControlMessage(.heartbeat, syncID: 0).bytes.prefix(19))) == nil)
    }
}
