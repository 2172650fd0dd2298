import ArgumentParser
import Logging
import MasqCore
import MasqDaemon

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

    var selection: QueueSelection { queues ?? .single(queue) }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the director: NAT the queued packets until SIGTERM/SIGINT; SIGHUP reloads the rules.")

    @Option(help: "The rules file (ipvsadm-save format).")
    var rules: String

    @OptionGroup var queueOptions: QueueOptions

    @Flag(help: "Install the iptables rules the rules file needs at start, remove them at exit.")
    var installIptables = false

    @Option(help: "The iptables binary: iptables (nft backend, falls back to iptables-legacy if it refuses a rule) or iptables-legacy.")
    var iptables = "iptables"

    @Option(help: "The iptables chain (in the raw table) masq's rules live in.")
    var chain = "MASQ"

    @Option(help: "The most connections the table holds; new flows beyond it are dropped and counted.")
    var maxFlows = Engine.defaultCapacity

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

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if case .balance(let a, let b) = queueOptions.selection, b - a >= 64 {
            throw ValidationError("--queues: at most 64 queues")
        }
    }

    func run() async throws {
        let level = debugPackets ? .debug : logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "masq")
        var options = DaemonOptions(rulesPath: rules)
        options.queue = queueOptions.selection
        options.installIptables = installIptables
        options.iptablesBinary = iptables
        options.chain = chain
        options.maxFlows = maxFlows
        options.queueOptions.maxLength = queueMaxLength
        options.queueOptions.failOpen = failOpen
        options.queueOptions.gso = !noGSO
        options.logPackets = debugPackets
        options.pidFile = pidFile
        options.dumpDirectory = dumpDirectory
        do {
            try await runDaemon(options, logger: logger)
        } catch let error as DaemonError {
            throw MasqError(error.description)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

struct Iptables: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print, install or remove the iptables rules a rules file needs.",
        discussion: """
            Both directions of every service are queued in the raw table's PREROUTING, before conntrack, \
            and kept out of conntrack (-j CT --notrack); ICMP errors are queued too, and the director's own \
            "fragmentation needed" from OUTPUT. --queue-bypass lets traffic through while no daemon is \
            bound: new connections to a VIP then reach the director's own stack (which resets them) and \
            replies of existing NAT flows leave un-NATed, so clients reset those too.
            """)

    @Option(help: "The rules file (ipvsadm-save format).")
    var rules: String

    @OptionGroup var queueOptions: QueueOptions

    @Option(help: "The iptables chain (in the raw table).")
    var chain = "MASQ"

    @Option(help: "The iptables binary.")
    var iptables = "iptables"

    @Flag(exclusivity: .exclusive, help: "What to do (default: print).")
    var action: Action = .print

    enum Action: String, EnumerableFlag {
        case print, install, remove
    }

    func run() throws {
        let configuration: Configuration
        do {
            configuration = try MasqDaemon.loadRules(rules)
        } catch {
            throw MasqError(error.description)
        }
        let plan = IptablesPlan(configuration, queue: queueOptions.selection, chain: chain)
        let runner = IptablesRunner(binary: iptables)
        switch action {
        case .print:
            Swift.print(plan.script(binary: iptables), terminator: "")
        case .install:
            do {
                if let note = try runner.install(plan) { Swift.print("note: \(note)") }
            } catch {
                throw MasqError("\(error)")
            }
            Swift.print("installed \(plan.installCommands.count) iptables commands (raw/\(plan.chain), raw/\(plan.outputChain)) with \(runner.binary)")
        case .remove:
            runner.remove(plan)
            Swift.print("removed raw/\(plan.chain) and raw/\(plan.outputChain)")
        }
    }
}
