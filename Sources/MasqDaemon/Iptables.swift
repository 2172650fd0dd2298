import Foundation
import Logging
import MasqCore
import Synchronization

/// Which queue(s) the NFQUEUE rules send to: one number, or a range the kernel spreads packets over,
/// by address pair (`--queue-balance`) or by the CPU that handles the packet (`--queue-cpu-fanout`).
/// Either way the two directions of one NAT flow can land on different queues; masq's one table is
/// shared by the queues' threads.
public enum QueueSelection: Equatable, Sendable, CustomStringConvertible {
    case single(UInt16)
    case balance(UInt16, UInt16)
    case cpuFanout(UInt16, UInt16)

    /// Every queue number selected.
    public var numbers: [UInt16] {
        switch self {
        case .single(let q): [q]
        case .balance(let a, let b), .cpuFanout(let a, let b): Array(a...b)
        }
    }

    public var first: UInt16 {
        switch self {
        case .single(let q): q
        case .balance(let a, _), .cpuFanout(let a, _): a
        }
    }

    /// The NFQUEUE target's options. `--queue-bypass` (unless `failClosed`): while no process has the
    /// queue bound, packets go on through the stack instead of being dropped. A director of a pair
    /// must not: while its masq is dead and before keepalived moves the VIPs, its own stack would
    /// reset every client connection (no socket on the VIP's port) and let the real servers' replies
    /// out un-NATed, so the flows the standby holds would be lost anyway; without the bypass the
    /// kernel drops those packets and TCP retransmits them to whichever director then holds the VIP.
    func targetArguments(failClosed: Bool) -> [String] {
        let bypass = failClosed ? [] : ["--queue-bypass"]
        switch self {
        case .single(let q): return ["-j", "NFQUEUE", "--queue-num", "\(q)"] + bypass
        case .balance(let a, let b): return ["-j", "NFQUEUE", "--queue-balance", "\(a):\(b)"] + bypass
        case .cpuFanout(let a, let b):
            return ["-j", "NFQUEUE", "--queue-balance", "\(a):\(b)", "--queue-cpu-fanout"] + bypass
        }
    }

    public var description: String {
        switch self {
        case .single(let q): "\(q)"
        case .balance(let a, let b): "\(a):\(b)"
        case .cpuFanout(let a, let b): "\(a):\(b) by CPU"
        }
    }
}

/// One chain of masq's: its table, the built-in chain that jumps to it, its name and its rules.
public struct IptablesChain: Equatable, Sendable {
    public var table: String
    public var hook: String
    public var name: String
    public var rules: [[String]]
}

/// The iptables rules masq needs, derived from the rules file, hooked where IPVS hooks (so masq needs
/// of the host what IPVS needs, and no more):
///
/// - **raw PREROUTING** (chain `MASQ`): client → VIP is queued and rewritten to the real server
///   before routing, so the kernel routes it to the real server. The real servers' replies are only
///   kept out of conntrack here (`-j CT --notrack`).
/// - **security FORWARD** (`MASQ-FORWARD`): the replies, and ICMP errors from the real servers' side,
///   are queued and rewritten to source = VIP *after* routing, as IPVS's NAT reply hook at FORWARD
///   does. Rewritten before routing, a packet from one of the director's own addresses is a martian
///   (dropped unless `accept_local=1`, and with `rp_filter=1` even then). The security table (priority
///   50) runs after mangle (−150) and filter (0), as IPVS's hook (98) does: a verdict ends the packet's
///   walk of the table it was queued from, and the admin's mangle FORWARD rules (TCPMSS clamping) and
///   filter FORWARD rules must still see the reply, as they see it with IPVS (from the real server).
/// - **raw OUTPUT** (`MASQ-OUTPUT`): connections from the director itself to a VIP (IPVS serves them
///   from LOCAL_OUT): rewritten to the real server, then re-routed by the kernel after the verdict;
///   and the director's own "fragmentation needed" about a client → real server packet it could not
///   forward, translated back to the VIP.
/// - **security INPUT** (`MASQ-INPUT`): the real servers' replies to those local connections
///   (destination a VIP), and their ICMP errors, rewritten after routing, like the forwarded ones.
///
/// Why notrack: rewriting after conntrack leaves the kernel's entry keyed on the VIP; the real
/// server's reply then matches nothing and is "invalid". IPVS keeps its flows out of conntrack too.
/// The real servers' answers to the director's own addresses other than a VIP (health checks, admin
/// sessions) keep conntrack, or stateful INPUT rules would drop them.
public struct IptablesPlan: Equatable, Sendable {
    public var chain: String
    public var queue: QueueSelection
    /// No `--queue-bypass`: packets for a dead masq are dropped, not passed (see
    /// `QueueSelection.targetArguments(failClosed:)`); a director of a sync pair runs so.
    public var failClosed: Bool
    /// raw PREROUTING: inbound queued, replies notracked.
    public var preRouting: [[String]] = []
    /// raw OUTPUT: local clients' connections to a VIP, the director's own frag-needed.
    public var output: [[String]] = []
    /// security FORWARD: replies and ICMP errors from the real servers' side.
    public var forward: [[String]] = []
    /// security INPUT: replies and ICMP errors to local clients.
    public var input: [[String]] = []

    /// The table masq's FORWARD and INPUT chains live in (see the type's documentation).
    public static let afterRoutingTable = "security"

    /// `draining`: real servers no longer configured whose flows still live; their replies stay queued.
    public init(_ configuration: Configuration, queue: QueueSelection, chain: String = "MASQ",
                draining: [(proto: IPProtocol, address: IPAddress, port: UInt16)] = [], failClosed: Bool = false) {
        self.chain = chain
        self.queue = queue
        self.failClosed = failClosed
        let target = queue.targetArguments(failClosed: failClosed)
        let notrack = ["-j", "CT", "--notrack"]
        var seen = Set<[String]>()
        /// Appends `match + action` to `rules` once (real servers shared by services appear once).
        func add(_ rules: inout [[String]], _ hook: String, _ match: [String], _ actions: [String]...) {
            for action in actions where seen.insert([hook] + match + action).inserted { rules.append(match + action) }
        }
        func name(_ proto: IPProtocol) -> String { proto == .udp ? "udp" : "tcp" }
        func server(_ proto: IPProtocol, _ address: IPv4Address, _ port: UInt16) -> [String] {
            ["-p", name(proto), "-s", "\(address)/32"] + (port != 0 ? ["--sport", "\(port)"] : [])
        }
        // IPv4 services here (iptables); IPv6 ones are ip6tables' (issue 16).
        let services4 = configuration.services.filter { !$0.key.address.isIPv6 }
        let vips = Set(services4.compactMap(\.key.address.v4)).sorted()
        var replies: [(proto: IPProtocol, address: IPv4Address, port: UInt16, vips: [IPv4Address])] = []
        for service in services4 {
            guard let vip = service.key.address.v4 else { continue }
            for rs in service.realServers {
                guard let address = rs.address.v4 else { continue }
                replies.append((service.key.proto, address, rs.port == 0 ? service.key.port : rs.port, [vip]))
            }
        }
        // A draining server's local clients may have talked to any VIP.
        replies += draining.compactMap { d in d.address.v4.map { (d.proto, $0, d.port, vips) } }

        // Replies to a local client (destination a VIP) first: they would otherwise match a service's
        // own rule below (a port-0 service, or a client port equal to the service port) and be
        // rewritten before routing. They are untracked and leave the chain for security INPUT.
        for reply in replies {
            let from = server(reply.proto, reply.address, reply.port)
            for vip in reply.vips {
                add(&preRouting, "pre", from + ["-d", "\(vip)/32"], notrack, ["-j", "RETURN"])
                add(&input, "in", from + ["-d", "\(vip)/32"], target)
            }
        }
        for service in services4 {
            let key = service.key
            let vip = ["-p", name(key.proto), "-d", "\(key.address)/32"] + (key.port != 0 ? ["--dport", "\(key.port)"] : [])
            add(&preRouting, "pre", vip, notrack, target)
            add(&output, "out", vip, notrack, target)
        }
        for reply in replies {
            let from = server(reply.proto, reply.address, reply.port)
            add(&preRouting, "pre", from + ["-m", "addrtype", "!", "--dst-type", "LOCAL"], notrack)
            add(&forward, "fwd", from, target)
        }
        // ICMP to a VIP from the client side (about a reply VIP → client): rewritten to the real server
        // before routing. From a real server (about a local client's VIP → real server): after routing,
        // in INPUT, like the replies; so those leave the PREROUTING chain first.
        for address in Set(replies.map(\.address)).sorted() {
            add(&preRouting, "pre", ["-p", "icmp", "-s", "\(address)/32"], ["-j", "RETURN"])
            add(&input, "in", ["-p", "icmp", "-s", "\(address)/32"], target)
        }
        for vip in vips {
            add(&preRouting, "pre", ["-p", "icmp", "-d", "\(vip)/32"], target)
        }
        // ICMP errors from the real servers' side about client → real server, on their way to the client.
        for type in ["destination-unreachable", "source-quench", "time-exceeded", "parameter-problem"] {
            add(&forward, "fwd", ["-p", "icmp", "--icmp-type", type], target)
        }
        add(&output, "out", ["-p", "icmp", "--icmp-type", "fragmentation-needed"], target)
        // masq's own answers (no real server) from the VIP: untracked like the flows they answer, or
        // conntrack would find no flow for them and call them INVALID (the kernel's own icmp_send
        // attaches the packet's entry; a raw socket's message has none).
        for vip in vips {
            add(&output, "out", ["-p", "icmp", "-s", "\(vip)/32", "--icmp-type", "port-unreachable"], notrack)
        }
    }

    /// masq's chains.
    public var chains: [IptablesChain] {
        let after = Self.afterRoutingTable
        return [
            IptablesChain(table: "raw", hook: "PREROUTING", name: chain, rules: preRouting),
            IptablesChain(table: "raw", hook: "OUTPUT", name: chain + "-OUTPUT", rules: output),
            IptablesChain(table: after, hook: "FORWARD", name: chain + "-FORWARD", rules: forward),
            IptablesChain(table: after, hook: "INPUT", name: chain + "-INPUT", rules: input),
        ]
    }

    /// `table/chain` of every chain, for messages.
    public var chainNames: String { chains.map { "\($0.table)/\($0.name)" }.joined(separator: ", ") }

    /// Every rule, in all chains.
    public var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } }

    /// Every iptables invocation that installs the plan, in order (arguments after the binary): every
    /// chain filled before any is jumped to, and the reply hooks before PREROUTING, so no flow is
    /// rewritten one way while its replies are not yet rewritten back.
    public var installCommands: [[String]] {
        chains.flatMap { c in [["-t", c.table, "-N", c.name]] + c.rules.map { ["-t", c.table, "-A", c.name] + $0 } }
            + chains.reversed().map { c in ["-t", c.table, "-I", c.hook, "1", "-j", c.name] }
    }

    /// Each hook's jump to its chain, reply hooks first (the order `installCommands` inserts them in):
    /// `check` (`-C`) says whether it is there, `insert` puts it first in the hook.
    public var hookJumps: [(check: [String], insert: [String])] {
        chains.reversed().map { c in
            (["-t", c.table, "-C", c.hook, "-j", c.name], ["-t", c.table, "-I", c.hook, "1", "-j", c.name])
        }
    }

    /// Removes what `installCommands` added (each step may fail harmlessly if already gone).
    public var removeCommands: [[String]] {
        chains.flatMap { c in
            [["-t", c.table, "-D", c.hook, "-j", c.name], ["-t", c.table, "-F", c.name], ["-t", c.table, "-X", c.name]]
        }
    }

    /// The chains grouped by table, in install order.
    private var tables: [(table: String, chains: [IptablesChain])] {
        var result: [(table: String, chains: [IptablesChain])] = []
        for c in chains {
            if let i = result.firstIndex(where: { $0.table == c.table }) { result[i].chains.append(c) } else { result.append((c.table, [c])) }
        }
        return result
    }

    /// `removeCommands` as one `iptables-restore --noflush` transaction (one process: shutdown is fast).
    public var removeInput: String {
        tables.map { t in
            (["*\(t.table)"] + t.chains.map { "-D \($0.hook) -j \($0.name)" } + t.chains.map { "-F \($0.name)" }
                + t.chains.map { "-X \($0.name)" } + ["COMMIT"]).joined(separator: "\n")
        }.joined(separator: "\n") + "\n"
    }

    /// The chains' new contents as one `iptables-restore --noflush` input (reload): declaring a chain
    /// empties it, and each table is swapped whole at its COMMIT, so no packet ever sees a chain half
    /// filled. The tables commit one after the other: if the second fails, the first has changed
    /// (the caller logs it; the next change or the 2-second refresh tries again).
    public var restoreInput: String {
        tables.map { t in
            // iptables-restore splits on blanks and takes no shell quoting; no token here has a blank.
            (["*\(t.table)"] + t.chains.map { ":\($0.name) - [0:0]" }
                + t.chains.flatMap { c in c.rules.map { (["-A", c.name] + $0).joined(separator: " ") } }
                + ["COMMIT"]).joined(separator: "\n")
        }.joined(separator: "\n") + "\n"
    }

    /// The plan as shell commands, one per line.
    public func script(binary: String = "iptables") -> String {
        installCommands.map { ([binary] + $0).map(shellQuoted).joined(separator: " ") }.joined(separator: "\n") + "\n"
    }
}

func shellQuoted(_ word: String) -> String {
    word.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=".contains($0) } ? word : "'\(word)'"
}

/// An iptables command failed.
public struct IptablesError: Error, CustomStringConvertible {
    public var command: [String]
    public var output: String
    public var status: Int32

    public var description: String {
        let shown = command.map(shellQuoted).joined(separator: " ")
        let text = output.trimmingCharacters(in: .whitespacesAndNewlines)
        // The target check first: iptables-restore says "Couldn't load target `NFQUEUE':No such file or directory".
        if status != 127 && (text.contains("NFQUEUE") || text.contains("No chain/target/match")
                             || text.contains("CT") && text.contains("target")) {
            return "the kernel or \(command[0]) lacks the NFQUEUE or CT target (modules nfnetlink_queue, xt_NFQUEUE, xt_CT): \(shown): \(text)"
        }
        // iptables-legacy takes /run/xtables.lock, root's and mode 0600 (xtables.c, xtables_lock()):
        // CAP_NET_ADMIN alone, as masq.service gives its User=masq, cannot open it (EACCES); as root under
        // masq.service's ProtectSystem=strict it cannot create it when it is not there yet (EROFS). The
        // nft backend needs no lock. `--iptables iptables` is not the way out where the alternatives
        // point `iptables` at the legacy backend: `iptables-nft` is the nft one whatever they say.
        if status != 127 && text.contains("can't open lock file") {
            return "\(command[0]) cannot open its lock file (iptables-legacy needs root and a writable /run/xtables.lock): use the nft backend (--iptables iptables-nft), or, under masq.service, the drop-in PREFIX/share/doc/masq/examples/masq.service.d/iptables-legacy.conf (PREFIX /usr for the package, /usr/local for scripts/install; User=root, the lock file writable): \(shown): \(text)"
        }
        if status == 127 || text.contains("No such file") {
            return "\(command[0]) is not installed (apt-get install iptables): \(shown)"
        }
        if text.contains("Permission denied") || text.contains("you must be root") {
            return "iptables needs root or CAP_NET_ADMIN: \(shown)"
        }
        return "\(shown) failed (exit \(status)): \(text)"
    }
}

/// What `IptablesRunner.install` did.
public struct IptablesInstallation: Equatable, Sendable {
    /// Set when the plan went to `iptables-legacy` instead of the binary asked for, and why.
    public var note: String?
    /// How many of the four hooks already jumped to masq's chains: 4 after a restart (SIGUSR2) or a
    /// crash, whose rules were then replaced in place; 0 on a clean start.
    public var hooksFound: Int
}

/// Runs iptables for a plan, remembering which binary worked so removal uses the same one. The
/// binary is behind a lock held for each whole run, so changes from several tasks (a reload, the
/// 2-second refresh, shutdown) never interleave their commands.
public final class IptablesRunner: Sendable {
    private let current: Mutex<String>
    /// Where `install` says, once, that it cannot tell whether iptables-legacy holds masq's tables.
    private let logger: Logger?
    private let toldLegacyUnknown = Mutex(false)
    private let legacyTables: @Sendable () -> Result<String, ReadError>

    public convenience init(binary: String = "iptables", logger: Logger? = nil) {
        self.init(binary: binary, logger: logger, legacyTables: { readProcFile(IptablesRunner.legacyTablesPath) })
    }

    init(binary: String, logger: Logger?, legacyTables: @escaping @Sendable () -> Result<String, ReadError>) {
        current = Mutex(binary)
        self.logger = logger
        self.legacyTables = legacyTables
    }

    /// The binary in use: the one asked for, or `iptables-legacy` once the nft backend refused a rule.
    public var binary: String { current.withLock { $0 } }

    @discardableResult
    static func run(_ binary: String, _ arguments: [String], input: String? = nil) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [binary] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        if input != nil { process.standardInput = stdin }
        do {
            try process.run()
        } catch {
            return (127, "\(error)")
        }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Installs the plan without ever opening a window in which a VIP's packets are not queued: the
    /// chains are filled (created, or emptied and refilled if a previous masq left them: a restart
    /// after SIGUSR2 or a crash) in one `iptables-restore --noflush` transaction per table, then each
    /// hook's jump is inserted only if `-C` does not find it. Nothing is removed first, so the packets
    /// of the flows an adopted table holds stay queued (or, fail closed, dropped while no masq reads
    /// the queue) from the previous masq to this one.
    ///
    /// With `fallbackToLegacy` and `iptables`: if `iptables-legacy` holds masq's jumps (a previous
    /// masq fell back to it), the plan goes there; if the nft backend refuses a rule, its chains are
    /// removed and the plan goes to `iptables-legacy` (both backends' hooks run: masq's rules in both
    /// would queue each packet twice).
    /// A failed install of a fresh plan leaves nothing behind; one over a previous masq's rules leaves
    /// them (its jumps, its chains partly refilled): removing them would open the window.
    public func install(_ plan: IptablesPlan, fallbackToLegacy: Bool = true) throws(IptablesError) -> IptablesInstallation {
        try current.withLock { binary throws(IptablesError) -> IptablesInstallation in
            let legacy = "iptables-legacy"
            let present = Self.presentJumps(plan, binary: binary)
            let falls = fallbackToLegacy && binary == "iptables"
            if falls && !present.contains(true) && legacyHoldsOrSay(plan) {
                let legacyPresent = Self.presentJumps(plan, binary: legacy)
                if legacyPresent.contains(true) {
                    try Self.installInPlace(plan, binary: legacy, present: legacyPresent)
                    binary = legacy
                    return IptablesInstallation(
                        note: "masq's iptables rules were found in iptables-legacy (a previous masq fell back to it): replaced there",
                        hooksFound: legacyPresent.filter { $0 }.count)
                }
            }
            do throws(IptablesError) {
                try Self.installInPlace(plan, binary: binary, present: present)
                return IptablesInstallation(note: nil, hooksFound: present.filter { $0 }.count)
            } catch where falls && !present.contains(true) && error.status != 127 && !error.output.contains("Permission denied") {
                for command in plan.removeCommands { Self.run(binary, command) }
                let legacyPresent = Self.presentJumps(plan, binary: legacy)
                try Self.installInPlace(plan, binary: legacy, present: legacyPresent)
                binary = legacy
                return IptablesInstallation(
                    note: "the nft backend of iptables refused a rule (\(error)); installed with iptables-legacy instead",
                    hooksFound: legacyPresent.filter { $0 }.count)
            }
        }
    }

    /// The x_tables tables loaded in this network namespace (net/netfilter/x_tables.c), one name a line.
    /// Mode 0440, root's: masq.service's User=masq cannot read it.
    static let legacyTablesPath = "/proc/net/ip_tables_names"

    /// Whether the legacy (x_tables) back end has one of the plan's tables in this network namespace
    /// (`legacyTablesPath`); nil when the file cannot be read. Asked first because
    /// `iptables-legacy -C` itself would register the table it looks in: an empty table whose hooks
    /// every packet then crosses, and which makes every later `iptables` (nft) warn about it.
    static func legacyHolds(_ plan: IptablesPlan, tables: Result<String, ReadError>) -> Bool? {
        guard case .success(let names) = tables else { return nil }
        let loaded = Set(names.split(separator: "\n").map(String.init))
        return plan.chains.contains { loaded.contains($0.table) }
    }

    /// `legacyHolds` of this namespace's file, "no" when it cannot be read: root reads it (masq-unqueue.service,
    /// `masq iptables` by hand); masq.service's ExecStopPost runs as its user and cannot, which costs
    /// nothing there, as iptables-legacy cannot run as that user either.
    static func legacyHolds(_ plan: IptablesPlan) -> Bool {
        legacyHolds(plan, tables: readProcFile(legacyTablesPath)) ?? false
    }

    /// `legacyHolds`, taken as "no" when the file cannot be read, which is said once (a notice: only a
    /// previous masq that fell back to iptables-legacy, and ran as root, leaves rules there).
    func legacyHoldsOrSay(_ plan: IptablesPlan) -> Bool {
        let tables = legacyTables()
        if let holds = Self.legacyHolds(plan, tables: tables) { return holds }
        if case .failure(let error) = tables, toldLegacyUnknown.withLock({ told in defer { told = true }; return !told }) {
            logger?.notice("cannot tell whether iptables-legacy holds masq's tables (\(Self.legacyTablesPath): \(error)): taken as not; a previous masq's rules there (a fallback to iptables-legacy, as root) would stay, and queue the VIP's packets a second time")
        }
        return false
    }

    /// Which of the plan's hook jumps (`hookJumps`, in order) `binary` already has.
    private static func presentJumps(_ plan: IptablesPlan, binary: String) -> [Bool] {
        plan.hookJumps.map { run(binary, $0.check).status == 0 }
    }

    /// `install`'s steps with one binary: the chains in one transaction per table, then the missing
    /// jumps. On failure with no jump there before, everything is removed again.
    private static func installInPlace(_ plan: IptablesPlan, binary: String, present: [Bool]) throws(IptablesError) {
        do throws(IptablesError) {
            let restore = binary + "-restore"
            let (status, output) = run(restore, ["--noflush"], input: plan.restoreInput)
            if status != 0 { throw IptablesError(command: [restore, "--noflush"], output: output, status: status) }
            for (jump, there) in zip(plan.hookJumps, present) where !there {
                let (status, output) = run(binary, jump.insert)
                if status != 0 { throw IptablesError(command: [binary] + jump.insert, output: output, status: status) }
            }
        } catch {
            if !present.contains(true) { for command in plan.removeCommands { run(binary, command) } }
            throw error
        }
    }

    /// Replaces the chains' rules (reload), table by table (see `restoreInput`); on failure the caller keeps
    /// the old plan, so the next refresh tries again.
    public func refill(_ plan: IptablesPlan) throws {
        try current.withLock { binary throws(IptablesError) in
            let restore = binary + "-restore"
            let (status, output) = Self.run(restore, ["--noflush"], input: plan.restoreInput)
            if status != 0 {
                throw IptablesError(command: [restore, "--noflush"], output: output, status: status)
            }
        }
    }

    /// Removes the plan's chains; never fails on what is already gone (then step by step).
    public func remove(_ plan: IptablesPlan) {
        current.withLock { binary in
            if Self.run(binary + "-restore", ["--noflush"], input: plan.removeInput).status == 0 { return }
            for command in plan.removeCommands { Self.run(binary, command) }
        }
    }

    /// `masq iptables --remove` (masq-unqueue.service): the plan's chains removed with `binary` and,
    /// for `iptables`, from `iptables-legacy` too when it has masq's tables, where a `masq run` may
    /// have fallen back; nothing may be left to drop a dead masq's packets.
    public static func removeEverywhere(_ plan: IptablesPlan, binary: String) {
        IptablesRunner(binary: binary).remove(plan)
        if binary == "iptables" && legacyHolds(plan) { IptablesRunner(binary: "iptables-legacy").remove(plan) }
    }
}

/// Which NFQUEUE queues have a process bound, and which queues masq's installed rules send to: what
/// `masq iptables --remove --unless-queue-bound` (masq-unqueue.service) checks before it removes the
/// rules, so that a failure handler run between two automatic restarts (systemd versions differ on
/// whether OnFailure= fires then) cannot take the rules from under the masq being started again.
public enum QueueBindings {
    /// Queue numbers bound in this network namespace (/proc/net/netfilter/nfnetlink_queue: one line
    /// per bound queue, its number first), or nil when the file cannot be read.
    public static func bound(procFile: String = "/proc/net/netfilter/nfnetlink_queue") -> Set<UInt16>? {
        guard let text = try? String(contentsOfFile: procFile, encoding: .utf8) else { return nil }
        return parseBound(text)
    }

    static func parseBound(_ text: String) -> Set<UInt16> {
        Set(text.split(separator: "\n").compactMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).first.flatMap { UInt16($0) }
        })
    }

    /// The queue numbers `iptables -S` lines target (`--queue-num N`, `--queue-balance A:B`).
    static func referenced(byRules text: String) -> Set<UInt16> {
        var queues = Set<UInt16>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            for (i, word) in words.enumerated() where i + 1 < words.count {
                if word == "--queue-num", let q = UInt16(words[i + 1]) { queues.insert(q) }
                if word == "--queue-balance" {
                    let bounds = words[i + 1].split(separator: ":").compactMap { UInt16($0) }
                    if bounds.count == 2, bounds[0] <= bounds[1] { queues.formUnion(bounds[0]...bounds[1]) }
                }
            }
        }
        return queues
    }

    /// The queues the installed chains of `plan` (only their names matter) send to, as `binary` lists
    /// them, and for `iptables` as `iptables-legacy` does too when it holds masq's tables (asked only
    /// then: listing would register empty legacy tables, see `IptablesRunner.legacyHolds`).
    public static func referenced(by plan: IptablesPlan, binary: String) -> Set<UInt16> {
        var binaries = [binary]
        if binary == "iptables" && IptablesRunner.legacyHolds(plan) { binaries.append("iptables-legacy") }
        var queues = Set<UInt16>()
        for b in binaries {
            for c in plan.chains {
                let (status, output) = IptablesRunner.run(b, ["-t", c.table, "-S", c.name])
                if status == 0 { queues.formUnion(referenced(byRules: output)) }
            }
        }
        return queues
    }

    /// `masq iptables --remove --if-stop-unhandled`'s decision, from systemd's ExecStopPost=
    /// environment (systemd.exec(5)): masq died of SIGTERM or SIGINT itself (EXIT_CODE=killed,
    /// EXIT_STATUS the signal's name), so it was stopped before it could handle the signal, or it
    /// ran over TimeoutStopSec (SERVICE_RESULT=timeout). Then no masq removed the rules; in every
    /// other case (an orderly exit, a crash that Restart= follows) nothing is to be done here.
    public static func stopWentUnhandled(_ environment: [String: String]) -> Bool {
        if environment["SERVICE_RESULT"] == "timeout" { return true }
        guard environment["EXIT_CODE"] == "killed", let signal = environment["EXIT_STATUS"] else { return false }
        return ["TERM", "INT", "SIGTERM", "SIGINT"].contains(signal)
    }
}
