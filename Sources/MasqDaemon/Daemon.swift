import Foundation
import Logging
import MasqControl
import MasqCore
import MasqHealth
import MasqNFQueue
import MasqRules
import ServiceLifecycle
import Synchronization
import UnixSignals

/// How `masq run` was asked to run.
public struct DaemonOptions: Sendable {
    /// The rules file: ipvsadm-save format, or keepalived.conf with `keepalived`.
    public var rulesPath: String
    /// `rulesPath` is a keepalived.conf: its LVS part, with health checks.
    public var keepalived = false
    public var queue: QueueSelection = .single(0)
    public var installIptables = false
    public var iptablesBinary = "iptables"
    public var chain = "MASQ"
    public var maxFlows = Engine.defaultCapacity
    /// Where the connection table lives between runs (`--state-file`, `--no-state-file`).
    public var stateFile = StateFileChoice.automatic
    /// `--fresh-state`: the state file's table is replaced by an empty one.
    public var freshState = false
    public var queueOptions = NFQueueOptions()
    public var logPackets = false
    public var pidFile: String?
    public var dumpDirectory = "/run/masq"
    /// The runtime control socket (nil: none).
    public var controlSocket: String? = ControlClient.defaultSocket
    /// `--metrics HOST:PORT` (nil: off).
    public var metricsAddress: (String, Int)?
    /// IPVS's expire_nodest_conn: drop the flows of a removed real server instead of letting them finish.
    public var expireNodestConnections = false
    /// Sync daemons to start (`--sync-daemon`, with the rules file's `--start-daemon` lines after them).
    public var syncDaemons: [SyncDaemonConfig] = []
    /// The masters' pacing: sync_threshold, refresh walks.
    public var syncTuning = SyncTuning()
    /// keepalived's `vrrp_notify_fifo` to follow (nil: none), which instance or group, and the
    /// parameters of the daemons it starts (the role is replaced).
    public var vrrpNotifyFIFO: String?
    public var vrrpTarget = VRRPFollowTarget.first
    public var vrrpSyncParameters = SyncDaemonConfig(role: .backup)
    /// The command line gave sync parameters (`--mcast-interface` …): they win over a keepalived.conf's
    /// `lvs_sync_daemon`.
    public var syncParametersGiven = false
    /// NFQUEUE rules without `--queue-bypass` (`IptablesPlan.failClosed`): set for a director with a
    /// state file (the default) or a sync daemon or a notify FIFO, and from the first daemon masqadm
    /// starts.
    public var failClosedIptables = false
    /// The service manager's notify socket (`Type=notify`): READY, RELOADING, STOPPING. `masq run`
    /// takes it from NOTIFY_SOCKET; no socket, no messages.
    public var notifier = SystemdNotifier(socket: nil)

    public init(rulesPath: String) { self.rulesPath = rulesPath }
}

/// A user-facing failure: one sentence.
public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Reads and parses a rules file; errors name file:line and the token.
public func loadRules(_ path: String) throws(DaemonError) -> Configuration {
    try loadRulesDocument(path).configuration
}

/// As `loadRules`, with the sync daemons the file's `--start-daemon` lines start.
public func loadRulesDocument(_ path: String) throws(DaemonError) -> RulesFile.Document {
    let text: String
    do {
        text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw DaemonError("\(path): cannot read: \(error.localizedDescription)")
    }
    do {
        return try RulesFile.load(text, file: path)
    } catch {
        throw DaemonError(error.description)
    }
}

/// The NFQUEUE handle in a box the packet thread can take along.
///
/// `@unchecked Sendable` because `NFQueue` holds libmnl's socket pointer: each box goes to exactly
/// one queue thread, which alone uses the queue from then on (the daemon keeps only the reference
/// in `PacketThreadContext`, to hand it over and to name the thread).
final class QueueBox: @unchecked Sendable {
    let queue: NFQueue
    init(_ queue: consuming NFQueue) { self.queue = queue }
}

/// Everything the packet threads touch: one queue each, one shared engine.
final class PacketThreadContext: Sendable {
    let boxes: [QueueBox]
    let shared: SharedEngine
    let control: LoopControl
    let loop: PacketLoop

    init(boxes: [QueueBox], shared: SharedEngine, control: LoopControl, loop: PacketLoop) {
        self.boxes = boxes
        self.shared = shared
        self.control = control
        self.loop = loop
    }
}

/// The packet path as a service: a dedicated thread per queue (receives block; they must not sit on
/// the concurrency pool's few threads). Graceful shutdown (SIGTERM) removes the iptables rules first,
/// so no new packets are queued, then lets the loop drain what is queued and stop; for a restart
/// (SIGUSR2) the rules stay and the loop stops after the batch in hand. A loop that fails tells
/// systemd STOPPING=1 (`onStopping`) before it ends the group.
struct PacketService: Service {
    let context: PacketThreadContext
    let onStopping: @Sendable () -> Void
    let onShutdown: @Sendable () -> Void
    let logger: Logger

    func run() async throws {
        let context = self.context
        let logger = self.logger
        try await withGracefulShutdownHandler {
            let results = Mutex<(counters: LoopCounters, error: String?, finished: Int)>((LoopCounters(), nil, 0))
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                for box in context.boxes {
                    let thread = Thread {
                        var outcome: (LoopCounters, String?) = (LoopCounters(), nil)
                        do {
                            outcome.0 = try context.loop.run(queue: box.queue, shared: context.shared,
                                                             control: context.control)
                        } catch {
                            outcome.1 = "\(error)"
                            context.control.requestStop()  // one queue failing stops them all
                        }
                        let done = results.withLock { r -> (LoopCounters, String?)? in
                            r.counters = r.counters + outcome.0
                            if r.error == nil { r.error = outcome.1 }
                            r.finished += 1
                            return r.finished == context.boxes.count ? (r.counters, r.error) : nil
                        }
                        guard let (counters, error) = done else { return }
                        if let error {
                            onStopping()
                            continuation.resume(throwing: DaemonError(error))
                            return
                        }
                        let (c, waits, locks) = context.shared.withLock { ($0.engine.counters, $0.lockWaits, $0.lockAcquisitions) }
                        logger.info("packet loop stopped", metadata: [
                            "engine_lock_waits": "\(waits)", "engine_lock_acquisitions": "\(locks)",
                            "packets": "\(counters.packets)", "receives": "\(counters.receives)",
                            "sendmsg": "\(counters.sendCalls)", "verdict_messages": "\(counters.verdictMessages)",
                            "rewritten_in": "\(c.rewrittenInbound)", "rewritten_out": "\(c.rewrittenOutbound)",
                            "dropped": "\(c.droppedTotal)", "enobufs": "\(counters.enobufs)"])
                        continuation.resume()
                    }
                    thread.name = "masq-queue-\(box.queue.queue)"
                    thread.start()
                }
            }
        } onGracefulShutdown: {
            let restart = context.control.restartRequested
            if !restart { onShutdown() }
            context.control.requestStop(draining: !restart)
        }
    }
}

/// STOPPING=1 (via `announce`, which sends it once) as soon as a graceful shutdown begins. The group
/// shuts its services down in reverse order, one after the other, so this one, added last, is the
/// first to hear of it: before the control socket, the health checks and, last, the packet path with
/// its iptables rules wind down.
struct StoppingNoticeService: Service {
    let announce: @Sendable () -> Void

    func run() async throws {
        try? await gracefulShutdown()
        announce()
    }
}

/// SIGHUP: re-read the rules file; a good one replaces the running configuration atomically (and the
/// iptables rules when masq installed them), a bad one is logged with file:line and changes nothing.
/// Either way systemd hears RELOADING=1 before and READY=1 after, with STATUS= saying which it was
/// (a rejected reload still ends in READY=1: the old configuration serves on).
/// SIGUSR1: write the connection table to a new file in the dump directory, named in the log.
/// `signals` is made (its handlers installed) before READY=1, not here (`DaemonSignals`).
struct SignalService: Service {
    let core: ControlPlane
    let control: LoopControl
    let health: HealthController?
    let signals: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        let options = core.options
        var dumps = 0
        for await signal in signals.cancelOnGracefulShutdown() {
            if signal == .sigusr1 {
                dumps += 1
                let stamp = Int(Date().timeIntervalSince1970)
                try? FileManager.default.createDirectory(atPath: options.dumpDirectory, withIntermediateDirectories: true)
                control.requestDump(to: "\(options.dumpDirectory)/flows-\(stamp)-\(getpid())-\(dumps).jsonl")
                continue
            }
            logger.info("SIGHUP: reloading", metadata: ["rules": "\(options.rulesPath)"])
            options.notifier.reloading()
            do {
                if let health {
                    await health.reload(try loadKeepalived(options.rulesPath, logger: logger))
                } else {
                    try core.reload(from: options.rulesPath)
                }
                logger.info("reload accepted")
                HostChecks.log(options, core.currentConfiguration, to: logger)
                options.notifier.ready(status: servingStatus(services: core.currentConfiguration.services.count,
                                                            queue: options.queue, reload: .accepted))
            } catch {
                logger.error("reload rejected, the running configuration stays: \(error.description)")
                options.notifier.ready(status: servingStatus(services: core.currentConfiguration.services.count,
                                                            queue: options.queue, reload: .rejected(error.description)))
            }
        }
    }
}

/// SIGUSR2, the unit's `RestartKillSignal`: exit for a restart or an upgrade. The iptables rules stay
/// (fail closed: while no masq reads the queue the kernel drops the VIP's packets, and TCP retransmits
/// them) and the table stays in the state file, marked clean, for the next masq to adopt. Returning
/// shuts the group down gracefully, as SIGTERM does, with the restart asked for first. Without a
/// state file there is nothing to keep: SIGUSR2 is then a stop for good.
/// `signals` (SIGUSR2) is made before READY=1 (`DaemonSignals`).
struct RestartSignalService: Service {
    let control: LoopControl
    let stateFile: String?
    let signals: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            if let stateFile {
                control.requestRestart()
                logger.notice("SIGUSR2: stopping for a restart", metadata: ["state_file": "\(stateFile)"])
            } else {
                logger.notice("SIGUSR2 without a state file (--no-state-file): nothing to keep, so this is a stop for good, as SIGTERM")
            }
            return
        }
    }
}

/// Every 2 s, the rates behind `masqadm --rate`, and the iptables rules of draining real servers.
struct RateService: Service {
    let core: ControlPlane

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            core.sampleRates()
            core.periodicRefresh()
            core.watchPressure()
            // The sleep ends at a shutdown's start, so an exit (a restart's gap) never waits for it.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) }
        }
    }
}

/// The rules masq installed, and the plan they follow now (reloads change it).
final class InstalledIptables: Sendable {
    let runner: IptablesRunner
    let plan: Mutex<IptablesPlan>

    init(runner: IptablesRunner, plan: IptablesPlan) {
        self.runner = runner
        self.plan = Mutex(plan)
    }
}

/// A keepalived.conf's `lvs_sync_daemon`, as keepalived runs IPVS's daemons with it: with an instance,
/// master while it is MASTER and backup otherwise, which masq learns from `--vrrp-notify-fifo` (its
/// parameters and instance become the FIFO's, unless the command line gives its own); with no
/// instance, both daemons all the time (keepalived's checker, check_daemon.c).
func useLVSSyncDaemon(_ lvs: KeepalivedSyncDaemon, in options: inout DaemonOptions, logger: Logger) throws(DaemonError) {
    if options.vrrpNotifyFIFO != nil {
        if !options.syncParametersGiven { options.vrrpSyncParameters = lvs.config(role: .backup) }
        if options.vrrpTarget == .first, let instance = lvs.instance { options.vrrpTarget = .instance(instance) }
        logger.info("lvs_sync_daemon: the sync daemons follow keepalived's notify FIFO", metadata: [
            "mcast_ifn": "\(options.vrrpSyncParameters.interface)", "syncid": "\(options.vrrpSyncParameters.syncID)",
            "target": "\(options.vrrpTarget)"])
    } else if let instance = lvs.instance {
        throw DaemonError("\(options.rulesPath): lvs_sync_daemon follows vrrp_instance \(instance): give masq keepalived's state with --vrrp-notify-fifo (keepalived's vrrp_notify_fifo)")
    } else if options.syncDaemons.isEmpty {
        options.syncDaemons = [lvs.config(role: .master), lvs.config(role: .backup)]
        logger.info("lvs_sync_daemon without an instance: both sync daemons run, as keepalived runs them")
    }
}

/// The signals a running masq acts on besides SIGTERM and SIGINT (ServiceGroup's, installed by
/// group.run()), trapped before READY=1 and served once the group runs: SIGHUP and SIGUSR1 by
/// SignalService, SIGUSR2 by RestartSignalService. UnixSignalsSequence's init returns once its
/// dispatch signal sources are registered, so the handlers exist from then on; what they catch is
/// yielded to an AsyncStream, which buffers it until the service's loop asks (swift-service-lifecycle,
/// UnixSignalsSequence.Storage). A `systemctl reload` right after the start neither kills masq
/// (SIGHUP's default action) nor is lost.
struct DaemonSignals: Sendable {
    let reload: UnixSignalsSequence
    let restart: UnixSignalsSequence

    static func install() async -> DaemonSignals {
        DaemonSignals(reload: await UnixSignalsSequence(trapping: .sighup, .sigusr1),
                      restart: await UnixSignalsSequence(trapping: .sigusr2))
    }
}

/// How a reload ended, for the STATUS= that follows it.
enum ReloadOutcome {
    case accepted
    /// The error; STATUS= is one line, so only its first is kept.
    case rejected(String)
}

/// STATUS= while masq serves (systemctl status shows it): what serves, and how the last reload ended.
func servingStatus(services: Int, queue: QueueSelection, reload: ReloadOutcome? = nil) -> String {
    let serving = "serving \(services) virtual services on \(queue.numbers.count == 1 ? "queue" : "queues") \(queue)"
    switch reload {
    case nil:
        return serving
    case .accepted:
        return serving + "; reload accepted"
    case .rejected(let error):
        let reason = error.split(separator: "\n", omittingEmptySubsequences: true).first ?? ""
        return serving + "; reload rejected: \(reason)"
    }
}

/// `masq run`: load the rules, bind the queue(s), install iptables if asked, serve until SIGTERM/SIGINT.
public func runDaemon(_ options: DaemonOptions, logger: Logger) async throws {
    var options = options
    let keepalived = options.keepalived ? try loadKeepalived(options.rulesPath, logger: logger) : nil
    // With health checks, the real servers the checks allow at start (keepalived adds no `alpha` server
    // before its first success), so neither the engine nor the iptables rules ever hold one.
    let configuration: Configuration
    if let keepalived {
        configuration = HealthMonitor(keepalived, now: monotonicNanoseconds())
            .effectiveConfiguration(timeouts: keepalived.configuration.timeouts)
        if let lvs = keepalived.syncDaemon { try useLVSSyncDaemon(lvs, in: &options, logger: logger) }
    } else {
        let document = try loadRulesDocument(options.rulesPath)
        configuration = document.configuration
        for daemon in document.syncDaemons {
            guard !options.syncDaemons.contains(where: { $0.role == daemon.role }) else {
                throw DaemonError("\(options.rulesPath): --start-daemon \(daemon.role): Daemon has already run (given on the command line too)")
            }
            options.syncDaemons.append(daemon)
        }
    }
    if !options.syncDaemons.isEmpty && options.vrrpNotifyFIFO != nil {
        throw DaemonError("--vrrp-notify-fifo starts and stops the sync daemons itself: give no --sync-daemon (or rules file --start-daemon) with it")
    }
    let pairDirector = options.failClosedIptables || !options.syncDaemons.isEmpty || options.vrrpNotifyFIFO != nil
    let statePath = try stateFilePath(options.stateFile, queue: options.queue)
    if let statePath { try prepareStateFileDirectory(for: statePath) }
    options.failClosedIptables = pairDirector || statePath != nil
    let memory: TableMemory
    if let statePath {
        do {
            memory = try TableMemory.shared(path: statePath, capacity: options.maxFlows, fresh: options.freshState)
        } catch {
            throw DaemonError("connection table: \(error.description)")
        }
    } else {
        memory = TableMemory.anonymous(capacity: options.maxFlows)
    }
    let engine = Engine(configuration: configuration, memory: memory)
    engine.expireNodestConnections = options.expireNodestConnections
    let tableFile = logTable(engine, logger: logger)
    let shared = SharedEngine(engine)
    shared.withLock { $0.tableFile = tableFile }
    // Every exit from here on that is not a crash leaves the table consistent for the next masq: after
    // the packet threads and the sync daemons stopped (the defers below run before this one).
    defer { finishTable(shared, logger: logger) }
    var boxes: [QueueBox] = []
    for number in options.queue.numbers {
        do {
            boxes.append(QueueBox(try NFQueue(queue: number, options: options.queueOptions)))
        } catch {
            throw DaemonError(error.description)
        }
    }
    logger.info(boxes.count == 1 ? "queue bound" : "queues bound", metadata: [
        "queue": "\(options.queue)", "gso": "\(options.queueOptions.gso)",
        "fail_open": "\(options.queueOptions.failOpen)", "max_length": "\(options.queueOptions.maxLength)"])

    var iptables: InstalledIptables?
    if options.installIptables {
        let plan = IptablesPlan(configuration, queue: options.queue, chain: options.chain,
                                failClosed: options.failClosedIptables)
        let runner = IptablesRunner(binary: options.iptablesBinary, logger: logger)
        if pairDirector {
            logger.notice("iptables rules fail closed (NFQUEUE without --queue-bypass): this director is one of a sync pair, and while its masq is down the kernel must drop the queued packets, not let its own stack reset the flows the other director holds")
        } else if let statePath {
            logger.notice("iptables rules fail closed (NFQUEUE without --queue-bypass): the connection table outlives this masq in its state file, and while no masq runs (a restart, a crash) the kernel must drop the queued packets, which TCP retransmits to the next masq, not let its own stack reset the flows", metadata: ["state_file": "\(statePath)"])
        }
        let installation: IptablesInstallation
        do {
            installation = try runner.install(plan)
        } catch {
            throw DaemonError("installing iptables rules failed: \(error)")
        }
        if let note = installation.note { logger.warning("\(note)") }
        logger.info(installation.hooksFound > 0 ? "iptables rules found installed (a restart): replaced in place" : "iptables rules installed", metadata: [
            "binary": "\(runner.binary)", "chains": "\(plan.chainNames)", "rules": "\(plan.ruleCount)",
            "hooks_found": "\(installation.hooksFound)"])
        iptables = InstalledIptables(runner: runner, plan: plan)
    }
    let installed = iptables
    // STOPPING=1 once, at whichever comes first of a graceful shutdown's start and a failed packet loop.
    let stoppingOnce = Mutex(false)
    let notifier = options.notifier
    let control = LoopControl()
    let announceStopping: @Sendable () -> Void = {
        guard stoppingOnce.withLock({ sent in defer { sent = true }; return !sent }) else { return }
        // Only a state file makes SIGUSR2 a restart (RestartSignalService): the rules and table stay.
        notifier.stopping(status: control.restartRequested ? "restarting: rules and table kept" : "stopping")
    }
    let removedOnce = Mutex(false)
    let removeRules: @Sendable () -> Void = {
        guard let installed, removedOnce.withLock({ done in defer { done = true }; return !done }) else { return }
        let plan = installed.plan.withLock { $0 }
        installed.runner.remove(plan)
        logger.info("iptables rules removed", metadata: ["chains": "\(plan.chainNames)"])
    }

    let core = ControlPlane(options: options, shared: shared, configuration: configuration, iptables: installed,
                          logger: logger)
    var loop = PacketLoop(logger: logger, logPackets: options.logPackets)
    loop.recordBatchSizes = options.metricsAddress != nil
    loop.unreachableSender = core.unreachableSender
    if loop.unreachableSender == nil {
        logger.warning("cannot open a raw socket (CAP_NET_RAW): new connections no real server can take are dropped without the ICMP port unreachable IPVS would answer")
    } else if configuration.services.contains(where: { $0.key.address.isIPv6 }), let error = core.unreachableSender?.openIPv6() {
        // The IPv6 socket is opened only for IPv6 services (here, or at the first IPv6 answer after a reload).
        logger.warning("cannot open an IPv6 raw socket (\(error)): new IPv6 connections no real server can take are dropped without the ICMPv6 port unreachable IPVS would answer")
    }
    let context = PacketThreadContext(boxes: boxes, shared: shared, control: control, loop: loop)

    HostChecks.log(options, configuration, to: logger)
    // The sync daemons and the keepalived follower, before masq says it is serving.
    var follower: VRRPFollower?
    do throws(DaemonError) {
        for daemon in options.syncDaemons {
            do {
                try core.sync.start(daemon)
            } catch {
                throw DaemonError("--start-daemon \(daemon.role): \(error.description)")
            }
        }
        if let fifo = options.vrrpNotifyFIFO {
            // The daemons keepalived's state starts must be able to run: a mistyped interface stops
            // start-up here, not at the first state change.
            do {
                _ = try SyncInterface.lookup(options.vrrpSyncParameters.interface)
            } catch {
                throw DaemonError("--vrrp-notify-fifo: \(error.description)")
            }
            let f = VRRPFollower(path: fifo, target: options.vrrpTarget, parameters: options.vrrpSyncParameters,
                                 sync: core.sync, logger: logger)
            try f.start()
            follower = f
        }
    } catch {
        core.sync.stopAll()
        removeRules()
        throw error
    }
    let syncFollower = follower
    defer {
        syncFollower?.stop()
        core.sync.stopAll()
    }
    // Before masq says it is serving, the control socket is bound and the metrics address is bound
    // once and let go (its server binds it again as the group starts): a taken address stops start-up,
    // named.
    var controlListener: ControlSocketListener?
    do {
        controlListener = try options.controlSocket.map { path throws(DaemonError) in try ControlSocketListener(path) }
        if let (host, port) = options.metricsAddress { try await HostChecks.probeListen(host: host, port: port) }
    } catch {
        controlListener?.abandon()
        removeRules()
        throw error
    }

    // The handlers of the signals systemd and admins send a running masq, in before READY=1.
    let signals = await DaemonSignals.install()

    let health = keepalived.map { HealthController($0, core: core, logger: logger) }
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
        .init(service: PacketService(context: context, onStopping: announceStopping, onShutdown: removeRules,
                                     logger: logger),
              successTerminationBehavior: .gracefullyShutdownGroup,
              failureTerminationBehavior: .gracefullyShutdownGroup),
        .init(service: SignalService(core: core, control: control, health: health, signals: signals.reload,
                                     logger: logger)),
        .init(service: RateService(core: core)),
        .init(service: RestartSignalService(control: control, stateFile: statePath, signals: signals.restart,
                                            logger: logger),
              successTerminationBehavior: .gracefullyShutdownGroup),
    ]
    if let health { services.append(.init(service: HealthService(controller: health, control: control))) }
    if let controlListener {
        services.append(.init(service: ControlService(core: core, listener: controlListener, logger: logger),
                              failureTerminationBehavior: .gracefullyShutdownGroup))
    }
    if let (host, port) = options.metricsAddress {
        let publisher = MetricsPublisher(core: core)
        // Under User=masq the kernel's queue counters are root's: said now, once, not at a scrape.
        _ = publisher.kernelQueues.drops()
        services.append(.init(service: makeMetricsServer(publisher, host: host, port: port, logger: logger),
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        logger.info("metrics", metadata: ["url": "http://\(host):\(port)/metrics"])
    }
    services.append(.init(service: StoppingNoticeService(announce: announceStopping)))
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(
        services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    if let pidFile = options.pidFile {
        do {
            try "\(getpid())\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        } catch {
            removeRules()
            throw DaemonError("\(pidFile): cannot write the pid file: \(error.localizedDescription)")
        }
    }
    defer { if let pidFile = options.pidFile { try? FileManager.default.removeItem(atPath: pidFile) } }
    logger.info("serving", metadata: [
        "services": "\(configuration.services.count)", "rules": "\(options.rulesPath)", "pid": "\(getpid())"])
    // Queue bound, rules installed, the control socket bound, the metrics address found free (its
    // listener binds once the group runs), the signal handlers in: systemd may now count the start
    // done. A notify socket that cannot be reached is said once, here; masq serves on regardless.
    if let failure = notifier.ready(status: servingStatus(services: configuration.services.count, queue: options.queue)) {
        logger.warning("sd_notify: cannot tell the service manager masq is ready: \(failure)")
    }
    do {
        try await group.run()
    } catch {
        removeRules()
        throw error
    }
    if control.restartRequested, let statePath {
        logger.notice("exiting for a restart: rules stay, table kept in \(statePath)")
    } else {
        removeRules()
    }
}

/// Says where the engine's table came from (adopted, created, replaced and why, private memory), and
/// returns the figures the metrics and the first batch's gap start from.
func logTable(_ engine: Engine, logger: Logger) -> TableFileFigures {
    let memory = engine.table.memory
    var figures = TableFileFigures(path: memory.path)
    figures.generation = memory.generation
    guard let path = memory.path else {
        logger.info("connection table in private memory (--no-state-file): a restart loses it",
                    metadata: ["capacity": "\(memory.capacity)"])
        return figures
    }
    if let adoption = engine.adoption {
        figures.adoptedConnections = adoption.connections + adoption.templates
        figures.awaitingFirstPacketSince = adoption.previousActivity
        var metadata: Logger.Metadata = [
            "state_file": "\(path)", "generation": "\(adoption.generation)", "connections": "\(adoption.connections)",
            "templates": "\(adoption.templates)", "clean": "\(adoption.clean)", "capacity": "\(memory.capacity)",
            "on_removed_real_servers": "\(adoption.onRemovedRealServers)"]
        if let pid = adoption.previousOwnerPID { metadata["previous_pid"] = "\(pid)" }
        if let slot = adoption.repairedSlot { metadata["repaired_slot"] = "\(slot)" }
        if let ns = adoption.recountNanoseconds { metadata["recount_ms"] = "\(Double(ns / 1000) / 1000)" }
        if adoption.scrubbedSlots > 0 { metadata["scrubbed_slots"] = "\(adoption.scrubbedSlots)" }
        if adoption.revivedRecords > 0 { metadata["revived_records"] = "\(adoption.revivedRecords)" }
        logger.notice("connection table adopted", metadata: metadata)
        if let reason = adoption.firstScrubReason {
            logger.warning("the recount scrubbed \(adoption.scrubbedSlots) impossible entries, the rest of the table kept; the first: \(reason)",
                           metadata: ["state_file": "\(path)"])
        }
        if let note = memory.capacityNote { logger.notice("\(note)", metadata: ["state_file": "\(path)"]) }
    } else {
        let metadata: Logger.Metadata = ["state_file": "\(path)", "capacity": "\(memory.capacity)", "file_size": "\(memory.fileSize)"]
        switch memory.replacedReason {
        case nil:
            logger.info("connection table created", metadata: metadata)
        case "--fresh-state":
            logger.notice("connection table created: --fresh-state replaced the state file's table", metadata: metadata)
        case let reason?:
            logger.warning("connection table created: the state file's table could not be adopted (\(reason))", metadata: metadata)
        }
    }
    // Adopted or new, the file system it is on.
    if let note = memory.spaceNote { logger.warning("\(note)", metadata: ["state_file": "\(path)"]) }
    if let note = hugePagesNote(statePath: path, capacity: memory.capacity) { logger.notice("\(note)") }
    return figures
}

/// The last step of every orderly exit (SIGTERM, SIGUSR2, an error), once nothing else touches the
/// engine (the packet threads and the sync daemons have stopped): the table is marked clean, so the
/// next masq adopts it without a repair or recount pass.
func finishTable(_ shared: SharedEngine, logger: Logger) {
    let path = shared.withLock { state in
        state.engine.markCleanShutdown()
        return state.tableFile.path
    }
    guard let path else { return }
    logger.info("connection table marked clean for the next masq", metadata: ["state_file": "\(path)"])
}
