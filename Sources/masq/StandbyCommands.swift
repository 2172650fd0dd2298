// The director pair: `masq run`'s sync and keepalived options, `masq ready` and `masq sync-status`.
import ArgumentParser
import Foundation
import MasqControl
import MasqCore
import MasqDaemon
import MasqRules

extension SyncDaemonRole: ExpressibleByArgument {}

/// `masq run`'s sync options: ipvsadm's daemon options by their ipvsadm names, the kernel's
/// sync_threshold and masq's refresh walk, and keepalived's notify FIFO.
struct SyncOptions: ParsableArguments {
    @Option(name: .customLong("sync-daemon"),
            help: ArgumentHelp("Start a sync daemon (ipvsadm --start-daemon); give it twice for both.", valueName: "master|backup"))
    var syncDaemons: [SyncDaemonRole] = []

    @Option(help: ArgumentHelp("The sync daemons' interface (default: eth0, as ipvsadm).", valueName: "IF"))
    var mcastInterface: String?

    @Option(name: .customLong("syncid"), help: ArgumentHelp("0...255: the master's id; a backup's filter, 0 taking every id (default 0).", valueName: "N"))
    var syncID: String?

    @Option(help: ArgumentHelp("The most bytes of UDP payload per datagram (default: 1472 for a master, the MTU − 28 for a backup).", valueName: "N"))
    var syncMaxlen: String?

    @Option(help: ArgumentHelp("The IPv4 multicast group (default 224.0.0.81).", valueName: "A"))
    var mcastGroup: String?

    @Option(help: ArgumentHelp("The UDP port (default 8848).", valueName: "P"))
    var mcastPort: String?

    @Option(help: ArgumentHelp("The multicast TTL (default 1).", valueName: "T"))
    var mcastTtl: String?

    @Option(help: ArgumentHelp("A master sends a connection at its Nth inbound packet (sync_threshold's first number).", valueName: "N"))
    var syncThreshold: UInt32 = 3

    @Option(help: ArgumentHelp("…and every N packets after (sync_threshold's second number; 0: only at the threshold and on state changes).", valueName: "N"))
    var syncPeriod: UInt32 = 50

    @Option(help: ArgumentHelp("A master sends its whole table every N seconds, so idle flows live on at the backup (0: never).", valueName: "SECONDS"))
    var syncRefreshPeriod = 60

    @Option(help: ArgumentHelp("Follow keepalived's vrrp_notify_fifo (created, mode 0600, if missing): MASTER runs the master daemon, BACKUP/FAULT/STOP the backup.", valueName: "PATH"))
    var vrrpNotifyFifo: String?

    @Option(help: ArgumentHelp("With --vrrp-notify-fifo: the vrrp_instance to follow (default: the first name keepalived writes).", valueName: "NAME"))
    var vrrpInstance: String?

    @Option(help: ArgumentHelp("With --vrrp-notify-fifo: the vrrp_sync_group to follow.", valueName: "NAME"))
    var vrrpGroup: String?

    /// The daemon parameters in ipvsadm's words, checked by ipvsadm's parser (its messages and limits).
    func parameters(role: SyncDaemonRole) throws -> SyncDaemonConfig {
        var words = ["--start-daemon", role.rawValue]
        if let mcastInterface { words += ["--mcast-interface", mcastInterface] }
        if let syncID { words += ["--syncid", syncID] }
        if let syncMaxlen { words += ["--sync-maxlen", syncMaxlen] }
        if let mcastGroup { words += ["--mcast-group", mcastGroup] }
        if let mcastPort { words += ["--mcast-port", mcastPort] }
        if let mcastTtl { words += ["--mcast-ttl", mcastTtl] }
        do {
            guard case .startDaemon(let config) = try IPVSAdmCommandLine.parse(words, names: { .numericOnly }) else {
                throw ValidationError("sync options: not a daemon")
            }
            return config
        } catch let error as IPVSCommandError {
            throw ValidationError("sync options: \(error.explained)")
        }
    }

    func validate() throws {
        guard Set(syncDaemons).count == syncDaemons.count else {
            throw ValidationError("--sync-daemon: Daemon has already run (each role at most once)")
        }
        guard syncPeriod == 0 || syncThreshold < syncPeriod else {
            throw ValidationError("--sync-threshold must be below --sync-period (or the period 0), as sync_threshold wants")
        }
        guard syncRefreshPeriod >= 0 else { throw ValidationError("--sync-refresh-period: seconds, 0 for none") }
        guard vrrpInstance == nil || vrrpGroup == nil else { throw ValidationError("give --vrrp-instance or --vrrp-group, not both") }
        if (vrrpInstance != nil || vrrpGroup != nil) && vrrpNotifyFifo == nil {
            throw ValidationError("--vrrp-instance and --vrrp-group need --vrrp-notify-fifo")
        }
        if vrrpNotifyFifo != nil && !syncDaemons.isEmpty {
            throw ValidationError("--vrrp-notify-fifo starts and stops the sync daemons itself: give no --sync-daemon with it")
        }
        _ = try parameters(role: .master)
    }

    func apply(to options: inout DaemonOptions) throws {
        options.syncDaemons = try syncDaemons.map { try parameters(role: $0) }
        options.syncTuning.settings = SyncSettings(threshold: syncThreshold, period: syncPeriod)
        options.syncTuning.refreshPeriod = syncRefreshPeriod
        options.vrrpNotifyFIFO = vrrpNotifyFifo
        options.vrrpTarget = vrrpInstance.map { .instance($0) } ?? vrrpGroup.map { .group($0) } ?? .first
        options.vrrpSyncParameters = try parameters(role: .backup)
        options.syncParametersGiven = [mcastInterface, syncID, syncMaxlen, mcastGroup, mcastPort, mcastTtl].contains { $0 != nil }
    }
}

struct Ready: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exit 0 if the running daemon could take over as master now, else 1 with the reason.",
        discussion: """
            For keepalived's vrrp_script (interval 1, fall 1, rise 1, weight 0): it fails when masq \
            does not answer, and while a backup sync daemon waits for the table of a master it has just \
            heard (ready once the table has arrived, or when no master has been heard for 3 s of \
            listening). A \
            returning director so takes the VIPs back only once it holds the connections.
            """)

    @Option(help: ArgumentHelp("The daemon's control socket (default: $MASQ_CONTROL_SOCKET, else \(ControlClient.defaultSocket)).",
                               valueName: "PATH|@NAME"))
    var socket: String?

    func run() throws {
        let path = ControlClient.socketPath(option: socket)
        let status: SyncStatus
        do {
            status = try ControlClient.request(.syncStatus, socket: path).requireSyncStatus()
        } catch let error as ControlClient.Failure {
            print("not ready: no daemon (\(error.description))")
            throw ExitCode(1)
        } catch let error as ControlError {
            print("not ready: \(error.message)")
            throw ExitCode(1)
        }
        guard status.ready else {
            print("not ready: \(status.notReadyReason ?? "unknown")")
            throw ExitCode(1)
        }
    }
}

struct SyncStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync-status",
        abstract: "Show the running daemon's sync daemons: parameters, readiness, counters.")

    @Flag(help: "The control protocol's JSON object.")
    var json = false

    @Option(help: ArgumentHelp("The daemon's control socket (default: $MASQ_CONTROL_SOCKET, else \(ControlClient.defaultSocket)).",
                               valueName: "PATH|@NAME"))
    var socket: String?

    func run() throws {
        let status = try askDaemon(.syncStatus, socket: ControlClient.socketPath(option: socket)) {
            reply throws(ControlError) in try reply.requireSyncStatus()
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
            return
        }
        print(status.summary, terminator: "")
    }
}
