import MasqControl
import MasqCore
import MasqSync

/// A master's packing, without the socket: updates become entries, and entries datagrams of at most
/// `maxLength` bytes (at most 255 entries each), each handed to `send` with its entry count; only
/// `flush` sends a datagram that is not full. Its buffers are allocated once.
struct SyncPacker {
    let syncID: UInt8
    /// At least a header and one entry (`SyncEncoder.minimumMaxLength`): a smaller `--sync-maxlen`
    /// (the kernel would send over-long datagrams then) is raised to it.
    let maxLength: Int
    private var entries: [SyncEntry] = []
    private var datagram: [UInt8] = []
    /// Entries the encoder refused (none: bare entries always fit); counted as `encoding`.
    private(set) var refused: UInt64 = 0

    init(syncID: UInt8, maxLength: Int) {
        self.syncID = syncID
        self.maxLength = max(maxLength, SyncEncoder.minimumMaxLength)
        entries.reserveCapacity(Self.pending)
        datagram.reserveCapacity(self.maxLength)
    }

    /// Entries kept before full datagrams are sent (the rest waits for more, or `flush`).
    static let pending = 1024

    typealias Send = (UnsafeRawBufferPointer, _ entries: Int) -> Void

    mutating func add(_ update: SyncUpdate, send: Send) {
        entries.append(SyncEntry(update))
        if entries.count >= Self.pending { encode(full: true, send) }
    }

    /// Sends everything packed, in as few datagrams as fit.
    mutating func flush(send: Send) {
        encode(full: false, send)
    }

    /// Encodes from the first entry on; with `full`, stops before a datagram that would not be full
    /// (its entries wait for more).
    private mutating func encode(full: Bool, _ send: Send) {
        var sent = 0
        while sent < entries.count {
            let rest = entries[sent...]
            do {
                let taken = try SyncEncoder.encode(rest, syncID: syncID, maxLength: maxLength, into: &datagram)
                guard taken > 0 else {  // an entry no datagram of maxLength holds: refused, not retried
                    refused &+= 1
                    sent += 1
                    continue
                }
                if full && taken == rest.count { break }
                datagram.withUnsafeBytes { send($0, taken) }
                sent += taken
            } catch SyncEncodingError.entryTooLarge(_, _) {
                // The first entry alone does not fit: an IPv6 entry (72 bytes) under a maxLength
                // below 80. That one is refused; the rest still go.
                refused &+= 1
                sent += 1
            } catch {
                refused &+= UInt64(rest.count)
                sent = entries.count
            }
        }
        entries.removeFirst(sent)
    }
}

/// What a backup made of one datagram: the control message it carried (syncid checked), or the
/// entries' outcomes; every refusal by reason.
struct SyncReceipt: Sendable {
    var control: SyncControlMessage?
    /// Entries the datagram announced and the decoder reached (applied or not).
    var entries = 0
    var refused: [String] = []
    var results: [SyncApplyResult] = []
}

/// Rejection labels of the receiver's own (beside `SyncRejection` and `SyncApplyResult`).
enum SyncReceiverReason {
    static let malformedControl = "malformed_control"
    static let persistenceEngine = "persistence_engine"
    static let forwardingMethod = "forwarding_method"
    static let tooLong = "longer_than_maxlen"
    static let tooManyRequests = "too_many_resync_requests"
}

/// A backup's handling of one received datagram, without the socket: a control message is returned
/// for the daemon to act on; sync data is decoded with the kernel backup's checks
/// (`SyncDecoder`, the syncid filter) and its entries applied under one hold of the engine lock
/// (`Engine.applySynced`, which trusts nothing). Nothing in a datagram can make it trap or grow the
/// table past its limit.
enum SyncReceiver {
    /// `now`: the monotonic clock (ns) the engine is brought to before it applies anything.
    static func receive(_ datagram: UnsafeRawBufferPointer, cut: Bool, syncID: UInt8, engine shared: SharedEngine,
                        now: Int64 = monotonicNanoseconds()) -> SyncReceipt {
        var receipt = SyncReceipt()
        // The kernel reads into a buffer of its maxlen: a longer datagram arrives cut, and its size
        // field no longer matches.
        if cut {
            receipt.refused.append(SyncReceiverReason.tooLong)
            return receipt
        }
        switch SyncControlMessage.read(datagram) {
        case .message(let m):
            if syncID == 0 || m.syncID == syncID {
                receipt.control = m
            } else {
                receipt.refused.append(SyncRejection.syncIDMismatch.rawValue)
            }
            return receipt
        case .malformed:
            receipt.refused.append(SyncReceiverReason.malformedControl)
            return receipt
        case nil:
            break
        }
        let decoding = SyncDecoder.decode(datagram, syncID: syncID)
        receipt.entries = decoding.entries.count + decoding.rejectedEntries.count
        for rejection in decoding.rejectedEntries { receipt.refused.append(rejection.reason.rawValue) }
        if let rejection = decoding.datagramRejection { receipt.refused.append(rejection.reason.rawValue) }
        var updates: [SyncUpdate] = []
        updates.reserveCapacity(decoding.entries.count)
        for entry in decoding.entries {
            if entry.persistenceEngineName != nil || entry.persistenceEngineData != nil {
                // masq has no persistence engine; a kernel backup drops an entry naming one it lacks.
                receipt.refused.append(SyncReceiverReason.persistenceEngine)
            } else if entry.flags.forwarding != .masquerade {
                receipt.refused.append(SyncReceiverReason.forwardingMethod)
            } else if let update = entry.update {
                updates.append(update)
            } else {
                receipt.refused.append(SyncApplyResult.badState.rawValue)
            }
        }
        if !updates.isEmpty {
            let batch = updates
            receipt.results = shared.withLock { state in
                // The engine's clock moves with packets and the queue thread's idle tick only: a
                // backup that has just started (or has seen no packet) may still be at 0, and an
                // entry applied then would expire its timeout after boot, long past, at once.
                state.engine.advanceClock(to: now)
                return batch.map { state.engine.applySynced($0) }
            }
        }
        return receipt
    }
}

extension SyncCounters {
    /// Counts one received datagram.
    mutating func record(_ receipt: SyncReceipt, at wall: Double) {
        datagramsReceived &+= 1
        lastReceived = wall
        entriesReceived &+= UInt64(receipt.entries)
        if let control = receipt.control { controlReceived[control.kind.description, default: 0] &+= 1 }
        for reason in receipt.refused { rejected[reason, default: 0] &+= 1 }
        for result in receipt.results {
            switch result {
            case .created, .updated, .replaced, .staleIgnored:
                applied[result.rawValue, default: 0] &+= 1
            default:
                rejected[result.rawValue, default: 0] &+= 1
            }
        }
    }
}
