import Foundation
import Logging
import MasqControl
import MasqHealth
import MasqRules
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// keepalived's notify FIFO lines (vrrp_notify.c `notify_fifo`: `"%s \"%s\" %s %d\n"`).
@Suite struct VRRPNotifyLineTests {
    @Test func instanceAndGroupLines() {
        #expect(VRRPNotifyLine.parse(#"INSTANCE "VI_1" MASTER 100"#)
                    == VRRPNotifyLine(kind: .instance, name: "VI_1", state: "MASTER", priority: 100))
        #expect(VRRPNotifyLine.parse(#"GROUP "DIRECTOR" BACKUP 0"#)
                    == VRRPNotifyLine(kind: .group, name: "DIRECTOR", state: "BACKUP", priority: 0))
        #expect(VRRPNotifyLine.parse(#"INSTANCE "VI 2" MASTER_RX_LOWER_PRI 150"#)?.name == "VI 2")
    }

    @Test(arguments: ["", "INSTANCE", #"INSTANCE VI_1 MASTER 100"#, #"INSTANCE "VI_1 MASTER 100"#,
                      #"INSTANCE "" MASTER 100"#, #"INSTANCE "VI_1" MASTER"#, #"INSTANCE "VI_1" MASTER x"#,
                      #"INSTANCE "VI_1" master 100"#, #"INSTANCE "VI_1" MASTER 100 extra"#,
                      "VS [198.18.0.1]:tcp:80 UP", "RS [198.19.0.201]:tcp:80 DOWN", #"instance "VI_1" MASTER 100"#])
    func notKeepalivedsLines(_ line: String) {
        #expect(VRRPNotifyLine.parse(Substring(line)) == nil)
    }

    @Test func rolesForStates() {
        func role(_ state: String) -> SyncDaemonRole? {
            VRRPNotifyLine(kind: .instance, name: "VI_1", state: state, priority: 0).role
        }
        #expect(role("MASTER") == .master)
        for state in ["BACKUP", "FAULT", "STOP", "DELETED"] { #expect(role(state) == .backup) }
        for state in ["MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY"] { #expect(role(state) == nil) }
    }

    @Test func followsTheFirstNameByDefault() {
        var follow = VRRPFollowState(target: .first)
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"INSTANCE "VI_OUT" MASTER 150"#)!); #expect(v == .master) }
        // Another instance's line changes nothing; the followed one's does.
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"INSTANCE "VI_IN" FAULT 0"#)!); #expect(v == nil) }
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"GROUP "VI_OUT" FAULT 0"#)!); #expect(v == nil) }
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"INSTANCE "VI_OUT" FAULT 0"#)!); #expect(v == .backup) }
        #expect(follow.state == "FAULT")
    }

    @Test func followsTheGroupGiven() {
        var follow = VRRPFollowState(target: .group("G"))
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"INSTANCE "VI_OUT" MASTER 150"#)!); #expect(v == nil) }
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"GROUP "G" MASTER 0"#)!); #expect(v == .master) }
        do { let v = follow.role(for: VRRPNotifyLine.parse(#"GROUP "G" MASTER_PRIORITY 0"#)!); #expect(v == nil) }
        #expect(follow.state == "MASTER")
    }
}

/// A backup's readiness: it may take over when no masq master is heard for 3 s, or once the whole
/// table has come since the master was (re)heard.
@Suite struct BackupReadinessTests {
    static let second: Int64 = 1_000_000_000

    @Test func noMasterHeardIsReadyAfterThreeSecondsOfListening() {
        let r = BackupReadiness(startedAt: 10 * Self.second)
        #expect(!r.isReady(now: 11 * Self.second))
        #expect(!r.isReady(now: 13 * Self.second))
        #expect(r.isReady(now: 13 * Self.second + 1))
    }

    @Test func aHeardMasterMakesItWaitForTheTable() {
        var r = BackupReadiness(startedAt: 0)
        r.sequence = 5
        do { let v = r.heardHeartbeat(now: 10 * Self.second); #expect(v) }  // the first heartbeat: ask for the table
        #expect(!r.isReady(now: 10 * Self.second))
        do { let v = r.heardHeartbeat(now: 11 * Self.second); #expect(!v) }  // still the same master
        do { let v = r.received(done: 4, now: 11 * Self.second); #expect(!v) }  // another request's answer
        #expect(!r.isReady(now: 12 * Self.second))
        do { let v = r.received(done: 5, now: 12 * Self.second); #expect(v) }
        #expect(r.isReady(now: 12 * Self.second))
        do { let v = r.received(done: 5, now: 12 * Self.second); #expect(!v) }  // said once
    }

    @Test func aSilentMasterIsGoneAfterThreeSeconds() {
        var r = BackupReadiness(startedAt: 0)
        _ = r.heardHeartbeat(now: 10 * Self.second)
        #expect(!r.isReady(now: 13 * Self.second))
        #expect(r.isReady(now: 13 * Self.second + 1))
        // It comes back: the table must come again.
        r.sequence &+= 1
        do { let v = r.heardHeartbeat(now: 20 * Self.second); #expect(v) }
        #expect(!r.isReady(now: 20 * Self.second))
    }

    @Test func theTableMayCompleteWithinTheFirstSeconds() {
        var r = BackupReadiness(startedAt: 10 * Self.second)
        r.sequence = 3
        do { let v = r.received(done: 3, now: 10 * Self.second + 1); #expect(v) }
        #expect(r.isReady(now: 10 * Self.second + 2))
    }

    @Test func theAnswerMayComeBeforeTheFirstHeartbeat() {
        // The request made at start is answered before a heartbeat arrives: that heartbeat does not
        // start over.
        var r = BackupReadiness(startedAt: 0)
        r.sequence = 1
        do { let v = r.received(done: 1, now: 10 * Self.second); #expect(v) }
        do { let v = r.heardHeartbeat(now: 10 * Self.second + 1); #expect(!v) }
        #expect(r.isReady(now: 11 * Self.second))
    }
}

@Suite struct SyncManagerTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1

        """

    @Test func stopWithoutDaemonIsESRCH() throws {
        let core = try controlPlane(Self.rules)
        #expect(throws: SyncDaemonError.notRunning(.master)) { try core.stopSyncDaemon(.master) }
        #expect(SyncDaemonError.notRunning(.master).controlError == ControlError(.noDaemon, "No daemon is running"))
        #expect(SyncDaemonError.alreadyRunning(.backup).controlError == ControlError(.daemonExists, "Daemon has already run"))
        let status = core.sync.status()
        #expect(status.daemons.isEmpty && status.ready && status.notReadyReason == nil)
    }

    @Test func anUnknownInterfaceIsNamed() throws {
        let core = try controlPlane(Self.rules)
        #expect(throws: SyncDaemonError.socket(.noSuchInterface("masqnone0"))) {
            try core.startSyncDaemon(SyncDaemonConfig(role: .backup, interface: "masqnone0"))
        }
        #expect(SyncSocketError.noSuchInterface("masqnone0").description.hasPrefix("No such device (mcast-interface masqnone0"))
        #expect(!core.sync.isRunning(.backup))
        let started = core.sync.everStarted.load(ordering: .relaxed)
        #expect(!started)
    }

    @Test func failClosedRulesHaveNoBypass() throws {
        let configuration = try RulesFile.parse(Self.rules)
        for queue in [QueueSelection.single(0), .balance(0, 1), .cpuFanout(2, 3)] {
            let open = IptablesPlan(configuration, queue: queue)
            let closed = IptablesPlan(configuration, queue: queue, failClosed: true)
            #expect(open.script().contains("--queue-bypass"))
            #expect(!closed.script().contains("--queue-bypass"))
            // Nothing else differs.
            #expect(closed.script() == open.script().replacingOccurrences(of: " --queue-bypass", with: ""))
        }
    }
}

/// The FIFO follower reads keepalived's lines, reopens the FIFO after each writer, and ignores what
/// is not a line of keepalived's. The daemons it starts fail here (no such interface): the state it
/// follows is what is checked. The test body runs on a thread of its own: opening a FIFO, waiting
/// for the follower and stopping it block, and must not hold one of the test pool's few threads.
@Suite struct VRRPFollowerTests {
    /// Runs `body` on a new thread and waits for it without blocking the caller's.
    func onThread(_ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread {
                do {
                    try body()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
    }

    /// Polls `condition` for up to 3 s.
    static func waitFor(_ condition: () -> Bool) -> Bool {
        for _ in 0..<60 {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    static func state(_ core: ControlPlane) -> String? { core.sync.vrrp.withLock { $0?.state } }

    static func write(_ text: String, to path: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.write(Data(text.utf8))
        try handle.close()
    }

    @Test func followsAnInstanceThroughReopens() async throws {
        let core = try controlPlane(SyncManagerTests.rules)
        let path = NSTemporaryDirectory() + "masq-test-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        let follower = VRRPFollower(path: path, target: .instance("VI_1"),
                                    parameters: SyncDaemonConfig(role: .backup, interface: "masqnone0"),
                                    sync: core.sync, logger: Logger(label: "test"))
        try await onThread {
            try follower.start()
            defer { follower.stop() }
            var st = stat()
            #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO && st.st_mode & 0o777 == 0o600)
            let initial = core.sync.vrrp.withLock { $0 }
            #expect(initial == VRRPFollowStatus(fifo: path, followed: #"INSTANCE "VI_1""#))
            // The backup could not start (no such interface): not ready, and saying why.
            let status = core.sync.status()
            #expect(!status.ready && status.notReadyReason == "following keepalived, but no sync daemon runs (see the log)")

            try Self.write("garbage\nINSTANCE \"VI_2\" MASTER 100\nINSTANCE \"VI_1\" MASTER 100\n", to: path)
            #expect(Self.waitFor { Self.state(core) == "MASTER" })
            // keepalived restarts: a new writer after the first went.
            try Self.write("INSTANCE \"VI_1\" BACKUP 100\n", to: path)
            #expect(Self.waitFor { Self.state(core) == "BACKUP" })
            // A line in two writes.
            let handle = try #require(FileHandle(forWritingAtPath: path))
            handle.write(Data("INSTANCE \"VI_1\" FA".utf8))
            usleep(100_000)
            handle.write(Data("ULT 0\n".utf8))
            try handle.close()
            #expect(Self.waitFor { Self.state(core) == "FAULT" })
        }
    }

    /// keepalived's FIFO under a directory that does not exist yet (/run/masq on a fresh boot): masq
    /// makes it, 0700, and the FIFO in it, so a masq started before keepalived still follows it.
    @Test func theFIFOsDirectoryIsMade() async throws {
        let core = try controlPlane(SyncManagerTests.rules)
        let directory = NSTemporaryDirectory() + "masq-test-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let path = directory + "/sub/vrrp.fifo"
        defer {
            unlink(path)
            rmdir(directory + "/sub")
            rmdir(directory)
        }
        let follower = VRRPFollower(path: path, target: .first, parameters: SyncDaemonConfig(role: .backup, interface: "masqnone0"),
                                    sync: core.sync, logger: Logger(label: "test"))
        try await onThread {
            try follower.start()
            defer { follower.stop() }
            var st = stat()
            #expect(lstat(directory + "/sub", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_mode & 0o777 == 0o700)
            #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO)
        }
    }

    @Test func aFileThatIsNotAFIFOIsRefused() throws {
        let core = try controlPlane(SyncManagerTests.rules)
        let path = NSTemporaryDirectory() + "masq-test-notfifo-\(getpid())"
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        defer { unlink(path) }
        let follower = VRRPFollower(path: path, target: .first, parameters: SyncDaemonConfig(role: .backup),
                                    sync: core.sync, logger: Logger(label: "test"))
        #expect(throws: DaemonError.self) { try follower.start() }
    }
}

/// keepalived.conf's `lvs_sync_daemon` in `masq run --keepalived`.
@Suite struct LVSSyncDaemonOptionsTests {
    static let lvs = KeepalivedSyncDaemon(interface: "sy0", instance: "VI_1", syncID: 7)

    @Test func withTheFIFOItGivesTheParametersAndTheInstance() throws {
        var options = DaemonOptions(rulesPath: "keepalived.conf")
        options.vrrpNotifyFIFO = "/run/masq/vrrp.fifo"
        try useLVSSyncDaemon(Self.lvs, in: &options, logger: Logger(label: "test"))
        #expect(options.vrrpSyncParameters == SyncDaemonConfig(role: .backup, interface: "sy0", syncID: 7))
        #expect(options.vrrpTarget == .instance("VI_1"))
        // The command line's parameters and target win.
        var given = DaemonOptions(rulesPath: "keepalived.conf")
        given.vrrpNotifyFIFO = "/run/masq/vrrp.fifo"
        given.syncParametersGiven = true
        given.vrrpSyncParameters = SyncDaemonConfig(role: .backup, interface: "eth1")
        given.vrrpTarget = .group("G")
        try useLVSSyncDaemon(Self.lvs, in: &given, logger: Logger(label: "test"))
        #expect(given.vrrpSyncParameters.interface == "eth1" && given.vrrpTarget == .group("G"))
    }

    @Test func anInstanceWithoutTheFIFOIsAnError() {
        var options = DaemonOptions(rulesPath: "keepalived.conf")
        #expect(throws: DaemonError.self) { try useLVSSyncDaemon(Self.lvs, in: &options, logger: Logger(label: "test")) }
    }

    @Test func noInstanceRunsBoth() throws {
        var options = DaemonOptions(rulesPath: "keepalived.conf")
        try useLVSSyncDaemon(KeepalivedSyncDaemon(interface: "sy0"), in: &options, logger: Logger(label: "test"))
        #expect(options.syncDaemons == [SyncDaemonConfig(role: .master, interface: "sy0"), SyncDaemonConfig(role: .backup, interface: "sy0")])
    }
}
