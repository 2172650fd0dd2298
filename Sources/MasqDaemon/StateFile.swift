import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where `masq run` keeps its connection table between runs (issue 14): a file the next masq on the
/// same queues in the same network namespace maps and adopts, so a restart, an upgrade or a `kill -9`
/// loses no flow. `MasqCore.TableMemory` owns the file's contents; this is the daemon's side: which
/// file, and its directory.
public enum StateFileChoice: Equatable, Sendable {
    /// `/dev/shm/masq-net<INODE>-<COOKIE>-q<QUEUES>.table` (`defaultStateFilePath`).
    case automatic
    /// `--state-dir DIR`: the default name, in DIR (masq.service: /run/masq, run-masq.mount's tmpfs
    /// with huge pages).
    case automaticIn(String)
    /// `--state-file PATH`.
    case path(String)
    /// `--no-state-file`: private memory, as before 0.13; every restart loses the table.
    case none

    /// From `masq run`'s options; `--no-state-file`, `--state-file` and `--state-dir` exclude each other.
    public init(path: String?, fresh: Bool, none: Bool, directory: String? = nil) throws(DaemonError) {
        if let directory {
            if none || path != nil { throw DaemonError("--state-dir names the default file's directory: it goes with neither --state-file nor --no-state-file") }
            guard !directory.isEmpty else { throw DaemonError("--state-dir: an empty directory name") }
            self = .automaticIn(directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory)
        } else if none {
            if path != nil { throw DaemonError("--no-state-file and --state-file exclude each other") }
            if fresh { throw DaemonError("--fresh-state replaces a state file's table: it means nothing with --no-state-file") }
            self = .none
        } else if let path {
            guard !path.isEmpty, !path.hasSuffix("/") else { throw DaemonError("--state-file: '\(path)' is not a file path") }
            self = .path(path)
        } else {
            self = .automatic
        }
    }
}

/// What tells one network namespace from another for as long as the machine runs.
///
/// The inode of `/proc/self/ns/net` alone is not enough: nsfs numbers come from the kernel's
/// `proc_inum` IDA (fs/proc/generic.c), which hands out the lowest free number, so a namespace created
/// after another was deleted often gets its number again (`ip netns add; ip netns del; ip netns add`
/// shows it). A masq started in the new namespace would then adopt the dead namespace's table. The
/// namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14, net/core/net_namespace.c) is a 64-bit counter
/// never reused until a reboot (and a reboot replaces the table anyway: its header holds the boot id),
/// so it goes into the name too; the inode stays first, for the shell (`stat -Lc %i /proc/self/ns/net`)
/// to find the file with a glob.
public struct NetworkNamespaceIdentity: Equatable, Sendable {
    public var inode: UInt64
    /// nil on a kernel before 5.14: the name then carries the inode alone.
    public var cookie: UInt64?

    public init(inode: UInt64, cookie: UInt64?) {
        self.inode = inode
        self.cookie = cookie
    }

    /// The calling thread's network namespace.
    public static func current() throws(DaemonError) -> NetworkNamespaceIdentity {
        var info = stat()
        guard stat("/proc/self/ns/net", &info) == 0 else {
            throw DaemonError("/proc/self/ns/net: cannot stat (\(String(cString: strerror(errno)))): is /proc mounted? Give --state-file PATH")
        }
        return NetworkNamespaceIdentity(inode: UInt64(info.st_ino), cookie: namespaceCookie())
    }

    /// `getsockopt(SO_NETNS_COOKIE)` on a throwaway socket of this namespace.
    private static func namespaceCookie() -> UInt64? {
        let soNetnsCookie: Int32 = 71  // include/uapi/asm-generic/socket.h; Glibc's headers may predate it
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        guard getsockopt(fd, SOL_SOCKET, soNetnsCookie, &cookie, &length) == 0,
              length == socklen_t(MemoryLayout<UInt64>.size) else { return nil }
        return cookie
    }
}

/// The state file's directory when none is given: tmpfs, so the table costs the pages it uses and
/// nothing is written to a disk.
public let defaultStateDirectory = "/dev/shm"

/// The default state file of `queue` in `namespace`: the same command line in the same network
/// namespace finds its table; another queue set or another namespace gets its own.
/// `/dev/shm/masq-net4026532177-53438-q0.table`, `…-q0-3.table` for `--queues 0:3`.
public func defaultStateFilePath(namespace: NetworkNamespaceIdentity, queue: QueueSelection,
                                 directory: String = defaultStateDirectory) -> String {
    let queues: String
    switch queue {
    case .single(let q): queues = "\(q)"
    case .balance(let a, let b), .cpuFanout(let a, let b): queues = "\(a)-\(b)"
    }
    let net = namespace.cookie.map { "\(namespace.inode)-\($0)" } ?? "\(namespace.inode)"
    return "\(directory)/masq-net\(net)-q\(queues).table"
}

/// The file `choice` names for `queue` (nil: private memory).
public func stateFilePath(_ choice: StateFileChoice, queue: QueueSelection) throws(DaemonError) -> String? {
    switch choice {
    case .none: nil
    case .path(let path): path
    case .automatic: defaultStateFilePath(namespace: try .current(), queue: queue)
    case .automaticIn(let directory): defaultStateFilePath(namespace: try .current(), queue: queue, directory: directory)
    }
}

/// Capacity from which a table on 4 KiB pages costs the packet path measurably: the indexes and slab
/// of 128 Ki entries span about 16 MiB, past what the TLB covers in small pages (masq-bench, 2026-12:
/// 0.89x the private-memory rate with 100,000 flows in a 1 Mi table on /dev/shm, 0.97x on a tmpfs
/// with huge pages, 1.00x with 10,000 flows).
public let hugePagesNoteCapacity = 1 << 17

/// A notice when the state file's tmpfs hands out only 4 KiB pages (/dev/shm's default: Debian's
/// `shmem_enabled` is never, and /dev/shm is mounted without `huge=`) and the table is large enough
/// for that to cost; nil otherwise, or when the mount cannot be told from /proc/self/mountinfo.
public func hugePagesNote(statePath: String, capacity: Int, mountInfo: String? = nil,
                          shmemEnabled: String? = nil) -> String? {
    guard capacity >= hugePagesNoteCapacity else { return nil }
    guard let info = mountInfo ?? (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) else { return nil }
    let directory = (statePath as NSString).deletingLastPathComponent
    // mountinfo(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    var best: (point: String, type: String, superOptions: String)?
    for line in info.split(separator: "\n") {
        let fields = line.split(separator: " ").map(String.init)
        guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash + 3 < fields.count else { continue }
        let point = fields[4].replacingOccurrences(of: "\\040", with: " ")
        let inside = directory == point || directory.hasPrefix(point == "/" ? "/" : point + "/")
        if inside && point.count >= (best?.point.count ?? -1) { best = (point, fields[dash + 1], fields[dash + 3]) }
    }
    guard let mount = best, mount.type == "tmpfs" else { return nil }
    let huge = mount.superOptions.split(separator: ",").first { $0.hasPrefix("huge=") }.map { String($0.dropFirst(5)) }
    if let huge, huge != "never", huge != "deny" { return nil }
    let enabled = shmemEnabled ?? (try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/shmem_enabled", encoding: .utf8)) ?? ""
    if enabled.contains("[force]") { return nil }
    return "the state file's tmpfs (\(mount.point)) gives the table 4 KiB pages: with \(capacity) entries the packet path pays TLB misses "
        + "private memory's huge pages avoid (about 10% of the established rate with 100,000 flows in masq-bench); mount a tmpfs "
        + "with huge=within_size for it (dist/systemd/run-masq.mount does, at /run/masq) and give --state-dir there"
}

/// Makes sure the state file's directory exists: `/dev/shm` must be there already (a system without
/// it is told so); any other directory is created if missing, mode 0700 (the file holds every
/// client's address), with its missing parents.
public func prepareStateFileDirectory(for path: String) throws(DaemonError) {
    let parent = (path as NSString).deletingLastPathComponent
    let directory = parent.isEmpty ? "." : parent
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
        guard isDirectory.boolValue else { throw DaemonError("\(path): \(directory) is not a directory") }
        return
    }
    if directory == defaultStateDirectory {
        throw DaemonError("\(path): \(defaultStateDirectory) does not exist (no tmpfs for POSIX shared memory here): give --state-file PATH elsewhere, or --no-state-file")
    }
    do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    } catch {
        throw DaemonError("\(path): cannot create its directory \(directory): \(error.localizedDescription)")
    }
}

/// The state file as the metrics and the logs see it (in `EngineState`, under the engine lock).
public struct TableFileFigures: Sendable {
    /// nil: private memory (`--no-state-file`).
    public var path: String?
    /// The file's generation: 1 for a new table, one more at each adoption.
    public var generation: UInt64 = 0
    /// Connections and templates the table held when this masq adopted it (0: a new table).
    public var adoptedConnections = 0
    /// The previous masq's last batch (CLOCK_MONOTONIC ns), until this masq's first batch after the
    /// adoption measures the gap from it.
    public var awaitingFirstPacketSince: Int64?
    /// That gap: the previous masq's last batch to this one's first (nil until measured).
    public var restartGapNanoseconds: Int64?

    public init(path: String?) { self.path = path }

    /// At a batch's time `now`, under the lock: the gap if this is the first batch since the adoption.
    mutating func firstBatchGap(at now: Int64) -> Int64? {
        guard let since = awaitingFirstPacketSince else { return nil }
        awaitingFirstPacketSince = nil
        let gap = max(0, now - since)
        restartGapNanoseconds = gap
        return gap
    }
}
