import MasqCore

/// Why a kernel backup would throw away a received datagram, or one entry of it
/// (`ip_vs_process_message`, `ip_vs_proc_sync_conn`, `ip_vs_process_message_v0`). The cases are
/// stable for counters; `dropsDatagram` says which of the two the kernel does.
public enum SyncRejection: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    // The datagram, or the rest of it from the entry where the problem is.
    /// Under the 4 bytes of a v0 header ("message header too short").
    case headerTooShort = "header_too_short"
    /// The header's `size` is not the received length ("bogus message size"): also what a backup
    /// with a smaller `sync_maxlen` than its master sees.
    case sizeMismatch = "size_mismatch"
    /// A syncid other than the backup's, when the backup's is not 0 ("Ignoring syncid").
    case syncIDMismatch = "syncid_mismatch"
    /// v1: under 36 bytes left where an entry starts ("Dropping buffer, too small"; the kernel asks
    /// for an IPv4 entry's 36 bytes here whatever the type, an IPv6 entry's 72 are checked against
    /// its length next); v0: under the 24 bytes of an entry ("bogus conn").
    case entryTruncated = "entry_truncated"
    /// v1: the entry's length reaches past the datagram ("msg > buffer").
    case entryBeyondDatagram = "entry_beyond_datagram"
    /// v1: `ver_size`'s version nibble is not 0 ("Unknown version").
    case unknownEntryVersion = "unknown_entry_version"
    /// v1: a type other than 0 (IPv4) without the IPv6 bit 0 (error -10). Bit 0 alone decides: a type
    /// with bit 0 and other bits set is IPv6, as the kernel reads it.
    case unknownEntryType = "unknown_entry_type"
    /// v1: the entry's length is under its addresses, 36 bytes for IPv4 or 72 for IPv6 (-20): an IPv6
    /// type on an IPv4-sized entry, for one.
    case entryShorterThanAddresses = "entry_shorter_than_addresses"
    /// v1: one byte left in the entry, where an option's type and length need two (-30).
    case optionTruncated = "option_truncated"
    /// v1: an option of length 0 (-40).
    case optionZeroLength = "option_zero_length"
    /// v1: an option reaching past its entry (-40).
    case optionBeyondEntry = "option_beyond_entry"
    /// v1: SEQ_DATA not 24 bytes long (-50).
    case sequenceOptionLength = "sequence_option_length"
    /// v1: PE_NAME over 16 bytes (-70).
    case persistenceEngineNameTooLong = "pe_name_too_long"
    /// v1: SEQ_DATA, PE_DATA or PE_NAME twice in one entry (-50, -60, -70).
    case duplicateOption = "duplicate_option"
    /// v0: IN_SEQ/OUT_SEQ set and the 24 bytes of sequence data cut off ("bogus conn options").
    case sequenceDataTruncated = "sequence_data_truncated"

    // One entry: the ones before and after it stand.
    /// v1: an option the backup does not know, without the optional bit 0x40 (20).
    case unknownMandatoryOption = "unknown_mandatory_option"
    /// Not a template and not a protocol masq forwards (TCP, UDP) (30; v0 too).
    case unsupportedProtocol = "unsupported_protocol"
    /// Not a template and a state at or past the protocol's number of states (40; v0 too).
    case stateOutOfRange = "state_out_of_range"
    /// v1: PE_DATA without PE_NAME ("Invalid PE parameters", 50).
    case persistenceEngineDataWithoutName = "pe_data_without_name"

    /// Whether the kernel stops at this problem and ignores the rest of the datagram (entries before
    /// it were applied already), rather than skipping this one entry.
    public var dropsDatagram: Bool {
        switch self {
        case .unknownMandatoryOption, .unsupportedProtocol, .stateOutOfRange,
             .persistenceEngineDataWithoutName:
            false
        default:
            true
        }
    }

    public var description: String { rawValue }
}

/// One entry a backup skips.
public struct SyncEntryRejection: Hashable, Sendable {
    /// The entry's position in the datagram, from 0.
    public var index: Int
    public var reason: SyncRejection
}

/// Where a datagram was given up.
public struct SyncDatagramRejection: Hashable, Sendable {
    public var reason: SyncRejection
    /// The entry (from 0) where decoding stopped; nil when the header itself was refused.
    public var entryIndex: Int?
}

/// What a datagram holds, as a kernel backup would apply it: `entries` in order, the skipped ones
/// named, and where the rest of the datagram was dropped, if it was. The kernel applies entries as
/// it goes, so entries before a datagram-level problem stay in `entries`.
public struct SyncDecoding: Hashable, Sendable {
    /// nil when the header itself was refused (too short, size, syncid).
    public var header: SyncHeader?
    public var entries: [SyncEntry] = []
    public var rejectedEntries: [SyncEntryRejection] = []
    public var datagramRejection: SyncDatagramRejection?

    /// Whole and clean: every announced entry decoded and used.
    public var isComplete: Bool {
        datagramRejection == nil && rejectedEntries.isEmpty
    }
}

/// Reads sync messages of version 1 and 0 with the kernel backup's checks, in its order (a kernel
/// built with CONFIG_IP_VS_IPV6: v1's IPv6 entries are read, as IPv4 ones are). Never traps: every
/// read is checked against the datagram's length first.
public enum SyncDecoder {
    /// `SVER_MASK`: `ver_size`'s length bits; `SVER_SHIFT` 12 puts the version above them.
    public static let entryLengthMask: UInt16 = 0x0fff

    /// Decodes one received datagram. `syncID` is the backup's own: 0 accepts every syncid (the
    /// kernel's "no filtering"), another value only messages carrying it.
    public static func decode(_ datagram: [UInt8], syncID: UInt8 = 0) -> SyncDecoding {
        datagram.withUnsafeBytes { decode($0, syncID: syncID) }
    }

    public static func decode(_ datagram: UnsafeRawBufferPointer, syncID: UInt8 = 0) -> SyncDecoding {
        let bytes = Reader(bytes: datagram)
        let length = datagram.count
        var result = SyncDecoding()
        guard length >= SyncProtocolVersion.v0.headerLength else {
            result.datagramRejection = SyncDatagramRejection(reason: .headerTooShort, entryIndex: nil)
            return result
        }
        let size = Int(bytes.u16(2))
        guard size == length else {
            result.datagramRejection = SyncDatagramRejection(reason: .sizeMismatch, entryIndex: nil)
            return result
        }
        let messageSyncID = bytes.u8(1)
        guard syncID == 0 || messageSyncID == syncID else {
            result.datagramRejection = SyncDatagramRejection(reason: .syncIDMismatch, entryIndex: nil)
            return result
        }
        // v1 iff version 1, reserved 0 and spare 0; anything else is read as v0. A datagram of 4 to
        // 7 bytes has no version byte: v0 (the kernel reads past the datagram there, into its
        // buffer; a v0 reading announces byte 0's count, and no entry fits either way).
        if length >= SyncProtocolVersion.v1.headerLength && bytes.u8(5) == SyncProtocolVersion.v1.rawValue
            && bytes.u8(0) == 0 && bytes.u16(6) == 0 {
            result.header = SyncHeader(version: .v1, syncID: messageSyncID, count: Int(bytes.u8(4)), size: size)
            decodeV1(bytes, into: &result)
        } else {
            result.header = SyncHeader(version: .v0, syncID: messageSyncID, count: Int(bytes.u8(0)), size: size)
            decodeV0(bytes, into: &result)
        }
        return result
    }

    // MARK: version 1

    private static func decodeV1(_ bytes: Reader, into result: inout SyncDecoding) {
        let length = bytes.count
        var next = SyncProtocolVersion.v1.headerLength
        for index in 0..<(result.header?.count ?? 0) {
            let start = next
            func stop(_ reason: SyncRejection) {
                result.datagramRejection = SyncDatagramRejection(reason: reason, entryIndex: index)
            }
            // The kernel checks for a whole IPv4 entry here, for IPv6 entries too.
            guard start + SyncEntry.fixedLength <= length else { return stop(.entryTruncated) }
            let verSize = bytes.u16(start + 2)
            let size = Int(verSize & entryLengthMask)
            let end = start + size
            guard end <= length else { return stop(.entryBeyondDatagram) }
            guard verSize >> 12 == 0 else { return stop(.unknownEntryVersion) }
            switch decodeEntryV1(bytes, from: start, to: end) {
            case .entry(let entry): result.entries.append(entry)
            case .skip(let reason): result.rejectedEntries.append(SyncEntryRejection(index: index, reason: reason))
            case .stop(let reason): return stop(reason)
            }
            // Entries start on 4-byte boundaries. Past the end is caught at the next entry.
            next = start + ((size + 3) & ~3)
        }
    }

    private enum EntryOutcome {
        case entry(SyncEntry)
        case skip(SyncRejection)
        case stop(SyncRejection)
    }

    /// `ip_vs_proc_sync_conn`: type (which says the family and so where the options start), options,
    /// then protocol and state; the addresses at the family's offsets.
    private static func decodeEntryV1(_ bytes: Reader, from start: Int, to end: Int) -> EntryOutcome {
        let type = bytes.u8(start)
        let isIPv6 = type & SyncEntryType.ipv6 != 0  // STYPE_F_INET6
        guard isIPv6 || type == SyncEntryType.ipv4 else { return .stop(.unknownEntryType) }
        var p = start + (isIPv6 ? SyncEntry.ipv6FixedLength : SyncEntry.fixedLength)
        guard p <= end else { return .stop(.entryShorterThanAddresses) }

        var sequence: SyncSequenceData?
        var peData: [UInt8]?
        var peName: [UInt8]?
        while p < end {
            guard p + 2 <= end else { return .stop(.optionTruncated) }
            let optionType = bytes.u8(p)
            let optionLength = Int(bytes.u8(p + 1))
            p += 2
            guard optionLength != 0 else { return .stop(.optionZeroLength) }
            guard p + optionLength <= end else { return .stop(.optionBeyondEntry) }
            // The optional bit is masked off first: 0x41 is SEQ_DATA too.
            switch optionType & ~SyncOption.optionalFlag {
            case SyncOption.sequenceData:
                guard optionLength == SyncSequenceData.wireLength else { return .stop(.sequenceOptionLength) }
                guard sequence == nil else { return .stop(.duplicateOption) }
                func adjustment(_ at: Int) -> SyncSequenceAdjustment {
                    SyncSequenceAdjustment(initialSequence: bytes.u32(at), delta: bytes.u32(at + 4),
                                           previousDelta: bytes.u32(at + 8))
                }
                sequence = SyncSequenceData(inbound: adjustment(p), outbound: adjustment(p + 12))
            case SyncOption.persistenceEngineData:
                // At most 255 (IP_VS_PEDATA_MAXLEN), which a one-byte length cannot exceed.
                guard peData == nil else { return .stop(.duplicateOption) }
                peData = bytes.array(p, optionLength)
            case SyncOption.persistenceEngineName:
                guard optionLength <= SyncEntry.maximumPersistenceEngineNameLength else {
                    return .stop(.persistenceEngineNameTooLong)
                }
                guard peName == nil else { return .stop(.duplicateOption) }
                peName = bytes.array(p, optionLength)
            default:
                guard optionType & SyncOption.optionalFlag != 0 else { return .skip(.unknownMandatoryOption) }
            }
            p += optionLength
        }

        let proto = IPProtocol(rawValue: bytes.u8(start + 1))
        let flags = SyncFlags(rawValue: bytes.u32(start + 4))
        let state = SyncState(rawValue: bytes.u16(start + 8))
        if let rejection = checkProtocolAndState(proto, state, isTemplate: flags.contains(.template)) {
            return .skip(rejection)
        }
        if peData != nil && peName == nil { return .skip(.persistenceEngineDataWithoutName) }
        // The addresses lie inside the fixed part, which `p <= end <= count` has shown is there.
        func address(_ index: Int) -> IPAddress {
            isIPv6 ? .v6(bytes.ipv6(start + 24 + 16 * index)) : .v4(IPv4Address(rawValue: bytes.u32(start + 24 + 4 * index)))
        }
        return .entry(SyncEntry(
            proto: proto, flags: flags, state: state,
            clientAddress: address(0), clientPort: bytes.u16(start + 10),
            virtualAddress: address(1), virtualPort: bytes.u16(start + 12),
            destinationAddress: address(2), destinationPort: bytes.u16(start + 14),
            fwmark: bytes.u32(start + 16), timeoutSeconds: bytes.u32(start + 20), sequence: sequence,
            persistenceEngineData: peData, persistenceEngineName: peName))
    }

    /// For a connection, the protocol must be one masq forwards and the state in its range. A
    /// template's protocol is the service's (or 0 for a fwmark service) and its state is not checked
    /// (the kernel only logs a template state past ASSURED).
    private static func checkProtocolAndState(_ proto: IPProtocol, _ state: SyncState, isTemplate: Bool) -> SyncRejection? {
        guard !isTemplate else { return nil }
        guard let count = SyncState.stateCount(for: proto) else { return .unsupportedProtocol }
        return Int(state.rawValue) < count ? nil : .stateOutOfRange
    }

    // MARK: version 0

    /// v0 entry (`struct ip_vs_sync_conn_v0`, 24 bytes): reserved, protocol, cport, vport, dport,
    /// caddr, vaddr, daddr, 16-bit flags, state; 24 bytes of sequence data follow when IN_SEQ or
    /// OUT_SEQ is set. Always IPv4: v0 has no type field, and the kernel's v0 sender
    /// (`ip_vs_sync_conn_v0`) returns at once for a connection that is not AF_INET.
    public static let v0EntryLength = 24

    private static func decodeV0(_ bytes: Reader, into result: inout SyncDecoding) {
        let length = bytes.count
        var p = SyncProtocolVersion.v0.headerLength
        for index in 0..<(result.header?.count ?? 0) {
            guard p + v0EntryLength <= length else {
                result.datagramRejection = SyncDatagramRejection(reason: .entryTruncated, entryIndex: index)
                return
            }
            let start = p
            let flags = SyncFlags(rawValue: UInt32(bytes.u16(start + 20)))
            var sequence: SyncSequenceData?
            p += v0EntryLength
            if !flags.intersection(.sequenceMask).isEmpty {
                guard p + SyncSequenceData.wireLength <= length else {
                    result.datagramRejection = SyncDatagramRejection(reason: .sequenceDataTruncated, entryIndex: index)
                    return
                }
                // A raw copy of the master's `struct ip_vs_sync_conn_options`, in the master's byte
                // order; a kernel backup takes it in its own. masq runs little-endian (x86-64,
                // arm64), as those masters do.
                func adjustment(_ at: Int) -> SyncSequenceAdjustment {
                    SyncSequenceAdjustment(initialSequence: bytes.u32le(at), delta: bytes.u32le(at + 4),
                                           previousDelta: bytes.u32le(at + 8))
                }
                sequence = SyncSequenceData(inbound: adjustment(p), outbound: adjustment(p + 12))
                p += SyncSequenceData.wireLength
            }
            let proto = IPProtocol(rawValue: bytes.u8(start + 1))
            let state = SyncState(rawValue: bytes.u16(start + 22))
            if let rejection = checkProtocolAndState(proto, state, isTemplate: flags.contains(.template)) {
                result.rejectedEntries.append(SyncEntryRejection(index: index, reason: rejection))
                continue
            }
            result.entries.append(SyncEntry(
                proto: proto, flags: flags, state: state,
                clientAddress: .v4(IPv4Address(rawValue: bytes.u32(start + 8))), clientPort: bytes.u16(start + 2),
                virtualAddress: .v4(IPv4Address(rawValue: bytes.u32(start + 12))), virtualPort: bytes.u16(start + 4),
                destinationAddress: .v4(IPv4Address(rawValue: bytes.u32(start + 16))), destinationPort: bytes.u16(start + 6),
                sequence: sequence))
        }
    }
}

/// Big-endian reads from a received datagram; every caller has checked the range first.
private struct Reader {
    let bytes: UnsafeRawBufferPointer
    var count: Int { bytes.count }

    func u8(_ at: Int) -> UInt8 { bytes[at] }
    func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) << 16 | UInt32(u16(at + 2)) }
    func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) << 32 | UInt64(u32(at + 4)) }
    /// An `in6_addr` (16 bytes, network order): high is its first 8 bytes.
    func ipv6(_ at: Int) -> IPv6Address { IPv6Address(high: u64(at), low: u64(at + 8)) }
    func u32le(_ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }
    func array(_ at: Int, _ count: Int) -> [UInt8] { Array(bytes[at..<(at + count)]) }
}
