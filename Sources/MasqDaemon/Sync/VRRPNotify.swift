import Foundation
import Logging
import MasqControl
import MasqRules
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One line keepalived writes to its `vrrp_notify_fifo` (vrrp_notify.c `notify_fifo`:
/// `"%s \"%s\" %s %d\n"`): `INSTANCE "VI_1" MASTER 100`, `GROUP "G1" BACKUP 0`.
public struct VRRPNotifyLine: Equatable, Sendable {
    public enum Kind: String, Sendable { case instance = "INSTANCE", group = "GROUP" }

    public var kind: Kind
    public var name: String
    /// MASTER, BACKUP, FAULT, STOP, DELETED, or another word keepalived adds
    /// (MASTER_RX_LOWER_PRI, MASTER_PRIORITY, BACKUP_PRIORITY), kept as written.
    public var state: String
    public var priority: Int

    public init(kind: Kind, name: String, state: String, priority: Int) {
        self.kind = kind
        self.name = name
        self.state = state
        self.priority = priority
    }

    /// Parses one line (without its newline); nil for what is not an instance or group line
    /// (the LVS FIFO's `VS …`/`RS …` lines, garbage).
    public static func parse(_ line: Substring) -> VRRPNotifyLine? {
        guard let space = line.firstIndex(of: " "), let kind = Kind(rawValue: String(line[..<space])) else { return nil }
        var rest = line[line.index(after: space)...]
        guard rest.first == "\"" else { return nil }
        rest = rest.dropFirst()
        // keepalived writes the name as it is; an instance name holds no quote.
        guard let close = rest.firstIndex(of: "\"") else { return nil }
        let name = String(rest[..<close])
        let words = rest[rest.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard !name.isEmpty, words.count == 2, let priority = Int(words[1]),
              words[0].allSatisfy({ $0.isUppercase || $0 == "_" }) else { return nil }
        return VRRPNotifyLine(kind: kind, name: name, state: String(words[0]), priority: priority)
    }

    /// What a sync daemon does for this state: MASTER sends; BACKUP, FAULT, STOP (and DELETED) receive
    /// (keepalived's `ipvs_syncd_master` / `ipvs_syncd_backup`); nil for the others, which change nothing.
    public var role: SyncDaemonRole? {
        switch state {
        case "MASTER": .master
        case "BACKUP", "FAULT", "STOP", "DELETED": .backup
        default: nil
        }
    }

    /// `INSTANCE "VI_1"`.
    public var subject: String { "\(kind.rawValue) \"\(name)\"" }
}

/// Which instance or group of keepalived's masq follows.
public enum VRRPFollowTarget: Equatable, Sendable {
    case instance(String)
    case group(String)
    /// The first name a line carries.
    case first
}

/// Picks the lines of the followed instance or group and turns them into roles.
struct VRRPFollowState: Sendable {
    var target: VRRPFollowTarget
    /// The subject followed, once chosen.
    var followed: (kind: VRRPNotifyLine.Kind, name: String)?
    var state: String?

    init(target: VRRPFollowTarget) {
        self.target = target
        switch target {
        case .instance(let name): followed = (.instance, name)
        case .group(let name): followed = (.group, name)
        case .first: followed = nil
        }
    }

    /// The role this line asks for, or nil when it is about something else or changes nothing.
    mutating func role(for line: VRRPNotifyLine) -> SyncDaemonRole? {
        if followed == nil { followed = (line.kind, line.name) }
        guard let followed, followed.kind == line.kind, followed.name == line.name else { return nil }
        guard let role = line.role else { return nil }
        state = line.state
        return role
    }
}

/// Follows keepalived through its notify FIFO: a thread that opens the FIFO (creating it, mode 0600,
/// if missing), reads lines, and on the followed instance's MASTER stops the backup daemon and starts
/// the master, on BACKUP/FAULT/STOP the reverse, with the sync parameters given. Until the first line
/// the backup runs. When keepalived closes the FIFO (a restart), it is opened again; a line that does
/// not parse is logged and ignored.
final class VRRPFollower: Sendable {
    let path: String
    private let parameters: SyncDaemonConfig
    private let sync: SyncManager
    private let logger: Logger
    private let state: Mutex<VRRPFollowState>
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// The role keepalived's last state asks for while its daemon could not start (the sync
    /// interface down when the links are cut: connect fails with ENETUNREACH), tried again each second.
    private let retry = Mutex<(role: SyncDaemonRole, reason: String, at: Int64)?>(nil)

    init(path: String, target: VRRPFollowTarget, parameters: SyncDaemonConfig, sync: SyncManager, logger: Logger) {
        self.path = path
        self.parameters = parameters
        self.sync = sync
        self.logger = logger
        self.state = Mutex(VRRPFollowState(target: target))
    }

    /// Creates the FIFO if it is missing (and its directory, 0700, as the control socket's: on a fresh
    /// boot /run/masq does not exist yet; a file of another kind there is an error), starts the
    /// backup daemon and the reader thread.
    func start() throws(DaemonError) {
        var st = stat()
        if lstat(path, &st) != 0 {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                         attributes: [.posixPermissions: 0o700])
            }
            guard mkfifo(path, 0o600) == 0 else {
                throw DaemonError("\(path): cannot create the notify FIFO: \(String(cString: strerror(errno)))")
            }
        } else if st.st_mode & S_IFMT != S_IFIFO {
            throw DaemonError("\(path): not a FIFO (keepalived's vrrp_notify_fifo)")
        }
        publish()
        apply(.backup, because: "no keepalived state yet")
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "masq-vrrp-fifo"
        thread.start()
        logger.info("following keepalived", metadata: ["fifo": "\(path)", "target": "\(state.withLock { $0.target })"])
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        finished.wait()
    }

    private func publish() {
        let s = state.withLock { $0 }
        sync.vrrp.withLock {
            $0 = VRRPFollowStatus(fifo: path, followed: s.followed.map { "\($0.kind.rawValue) \"\($0.name)\"" }, state: s.state)
        }
    }

    /// Opened non-blocking, so the thread never sits in `open` waiting for a writer and sees a stop
    /// within 200 ms. Linux reports POLLHUP once a writer has come and gone; the FIFO is then reopened,
    /// and a fresh open with no writer polls quiet (fs/pipe.c `pipe_poll` compares the writer count).
    private func run() {
        var pending: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { chunk.deallocate() }
        while !stopping.load(ordering: .acquiring) {
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else {
                logger.error("cannot open the notify FIFO", metadata: ["fifo": "\(path)", "error": "\(String(cString: strerror(errno)))"])
                usleep(1_000_000)
                continue
            }
            reading: while !stopping.load(ordering: .acquiring) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 200) > 0 else { retryIfDue(); continue }
                let n = read(fd, chunk.baseAddress, chunk.count)
                if n > 0 {
                    pending.append(contentsOf: chunk[0..<n])
                    while let newline = pending.firstIndex(of: 0x0a) {
                        let line = String(decoding: pending[..<newline], as: UTF8.self)
                        pending.removeSubrange(...newline)
                        handle(line)
                    }
                    // keepalived's lines are short: a runaway "line" is dropped, not kept growing.
                    if pending.count > 4096 { pending.removeAll() }
                } else if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
                    break reading  // the writer went: open again for the next one
                }
            }
            close(fd)
            pending.removeAll()
        }
    }

    func handle(_ text: String) {
        guard let line = VRRPNotifyLine.parse(Substring(text)) else {
            logger.warning("notify FIFO: ignoring a line that is not keepalived's", metadata: ["line": "\(text)"])
            return
        }
        let role = state.withLock { $0.role(for: line) }
        publish()
        guard let role else {
            logger.debug("notify FIFO: line ignored", metadata: ["line": "\(text)"])
            return
        }
        apply(role, because: "\(line.subject) \(line.state)")
    }

    /// MASTER: start the master, then stop the backup; otherwise the reverse. The new daemon starts
    /// first, so `masq ready` (keepalived's track script) never sees a moment with no daemon, which
    /// it reports as not ready. The other role stops even when the new one cannot start (a director
    /// that left MASTER must stop sending); that start is tried again each second. A daemon already
    /// in the wanted role is left running (keepalived repeats states on reload).
    private func apply(_ role: SyncDaemonRole, because reason: String) {
        let other: SyncDaemonRole = role == .master ? .backup : .master
        let retrying = retry.withLock { r in
            defer { r = nil }
            return r?.role == role
        }
        if !sync.isRunning(role) {
            var config = parameters
            config.role = role
            do {
                try sync.start(config)
                logger.notice("keepalived: sync daemon is now \(role)", metadata: ["because": "\(reason)"])
            } catch {
                if !retrying {
                    logger.error("keepalived: cannot start the \(role) sync daemon: \(error); trying again each second",
                                 metadata: ["because": "\(reason)"])
                }
                retry.withLock { $0 = (role, reason, monotonicNanoseconds() &+ 1_000_000_000) }
            }
        }
        if sync.isRunning(other) { try? sync.stop(other) }
    }

    /// From the reader thread's idle poll: the start that failed, once its second is up.
    private func retryIfDue() {
        let due = retry.withLock { r -> (role: SyncDaemonRole, reason: String)? in
            guard let pending = r, monotonicNanoseconds() >= pending.at else { return nil }
            return (pending.role, pending.reason)
        }
        if let due { apply(due.role, because: due.reason) }
    }
}
