import MasqCore

/// Why entries could not be encoded. The encoder refuses rather than writes what a backup would
/// reject or what would not fit.
public enum SyncEncodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `maxLength` below a header and one bare entry (44) or above what a UDP/IPv4 datagram holds.
    case maxLengthOutOfRange(Int)
    /// The first entry alone does not fit in `maxLength` (the kernel would send it anyway, in a
    /// datagram over `sync_maxlen`; masq never exceeds it).
    case entryTooLarge(length: Int, maxLength: Int)
    /// A PE_DATA or PE_NAME of no bytes (an option of length 0 drops a backup's whole datagram) or
    /// over its maximum (255, 16).
    case persistenceEngineOptionLength(option: String, length: Int)
    /// PE_DATA without PE_NAME: a backup drops the entry ("Invalid PE parameters").
    case persistenceEngineDataWithoutName
    /// Client, virtual and real server addresses not all of one family: an entry carries the
    /// connection's family only (`struct ip_vs_sync_v4` or `_v6`), so there is no way to send it.
    case mixedAddressFamilies

    public var description: String {
        switch self {
        case .maxLengthOutOfRange(let n):
            "sync message length \(n) is not between \(SyncEncoder.minimumMaxLength) and \(SyncEncoder.maximumMaxLength)"
        case .entryTooLarge(let length, let maxLength):
            "a sync entry of \(length) bytes does not fit in a message of at most \(maxLength) bytes"
        case .persistenceEngineOptionLength(let option, let length):
            "sync option \(option) of \(length) bytes is outside its allowed length"
        case .persistenceEngineDataWithoutName:
            "sync option PE_DATA needs a PE_NAME"
        case .mixedAddressFamilies:
            "a sync entry's client, virtual and real server addresses must be of one family"
        }
    }
}

/// Writes version 1 sync messages as the kernel's master builds them (`ip_vs_sync_conn`,
/// `ip_vs_sync_buff_create`): an 8-byte header, then entries, each starting on a 4-byte boundary
/// (the padding goes before an entry, so the last one is not padded), `size` counting everything.
/// IPv4 and IPv6 entries mix in one message in the order given, as the kernel packs them: type 0 and
/// `struct ip_vs_sync_v4` (36 bytes) for an IPv4 connection, type `STYPE_F_INET6` and
/// `struct ip_vs_sync_v6` (72 bytes) for an IPv6 one.
///
/// Version 0 is not written (masq's master sends v1 only). A kernel master set to v0
/// (`sync_version=0`) sends no IPv6 connection at all: `ip_vs_sync_conn_v0` returns at its first
/// test, `cp->af != AF_INET`, silently (no log, no counter) and before it looks at the connection's
/// controller, so not even an IPv6 connection's persistence template goes out through it.
public enum SyncEncoder {
    /// A header and one IPv4 entry without options (a bare IPv6 entry needs 80).
    public static let minimumMaxLength = 8 + SyncEntry.fixedLength
    /// The largest UDP payload over IPv4 (65535 − 20 − 8), and what the 16-bit `size` can say.
    public static let maximumMaxLength = 65_507
    /// `nr_conns` is one byte: at most 255 entries per message. (The kernel does not check it and
    /// would wrap with a `sync_maxlen` large enough for 256 bare entries.)
    public static let maximumEntries = 255

    /// Replaces `datagram` with one message holding as many of `entries`, from the first, as fit in
    /// `maxLength` bytes (and at most 255), and returns how many it took. The caller sends the
    /// datagram and calls again with the rest. No entries: a header-only message, 0.
    @discardableResult
    public static func encode(_ entries: some Collection<SyncEntry>, syncID: UInt8,
                              maxLength: Int = SyncTransport.defaultMaxLength,
                              into datagram: inout [UInt8]) throws(SyncEncodingError) -> Int {
        guard (minimumMaxLength...maximumMaxLength).contains(maxLength) else {
            throw .maxLengthOutOfRange(maxLength)
        }
        datagram.removeAll(keepingCapacity: true)
        // struct ip_vs_sync_mesg: reserved 0 (v0's nr_conns, so a v0 backup sees no entries),
        // syncid, size, nr_conns, version 1, spare 0. size and nr_conns are filled in at the end.
        datagram.append(contentsOf: [0, syncID, 0, 0, 0, SyncProtocolVersion.v1.rawValue, 0, 0])
        var count = 0
        for entry in entries {
            guard count < maximumEntries else { break }
            try validate(entry)
            let length = entry.wireLength
            let pad = (4 - datagram.count % 4) % 4
            guard datagram.count + pad + length <= maxLength else {
                if count == 0 { throw .entryTooLarge(length: length, maxLength: maxLength) }
                break
            }
            datagram.append(contentsOf: repeatElement(0, count: pad))
            append(entry, length: length, to: &datagram)
            count += 1
        }
        datagram[2] = UInt8(datagram.count >> 8)
        datagram[3] = UInt8(datagram.count & 0xff)
        datagram[4] = UInt8(count)
        return count
    }

    /// Every entry in as few messages as the packing allows, in order.
    public static func encodeAll(_ entries: [SyncEntry], syncID: UInt8,
                                 maxLength: Int = SyncTransport.defaultMaxLength) throws(SyncEncodingError) -> [[UInt8]] {
        var messages: [[UInt8]] = []
        var rest = entries[...]
        repeat {
            var datagram: [UInt8] = []
            let taken = try encode(rest, syncID: syncID, maxLength: maxLength, into: &datagram)
            messages.append(datagram)
            rest = rest.dropFirst(taken)
        } while !rest.isEmpty
        return messages
    }

    private static func validate(_ entry: SyncEntry) throws(SyncEncodingError) {
        guard entry.addressesShareFamily else { throw .mixedAddressFamilies }
        if let data = entry.persistenceEngineData,
           !(1...SyncEntry.maximumPersistenceEngineDataLength).contains(data.count) {
            throw .persistenceEngineOptionLength(option: "PE_DATA", length: data.count)
        }
        if let name = entry.persistenceEngineName,
           !(1...SyncEntry.maximumPersistenceEngineNameLength).contains(name.count) {
            throw .persistenceEngineOptionLength(option: "PE_NAME", length: name.count)
        }
        if entry.persistenceEngineData != nil && entry.persistenceEngineName == nil {
            throw .persistenceEngineDataWithoutName
        }
    }

    /// `struct ip_vs_sync_v4` or `struct ip_vs_sync_v6` in network byte order, then the options in
    /// the kernel's order.
    private static func append(_ entry: SyncEntry, length: Int, to out: inout [UInt8]) {
        func u16(_ v: UInt16) { out.append(UInt8(v >> 8)); out.append(UInt8(v & 0xff)) }
        func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xffff)) }
        func u64(_ v: UInt64) { u32(UInt32(v >> 32)); u32(UInt32(v & 0xffff_ffff)) }
        // validate() has checked the three share a family: the client's says which.
        func address(_ a: IPAddress) {
            switch a {
            case .v4(let v4): u32(v4.rawValue)
            case .v6(let v6): u64(v6.high); u64(v6.low)
            }
        }
        out.append(entry.isIPv6 ? SyncEntryType.ipv6 : SyncEntryType.ipv4)
        out.append(entry.proto.rawValue)
        u16(UInt16(length) & SyncDecoder.entryLengthMask)  // ver_size: version 0, length
        u32(entry.flags.rawValue)
        u16(entry.state.rawValue)
        u16(entry.clientPort)
        u16(entry.virtualPort)
        u16(entry.destinationPort)
        u32(entry.fwmark)
        u32(entry.timeoutSeconds)
        address(entry.clientAddress)
        address(entry.virtualAddress)
        address(entry.destinationAddress)
        if let sequence = entry.sequence {
            out.append(SyncOption.sequenceData)
            out.append(UInt8(SyncSequenceData.wireLength))
            for adjustment in [sequence.inbound, sequence.outbound] {
                u32(adjustment.initialSequence)
                u32(adjustment.delta)
                u32(adjustment.previousDelta)
            }
        }
        if let data = entry.persistenceEngineData {
            out.append(SyncOption.persistenceEngineData)
            out.append(UInt8(data.count))
            out.append(contentsOf: data)
        }
        if let name = entry.persistenceEngineName {
            out.append(SyncOption.persistenceEngineName)
            out.append(UInt8(name.count))
            out.append(contentsOf: name)
        }
    }
}

/// A v1 entry's type byte (`STYPE_INET` 0 and the `STYPE_F_INET6` bit, ip_vs_sync.c).
public enum SyncEntryType {
    public static let ipv4: UInt8 = 0
    /// Bit 0; a backup reads any type with it set as IPv6, and any other non-zero type as an error.
    public static let ipv6: UInt8 = 1
}

/// The v1 entry options' type numbers (`IPVS_OPT_*`, ip_vs_sync.c).
public enum SyncOption {
    public static let sequenceData: UInt8 = 1          // IPVS_OPT_SEQ_DATA
    public static let persistenceEngineData: UInt8 = 2  // IPVS_OPT_PE_DATA
    public static let persistenceEngineName: UInt8 = 3  // IPVS_OPT_PE_NAME
    /// `IPVS_OPT_F_PARAM`: set in an option's type, the option is optional: a backup that does not
    /// know it skips it; without it, an unknown option drops the entry.
    public static let optionalFlag: UInt8 = 0x40
}
