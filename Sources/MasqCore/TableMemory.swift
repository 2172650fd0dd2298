import CMasqShims
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a state file cannot be used at all (it could not be created, opened, locked, sized or mapped),
/// or is in use by another masq. A file that merely does not check out is not an error: it is
/// replaced by an empty table and the reason is in `TableMemory.replacedReason`.
public struct TableMemoryError: Error, CustomStringConvertible {
    public var description: String
}

/// The connection table's memory: one region holding everything a flow needs — the slab of
/// connections, the flow index, the template index, the timing wheel's heads, the free-slot stack, the
/// service and real-server registry (ids, connection counts, traffic counters) and the table's live
/// counters — laid out from the capacity by one function (`TableLayout`).
///
/// Shared mode maps a named file (`MAP_SHARED`, by default under /dev/shm) so that the next masq, after
/// a restart, an upgrade or a `kill -9`, validates the header and adopts the table in O(registry)
/// without walking it: every store the packet path makes lands in the file's pages, which outlive the
/// process. Private mode (`anonymous`) is the same layout in anonymous memory (replay, tests, the
/// bench's baseline, `--no-state-file`). Either way the kernel hands out zeroed pages as they are
/// first touched: residency follows the flows held, and `MADV_HUGEPAGE` lets 2 MiB pages cut the TLB
/// misses of random lookups in a big table.
///
/// Nothing read from a file is trusted: the header is checksummed and compared with what this build
/// computes, the live counters are bounds-checked at adoption, and every index the table follows
/// from the slab is checked where it is followed (see `ConnectionTable`).
public final class TableMemory {
    /// The layout this build reads; bump on any change to the header, the records or `Connection`
    /// (the fingerprint catches a forgotten bump for the structs it hashes).
    static let layoutVersion: UInt32 = 3
    static let magic: UInt64 = 0x0042_4154_5153_414D  // "MASQTAB\0" little-endian
    /// Records per registry (services, real servers): ids stay below it.
    public static let registryCapacity = 1 << 16
    static let headerPageSize = 4096
    static let liveOffset = 2048
    static let regionAlignment = 2 << 20
    /// tmpfs (`TMPFS_MAGIC`, linux/magic.h): its pages are the file, no msync needed.
    private static let tmpfsMagic = 0x0102_1994

    /// nil: anonymous.
    public let path: String?
    /// The contents came from an earlier masq (the header checked out and nothing forced a fresh table).
    public private(set) var isAdopted = false
    /// The earlier masq marked the table clean at exit (`Engine.markCleanShutdown`): no repair or
    /// recount pass is needed.
    public private(set) var wasCleanShutdown = false
    /// Why the file's contents were replaced by an empty table; nil when adopted or no file existed.
    public private(set) var replacedReason: String?
    /// Set when an adopted file's capacity differs from the one asked for: the file's is kept.
    public private(set) var capacityNote: String?
    /// Set when the file's filesystem has less free space than the table could still take (tmpfs
    /// allocates at first touch: a full one means SIGBUS later); the daemon logs it. nil: room enough.
    public private(set) var spaceNote: String?
    public private(set) var generation: UInt64 = 1
    public private(set) var previousOwnerPID: Int32?
    /// The monotonic time (CLOCK_MONOTONIC ns) of the last batch the previous owner handled, if any.
    public private(set) var previousActivity: Int64?

    private(set) var layout: TableLayout
    private(set) var base: UnsafeMutableRawPointer
    private let fd: Int32
    private let onTmpfs: Bool
    private let requestedCapacity: Int

    public var capacity: Int { layout.capacity }
    public var fileSize: Int { layout.totalSize }
    var registryCapacity: Int { layout.registryCapacity }

    private init(path: String?, fd: Int32, onTmpfs: Bool, layout: TableLayout, base: UnsafeMutableRawPointer,
                 requestedCapacity: Int) {
        self.path = path
        self.fd = fd
        self.onTmpfs = onTmpfs
        self.layout = layout
        self.base = base
        self.requestedCapacity = requestedCapacity
    }

    deinit {
        munmap(base, layout.totalSize)
        if fd >= 0 { close(fd) }  // drops the flock
    }

    /// Private anonymous memory, same layout (replay, tests, bench baseline, `--no-state-file`).
    public static func anonymous(capacity: Int) -> TableMemory {
        anonymous(capacity: capacity, registryCapacity: registryCapacity)
    }

    /// `registryCapacity` below the default only for tests of a full registry.
    static func anonymous(capacity: Int, registryCapacity: Int) -> TableMemory {
        let layout = TableLayout(capacity: capacity, registryCapacity: registryCapacity)
        let p = mmap(nil, layout.totalSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else {
            fatalError("masq: cannot reserve \(layout.totalSize) bytes for the connection table (errno \(errno))")
        }
        adviseHugePages(p, layout)
        let memory = TableMemory(path: nil, fd: -1, onTmpfs: true, layout: layout, base: p, requestedCapacity: capacity)
        memory.writeHeader(seeds: (UInt64.random(in: 1...UInt64.max), UInt64.random(in: 1...UInt64.max)), created: true)
        return memory
    }

    /// Opens (or creates, 0600) the state file, takes an exclusive non-blocking flock on it (a second
    /// masq on the same file: "…: in use by another masq (pid N)"), and adopts its contents when the
    /// header checks out; otherwise (or with `fresh`) replaces them with an empty table of `capacity`
    /// and says why in `replacedReason`. Throws only when the file cannot be used at all.
    public static func shared(path: String, capacity: Int, fresh: Bool = false) throws(TableMemoryError) -> TableMemory {
        try shared(path: path, capacity: capacity, registryCapacity: registryCapacity, fresh: fresh)
    }

    static func shared(path: String, capacity: Int, registryCapacity: Int, fresh: Bool) throws(TableMemoryError) -> TableMemory {
        guard capacity > 0 && capacity <= ConnectionTable.maximumCapacity else {
            throw TableMemoryError(description: "\(path): capacity \(capacity) out of range")
        }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let code = errno
            if code == EACCES, let hint = ownershipHint(path) { throw TableMemoryError(description: hint) }
            throw failure(path, "cannot open", code)
        }
        var ok = false
        defer { if !ok { close(fd) } }
        // A process masq just spawned (iptables) holds a copy of the descriptor until its exec closes
        // it, and the lock with it: a lock that is busy is asked again for up to 200 ms.
        var attempts = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK && attempts < 20 {
            attempts += 1
            usleep(10_000)
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EWOULDBLOCK {
                let pid = readHeader(fd: fd).map { " (pid \($0.ownerPID))" } ?? ""
                throw TableMemoryError(description: "\(path): in use by another masq\(pid)")
            }
            throw failure(path, "cannot lock", code)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure(path, "cannot stat") }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw TableMemoryError(description: "\(path): not a regular file")
        }
        if let problem = ownershipProblem(path, st) { throw TableMemoryError(description: problem) }
        let onTmpfs = Int(masq_filesystem_type(fd)) == tmpfsMagic
        let existingSize = Int(st.st_size)

        var reason: String? = fresh && existingSize > 0 ? "--fresh-state" : nil
        var adoptLayout: TableLayout?
        if !fresh && existingSize > 0 {
            switch validate(fd: fd, size: existingSize) {
            case .success(let l): adoptLayout = l
            case .failure(let why): reason = why.description
            }
        }
        let layout = adoptLayout ?? TableLayout(capacity: capacity, registryCapacity: registryCapacity)
        if adoptLayout == nil {
            // Fresh: drop every old page (zeroes), then size the file; sparse in tmpfs.
            guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(layout.totalSize)) == 0 else {
                throw failure(path, "cannot size to \(layout.totalSize) bytes")
            }
        }
        guard let base = mapShared(fd: fd, layout: layout) else {
            throw failure(path, "cannot map \(layout.totalSize) bytes")
        }
        let memory = TableMemory(path: path, fd: fd, onTmpfs: onTmpfs, layout: layout, base: base,
                                 requestedCapacity: capacity)
        ok = true
        if adoptLayout != nil, let why = memory.validateLive() {
            reason = why
            memory.replace(reason: why)  // remaps at the requested capacity
        } else if adoptLayout != nil {
            memory.adopt()
        } else {
            memory.replacedReason = reason
            memory.writeHeader(seeds: (UInt64.random(in: 1...UInt64.max), UInt64.random(in: 1...UInt64.max)), created: true)
        }
        memory.spaceNote = spaceNote(fd: fd, path: path, fileSize: memory.fileSize)
        if memory.isAdopted && layout.capacity != capacity {
            memory.capacityNote = "capacity \(layout.capacity) of the state file kept; --max-flows \(capacity) "
                + "applies from the next fresh start (--fresh-state)"
        }
        return memory
    }

    /// A state file another user could have written, or one reachable by another name, is never adopted:
    /// its slab is followed by the packet path and its records name where traffic goes. It must be
    /// masq's own (`st_uid == geteuid()`), have one link (not a hard link planted to a file of someone
    /// else's) and no group or other permission bits.
    static func ownershipProblem(_ path: String, _ st: stat) -> String? {
        let me = geteuid()
        if st.st_uid != me {
            return "\(path): owned by uid \(st.st_uid), not by masq (uid \(me)): remove it"
        }
        if st.st_nlink != 1 {
            return "\(path): has \(st.st_nlink) links (another name reaches the same file): remove it"
        }
        if st.st_mode & 0o077 != 0 {
            let mode = String(st.st_mode & 0o777, radix: 8)
            return "\(path): mode \(mode) lets other users read or write it (masq creates it 0600): remove it"
        }
        return nil
    }

    /// EACCES opening an existing file even as root: in a sticky directory (/dev/shm, /tmp) with
    /// `fs.protected_regular`, the kernel refuses O_CREAT on a file another user owns (fs/namei.c
    /// `may_create_in_sticky`). Says whose it is and what to do; nil when the file is not there.
    private static func ownershipHint(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return ownershipProblem(path, st).map { "\($0) (refused by the kernel: fs.protected_regular in a sticky directory)" }
    }

    /// tmpfs allocates a page at its first touch: a full /dev/shm then kills masq with SIGBUS. Not a
    /// refusal (the table may never fill), a warning for the daemon to log when the free space plus
    /// what the file already holds is below its size.
    private static func spaceNote(fd: Int32, path: String, fileSize: Int) -> String? {
        var vfs = statvfs()
        var st = stat()
        guard fstatvfs(fd, &vfs) == 0, fstat(fd, &st) == 0 else { return nil }
        return spaceNote(path: path, free: Int(vfs.f_bavail) &* Int(vfs.f_frsize), held: Int(st.st_blocks) &* 512,
                         fileSize: fileSize)
    }

    static func spaceNote(path: String, free: Int, held: Int, fileSize: Int) -> String? {
        guard free &+ held < fileSize else { return nil }
        var directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if directory.isEmpty { directory = path.hasPrefix("/") ? "/" : "." }
        let mib = 1 << 20
        return "\(directory) has \(free / mib) MiB free; a full table needs \((fileSize - held + mib - 1) / mib) MiB more "
            + "(\((fileSize + mib - 1) / mib) MiB in all): masq dies of SIGBUS if it fills; enlarge \(directory) or lower --max-flows"
    }

    private static func failure(_ path: String, _ what: String, _ code: Int32 = errno) -> TableMemoryError {
        TableMemoryError(description: "\(path): \(what): \(String(cString: strerror(code))) (errno \(code))")
    }

    private static func mapShared(fd: Int32, layout: TableLayout) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, layout.totalSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { return nil }
        adviseHugePages(p, layout)  // harmless where shmem THP is off
        return p
    }

    /// Huge pages for the regions looked up at random (the indexes and the slab: fewer TLB misses),
    /// small ones for the rest (header, wheel, registry, free stack), which are touched a little at a
    /// time: a first write there zeroes 4 KiB, not 2 MiB. Advice only: without THP, 4 KiB pages.
    private static func adviseHugePages(_ p: UnsafeMutableRawPointer, _ layout: TableLayout) {
        _ = madvise(p + layout.templateIndexOffset, layout.totalSize - layout.templateIndexOffset, MADV_HUGEPAGE)
        _ = madvise(p, layout.templateIndexOffset, MADV_NOHUGEPAGE)
    }

    // MARK: Header

    static func readHeader(fd: Int32) -> TableHeader? {
        var header = TableHeader()
        let n = withUnsafeMutableBytes(of: &header) { pread(fd, $0.baseAddress, $0.count, 0) }
        return n == MemoryLayout<TableHeader>.size ? header : nil
    }

    /// The header's checks, in the order a human would want the first failure named.
    private static func validate(fd: Int32, size: Int) -> Result<TableLayout, TableMemoryError> {
        func fail(_ s: String) -> Result<TableLayout, TableMemoryError> { .failure(TableMemoryError(description: s)) }
        guard size >= headerPageSize, let h = readHeader(fd: fd) else {
            return fail("truncated: \(size) bytes, smaller than the header")
        }
        guard h.magic == magic else { return fail("bad magic") }
        guard h.layoutVersion == layoutVersion else {
            return fail("layout version \(h.layoutVersion), this masq reads \(layoutVersion)")
        }
        guard h.checksum == h.computedChecksum else { return fail("header checksum mismatch") }
        guard h.fingerprint == TableLayout.fingerprint else {
            return fail("layout fingerprint differs (a build with another connection layout wrote it)")
        }
        guard h.capacity > 0 && h.capacity <= UInt64(ConnectionTable.maximumCapacity),
              h.registryCapacity > 0 && h.registryCapacity <= UInt64(registryCapacity) else {
            return fail("capacity \(h.capacity) or registry \(h.registryCapacity) out of range")
        }
        let layout = TableLayout(capacity: Int(h.capacity), registryCapacity: Int(h.registryCapacity))
        guard h.matches(layout) else { return fail("region offsets do not match capacity \(h.capacity)") }
        guard size >= layout.totalSize else { return fail("truncated: \(size) of \(layout.totalSize) bytes") }
        guard size == layout.totalSize else { return fail("size \(size), expected \(layout.totalSize) bytes") }
        guard h.clockID == UInt32(CLOCK_MONOTONIC) else { return fail("clock id \(h.clockID) is not CLOCK_MONOTONIC") }
        // Without /proc both sides read (0, 0), as `writeHeader` stored it.
        let boot = bootID() ?? (0, 0)
        guard h.bootID0 == boot.0 && h.bootID1 == boot.1 else {
            return fail("written before the last boot (boot id differs)")
        }
        return .success(layout)
    }

    var header: UnsafeMutablePointer<TableHeader> { base.assumingMemoryBound(to: TableHeader.self) }
    var live: UnsafeMutablePointer<TableLive> { (base + Self.liveOffset).assumingMemoryBound(to: TableLive.self) }

    private func writeHeader(seeds: (UInt64, UInt64), created: Bool) {
        var h = created ? TableHeader() : header.pointee
        if created {
            h.magic = Self.magic
            h.layoutVersion = Self.layoutVersion
            h.fingerprint = TableLayout.fingerprint
            h.set(layout)
            h.flowSeed = seeds.0
            h.templateSeed = seeds.1
            let boot = Self.bootID() ?? (0, 0)
            h.bootID0 = boot.0
            h.bootID1 = boot.1
            h.clockID = UInt32(CLOCK_MONOTONIC)
            h.clockBase = Self.clock(CLOCK_REALTIME) - Self.clock(CLOCK_MONOTONIC)
            h.createdAt = Self.clock(CLOCK_REALTIME)
            h.generation = 1
        } else {
            h.generation &+= 1
        }
        h.ownerPID = getpid()
        h.checksum = h.computedChecksum
        header.pointee = h
        generation = h.generation
    }

    /// The header checked out: check the live block, then take the table over.
    private func validateLive() -> String? {
        let l = live.pointee
        let used = l.slotsUsed
        guard used >= 0 && used <= capacity else { return "live block: slotsUsed \(used) beyond capacity \(capacity)" }
        guard l.connectionCount >= 0, l.templateCount >= 0, l.connectionCount <= used, l.templateCount <= used - l.connectionCount else {
            return "live block: counts \(l.connectionCount)+\(l.templateCount) beyond slotsUsed \(used)"
        }
        guard l.freeCount >= 0 && l.freeCount <= used else { return "live block: freeCount \(l.freeCount) beyond slotsUsed \(used)" }
        guard l.flowIndexCount >= 0 && l.flowIndexCount <= 2 * capacity,
              l.templateIndexCount >= 0 && l.templateIndexCount <= capacity else {
            return "live block: index counts \(l.flowIndexCount)/\(l.templateIndexCount) out of range"
        }
        guard let op = TableJournal.Op(rawValue: l.journalOp) else { return "live block: journal op \(l.journalOp) unknown" }
        guard op == .none || Int(l.journalSlot) < used else {
            return "live block: journal slot \(l.journalSlot) beyond slotsUsed \(used)"
        }
        return nil
    }

    private func adopt() {
        isAdopted = true
        wasCleanShutdown = live.pointee.cleanShutdown != 0
        let previous = header.pointee.ownerPID
        previousOwnerPID = previous > 0 ? previous : nil
        previousActivity = live.pointee.lastActivity > 0 ? live.pointee.lastActivity : nil
        writeHeader(seeds: (0, 0), created: false)
        live.pointee.cleanShutdown = 0  // dirty before the first mutation
    }

    /// Replaces the contents with an empty table of the capacity asked for (the file's were found
    /// unusable after the header checked out: its live block is out of range, a damage no repair can
    /// bound; a bad slot is only scrubbed, see `ConnectionTable.repairAfterCrash`).
    func replace(reason: String) {
        isAdopted = false
        wasCleanShutdown = false
        previousOwnerPID = nil
        previousActivity = nil
        capacityNote = nil
        replacedReason = reason
        let fresh = TableLayout(capacity: requestedCapacity, registryCapacity: layout.registryCapacity)
        if fd >= 0 {
            munmap(base, layout.totalSize)
            layout = fresh
            // On failure to resize, keep going in anonymous pages: serving beats crashing.
            if ftruncate(fd, 0) == 0, ftruncate(fd, off_t(fresh.totalSize)) == 0, let p = Self.mapShared(fd: fd, layout: fresh) {
                base = p
            } else if let p = mmap(nil, fresh.totalSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                      p != MAP_FAILED {
                Self.adviseHugePages(p, fresh)
                base = p
            } else {
                fatalError("masq: cannot reserve \(fresh.totalSize) bytes for the connection table (errno \(errno))")
            }
        } else {
            _ = madvise(base, layout.totalSize, MADV_DONTNEED)  // anonymous: zero pages again
        }
        writeHeader(seeds: (UInt64.random(in: 1...UInt64.max), UInt64.random(in: 1...UInt64.max)), created: true)
    }

    // MARK: The owner's marks

    /// One store per batch: when the last one was handled (CLOCK_MONOTONIC ns).
    @inline(__always) func noteActivity(_ now: Int64) { live.pointee.lastActivity = now }

    /// Every mutation is done: the next masq needs no repair; now (CLOCK_MONOTONIC ns) becomes the last
    /// activity, so the next masq's gap starts at the exit. msync for a file not on tmpfs.
    func markClean() {
        live.pointee.lastActivity = Self.clock(CLOCK_MONOTONIC)
        atomicMemoryFenceRelease()
        live.pointee.cleanShutdown = 1
        if fd >= 0 && !onTmpfs { _ = msync(base, layout.totalSize, MS_SYNC) }
    }

    var flowSeed: UInt64 { header.pointee.flowSeed }
    var templateSeed: UInt64 { header.pointee.templateSeed }

    // MARK: Clocks and boot

    static func clock(_ id: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// /proc/sys/kernel/random/boot_id as two words: CLOCK_MONOTONIC restarts at a reboot, so a table
    /// from another boot has `expires` values on another clock.
    static func bootID() -> (UInt64, UInt64)? {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 64) }
        guard n > 0 else { return nil }
        var words: (UInt64, UInt64) = (0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4)
        for (i, b) in buffer[0..<n].enumerated() where b != UInt8(ascii: "\n") {
            if i < 18 { words.0 = (words.0 ^ UInt64(b)) &* 0x100_0000_01b3 } else { words.1 = (words.1 ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        return words
    }
}

/// A release fence: the stores before it are not moved after the ones that follow it (the journal's
/// order). x86 keeps stores in order in hardware; this stops the compiler reordering them, and a
/// `kill -9` stops the thread at an instruction boundary with its stores in the shared pages.
@inline(__always) func atomicMemoryFenceRelease() {
    atomicMemoryFence(ordering: .releasing)
}

/// Offsets and sizes of every region, from the capacity alone: the header page (header, then the live
/// block at `TableMemory.liveOffset`), the wheel's heads, then 2 MiB-aligned regions (so huge pages
/// can back each): service records, real-server records, the free-slot stack, the template index, the
/// flow index and the slab.
struct TableLayout: Equatable {
    let capacity: Int
    let registryCapacity: Int
    let wheelOffset: Int
    let servicesOffset: Int
    let destinationsOffset: Int
    let freeOffset: Int
    let templateIndexOffset: Int
    let templateIndexEntries: Int
    let flowIndexOffset: Int
    let flowIndexEntries: Int
    let slabOffset: Int
    /// The IPv6 entries' addresses (`ConnectionAddresses6`), one per slot, after the slab.
    let addresses6Offset: Int
    let totalSize: Int

    init(capacity: Int, registryCapacity: Int) {
        func align(_ n: Int) -> Int { (n + TableMemory.regionAlignment - 1) / TableMemory.regionAlignment * TableMemory.regionAlignment }
        self.capacity = capacity
        self.registryCapacity = registryCapacity
        wheelOffset = TableMemory.headerPageSize
        servicesOffset = align(wheelOffset + ConnectionTable.wheelSize * MemoryLayout<UInt32>.stride)
        destinationsOffset = align(servicesOffset + registryCapacity * MemoryLayout<ServiceRecord>.stride)
        freeOffset = align(destinationsOffset + registryCapacity * MemoryLayout<DestinationRecord>.stride)
        templateIndexOffset = align(freeOffset + capacity * MemoryLayout<UInt32>.stride)
        templateIndexEntries = FlowIndex.entryCount(forMaximumCount: capacity)
        flowIndexOffset = align(templateIndexOffset + templateIndexEntries * FlowIndex.entryStride)
        flowIndexEntries = FlowIndex.entryCount(forMaximumCount: capacity * 2)
        slabOffset = align(flowIndexOffset + flowIndexEntries * FlowIndex.entryStride)
        addresses6Offset = align(slabOffset + capacity * MemoryLayout<Connection>.stride)
        totalSize = align(addresses6Offset + capacity * MemoryLayout<ConnectionAddresses6>.stride)
    }

    /// A hash of every struct the file holds, field by field: a build whose `Connection` or records
    /// differ is refused even if nobody bumped `TableMemory.layoutVersion`.
    static let fingerprint: UInt64 = {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ v: Int?) { h = (h ^ UInt64(truncatingIfNeeded: v ?? -1)) &* 0x100_0000_01b3 }
        mix(MemoryLayout<Connection>.stride)
        for offset in [\Connection.expires, \Connection.bytesIn, \Connection.bytesOut] as [PartialKeyPath<Connection>] {
            mix(MemoryLayout<Connection>.offset(of: offset))
        }
        for offset in [\Connection.packetsIn, \Connection.packetsOut, \Connection.link, \Connection.timeout,
                       \Connection.wheelNext, \Connection.wheelPrev, \Connection.serviceID,
                       \Connection.destinationID] as [PartialKeyPath<Connection>] {
            mix(MemoryLayout<Connection>.offset(of: offset))
        }
        for offset in [\Connection.client, \Connection.virtualAddress, \Connection.server, \Connection.clientPort,
                       \Connection.virtualPort, \Connection.serverPort, \Connection.wheelBucket, \Connection.proto,
                       \Connection.state, \Connection.flags, \Connection.syncedState] as [PartialKeyPath<Connection>] {
            mix(MemoryLayout<Connection>.offset(of: offset))
        }
        mix(MemoryLayout<ConnectionAddresses6>.stride)
        mix(MemoryLayout<ServiceRecord>.stride)
        mix(MemoryLayout<DestinationRecord>.stride)
        mix(MemoryLayout<TrafficCounters>.stride)
        mix(MemoryLayout<TableLive>.stride)
        mix(MemoryLayout<TableHeader>.stride)
        mix(MemoryLayout<ServiceRecord>.offset(of: \ServiceRecord.stats))
        mix(MemoryLayout<DestinationRecord>.offset(of: \DestinationRecord.stats))
        mix(MemoryLayout<DestinationRecord>.offset(of: \DestinationRecord.persistentConnections))
        for offset in [\DestinationRecord.inUse, \DestinationRecord.inService, \DestinationRecord.port, \DestinationRecord.proto,
                       \DestinationRecord.address, \DestinationRecord.serviceID, \DestinationRecord.family, \DestinationRecord.address6] as [PartialKeyPath<DestinationRecord>] {
            mix(MemoryLayout<DestinationRecord>.offset(of: offset))
        }
        for offset in [\ServiceRecord.inUse, \ServiceRecord.inService, \ServiceRecord.port, \ServiceRecord.proto,
                       \ServiceRecord.address, \ServiceRecord.family, \ServiceRecord.address6] as [PartialKeyPath<ServiceRecord>] {
            mix(MemoryLayout<ServiceRecord>.offset(of: offset))
        }
        mix(FlowIndex.entryStride)
        return h
    }()
}

/// The file's first bytes. Written only at creation and adoption; checksummed (FNV-1a, 64-bit, over
/// the header with `checksum` zero).
struct TableHeader {
    var magic: UInt64 = 0
    var layoutVersion: UInt32 = 0
    /// The clock `expires` values are on: CLOCK_MONOTONIC, system-wide, reset only by a reboot.
    var clockID: UInt32 = 0
    var fingerprint: UInt64 = 0
    var capacity: UInt64 = 0
    var registryCapacity: UInt64 = 0
    var totalSize: UInt64 = 0
    var wheelOffset: UInt64 = 0
    var servicesOffset: UInt64 = 0
    var destinationsOffset: UInt64 = 0
    var freeOffset: UInt64 = 0
    var templateIndexOffset: UInt64 = 0
    var templateIndexEntries: UInt64 = 0
    var flowIndexOffset: UInt64 = 0
    var flowIndexEntries: UInt64 = 0
    var slabOffset: UInt64 = 0
    var flowSeed: UInt64 = 0
    var templateSeed: UInt64 = 0
    var bootID0: UInt64 = 0
    var bootID1: UInt64 = 0
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at creation, for humans reading `expires`.
    var clockBase: Int64 = 0
    /// CLOCK_REALTIME ns.
    var createdAt: Int64 = 0
    var generation: UInt64 = 0
    var ownerPID: Int32 = 0
    var reserved: UInt32 = 0
    var checksum: UInt64 = 0

    var computedChecksum: UInt64 {
        var copy = self
        copy.checksum = 0
        return withUnsafeBytes(of: &copy) { bytes in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            return h
        }
    }

    mutating func set(_ l: TableLayout) {
        capacity = UInt64(l.capacity)
        registryCapacity = UInt64(l.registryCapacity)
        totalSize = UInt64(l.totalSize)
        wheelOffset = UInt64(l.wheelOffset)
        servicesOffset = UInt64(l.servicesOffset)
        destinationsOffset = UInt64(l.destinationsOffset)
        freeOffset = UInt64(l.freeOffset)
        templateIndexOffset = UInt64(l.templateIndexOffset)
        templateIndexEntries = UInt64(l.templateIndexEntries)
        flowIndexOffset = UInt64(l.flowIndexOffset)
        flowIndexEntries = UInt64(l.flowIndexEntries)
        slabOffset = UInt64(l.slabOffset)
    }

    func matches(_ l: TableLayout) -> Bool {
        var expected = self
        expected.set(l)
        return withUnsafeBytes(of: expected) { a in withUnsafeBytes(of: self) { b in a.elementsEqual(b) } }
    }
}

/// The table's live counters and marks, on their own cache lines after the header: not checksummed
/// (written on the packet path), every field bounds-checked at adoption.
struct TableLive {
    var slotsUsed = 0
    var connectionCount = 0
    var templateCount = 0
    var freeCount = 0
    var flowIndexCount = 0
    var templateIndexCount = 0
    var lastTick: Int64 = 0
    var hasLastTick: UInt32 = 0
    /// 1 once the owner has made its last mutation (`TableMemory.markClean`); 0 while it runs.
    var cleanShutdown: UInt32 = 0
    /// CLOCK_MONOTONIC ns of the last batch handled.
    var lastActivity: Int64 = 0
    var journalOp: UInt32 = 0
    var journalSlot: UInt32 = 0
}

/// The one multi-word table operation in progress (written before it, cleared after it): what a
/// `kill -9` interrupted, for the next masq to scrub (see `ConnectionTable.scrub`).
enum TableJournal {
    enum Op: UInt32 {
        case none = 0, insert, remove, relink, invalidate
    }
}
