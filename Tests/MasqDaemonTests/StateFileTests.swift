import Foundation
import Testing
@testable import MasqDaemon

/// Which state file `masq run` uses, and its directory.
@Suite struct StateFileTests {
    @Test func optionsChooseTheFile() throws {
        #expect(try StateFileChoice(path: nil, fresh: false, none: false) == .automatic)
        #expect(try StateFileChoice(path: nil, fresh: true, none: false) == .automatic)
        #expect(try StateFileChoice(path: "/run/masq/t.table", fresh: true, none: false) == .path("/run/masq/t.table"))
        #expect(try StateFileChoice(path: nil, fresh: false, none: true) == StateFileChoice.none)
        #expect(throws: DaemonError.self) { try StateFileChoice(path: "/x.table", fresh: false, none: true) }
        #expect(throws: DaemonError.self) { try StateFileChoice(path: nil, fresh: true, none: true) }
        #expect(throws: DaemonError.self) { try StateFileChoice(path: "/run/masq/", fresh: false, none: false) }
        #expect(throws: DaemonError.self) { try StateFileChoice(path: "", fresh: false, none: false) }
    }

    /// Per network namespace (inode and cookie) and queue set: the same command line finds its table.
    @Test func defaultPathNamesTheNamespaceAndTheQueues() {
        let net = NetworkNamespaceIdentity(inode: 4026532177, cookie: 53438)
        #expect(defaultStateFilePath(namespace: net, queue: .single(0)) == "/dev/shm/masq-net4026532177-53438-q0.table")
        #expect(defaultStateFilePath(namespace: net, queue: .balance(0, 3)) == "/dev/shm/masq-net4026532177-53438-q0-3.table")
        #expect(defaultStateFilePath(namespace: net, queue: .cpuFanout(2, 5)) == "/dev/shm/masq-net4026532177-53438-q2-5.table")
        let old = NetworkNamespaceIdentity(inode: 4026531840, cookie: nil)
        #expect(defaultStateFilePath(namespace: old, queue: .single(7), directory: "/run/masq") == "/run/masq/masq-net4026531840-q7.table")
    }

    @Test func thisNamespaceIsNamedByItsInode() throws {
        var info = stat()
        #expect(stat("/proc/self/ns/net", &info) == 0)
        let net = try NetworkNamespaceIdentity.current()
        #expect(net.inode == UInt64(info.st_ino))
        #expect(try NetworkNamespaceIdentity.current() == net)
        #expect(try stateFilePath(.automatic, queue: .single(0)) == defaultStateFilePath(namespace: net, queue: .single(0)))
        #expect(try stateFilePath(.none, queue: .single(0)) == nil)
        #expect(try stateFilePath(.path("/tmp/t.table"), queue: .single(0)) == "/tmp/t.table")
    }

    @Test func aMissingDirectoryIsCreatedPrivate() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("masq-state-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        try prepareStateFileDirectory(for: "\(base)/a/b/masq.table")
        let mode = try FileManager.default.attributesOfItem(atPath: "\(base)/a/b")[.posixPermissions] as? Int
        #expect(mode == 0o700)
        try prepareStateFileDirectory(for: "\(base)/a/b/masq.table")  // there already
        _ = FileManager.default.createFile(atPath: "\(base)/file", contents: nil)
        #expect(throws: DaemonError.self) { try prepareStateFileDirectory(for: "\(base)/file/masq.table") }
    }

    /// The first batch after an adoption measures the gap, once; a table made fresh has none.
    @Test func theFirstBatchMeasuresTheGapOnce() {
        var figures = TableFileFigures(path: "/dev/shm/t.table")
        #expect(figures.firstBatchGap(at: 5_000) == nil)
        figures.awaitingFirstPacketSince = 1_000_000
        #expect(figures.firstBatchGap(at: 41_000_000) == 40_000_000)
        #expect(figures.restartGapNanoseconds == 40_000_000)
        #expect(figures.firstBatchGap(at: 90_000_000) == nil)
        #expect(figures.restartGapNanoseconds == 40_000_000)
    }

    /// SIGUSR2's stop hands over at once (the rules stay: the queue never runs dry); SIGTERM's drains.
    @Test func aRestartStopsWithoutDraining() {
        let term = LoopControl()
        term.requestStop()
        #expect(term.stopRequested && term.drainsOnStop && !term.restartRequested)
        let restart = LoopControl()
        restart.requestRestart()
        restart.requestStop(draining: false)
        #expect(restart.stopRequested && !restart.drainsOnStop && restart.restartRequested)
    }
}

@Suite("State file: --state-dir and the huge-pages notice")
struct StateDirectoryTests {
    @Test("--state-dir puts the default name in another directory, and excludes --state-file and --no-state-file")
    func stateDirectory() throws {
        #expect(try StateFileChoice(path: nil, fresh: false, none: false, directory: "/run/masq/") == .automaticIn("/run/masq"))
        #expect(throws: DaemonError.self) { try StateFileChoice(path: "/tmp/t", fresh: false, none: false, directory: "/run/masq") }
        #expect(throws: DaemonError.self) { try StateFileChoice(path: nil, fresh: false, none: true, directory: "/run/masq") }
        let path = try #require(try stateFilePath(.automaticIn("/run/masq"), queue: .single(3)))
        #expect(path.hasPrefix("/run/masq/masq-net") && path.hasSuffix("-q3.table"))
    }

    static let mountInfo = """
        25 30 0:22 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,size=24684084k
        26 30 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=4936820k,mode=755
        90 26 0:40 / /run/masq rw,relatime shared:50 - tmpfs tmpfs rw,size=4194304k,mode=700,huge=within_size
        30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
        """

    @Test("a large table on a tmpfs without huge= gets the notice; huge pages, a small table, shmem force or a disk do not")
    func hugePages() {
        let never = "always within_size advise [never] deny force"
        #expect(hugePagesNote(statePath: "/dev/shm/masq-net1-q0.table", capacity: 1 << 20, mountInfo: Self.mountInfo,
                              shmemEnabled: never)?.contains("(/dev/shm) gives the table 4 KiB pages") == true)
        #expect(hugePagesNote(statePath: "/run/masq/masq-net1-q0.table", capacity: 1 << 20, mountInfo: Self.mountInfo,
                              shmemEnabled: never) == nil)
        #expect(hugePagesNote(statePath: "/run/other/t.table", capacity: 1 << 20, mountInfo: Self.mountInfo,
                              shmemEnabled: never) != nil)  // /run itself: no huge=
        #expect(hugePagesNote(statePath: "/dev/shm/t.table", capacity: 1 << 16, mountInfo: Self.mountInfo, shmemEnabled: never) == nil)
        #expect(hugePagesNote(statePath: "/dev/shm/t.table", capacity: 1 << 20, mountInfo: Self.mountInfo,
                              shmemEnabled: "always within_size advise never deny [force]") == nil)
        #expect(hugePagesNote(statePath: "/var/lib/masq/t.table", capacity: 1 << 20, mountInfo: Self.mountInfo, shmemEnabled: never) == nil)
    }
}
