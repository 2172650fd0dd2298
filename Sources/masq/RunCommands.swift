// `masq run` and `masq iptables`: the daemon's command line and its iptables rules by hand.
import ArgumentParser
import Logging
import Foundation
import MasqControl
import MasqCore
import MasqDaemon
import MasqRules

extension QueueSelection: ExpressibleByArgument {
    public init?(argument: String) {
        let parts = argument.split(separator: ":")
        if parts.count == 1, let q = UInt16(parts[0]) {
            self = .single(q)
        } else if parts.count == 2, let a = UInt16(parts[0]), let b = UInt16(parts[1]), a <= b {
            self = a == b ? .single(a) : .balance(a, b)
        } else {
            return nil
        }
    }
}

struct QueueOptions: ParsableArguments {
    @Option(help: "The NFQUEUE number.")
    var queue: UInt16 = 0

    @Option(help: ArgumentHelp("Queues A to B, balanced by the kernel (--queue-balance A:B); a thread per queue, one connection table.", valueName: "A:B"))
    var queues: QueueSelection?

    @Flag(help: "With --queues: spread packets over the queues by the CPU handling them (--queue-cpu-fanout), not by address pair.")
    var queueCpuFanout = false

    var selection: QueueSelection {
        if queueCpuFanout, case .balance(let a, let b) = queues { return .cpuFanout(a, b) }
        return queues ?? .single(queue)
    }

    func validate() throws {
        if queueCpuFanout, case .balance = queues {} else if queueCpuFanout {
            throw ValidationError("--queue-cpu-fanout needs --queues A:B with A < B")
        }
        if let queues, queues.numbers.count > 64 { throw ValidationError("--queues: at most 64 queues") }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the director: NAT the queued packets until SIGTERM/SIGINT (stop for good) or SIGUSR2 (exit for a restart: rules and table kept); SIGHUP reloads the rules.")

    @Option(help: "The rules file (ipvsadm-save format).")
    var rules: String?

    @Option(help: "A keepalived.conf: its virtual_server/real_server part, with health checks.")
    var keepalived: String?

    @OptionGroup var queueOptions: QueueOptions

    @Flag(help: "Install the iptables rules the rules file needs at start, remove them at exit.")
    var installIptables = false

    @Option(help: "The iptables binary: iptables (nft backend, falls back to iptables-legacy if it refuses a rule) or iptables-legacy.")
    var iptables = "iptables"

    @Option(help: "The name of masq's iptables chains: raw/NAME, raw/NAME-OUTPUT, security/NAME-FORWARD, security/NAME-INPUT; with firewall-mark services (-f) also raw/NAME-MARK and mangle/NAME-MANGLE, jumped to from the end of PREROUTING.")
    var chain = "MASQ"

    @Option(help: "The most connections the table holds; new flows beyond it are dropped and counted. A state file made for another size keeps its own until --fresh-state.")
    var maxFlows = Engine.defaultCapacity

    @Option(help: ArgumentHelp("""
        The file the connection table lives in, which the next masq (a restart, an upgrade, after a crash) \
        adopts, so established flows survive (default: \(defaultStateDirectory)/masq-net<INODE>-<COOKIE>-q<QUEUES>.table, \
        per network namespace and queue set; a missing directory other than \(defaultStateDirectory) is created, mode 0700).
        """, valueName: "PATH"))
    var stateFile: String?

    @Option(help: ArgumentHelp("The directory of the default state file (default \(defaultStateDirectory)); masq.service gives /run/masq, a tmpfs with huge pages (dist/systemd/run-masq.mount).", valueName: "DIR"))
    var stateDir: String?

    @Flag(help: "Start with an empty table: replace the state file's contents (its flows are forgotten).")
    var freshState = false

    @Flag(help: "Keep the table in private memory, as before 0.13: every restart loses it (and the iptables rules keep --queue-bypass, unless the director is one of a sync pair).")
    var noStateFile = false

    @Option(help: "Packets the kernel holds for masq before it drops (or, with --fail-open, accepts) new ones.")
    var queueMaxLength: UInt32 = 8192

    @Flag(help: "When the queue is full, let packets through un-NATed instead of dropping them.")
    var failOpen = false

    @Flag(help: "Ask the kernel for segmented, checksummed packets (slower; for debugging).")
    var noGSO = false

    @Flag(help: "Log one line per packet (debug level).")
    var debugPackets = false

    @Option(help: "Write the daemon's pid here (removed at exit).")
    var pidFile: String?

    @Option(help: "Where SIGUSR1 writes connection-table dumps (JSON lines, one file per signal).")
    var dumpDirectory = "/run/masq"

    @Option(help: ArgumentHelp("""
        The runtime control socket masqadm and `masq flows` talk to (root only): a file path (mode 0600), \
        or @NAME in the abstract namespace, which is per network namespace (default: $MASQ_CONTROL_SOCKET, else \
        \(ControlClient.defaultSocket)).
        """, valueName: "PATH|@NAME"))
    var controlSocket: String?

    @Flag(help: "No control socket.")
    var noControlSocket = false

    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).", valueName: "HOST:PORT"))
    var metrics: String?

    @Flag(help: "Like IPVS's expire_nodest_conn: when a real server is removed, drop its flows' packets and expire them (default: they live out their timeouts).")
    var expireNodestConn = false

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(help: ArgumentHelp("""
        How log lines look on stderr: text (time, level, label, metadata, [module], message), journal \
        (a <N> priority prefix, no time: journald stamps it), json (one object per line), or auto: \
        journal when stderr is the journal ($JOURNAL_STREAM names it), else text.
        """, valueName: "auto|text|journal|json"))
    var logFormat: LogFormat = .auto

    @OptionGroup(title: "Director pair (connection sync, keepalived)")
    var sync: SyncOptions

    var metricsAddress: (String, Int)? {
        guard let metrics, let colon = metrics.lastIndex(of: ":"), let port = Int(metrics[metrics.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        return (String(metrics[..<colon]), port)
    }

    func validate() throws {
        guard (rules == nil) != (keepalived == nil) else {
            throw ValidationError("give one of --rules (ipvsadm-save format) or --keepalived (keepalived.conf)")
        }
        guard (1...ConnectionTable.maximumCapacity).contains(maxFlows) else {
            throw ValidationError("--max-flows: \(maxFlows) is not between 1 and \(ConnectionTable.maximumCapacity)")
        }
        if metrics != nil && metricsAddress == nil {
            throw ValidationError("--metrics takes HOST:PORT, e.g. 127.0.0.1:9469")
        }
        do { _ = try stateFileChoice } catch { throw ValidationError(error.description) }
    }

    var stateFileChoice: StateFileChoice {
        get throws(DaemonError) { try StateFileChoice(path: stateFile, fresh: freshState, none: noStateFile, directory: stateDir) }
    }

    func run() async throws {
        // First, while no thread of masq's runs: NOTIFY_SOCKET leaves the environment, so no child
        // (iptables, notify scripts) ever sees it.
        let notifier = SystemdNotifier.fromEnvironment()
        let level = debugPackets ? .debug : logLevel
        let format = logFormat.lineFormatForThisProcess
        LoggingSystem.bootstrap { label in
            var handler = MasqLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "masq")
        var options = DaemonOptions(rulesPath: rules ?? keepalived!)
        options.keepalived = keepalived != nil
        options.queue = queueOptions.selection
        options.installIptables = installIptables
        options.iptablesBinary = iptables
        options.chain = chain
        options.maxFlows = maxFlows
        options.stateFile = try stateFileChoice
        options.freshState = freshState
        options.queueOptions.maxLength = queueMaxLength
        options.queueOptions.failOpen = failOpen
        options.queueOptions.gso = !noGSO
        options.logPackets = debugPackets
        options.pidFile = pidFile
        options.dumpDirectory = dumpDirectory
        options.controlSocket = noControlSocket ? nil : ControlClient.socketPath(option: controlSocket)
        options.metricsAddress = metricsAddress
        options.expireNodestConnections = expireNodestConn
        options.notifier = notifier
        try sync.apply(to: &options)
        do {
            try await runDaemon(options, logger: logger)
        } catch let error as DaemonError {
            throw MasqError(error.description)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}

struct Iptables: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print, install or remove the iptables rules a rules file needs.",
        discussion: """
            Where IPVS hooks: client -> VIP is queued in raw PREROUTING (rewritten before routing), the real \
            servers' replies and ICMP errors in security FORWARD (rewritten after routing, so the director \
            needs no accept_local and works with rp_filter=1), the director's own connections to a VIP in \
            raw OUTPUT and their replies in security INPUT; all of them are kept out of conntrack \
            (-j CT --notrack). --queue-bypass lets traffic through while no daemon is \
            bound: new connections to a VIP then reach the director's own stack (which resets them) and \
            replies of existing NAT flows leave un-NATed, so clients reset those too.
            """)

    @Option(help: "The rules file (ipvsadm-save format); --remove needs none.")
    var rules: String?

    @OptionGroup var queueOptions: QueueOptions

    @Option(help: "The name of masq's iptables chains: raw/NAME, raw/NAME-OUTPUT, security/NAME-FORWARD, security/NAME-INPUT; with firewall-mark services (-f) also raw/NAME-MARK and mangle/NAME-MANGLE, jumped to from the end of PREROUTING.")
    var chain = "MASQ"

    @Option(help: "The iptables binary.")
    var iptables = "iptables"

    @Flag(exclusivity: .exclusive, help: "What to do (default: print).")
    var action: Action = .print

    @Flag(help: "NFQUEUE rules without --queue-bypass, as masq run --install-iptables installs them with a state file (its default) or as a director of a sync pair (this command does so for a rules file with a --start-daemon line): while masq is down (a restart, a crash) the kernel drops the queued packets, which TCP retransmits, rather than letting its own stack reset the flows.")
    var failClosed = false

    @Option(name: .customLong("unless-queue-bound"),
            help: ArgumentHelp("With --remove: wait up to SECONDS for a process to bind a queue the installed rules send to, and if one does (a masq that systemd is starting again), leave the rules; masq-unqueue.service runs so.", valueName: "SECONDS"))
    var unlessQueueBound: Double?

    @Flag(help: "With --remove, for masq.service's ExecStopPost=: remove only when systemd says masq died of SIGTERM or SIGINT itself (EXIT_CODE=killed, EXIT_STATUS=TERM or INT: stopped during its start, before it handled the signal) or ran over TimeoutStopSec (SERVICE_RESULT=timeout); after an orderly exit masq has done what was asked, and after a crash the rules stay for the masq Restart= starts.")
    var ifStopUnhandled = false

    enum Action: String, EnumerableFlag {
        case print, install, remove
    }

    func validate() throws {
        if rules == nil && action != .remove { throw ValidationError("--\(action.rawValue) needs --rules RULES") }
        if ifStopUnhandled && action != .remove { throw ValidationError("--if-stop-unhandled goes with --remove") }
        if let seconds = unlessQueueBound {
            guard action == .remove else { throw ValidationError("--unless-queue-bound goes with --remove") }
            guard seconds >= 0 && seconds <= 600 else { throw ValidationError("--unless-queue-bound: SECONDS in 0...600") }
        }
    }

    func run() throws {
        if action == .remove, rules == nil {
            remove(IptablesPlan(Configuration(), queue: queueOptions.selection, chain: chain))
            return
        }
        let document: RulesFile.Document
        do { document = try loadRulesDocument(rules!) } catch { throw MasqError(error.description) }
        // A file that starts a sync daemon is a pair director's: its rules fail closed, as masq run's.
        let plan = IptablesPlan(document.configuration, queue: queueOptions.selection, chain: chain,
                                failClosed: failClosed || !document.syncDaemons.isEmpty)
        let runner = IptablesRunner(binary: iptables)
        switch action {
        case .print:
            Swift.print(plan.script(binary: iptables), terminator: "")
        case .install:
            do {
                let installation = try runner.install(plan)
                if let note = installation.note { Swift.print("note: \(note)") }
                let how = installation.hooksFound > 0 ? "replaced in place" : "installed"
                Swift.print("\(how) \(plan.ruleCount) iptables rules (\(plan.chainNames)) with \(runner.binary)")
            } catch {
                throw MasqError("\(error)")
            }
        case .remove:
            remove(plan)
        }
    }

    /// Removes masq's chains (only their names matter), from iptables-legacy too if `masq run` fell
    /// back to it (masq-unqueue.service runs this once masq stopped restarting).
    private func remove(_ plan: IptablesPlan) {
        if ifStopUnhandled {
            let environment = ProcessInfo.processInfo.environment
            guard QueueBindings.stopWentUnhandled(environment) else {
                let how = ["SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS"].map { "\($0)=\(environment[$0] ?? "")" }
                Swift.print("kept \(plan.chainNames): masq's exit (\(how.joined(separator: " "))) needs no clean-up here")
                return
            }
        }
        if let seconds = unlessQueueBound, let queue = boundQueue(of: plan, within: seconds) {
            Swift.print("kept \(plan.chainNames): queue \(queue) is bound (a masq is running)")
            return
        }
        IptablesRunner.removeEverywhere(plan, binary: iptables)
        Swift.print("removed \(plan.chainNames)")
    }

    /// A queue the installed rules send to that a process binds within `seconds` (checked every 100 ms).
    private func boundQueue(of plan: IptablesPlan, within seconds: Double) -> UInt16? {
        let targets = QueueBindings.referenced(by: plan, binary: iptables)
        guard !targets.isEmpty else { return nil }  // no rules of masq's: nothing to keep
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if let bound = QueueBindings.bound(), let queue = targets.intersection(bound).min() { return queue }
            usleep(100_000)
        } while Date() < deadline
        return nil
    }
}
