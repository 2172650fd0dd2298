import Foundation
import Logging
import MasqControl
import MasqCapture
import MasqCore
import MasqRules
import Synchronization

/// The daemon's control plane: the running configuration (the source of truth for `-S`), changes to it
/// (SIGHUP, masqadm), and what the admin tools read (state, flows, rates, traces). Every change is
/// validated whole and applied to the engine under its lock, between two packet batches, so it is
/// atomic for the packet path; established flows are never dropped by a change.
public final class ControlPlane: Sendable {
    public let options: DaemonOptions
    public let shared: SharedEngine
    let logger: Logger
    let iptables: InstalledIptables?
    private let configuration: Mutex<Configuration>
    /// The sync daemons (masqadm --start-daemon, `masq run --sync-daemon`, keepalived's FIFO).
    public let sync: SyncManager

    init(options: DaemonOptions, shared: SharedEngine, configuration: Configuration, iptables: InstalledIptables?,
         logger: Logger) {
        self.options = options
        self.shared = shared
        self.configuration = Mutex(configuration)
        self.iptables = iptables
        self.logger = logger
        sync = SyncManager(shared: shared, tuning: options.syncTuning, logger: logger)
    }

    /// Sends the engine's ICMP port-unreachable answers (see `PacketLoop`); nil without a raw socket.
    /// Here so the metrics can count what the kernel refused.
    let unreachableSender = UnreachableSender()

    public var currentConfiguration: Configuration { configuration.withLock { $0 } }

    // MARK: Changes

    /// Replaces the whole configuration (SIGHUP, restore, any edit): engine first, then iptables.
    /// Each difference from the running configuration (which holds masqadm's edits since the last
    /// load, so a SIGHUP shows what the file undoes too) is logged on its own line, then a summary.
    /// Callers hold `changeLock`, so the configuration read here is the one being replaced.
    func replace(_ new: Configuration, reason: String) {
        let old = configuration.withLock { current in
            defer { current = new }
            return current
        }
        shared.withLock { $0.engine.apply(new) }
        refreshIptables()
        let changes = old.changes(to: new)
        for change in changes {
            var metadata: Logger.Metadata = ["by": "\(reason)"]
            if let service = change.service { metadata["service"] = "\(service)" }
            if let server = change.realServer { metadata["real_server"] = "\(server)" }
            logger.notice("\(change.description)", metadata: metadata)
        }
        logger.info("configuration applied", metadata: [
            "by": "\(reason)", "services": "\(new.services.count)",
            "real_servers": "\(new.services.reduce(0) { $0 + $1.realServers.count })", "changes": "\(changes.count)"])
    }

    /// Brings the iptables rules in line with the configuration and the real servers still draining
    /// (called on every change, and every 2 s so a drained server's rules go when its last flow does).
    func refreshIptables() {
        guard let iptables else { return }
        let draining = shared.withLock { $0.engine.drainingRealServers }
        let plan = IptablesPlan(currentConfiguration, queue: options.queue, chain: options.chain, draining: draining,
                                failClosed: options.failClosedIptables || sync.everStarted.load(ordering: .acquiring))
        guard plan != iptables.plan.withLock({ $0 }) else { return }
        do {
            try iptables.runner.refill(plan)
            iptables.plan.withLock { $0 = plan }
        } catch {
            logger.error("updating iptables failed: \(error)")
        }
    }

    /// The 2-second refresh, serialised with changes so it never installs a plan older than theirs.
    func periodicRefresh() {
        changeLock.withLock { _ in refreshIptables() }
    }

    /// Serialises read-modify-write changes so two admins cannot lose each other's edit.
    private let changeLock = Mutex(())

    /// One ipvsadm editing command (-A -E -D -C -a -e -d), with ipvsadm's errors; nothing changes on error.
    public func edit(_ command: IPVSCommand) throws(RulesError) {
        try changeLock.withLock { _ throws(RulesError) in
            var next = currentConfiguration
            try next.apply(command)
            replace(next, reason: "masqadm \(command.kind.rawValue)")
        }
    }

    /// `ipvsadm -R`: every command of `text` applied in order to the running configuration, all or none.
    public func restore(_ text: String) throws(RulesError) {
        try changeLock.withLock { _ throws(RulesError) in
            let next = try RulesFile.apply(text, to: currentConfiguration, file: "<stdin>")
            replace(next, reason: "masqadm -R")
        }
    }

    /// The health checks replace the services (real servers as health allows); timeouts stay.
    public func replaceServices(_ new: Configuration, reason: String) {
        replaceServices(reason: reason) { _ in new }
    }

    /// As `replaceServices(_:reason:)`, with the services computed from the running configuration
    /// under the change lock (nil: nothing to change), so no edit lands between the look and the change.
    public func replaceServices(reason: String, _ compute: (Configuration) -> Configuration?) {
        changeLock.withLock { _ in
            let current = currentConfiguration
            guard var next = compute(current) else { return }
            next.timeouts = current.timeouts
            replace(next, reason: reason)
        }
    }

    /// SIGHUP: the rules file replaces the services; timeouts set with `--set` stay.
    public func reload(from path: String) throws(DaemonError) {
        var loaded = try loadRules(path)
        changeLock.withLock { _ in
            loaded.timeouts = currentConfiguration.timeouts
            replace(loaded, reason: "SIGHUP")
        }
    }

    public func setTimeouts(tcp: UInt32, tcpFin: UInt32, udp: UInt32) {
        changeLock.withLock { _ in
            var next = currentConfiguration
            next.timeouts.set(tcp: tcp, tcpFin: tcpFin, udp: udp)
            configuration.withLock { $0 = next }
            shared.withLock { $0.engine.setTimeouts(next.timeouts) }
        }
    }

    /// `masqadm --start-daemon`: the first daemon of a director that had none turns its iptables rules
    /// to fail closed (`IptablesPlan.failClosed`).
    public func startSyncDaemon(_ config: SyncDaemonConfig) throws(SyncDaemonError) {
        try sync.start(config)
        periodicRefresh()
    }

    public func stopSyncDaemon(_ role: SyncDaemonRole) throws(SyncDaemonError) {
        try sync.stop(role)
    }

    public func zero(_ key: ServiceKey?) throws(RulesError) {
        if let key, currentConfiguration.serviceIndex(key) == nil {
            throw RulesError(.noSuchService, token: key.endpoint, message: "No such service")
        }
        shared.withLock { $0.engine.zeroCounters(key) }
    }

    // MARK: Reading

    /// What masqadm renders: services, real servers, counts, counters and rates.
    public func state() -> AdminState {
        shared.withLock { state in
            let engine = state.engine
            let services = engine.services.map { service -> ServiceState in
                let spec = service.spec
                return ServiceState(
                    proto: spec.key.proto.description, address: spec.key.address.description, port: spec.key.port,
                    fwmark: spec.key.fwmark, scheduler: spec.scheduler, schedulerFlags: spec.schedulerFlagNames,
                    persistence: spec.persistence, netmask: spec.persistenceMaskText, onePacket: spec.onePacket,
                    stats: engine.serviceStats[Int(service.id)],
                    rates: service.rates,
                    destinations: service.destinations.map { d in
                        // The thresholds as configured (`--thresholds` shows -x/-y, not the overload state).
                        let configured = spec.realServers.first { $0.address == d.address && $0.port == d.port }
                        return DestinationState(
                            address: d.address.description, port: d.port, weight: d.weight,
                            activeConnections: d.activeConnections, inactiveConnections: d.inactiveConnections,
                            persistentConnections: d.persistentConnections,
                            upperThreshold: configured?.upperThreshold ?? 0, lowerThreshold: configured?.lowerThreshold ?? 0,
                            stats: d.stats, rates: d.rates)
                    })
            }
            let t = engine.timeouts
            return AdminState(capacity: engine.table.capacity,
                              connections: engine.table.connectionCount + engine.table.templateCount,
                              timeouts: TimeoutState(tcp: t[.established], tcpFin: t[.finWait], udp: t[.udp]),
                              services: services)
        }
    }

    public func flows(_ filter: FlowFilter) -> [FlowRecord] {
        shared.withLock { $0.engine.flowRecords(matching: filter) }
    }

    /// Every 2 s: the rates ipvsadm `--rate` shows, estimated as IPVS does.
    func sampleRates() {
        shared.withLock { $0.engine.estimateRates(at: monotonicNanoseconds()) }
    }

    /// What the last `watchPressure` saw: pressure on, times entered, evictions, registry refusals.
    private let pressureSeen = Mutex<(on: Bool, entered: UInt64, evicted: UInt64, registryFull: UInt64)>((false, 0, 0, 0))

    /// Every 2 s (off the packet thread): logs each change of the table's pressure mode once, the
    /// early drops since the last look, so a flood shows in the log without a line per packet, and
    /// configuration left out for want of registry records.
    func watchPressure() {
        let (on, entered, evicted, fill, registryFull) = shared.withLock { state in
            let engine = state.engine
            return (engine.pressure, engine.counters.pressureEntered, engine.counters.evicted.reduce(0, +), engine.table.fill,
                    engine.counters.registryFull)
        }
        let percent = "\(Int(fill * 100)) %"
        pressureSeen.withLock { seen in
            // Entered since the last look (even if over again by now): said once.
            if entered > seen.entered {
                logger.warning("connection table under pressure: half-open entries now time out after \(Engine.pressureHalfOpenTimeout) s",
                               metadata: ["fill": "\(percent)"])
            }
            if !on && (seen.on || entered > seen.entered) {
                logger.notice("connection table pressure over: ordinary timeouts again", metadata: ["fill": "\(percent)"])
            }
            if evicted > seen.evicted {
                logger.warning("connection table full: half-open entries evicted for new flows (early drop)",
                               metadata: ["evicted": "\(evicted - seen.evicted)", "fill": "\(percent)"])
            }
            // The state file's registry holds a fixed number of services and real servers (live and
            // draining); one that found it full is left out of the configuration until records free up.
            if registryFull > seen.registryFull {
                logger.warning("services or real servers left out: the table's registry (\(TableMemory.registryCapacity) records each, live and draining) is full; they are never scheduled until records free up",
                               metadata: ["left_out": "\(registryFull - seen.registryFull)"])
            }
            seen = (on, entered, evicted, registryFull)
        }
    }

    // MARK: Packet traces

    /// Starts a packet trace; one at a time. The file is opened outside the engine lock, which is
    /// taken only to look for a running trace and to install the new one.
    /// Why a trace did not start.
    public enum TraceRefusal: Error, CustomStringConvertible {
        /// The one trace slot is taken (by the trace writing to this file).
        case busy(runningTo: String)
        /// The capture file could not be created.
        case cannotCreate(String)

        public var description: String {
            switch self {
            case .busy(let running): "a trace is already running (to \(running)); wait for it to finish"
            case .cannotCreate(let reason): reason
            }
        }
    }

    public func startTrace(filter: FlowFilter, packets: Int, seconds: Int, path: String) throws(TraceRefusal) {
        let holder = shared.withLock { state -> String? in
            if let holder = state.traceSlot { return holder }
            state.traceSlot = path
            return nil
        }
        if let holder { throw .busy(runningTo: holder) }
        let trace: PacketTrace
        do throws(CaptureError) {
            trace = try PacketTrace(filter: filter, path: path, packets: packets, seconds: seconds, now: monotonicNanoseconds())
        } catch {
            shared.withLock { $0.traceSlot = nil }
            throw .cannotCreate(error.description)
        }
        shared.withLock { $0.trace = trace }
        logger.notice("packet trace started", metadata: [
            "file": "\(path)", "filter": "\(filter)", "packets": "\(packets)", "seconds": "\(seconds)"])
    }
}
