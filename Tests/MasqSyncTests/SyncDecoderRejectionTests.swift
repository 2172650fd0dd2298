import MasqCore
import Testing
@testable import MasqSync

private let client = IPv4Address(198, 18, 0, 20)
private let vip = IPv4Address(198, 18, 1, 2)
private let rs = IPv4Address(198, 19, 0, 201)
/// The IPv6 entries' addresses (2001:2::/48, the lab's IPv6 prefix).
private let client6 = IPv6Address("2001:2:0:1::20")!
private let vip6 = IPv6Address("2001:2:0:2::2")!
private let rs6 = IPv6Address("2001:2:0:3::201")!

private func entry(_ port: UInt16, proto: IPProtocol = .tcp, state: SyncState = .tcpEstablished,
                   flags: SyncFlags = []) -> SyncEntry {
    SyncEntry(proto: proto, flags: flags, state: state, clientAddress: client, clientPort: port,
              virtualAddress: vip, virtualPort: 443, destinationAddress: rs, destinationPort: 443,
              timeoutSeconds: 900)
}

/// Three bare entries: header at 0, entries at 8, 44 and 80; 116 bytes.
private func threeEntries() -> [UInt8] {
    var datagram: [UInt8] = []
    _ = try? SyncEncoder.encode([entry(1), entry(2), entry(3)], syncID: 4, into: &datagram)
    return datagram
}

/// A v1 header for `body` (size set to the whole) and `count` entries.
private func v1(count: UInt8, _ body: [UInt8]) -> [UInt8] {
    let size = 8 + body.count
    return [0, 4, UInt8(size >> 8), UInt8(size & 0xff), count, 1, 0, 0] + body
}

/// One v1 entry's fixed part, `length` in ver_size, then `options`: with `fixed` 36 the IPv4 layout
/// (`struct ip_vs_sync_v4`), with 72 the IPv6 one (`struct ip_vs_sync_v6`); `type` is written as given,
/// so the two can disagree.
private func rawEntry(type: UInt8 = 0, proto: UInt8 = 6, length: Int? = nil, flags: UInt32 = 0, state: UInt16 = 1,
                      options: [UInt8] = [], fixed: Int = 36) -> [UInt8] {
    let total = length ?? (fixed + options.count)
    var bytes: [UInt8] = [type, proto, UInt8(total >> 8), UInt8(total & 0xff),
                          UInt8(flags >> 24), UInt8(flags >> 16 & 0xff), UInt8(flags >> 8 & 0xff), UInt8(flags & 0xff),
                          UInt8(state >> 8), UInt8(state & 0xff), 0x9c, 0x40, 0x01, 0xbb, 0x01, 0xbb,
                          0, 0, 0, 0, 0, 0, 0x03, 0x84]
    if fixed == SyncEntry.ipv6FixedLength {
        bytes += client6.bytes + vip6.bytes + rs6.bytes
    } else {
        bytes += [198, 18, 0, 20, 198, 18, 1, 2, 198, 19, 0, 201]
    }
    return bytes + options
}

private let seqOption: [UInt8] = [1, 24] + [UInt8](repeating: 0, count: 24)

/// Option problems, each in a one-entry datagram: the datagram is dropped.
private let optionCases: [([UInt8], SyncRejection)] = [
    ([UInt8(0x41)], SyncRejection.optionTruncated),                // one byte: no length
    ([UInt8(0x01), 0x00], SyncRejection.optionZeroLength),
    ([UInt8(0x41), 0x05, 0, 0], SyncRejection.optionBeyondEntry),
    ([UInt8(0x01), 0x04, 0, 0, 0, 0], SyncRejection.sequenceOptionLength),
    (seqOption + seqOption, SyncRejection.duplicateOption),
    (seqOption + [0x41, 24] + [UInt8](repeating: 0, count: 24), SyncRejection.duplicateOption),  // 0x41 is SEQ_DATA too
    ([UInt8(2), 1, 0xaa, 2, 1, 0xbb], SyncRejection.duplicateOption),       // PE_DATA twice
    ([UInt8(3), 3, 0x73, 0x69, 0x70, 3, 3, 0x73, 0x69, 0x70], SyncRejection.duplicateOption),  // PE_NAME twice
    ([UInt8(3), 17] + [UInt8](repeating: 0x61, count: 17), SyncRejection.persistenceEngineNameTooLong),
]

/// Entries a backup skips, each between two good ones; every case in both families (the IPv6 entry
/// is checked exactly as the IPv4 one, past its 72 bytes).
private let entryCases: [([UInt8], SyncRejection)] = [(UInt8(0), 36), (UInt8(1), 72)].flatMap { type, fixed in [
    (rawEntry(type: type, options: [0x07, 2, 0, 0], fixed: fixed), SyncRejection.unknownMandatoryOption),
    (rawEntry(type: type, proto: 132, fixed: fixed), SyncRejection.unsupportedProtocol),  // SCTP: masq forwards TCP, UDP
    (rawEntry(type: type, proto: 1, fixed: fixed), SyncRejection.unsupportedProtocol),
    (rawEntry(type: type, state: 11, fixed: fixed), SyncRejection.stateOutOfRange),       // TCP has 0...10
    (rawEntry(type: type, proto: 17, state: 1, fixed: fixed), SyncRejection.stateOutOfRange),  // UDP has 0
    (rawEntry(type: type, options: [2, 3, 1, 2, 3], fixed: fixed), SyncRejection.persistenceEngineDataWithoutName),
] }

/// Malformed IPv6 entries (type and size disagreeing, cut short, lengths that lie), each the second
/// of two in a v1 datagram after a good IPv4 entry: the first is kept, the rest dropped with the
/// reason the kernel's checks give, in its order.
private let malformedIPv6Cases: [(String, [UInt8], SyncRejection)] = {
    let v6 = rawEntry(type: 1, fixed: 72)
    return [
        ("cut to 35 bytes: under the 36 the kernel asks of any entry", Array(v6.prefix(35)), .entryTruncated),
        ("cut to 50 of its 72 bytes: its length reaches past the datagram", Array(v6.prefix(50)), .entryBeyondDatagram),
        ("ver_size 73 where 72 bytes are", rawEntry(type: 1, length: 73, fixed: 72), .entryBeyondDatagram),
        ("type IPv6 with an IPv4 entry's size (36)", rawEntry(type: 1, fixed: 36), .entryShorterThanAddresses),
        ("type IPv6, 72 bytes there, ver_size 36", rawEntry(type: 1, length: 36, fixed: 72), .entryShorterThanAddresses),
        ("type IPv6, ver_size 71", rawEntry(type: 1, length: 71, fixed: 72), .entryShorterThanAddresses),
        ("ver_size 0", rawEntry(type: 1, length: 0, fixed: 72), .entryShorterThanAddresses),
        ("version nibble 1 in ver_size", rawEntry(type: 1, length: 0x1000 | 72, fixed: 72), .unknownEntryVersion),
        ("type 2: neither IPv4 nor the IPv6 bit", rawEntry(type: 2, fixed: 72), .unknownEntryType),
        ("type 0x80: neither IPv4 nor the IPv6 bit", rawEntry(type: 0x80, fixed: 72), .unknownEntryType),
        // Type IPv4 on an IPv6 entry's bytes: the IPv4 addresses are the first 12 bytes of the
        // client's IPv6 address, and options start at its 13th: 00 00 (type 0, length 0).
        ("type IPv4 with an IPv6 entry's size: its addresses read as options", rawEntry(type: 0, fixed: 72),
         .optionZeroLength),
        ("an option cut after its type byte", rawEntry(type: 1, options: [0x41], fixed: 72), .optionTruncated),
        ("an option past its entry", rawEntry(type: 1, options: [0x41, 5, 0, 0], fixed: 72), .optionBeyondEntry),
        ("SEQ_DATA of 4 bytes", rawEntry(type: 1, options: [1, 4, 0, 0, 0, 0], fixed: 72), .sequenceOptionLength),
        ("SEQ_DATA twice", rawEntry(type: 1, options: seqOption + seqOption, fixed: 72), .duplicateOption),
        ("PE_NAME of 17 bytes", rawEntry(type: 1, options: [3, 17] + [UInt8](repeating: 0x61, count: 17), fixed: 72),
         .persistenceEngineNameTooLong),
    ]
}()

@Suite struct SyncDecoderRejectionTests {
    // MARK: the datagram's header

    @Test func headerRejections() {
        #expect(SyncDecoder.decode([0, 4, 0]).datagramRejection == .init(reason: .headerTooShort, entryIndex: nil))
        var datagram = threeEntries()
        datagram.append(0)  // one byte more than size says
        #expect(SyncDecoder.decode(datagram).datagramRejection == .init(reason: .sizeMismatch, entryIndex: nil))
        #expect(SyncDecoder.decode(Array(threeEntries().dropLast())).datagramRejection?.reason == .sizeMismatch)
        // syncid 4: a backup of syncid 5 ignores it, one of 0 (no filtering) or 4 takes it.
        #expect(SyncDecoder.decode(threeEntries(), syncID: 5).datagramRejection
                == .init(reason: .syncIDMismatch, entryIndex: nil))
        #expect(SyncDecoder.decode(threeEntries(), syncID: 5).header == nil)
        #expect(SyncDecoder.decode(threeEntries(), syncID: 4).entries.count == 3)
        #expect(SyncDecoder.decode(threeEntries(), syncID: 0).entries.count == 3)
    }

    /// v1 only when version is 1 and reserved and spare are 0; otherwise the bytes are read as v0.
    @Test(arguments: [(5, UInt8(2)), (0, UInt8(1)), (6, UInt8(1)), (7, UInt8(1))])
    func versionRulesFallBackToV0(offset: Int, value: UInt8) {
        var datagram = threeEntries()
        datagram[offset] = value
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.header?.version == .v0)
        #expect(decoded.header?.count == Int(datagram[0]))
    }

    @Test func shortDatagramsAreV0() {
        // 4 bytes, count 0: an empty v0 message.
        let empty = SyncDecoder.decode([0, 9, 0, 4])
        #expect(empty.header == SyncHeader(version: .v0, syncID: 9, count: 0, size: 4))
        #expect(empty.isComplete)
        // 6 bytes announcing one entry: it is not there.
        #expect(SyncDecoder.decode([1, 9, 0, 6, 1, 1]).datagramRejection == .init(reason: .entryTruncated, entryIndex: 0))
    }

    // MARK: v1 datagram-level rejections: the rest is dropped, entries before stay

    @Test func entryTruncatedKeepsTheEntriesBefore() {
        // Announce four entries where three are.
        var datagram = threeEntries()
        datagram[4] = 4
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.entries.count == 3)
        #expect(decoded.datagramRejection == .init(reason: .entryTruncated, entryIndex: 3))
        #expect(decoded.datagramRejection?.reason.dropsDatagram == true)
    }

    @Test func entryLengthPastTheDatagram() {
        var datagram = threeEntries()
        datagram[80 + 3] = 37  // the last entry says 37 bytes where 36 are
        let decoded = SyncDecoder.decode(datagram)
        #expect(decoded.entries.count == 2)
        #expect(decoded.datagramRejection == .init(reason: .entryBeyondDatagram, entryIndex: 2))
    }

    @Test func entryVersionNibble() {
        var datagram = threeEntries()
        datagram[44 + 2] |= 0x10  // ver_size version 1
        #expect(SyncDecoder.decode(datagram).datagramRejection == .init(reason: .unknownEntryVersion, entryIndex: 1))
    }

    @Test func unknownType() {
        let decoded = SyncDecoder.decode(v1(count: 1, rawEntry(type: 2)))
        #expect(decoded.datagramRejection == .init(reason: .unknownEntryType, entryIndex: 0))
    }

    @Test func entryShorterThanItsAddresses() {
        // ver_size 20 (and 36 bytes present so the first check passes).
        #expect(SyncDecoder.decode(v1(count: 1, rawEntry(length: 20))).datagramRejection?.reason
                == .entryShorterThanAddresses)
        // An IPv6 entry claiming 36 bytes: under its 72.
        #expect(SyncDecoder.decode(v1(count: 1, rawEntry(type: 1, length: 36))).datagramRejection?.reason
                == .entryShorterThanAddresses)
    }

    @Test(arguments: malformedIPv6Cases)
    func malformedIPv6EntriesDropTheRest(description: String, bad: [UInt8], reason: SyncRejection) {
        let good = rawEntry()
        let decoded = SyncDecoder.decode(v1(count: 3, good + bad))
        #expect(decoded.datagramRejection == .init(reason: reason, entryIndex: 1), "\(description)")
        #expect(reason.dropsDatagram)
        #expect(decoded.entries.count == 1 && decoded.rejectedEntries.isEmpty, "\(description)")
        #expect(decoded.entries.first?.isIPv6 == false)
    }

    /// Bit 0 alone makes an entry IPv6: type 3 (bit 0 and an unknown bit) reads as IPv6, as the
    /// kernel's `s->v6.type & STYPE_F_INET6` test reads it.
    @Test func typeWithTheIPv6BitIsIPv6() {
        let decoded = SyncDecoder.decode(v1(count: 1, rawEntry(type: 3, fixed: 72)))
        #expect(decoded.isComplete)
        #expect(decoded.entries.first?.clientAddress == .v6(client6))
        #expect(decoded.entries.first?.destinationAddress == .v6(rs6))
    }

    @Test(arguments: optionCases)
    func optionRejectionsDropTheDatagram(options: [UInt8], reason: SyncRejection) {
        let body = rawEntry(options: options)
        let decoded = SyncDecoder.decode(v1(count: 1, body))
        #expect(decoded.datagramRejection == .init(reason: reason, entryIndex: 0))
        #expect(reason.dropsDatagram)
        #expect(decoded.entries.isEmpty)
    }

    // MARK: v1 entry-level rejections: that entry only

    @Test(arguments: entryCases)
    func entryRejectionsSkipOneEntry(bad: [UInt8], reason: SyncRejection) {
        // good, bad (padded to 4), good
        let good = rawEntry()
        let pad = [UInt8](repeating: 0, count: (4 - bad.count % 4) % 4)
        let decoded = SyncDecoder.decode(v1(count: 3, good + bad + pad + good))
        #expect(decoded.datagramRejection == nil)
        #expect(decoded.rejectedEntries == [SyncEntryRejection(index: 1, reason: reason)])
        #expect(decoded.entries.count == 2)
        #expect(!reason.dropsDatagram)
    }

    @Test func unknownOptionalOptionsAreSkipped() {
        let decoded = SyncDecoder.decode(v1(count: 1, rawEntry(options: [0x47, 2, 0xde, 0xad])))
        #expect(decoded.isComplete)
        #expect(decoded.entries.first?.sequence == nil)
    }

    /// The kernel stops at the first problem in option order: an unknown mandatory option ends the
    /// entry before a later duplicate is seen, and the reverse order drops the datagram.
    @Test func optionOrderDecides() {
        let skipFirst = SyncDecoder.decode(v1(count: 1, rawEntry(options: [0x07, 1, 0] + seqOption + seqOption)))
        #expect(skipFirst.rejectedEntries.map(\.reason) == [.unknownMandatoryOption])
        #expect(skipFirst.datagramRejection == nil)
        let dropFirst = SyncDecoder.decode(v1(count: 1, rawEntry(options: seqOption + seqOption + [0x07, 1, 0])))
        #expect(dropFirst.datagramRejection?.reason == .duplicateOption)
    }

    /// Templates skip the protocol and state checks (a fwmark template has protocol 0; the kernel
    /// only logs a template state past ASSURED).
    @Test func templatesSkipProtocolAndStateChecks() {
        let decoded = SyncDecoder.decode(v1(count: 2, rawEntry(proto: 0, flags: 0x1000, state: 1)
                                            + rawEntry(proto: 6, flags: 0x1000, state: 7)))
        #expect(decoded.isComplete)
        #expect(decoded.entries.map(\.state) == [.templateAssured, SyncState(rawValue: 7)])
        #expect(decoded.entries[1].connectionState == nil)
    }

    /// An IPv6 entry with SEQ_DATA: 72 + 26 = 98 bytes read (padded to 100), then the IPv4 entry after.
    @Test func ipv6EntryWithOptionsThenIPv4() {
        let v6 = rawEntry(type: 1, options: seqOption, fixed: 72)
        #expect(v6.count == 98)
        let decoded = SyncDecoder.decode(v1(count: 2, v6 + [0, 0] + rawEntry()))
        #expect(decoded.isComplete)
        #expect(decoded.entries.map(\.isIPv6) == [true, false])
        let first = decoded.entries.first
        #expect(first?.clientAddress == .v6(client6) && first?.virtualAddress == .v6(vip6)
                && first?.destinationAddress == .v6(rs6))
        #expect(first?.clientPort == 40_000 && first?.virtualPort == 443 && first?.destinationPort == 443)
        #expect(first?.timeoutSeconds == 900 && first?.state == .tcpEstablished)
        #expect(first?.sequence != nil)
        #expect(decoded.entries.last?.clientAddress == .v4(client))
    }

    // MARK: v0

    @Test func v0Rejections() {
        func v0Entry(proto: UInt8, flags: UInt16 = 0, state: UInt16) -> [UInt8] {
            [0, proto, 0x9c, 0x40, 0x01, 0xbb, 0x01, 0xbb, 198, 18, 0, 20, 198, 18, 1, 2, 198, 19, 0, 201,
             UInt8(flags >> 8), UInt8(flags & 0xff), UInt8(state >> 8), UInt8(state & 0xff)]
        }
        func v0(count: UInt8, _ body: [UInt8]) -> [UInt8] {
            let size = 4 + body.count
            return [count, 0, UInt8(size >> 8), UInt8(size & 0xff)] + body
        }
        let good = v0Entry(proto: 6, state: 1)
        let skipped = SyncDecoder.decode(v0(count: 4, good + v0Entry(proto: 132, state: 1) + v0Entry(proto: 17, state: 1) + good))
        #expect(skipped.rejectedEntries == [SyncEntryRejection(index: 1, reason: .unsupportedProtocol),
                                            SyncEntryRejection(index: 2, reason: .stateOutOfRange)])
        #expect(skipped.entries.count == 2)
        #expect(skipped.datagramRejection == nil)
        let truncated = SyncDecoder.decode(v0(count: 2, good + Array(good.prefix(20))))
        #expect(truncated.entries.count == 1)
        #expect(truncated.datagramRejection == .init(reason: .entryTruncated, entryIndex: 1))
        let noSequence = SyncDecoder.decode(v0(count: 1, v0Entry(proto: 6, flags: 0x0200, state: 1) + [0, 0, 0, 0]))
        #expect(noSequence.datagramRejection == .init(reason: .sequenceDataTruncated, entryIndex: 0))
        // A v0 template with protocol 0 passes.
        #expect(SyncDecoder.decode(v0(count: 1, v0Entry(proto: 0, flags: 0x1000, state: 0))).isComplete)
    }

    @Test func rejectionScopesAreTheKernels() {
        // Which problems drop the rest of a datagram and which skip one entry, as ip_vs_sync.c does.
        let datagramLevel = SyncRejection.allCases.filter(\.dropsDatagram)
        let entryLevel = SyncRejection.allCases.filter { !$0.dropsDatagram }
        #expect(datagramLevel.count == 15)
        #expect(Set(entryLevel) == [.unknownMandatoryOption, .unsupportedProtocol, .stateOutOfRange,
                                    .persistenceEngineDataWithoutName])
    }
}
