import Foundation
import Logging
import MasqControl
import MasqCore
import MasqRules
import MasqSync
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a master paces its work, the kernel's sysctls and masq's additions.
public struct SyncTuning: Sendable, Equatable {
    /// `net.ipv4.vs.sync_threshold` = "3 50": which packets of a connection send it.
    public var settings = SyncSettings()
    /// Seconds between two whole-table walks (masq's refresh, so flows idle longer than a backup's
    /// timeout do not expire there); 0: none.
    public var refreshPeriod = 60
    /// Updates the packet path may leave for the sender before it drops (and counts) them.
    public var outboxCapacity = 1 << 16

    public init() {}
}

/// One sync daemon (a master or a backup) and its thread, off the packet path: the packet threads
/// only push updates into the engine's `SyncOutbox` (a master) and never wait for this thread; this
/// thread takes the engine lock only for short holds (a slice of a walk, one received datagram).
///
/// Both roles have the same two sockets (`SyncSockets`): a master sends data and heartbeats and
/// listens for backups' resync requests; a backup receives data and the master's control messages
/// and sends its requests.
final class SyncDaemon: Sendable {
    let config: SyncDaemonConfig
    let interface: SyncInterface
    private let sendSocket: Int32
    private let receiveSocket: Int32
    private let shared: SharedEngine
    private let tuning: SyncTuning
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    let counters = Mutex(SyncCounters())
    /// Backup: the readiness state, read by `masq ready`.
    let readiness = Mutex(BackupReadiness(startedAt: monotonicNanoseconds()))

    /// How long after the last heartbeat a master counts as gone, in nanoseconds.
    static let masterSilence: Int64 = 3_000_000_000
    /// Heartbeats and resync requests, every second.
    static let controlInterval: Int64 = 1_000_000_000
    /// A master drains the outbox at least this often (milliseconds).
    static let drainInterval: Int32 = 10
    /// Entries one walk slice copies under the engine lock.
    static let sliceEntries = 256
    /// Slices a master walks per pass of its loop (between two drains).
    static let slicesPerPass = 8
    /// Distinct resync requests a master keeps for its next walk (a pair has one backup).
    static let maximumPendingRequests = 16

    /// Opens the sockets (typed errors naming the interface); `start` runs the thread.
    init(_ config: SyncDaemonConfig, shared: SharedEngine, tuning: SyncTuning, logger: Logger) throws(SyncSocketError) {
        let interface = try SyncInterface.lookup(config.interface)
        self.interface = interface
        self.config = config.resolved(interfaceMTU: interface.mtu)
        self.shared = shared
        self.tuning = tuning
        self.logger = logger
        sendSocket = try SyncSockets.sender(self.config, on: interface)
        do {
            receiveSocket = try SyncSockets.receiver(self.config, on: interface)
        } catch {
            close(sendSocket)
            throw error
        }
    }

    func start() {
        let thread = Thread { [self] in
            switch config.role {
            case .master: runMaster()
            case .backup: runBackup()
            }
            close(sendSocket)
            close(receiveSocket)
            finished.signal()
        }
        // The kernel's `ipvs-m:<gen>:<id>` / `ipvs-b:…`.
        thread.name = config.role == .master ? "masq-sync-m" : "masq-sync-b"
        thread.start()
        logger.notice("sync thread started", metadata: [
            "state": "\(config.role == .master ? "MASTER" : "BACKUP")", "mcast_ifn": "\(config.interface)",
            "syncid": "\(config.syncID)", "address": "\(interface.address)",
            "group": "\(config.effectiveGroup):\(config.effectivePort)", "maxlen": "\(config.effectiveMaxLength)"])
    }

    /// Stops the thread and waits for it (at most one loop pass, ≤ 100 ms); the sockets close with it.
    func stop() {
        stopping.store(true, ordering: .releasing)
        finished.wait()
        logger.notice("sync thread stopped", metadata: ["state": "\(config.role == .master ? "MASTER" : "BACKUP")"])
    }

    var status: SyncDaemonStatus {
        var s = SyncDaemonStatus(config: config, localAddress: "\(interface.address)", counters: counters.withLock { $0 })
        if config.role == .backup {
            let r = readiness.withLock { $0 }
            let now = monotonicNanoseconds()
            s.masterHeard = r.masterHeard(now: now)
            s.tableComplete = r.tableComplete
        }
        return s
    }

    // MARK: Sending

    /// Sends one datagram (`MSG_DONTWAIT`); a full socket buffer gets one short wait for POLLOUT, then
    /// the datagram is dropped and counted, as the kernel's master drops what it cannot send.
    private func send(_ bytes: UnsafeRawBufferPointer, entries: Int) {
        var n = Glibc.send(sendSocket, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT))
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
            var p = pollfd(fd: sendSocket, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, 5) > 0 { n = Glibc.send(sendSocket, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT)) }
        }
        let sent = n == bytes.count
        counters.withLock { c in
            if sent {
                c.datagramsSent &+= 1
                c.entriesSent &+= UInt64(entries)
                c.lastSent = Date().timeIntervalSince1970
            } else {
                c.sendErrors &+= 1
            }
        }
    }

    private func sendControl(_ message: SyncControlMessage) {
        withUnsafeTemporaryAllocation(byteCount: SyncControlMessage.length, alignment: 4) { buffer in
            message.encode(into: buffer)
            send(UnsafeRawBufferPointer(buffer), entries: 0)
        }
        counters.withLock { $0.controlSent[message.kind.description, default: 0] &+= 1 }
    }

    // MARK: Master

    /// A whole-table walk in progress: where it is, and the requests it answers when done.
    private struct Walk {
        var cursor: UInt32? = 0
        var answers: [UInt32] = []
    }

    private func runMaster() {
        let outbox = SyncOutbox(capacity: tuning.outboxCapacity)
        let settings = tuning.settings
        shared.withLock { state in
            state.engine.syncSettings = settings
            state.engine.syncOutbox = outbox
        }
        defer { shared.withLock { $0.engine.syncOutbox = nil } }
        // Preallocated: the outbox's and the walk's updates, the packer's entries and datagram.
        let updates = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: Self.sliceEntries)
        defer { updates.deallocate() }
        var packer = SyncPacker(syncID: config.syncID, maxLength: config.effectiveMaxLength)
        let receive = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { receive.deallocate() }

        var walk: Walk?
        var pending: [UInt32] = []
        var lastHeartbeat: Int64 = 0
        var nextRefresh = tuning.refreshPeriod > 0 ? monotonicNanoseconds() + Int64(tuning.refreshPeriod) * 1_000_000_000 : Int64.max
        var dropsSeen: UInt64 = 0

        let send: SyncPacker.Send = { bytes, entries in self.send(bytes, entries: entries) }
        func flush() {
            packer.flush(send: send)
            let refused = packer.refused
            if refused > 0 { counters.withLock { $0.rejected["encoding"] = refused } }
        }
        func take(_ count: Int) {
            for i in 0..<count { packer.add(updates[i], send: send) }
        }

        while !stopping.load(ordering: .acquiring) {
            var p = pollfd(fd: receiveSocket, events: Int16(POLLIN), revents: 0)
            // A backup waiting for the table gets it as fast as the link takes it; a refresh walk
            // goes at the drain's pace (2048 entries per 10 ms), so it never bursts on the link.
            let resyncing = walk.map { !$0.answers.isEmpty } ?? false
            if poll(&p, 1, resyncing ? 1 : Self.drainInterval) > 0 {
                drainMasterSocket(receive) { sequence in
                    guard !pending.contains(sequence) && !(walk?.answers.contains(sequence) ?? false) else { return }
                    // Requests are unauthenticated: a flood of forged ones must not grow this list.
                    guard pending.count < Self.maximumPendingRequests else {
                        counters.withLock { $0.rejected[SyncReceiverReason.tooManyRequests, default: 0] &+= 1 }
                        return
                    }
                    pending.append(sequence)
                }
            }
            // What the packet path handed over since the last pass.
            while true {
                let n = outbox.pop(into: updates)
                if n == 0 { break }
                take(n)
            }
            flush()
            let now = monotonicNanoseconds()
            if now - lastHeartbeat >= Self.controlInterval {
                lastHeartbeat = now
                sendControl(SyncControlMessage(.heartbeat, syncID: config.syncID))
                let dropped = outbox.dropped
                if dropped > dropsSeen {
                    logger.warning("sync send queue full: updates dropped", metadata: ["dropped": "\(dropped - dropsSeen)"])
                    counters.withLock { $0.queueDrops = dropped }
                    dropsSeen = dropped
                }
            }
            if walk == nil && !pending.isEmpty {
                walk = Walk(answers: pending)
                pending.removeAll()
                logger.info("sync: sending the whole table (a backup asked)")
            }
            if walk == nil && now >= nextRefresh {
                walk = Walk()
                nextRefresh = now + Int64(tuning.refreshPeriod) * 1_000_000_000
            }
            guard var current = walk else { continue }
            for _ in 0..<Self.slicesPerPass {
                let n = shared.withLock { state in state.engine.collectSyncable(from: &current.cursor, into: updates) }
                take(n)
                if current.cursor == nil { break }
            }
            if current.cursor == nil {
                flush()
                for sequence in current.answers {
                    sendControl(SyncControlMessage(.resyncDone, syncID: config.syncID, sequence: sequence))
                }
                counters.withLock { $0.walks &+= 1 }
                walk = nil
            } else {
                walk = current
            }
        }
    }

    /// A master's socket hears backups' requests (and another master's heartbeats and data, if one
    /// shares the group: its heartbeats are counted, its data left alone).
    private func drainMasterSocket(_ buffer: UnsafeMutableRawBufferPointer, request: (UInt32) -> Void) {
        while true {
            let n = recv(receiveSocket, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            guard n >= 0 else { return }
            let datagram = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            let reading = SyncControlMessage.read(datagram)
            counters.withLock { c in
                c.datagramsReceived &+= 1
                c.lastReceived = Date().timeIntervalSince1970
                switch reading {
                case .message(let m) where config.syncID == 0 || m.syncID == config.syncID:
                    c.controlReceived[m.kind.description, default: 0] &+= 1
                case .message:
                    c.rejected[SyncRejection.syncIDMismatch.rawValue, default: 0] &+= 1
                case .malformed:
                    c.rejected[SyncReceiverReason.malformedControl, default: 0] &+= 1
                case nil:
                    // Another master's data (a director running both daemons hears its peer's):
                    // for its backup, not for this master; counted as received only.
                    break
                }
            }
            if case .message(let m) = reading, m.kind == .resyncRequest, config.syncID == 0 || m.syncID == config.syncID {
                request(m.sequence)
            }
        }
    }

    // MARK: Backup

    private func runBackup() {
        // The kernel's backup reads into a buffer of its sync_maxlen: a longer datagram arrives cut
        // and fails the size check. One byte more tells a cut datagram from one that fits.
        let capacity = config.effectiveMaxLength + 1
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        requestResync(now: monotonicNanoseconds(), newPeriod: true)
        var lastRequest = monotonicNanoseconds()

        while !stopping.load(ordering: .acquiring) {
            var p = pollfd(fd: receiveSocket, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 100) > 0 {
                while true {
                    let n = recv(receiveSocket, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                    guard n >= 0 else { break }
                    receiveDatagram(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), cut: n == capacity)
                }
            }
            // Ask again every second while a master is heard and its table has not all come.
            let now = monotonicNanoseconds()
            let waiting = readiness.withLock { $0.masterHeard(now: now) && !$0.tableComplete }
            if waiting && now - lastRequest >= Self.controlInterval {
                requestResync(now: now, newPeriod: false)
                lastRequest = now
            }
        }
    }

    private func requestResync(now: Int64, newPeriod: Bool) {
        let sequence = readiness.withLock { r -> UInt32 in
            if newPeriod { r.sequence &+= 1 }
            return r.sequence
        }
        sendControl(SyncControlMessage(.resyncRequest, syncID: config.syncID, sequence: sequence))
    }

    /// One datagram (`SyncReceiver`), counted; a master's heartbeat or resync done moves readiness.
    private func receiveDatagram(_ datagram: UnsafeRawBufferPointer, cut: Bool) {
        let receipt = SyncReceiver.receive(datagram, cut: cut, syncID: config.syncID, engine: shared)
        let now = monotonicNanoseconds()
        counters.withLock { $0.record(receipt, at: Date().timeIntervalSince1970) }
        guard let message = receipt.control else { return }
        switch message.kind {
        case .heartbeat:
            if readiness.withLock({ $0.heardHeartbeat(now: now) }) {
                logger.notice("sync: a master is heard: asking for its table, not ready until it has arrived")
                requestResync(now: now, newPeriod: true)
            }
        case .resyncDone:
            if readiness.withLock({ $0.received(done: message.sequence, now: now) }) {
                logger.notice("sync: the master's whole table has arrived: ready to take over")
            }
        case .resyncRequest:
            break  // another backup's; its master answers it
        }
    }
}

/// What a backup knows of its master, for readiness: a backup may take over when no masq master is
/// heard (none for 3 s, and it has listened that long: a director starting up does not take the VIPs
/// in the second before the master's first heartbeat), or when the whole table has arrived since the
/// master was (re)heard.
struct BackupReadiness: Sendable, Equatable {
    /// When the daemon started listening (monotonic ns).
    var startedAt: Int64
    /// The last heartbeat (monotonic ns); nil: none heard yet.
    var lastHeartbeat: Int64?
    /// A `resyncDone` answering `sequence` has arrived since the master was (re)heard.
    var tableComplete = false
    /// The current request's number; a new one each time the master is heard after a silence.
    var sequence = UInt32.random(in: 0...UInt32.max)

    func masterHeard(now: Int64) -> Bool {
        guard let lastHeartbeat else { return false }
        return now - lastHeartbeat <= SyncDaemon.masterSilence
    }

    /// Whether the daemon may take over now.
    func isReady(now: Int64) -> Bool {
        tableComplete || (!masterHeard(now: now) && now - startedAt > SyncDaemon.masterSilence)
    }

    /// A heartbeat; true when it ends a silence (or is the first): the table must come again.
    mutating func heardHeartbeat(now: Int64) -> Bool {
        let again = !masterHeard(now: now)
        lastHeartbeat = now
        if again { tableComplete = false }
        return again
    }

    /// A `resyncDone`; true when it answers the current request and completes the table. It says a
    /// master is here as a heartbeat does (it may come first, answering the request made at start).
    mutating func received(done: UInt32, now: Int64) -> Bool {
        guard done == sequence, !tableComplete else { return false }
        tableComplete = true
        lastHeartbeat = now
        return true
    }
}
