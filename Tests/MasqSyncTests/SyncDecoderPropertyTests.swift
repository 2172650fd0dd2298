import MasqCore
import Testing
@testable import MasqSync

/// SplitMix64: a fixed seed, so a failure repeats.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// What must hold for any input: no trap (the call returns), never more entries than the header
/// announces or than the bytes can hold, and whatever decodes re-encodes as v1 to bytes that
/// decode to the same entries.
private func checkInvariants(_ datagram: [UInt8]) {
    let decoded = SyncDecoder.decode(datagram)
    let used = decoded.entries.count + decoded.rejectedEntries.count
    guard let header = decoded.header else {
        #expect(used == 0)
        return
    }
    #expect(used <= header.count)
    // Every entry a backup looks at took at least its fixed part: 36 bytes in v1 (72 for IPv6), 24 in v0.
    let room = header.version == .v1 ? (datagram.count - 8) / SyncEntry.fixedLength
                                     : (datagram.count - 4) / SyncDecoder.v0EntryLength
    #expect(used <= room)
    let ipv6Room = header.version == .v1 ? (datagram.count - 8) / SyncEntry.ipv6FixedLength : 0
    #expect(decoded.entries.filter(\.isIPv6).count <= ipv6Room)
    #expect(decoded.entries.allSatisfy { $0.addressesShareFamily })
    #expect(decoded.rejectedEntries.allSatisfy { !$0.reason.dropsDatagram })
    #expect(decoded.datagramRejection.map(\.reason.dropsDatagram) ?? true)
    do {
        var again: [UInt8] = []
        let taken = try SyncEncoder.encode(decoded.entries, syncID: header.syncID, maxLength: SyncEncoder.maximumMaxLength,
                                           into: &again)
        #expect(taken == decoded.entries.count)
        let redecoded = SyncDecoder.decode(again)
        #expect(redecoded.isComplete)
        #expect(redecoded.entries == decoded.entries)
    } catch {
        Issue.record("decoded entries did not re-encode: \(error)")
    }
}

@Suite struct SyncDecoderPropertyTests {
    @Test func randomBytes() {
        var rng = SplitMix64(state: 0x5eed_0001)
        for _ in 0..<3000 {
            let length = Int.random(in: 0...200, using: &rng)
            var datagram = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Half the time a size that matches and a plausible header, so the entries get read.
            if length >= 8 && Bool.random(using: &rng) {
                datagram[2] = UInt8(length >> 8)
                datagram[3] = UInt8(length & 0xff)
                if Bool.random(using: &rng) {
                    datagram[0] = 0
                    datagram[5] = 1
                    datagram[6] = 0
                    datagram[7] = 0
                }
            }
            checkInvariants(datagram)
        }
    }

    /// IPv4 entries, or (`ipv6`) the same entries in IPv6 between IPv4 ones, encoded, then mutated:
    /// bytes flipped, cut, grown, and entries' type and length fields rewritten.
    @Test(arguments: [false, true])
    func mutatedValidDatagrams(ipv6: Bool) throws {
        var rng = SplitMix64(state: ipv6 ? 0x5eed_0003 : 0x5eed_0002)
        let client = IPv4Address(198, 18, 0, 30)
        let vip = IPv4Address(198, 18, 1, 3)
        let rs = IPv4Address(198, 19, 0, 33)
        let seq = SyncSequenceData(inbound: .init(initialSequence: 1, delta: 2, previousDelta: 3),
                                   outbound: .init(initialSequence: 4, delta: 5, previousDelta: 6))
        let entries = [
            SyncEntry(proto: .tcp, state: .tcpEstablished, clientAddress: client, clientPort: 1000,
                      virtualAddress: vip, virtualPort: 80, destinationAddress: rs, destinationPort: 80, timeoutSeconds: 900),
            SyncEntry(proto: .tcp, flags: .sequenceMask, state: .tcpFinWait, clientAddress: client, clientPort: 1001,
                      virtualAddress: vip, virtualPort: 21, destinationAddress: rs, destinationPort: 21, sequence: seq),
            SyncEntry(proto: .udp, state: .udpNormal, clientAddress: client, clientPort: 1002, virtualAddress: vip,
                      virtualPort: 5060, destinationAddress: rs, destinationPort: 5060,
                      persistenceEngineData: [1, 2, 3], persistenceEngineName: Array("sip".utf8)),
            SyncEntry(proto: .tcp, flags: .template, state: .templateNone, clientAddress: client, clientPort: 0,
                      virtualAddress: vip, virtualPort: 80, destinationAddress: rs, destinationPort: 80, timeoutSeconds: 360),
        ]
        func inIPv6(_ e: SyncEntry) -> SyncEntry {
            var e = e
            e.clientAddress = .v6(IPv6Address("2001:2:0:30::30")!)
            e.virtualAddress = .v6(IPv6Address("2001:2:0:1::3")!)
            e.destinationAddress = .v6(IPv6Address("2001:2:0:33::33")!)
            return e
        }
        let used = ipv6 ? entries.flatMap { [inIPv6($0), $0] } : entries
        var valid: [UInt8] = []
        try SyncEncoder.encode(used, syncID: 2, into: &valid)
        #expect(SyncDecoder.decode(valid).entries == used)
        checkInvariants(valid)
        // Where each entry starts: the type byte, and ver_size two bytes on.
        var starts: [Int] = []
        var at = 8
        for e in used {
            at += (4 - at % 4) % 4
            starts.append(at)
            at += e.wireLength
        }
        for _ in 0..<5000 {
            var datagram = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0:  // flip a byte
                    let i = Int.random(in: 0..<datagram.count, using: &rng)
                    datagram[i] = UInt8.random(in: 0...255, using: &rng)
                case 1:  // cut the end, keeping size right half the time
                    datagram.removeLast(Int.random(in: 0...min(40, datagram.count), using: &rng))
                case 2:  // grow
                    datagram += (0..<Int.random(in: 1...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                case 3 where ipv6 && Bool.random(using: &rng):  // an entry's type: the other family, or neither
                    let at = starts.randomElement(using: &rng)!
                    if at < datagram.count { datagram[at] = [0, 1, 2, 3].randomElement(using: &rng)! }
                default:  // an entry's length field
                    let at = starts.randomElement(using: &rng)! + 2
                    if at + 1 < datagram.count { datagram[at + 1] = UInt8.random(in: 0...255, using: &rng) }
                }
            }
            if datagram.count >= 4 && Bool.random(using: &rng) {
                datagram[2] = UInt8(datagram.count >> 8 & 0xff)
                datagram[3] = UInt8(datagram.count & 0xff)
            }
            checkInvariants(datagram)
        }
    }
}
