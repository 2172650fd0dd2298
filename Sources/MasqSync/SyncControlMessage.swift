/// masq's own sync messages, which the kernel's protocol lacks (it has no ack, no way to ask for the
/// table, reference §1.1): a master's heartbeat, a backup's request for the whole table and the
/// master's word that it has sent it.
///
/// Each is a valid version 1 datagram with no entries, which every IPVS backup accepts and ignores
/// (`ip_vs_process_message` checks `size` against the received length, then loops `nr_conns` = 0
/// times and never looks past the header), followed by masq's payload:
///
/// | off | field |
/// |---|---|
/// | 0 | v1 header: reserved 0, syncid, be16 size = 20, nr_conns 0, version 1, spare 0 |
/// | 8 | "MASQ" |
/// | 12 | u8 kind (`SyncControlKind`) |
/// | 13 | u8 flags (0) |
/// | 14 | be16 reserved (0) |
/// | 16 | be32 sequence |
///
/// The sequence of a `resyncRequest` names it; the `resyncDone` that answers it carries the same
/// number, so a backup knows the walk it waits for is the one that began after it asked.
public struct SyncControlMessage: Hashable, Sendable {
    public var kind: SyncControlKind
    public var syncID: UInt8
    public var sequence: UInt32
    public var flags: UInt8

    public init(_ kind: SyncControlKind, syncID: UInt8, sequence: UInt32 = 0, flags: UInt8 = 0) {
        self.kind = kind
        self.syncID = syncID
        self.sequence = sequence
        self.flags = flags
    }

    /// The whole datagram: the 8-byte header and masq's 12 bytes.
    public static let length = 20
    /// "MASQ", after the header.
    public static let magic: [UInt8] = Array("MASQ".utf8)

    /// Writes the datagram into `buffer` (at least `length` bytes); returns `length`.
    @discardableResult
    public func encode(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        precondition(buffer.count >= Self.length)
        let bytes: [UInt8] = [
            0, syncID, 0, UInt8(Self.length), 0, SyncProtocolVersion.v1.rawValue, 0, 0,
        ]
        for (i, b) in bytes.enumerated() { buffer[i] = b }
        for (i, b) in Self.magic.enumerated() { buffer[8 + i] = b }
        buffer[12] = kind.rawValue
        buffer[13] = flags
        buffer[14] = 0
        buffer[15] = 0
        buffer[16] = UInt8(sequence >> 24)
        buffer[17] = UInt8(sequence >> 16 & 0xff)
        buffer[18] = UInt8(sequence >> 8 & 0xff)
        buffer[19] = UInt8(sequence & 0xff)
        return Self.length
    }

    /// The datagram as bytes.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.length)
        out.withUnsafeMutableBytes { _ = encode(into: $0) }
        return out
    }

    /// What a received datagram is to masq: a control message, or not one (nil: sync data for the
    /// decoder, or garbage it will name). A datagram with masq's magic but an unknown kind or a
    /// non-zero reserved field is `.malformed`, counted and ignored.
    public enum Reading: Hashable, Sendable {
        case message(SyncControlMessage)
        case malformed
    }

    /// Reads `datagram` as a control message if it is one: exactly `length` bytes, a v1 header with
    /// no entries and size 20, and the magic. The syncid is not checked here (the caller filters as
    /// for sync data).
    public static func read(_ datagram: UnsafeRawBufferPointer) -> Reading? {
        guard datagram.count == length, datagram[0] == 0, datagram[2] == 0, Int(datagram[3]) == length,
              datagram[4] == 0, datagram[5] == SyncProtocolVersion.v1.rawValue, datagram[6] == 0, datagram[7] == 0,
              datagram[8] == magic[0], datagram[9] == magic[1], datagram[10] == magic[2], datagram[11] == magic[3]
        else { return nil }
        guard let kind = SyncControlKind(rawValue: datagram[12]), datagram[14] == 0, datagram[15] == 0 else {
            return .malformed
        }
        let sequence = UInt32(datagram[16]) << 24 | UInt32(datagram[17]) << 16 | UInt32(datagram[18]) << 8
            | UInt32(datagram[19])
        return .message(SyncControlMessage(kind, syncID: datagram[1], sequence: sequence, flags: datagram[13]))
    }

    public static func read(_ datagram: [UInt8]) -> Reading? {
        datagram.withUnsafeBytes { read($0) }
    }
}

/// The kinds of masq's control messages.
public enum SyncControlKind: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Master, every second: "a masq master is here". A backup that hears one after a silence asks
    /// for the table and is not ready to take over until it has it.
    case heartbeat = 1
    /// Backup, on start and after hearing a master again, every second until answered: send me the
    /// whole table. The sequence names the request.
    case resyncRequest = 2
    /// Master, after the last datagram of a whole-table walk that began after the request: the
    /// sequence of the request it answers.
    case resyncDone = 3

    public var description: String {
        switch self {
        case .heartbeat: "heartbeat"
        case .resyncRequest: "resync_request"
        case .resyncDone: "resync_done"
        }
    }
}
