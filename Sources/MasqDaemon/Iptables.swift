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
    /// Jumped to from the end of its hook (`-A`), after the admin's own rules there (the firewall-mark
    /// chains, which must see the admin's `-j MARK`), instead of first (`-I hook 1`).
    public var appended = false
}

/// An address family of masq's rules: IPv4 services go through iptables, IPv6 ones (RFC 8200) through
/// ip6tables, each with its own tables in the kernel. The chains have the same layout in both; what
/// differs is named here: the host prefix, ICMP (RFC 792) against ICMPv6 (RFC 4443), the tool.
public enum IptablesFamily: String, Sendable, Hashable, CaseIterable {
    case ipv4, ipv6

    /// A single host's prefix length, as `-s`/`-d` take it.
    var hostPrefix: String { self == .ipv4 ? "/32" : "/128" }
    /// The ICMP protocol's name for `-p`, and the option that matches its message type.
    var icmpProtocol: String { self == .ipv4 ? "icmp" : "ipv6-icmp" }
    var icmpTypeOption: String { self == .ipv4 ? "--icmp-type" : "--icmpv6-type" }
    /// The tool's plain name: only with it does masq fall back to the legacy backend (`legacyBinary`).
    var defaultBinary: String { self == .ipv4 ? "iptables" : "ip6tables" }
    var legacyBinary: String { defaultBinary + "-legacy" }
    /// The x_tables tables the legacy backend has loaded in this network namespace, one name a line
    /// (net/netfilter/x_tables.c); mode 0440, root's.
    var legacyTablesPath: String { self == .ipv4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names" }

    /// The ip6tables that goes with `--iptables BINARY`: the same backend and directory, the name's
    /// "iptables" made "ip6tables" (iptables-legacy → ip6tables-legacy, /usr/sbin/iptables-nft →
    /// /usr/sbin/ip6tables-nft); a name without "iptables" in it gets plain `ip6tables`.
    public static func ip6tables(for binary: String) -> String {
        let slash = binary.lastIndex(of: "/").map { binary.index(after: $0) } ?? binary.startIndex
        let name = binary[slash...]
        guard let range = name.range(of: "iptables") else { return "ip6tables" }
        return String(binary[..<slash]) + name.replacingCharacters(in: range, with: "ip6tables")
    }
}

/// The chains of one address family (see `IptablesPlan` for what each one does).
public struct IptablesFamilyPlan: Equatable, Sendable {
    public var family: IptablesFamily
    public var chain: String
    /// raw PREROUTING: inbound queued, replies notracked.
    public var preRouting: [[String]] = []
    /// raw OUTPUT: local clients' connections to a VIP, the director's own frag-needed/packet-too-big.
    public var output: [[String]] = []
    /// security FORWARD: replies and ICMP errors from the real servers' side.
    public var forward: [[String]] = []
    /// security INPUT: replies and ICMP errors to local clients.
    public var input: [[String]] = []
    /// raw PREROUTING, jumped to last: packets the admin's raw rules marked for a firewall-mark
    /// service, notracked and queued (`MASQ-MARK`).
    public var marked: [[String]] = []
    /// mangle PREROUTING, jumped to last: packets the admin's mangle rules marked (IPVS's usual
    /// place for them), queued unless raw already queued them (`MASQ-MANGLE`).
    public var markedMangle: [[String]] = []

    /// Chains with no rule (what removal needs: only the names matter).
    public init(family: IptablesFamily, chain: String) {
        self.family = family
        self.chain = chain
    }

    /// ICMPv6 error messages (RFC 4443 §3: destination unreachable 1, packet too big 2, time exceeded 3,
    /// parameter problem 4), the ones that quote a flow's packet and so are NATed with it, as IPVS's
    /// `ip_vs_nat_icmp_v6` does. Informational messages (echo, RFC 4443 §4) are the host's.
    static let icmpv6Errors = ["destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem"]

    /// Neighbour discovery (RFC 4861: router solicitation 133 and advertisement 134, neighbour
    /// solicitation 135 and advertisement 136, redirect 137): the link's own traffic, the director's
    /// address resolution for the VIPs and to the real servers. Never queued: every IPv6 chain starts by
    /// returning it, so no rule after it, typed or not, can ever take it from the kernel.
    static let neighbourDiscovery = ["router-solicitation", "router-advertisement", "neighbour-solicitation",
                                     "neighbour-advertisement", "redirect"]

    /// The family's rules for `configuration`'s services of that family and its draining real servers.
    init(_ family: IptablesFamily, _ configuration: Configuration, chain: String, target: [String],
         draining: [(proto: IPProtocol, address: IPAddress, port: UInt16)]) {
        self.init(family: family, chain: chain)
        let ipv6 = family == .ipv6
        let host = family.hostPrefix
        let icmp = family.icmpProtocol
        let icmpType = family.icmpTypeOption
        let notrack = ["-j", "CT", "--notrack"]
        var seen = Set<[String]>()
        /// Appends `match + action` to `rules` once (real servers shared by services appear once).
        func add(_ rules: inout [[String]], _ hook: String, _ match: [String], _ actions: [String]...) {
            for action in actions where seen.insert([hook] + match + action).inserted { rules.append(match + action) }
        }
        func name(_ proto: IPProtocol) -> String { proto == .udp ? "udp" : "tcp" }
        func server(_ proto: IPProtocol, _ address: IPAddress, _ port: UInt16) -> [String] {
            ["-p", name(proto), "-s", "\(address)\(host)"] + (port != 0 ? ["--sport", "\(port)"] : [])
        }
        let familyServices = configuration.services.filter { $0.key.address.isIPv6 == ipv6 }
        let services = familyServices.filter { !$0.key.isFirewallMark }
        let markServices = familyServices.filter(\.key.isFirewallMark)
        let vips = Set(services.map(\.key.address)).sorted()
        var replies: [(proto: IPProtocol, address: IPAddress, port: UInt16, vips: [IPAddress])] = []
        for service in services {
            for rs in service.realServers where rs.address.isIPv6 == ipv6 {
                replies.append((service.key.proto, rs.address, rs.port == 0 ? service.key.port : rs.port, [service.key.address]))
            }
        }
        // A firewall-mark service's real servers answer for TCP and UDP, from their port (any port for
        // a port-0 one), to clients of any VIP the admin marked: no local-client rules (no VIP known).
        for service in markServices {
            for rs in service.realServers where rs.address.isIPv6 == ipv6 {
                for proto in [IPProtocol.tcp, .udp] { replies.append((proto, rs.address, rs.port, [])) }
            }
        }
        for service in markServices {
            let mark = ["-m", "mark", "--mark", "\(service.key.fwmark)"]
            add(&marked, "mark", mark, notrack, target)
            add(&markedMangle, "mangle", mark + ["-m", "conntrack", "!", "--ctstate", "UNTRACKED"], target)
        }
        // A draining server's local clients may have talked to any VIP.
        replies += draining.filter { $0.address.isIPv6 == ipv6 }.map { ($0.proto, $0.address, $0.port, vips) }

        if ipv6 {
            for type in Self.neighbourDiscovery {
                let nd = ["-p", icmp, icmpType, type]
                add(&preRouting, "pre", nd, ["-j", "RETURN"])
                add(&output, "out", nd, ["-j", "RETURN"])
                add(&forward, "fwd", nd, ["-j", "RETURN"])
                add(&input, "in", nd, ["-j", "RETURN"])
            }
        }
        // Replies to a local client (destination a VIP) first: they would otherwise match a service's
        // own rule below (a port-0 service, or a client port equal to the service port) and be
        // rewritten before routing. They are untracked and leave the chain for security INPUT.
        for reply in replies {
            let from = server(reply.proto, reply.address, reply.port)
            for vip in reply.vips {
                add(&preRouting, "pre", from + ["-d", "\(vip)\(host)"], notrack, ["-j", "RETURN"])
                add(&input, "in", from + ["-d", "\(vip)\(host)"], target)
            }
        }
        for service in services {
            let key = service.key
            let vip = ["-p", name(key.proto), "-d", "\(key.address)\(host)"] + (key.port != 0 ? ["--dport", "\(key.port)"] : [])
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
        // in INPUT, like the replies; so those leave the PREROUTING chain first. IPv6 queues only the
        // error messages: echo to a VIP stays the host's (IPVS leaves it to the stack too), and the real
        // servers' own ICMPv6 to the director (echo replies, MLD) is none of masq's business.
        let servers = Set(replies.map(\.address)).sorted()
        let errorTypes: [[String]] = ipv6 ? Self.icmpv6Errors.map { [icmpType, $0] } : [[]]
        for address in servers {
            add(&preRouting, "pre", ["-p", icmp, "-s", "\(address)\(host)"], ["-j", "RETURN"])
            for type in errorTypes { add(&input, "in", ["-p", icmp, "-s", "\(address)\(host)"] + type, target) }
        }
        for vip in vips {
            for type in errorTypes { add(&preRouting, "pre", ["-p", icmp, "-d", "\(vip)\(host)"] + type, target) }
        }
        // ICMP errors from the real servers' side about client → real server, on their way to the client.
        let forwarded = ipv6 ? Self.icmpv6Errors : ["destination-unreachable", "source-quench", "time-exceeded", "parameter-problem"]
        for type in forwarded {
            add(&forward, "fwd", ["-p", icmp, icmpType, type], target)
        }
        // The director's own "fragmentation needed" (RFC 1191) or "packet too big" (RFC 8201) about a
        // client → real server packet it could not forward, translated back to the VIP.
        add(&output, "out", ["-p", icmp, icmpType, ipv6 ? "packet-too-big" : "fragmentation-needed"], target)
        // masq's own answers (no real server) from the VIP: untracked like the flows they answer, or
        // conntrack would find no flow for them and call them INVALID (the kernel's own icmp_send
        // attaches the packet's entry; a raw socket's message has none). ICMPv6's port unreachable is
        // type 1 code 4 (RFC 4443 §3.1), ip6tables' "port-unreachable".
        for vip in vips {
            add(&output, "out", ["-p", icmp, "-s", "\(vip)\(host)", icmpType, "port-unreachable"], notrack)
        }
    }

    /// The family's chains.
    public var chains: [IptablesChain] {
        let after = IptablesPlan.afterRoutingTable
        return [
            IptablesChain(table: "raw", hook: "PREROUTING", name: chain, rules: preRouting),
            IptablesChain(table: "raw", hook: "OUTPUT", name: chain + "-OUTPUT", rules: output),
            IptablesChain(table: after, hook: "FORWARD", name: chain + "-FORWARD", rules: forward),
            IptablesChain(table: after, hook: "INPUT", name: chain + "-INPUT", rules: input),
        ] + (marked.isEmpty ? [] : markChains)
    }

    /// The firewall-mark chains (present only with firewall-mark services; `chains` lists them last,
    /// so the address services' chains install and jump first, and the PREROUTING jumps they add are
    /// appended after the admin's MARK rules).
    public var markChains: [IptablesChain] {
        [IptablesChain(table: "raw", hook: "PREROUTING", name: chain + "-MARK", rules: marked, appended: true),
         IptablesChain(table: "mangle", hook: "PREROUTING", name: chain + "-MANGLE", rules: markedMangle, appended: true)]
    }

    /// `table/chain` of every chain, for messages.
    public var chainNames: String { chains.map { "\($0.table)/\($0.name)" }.joined(separator: ", ") }

    /// Every rule, in all chains.
    public var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } }

    /// Every iptables invocation that installs the chains, in order (arguments after the binary): every
    /// chain filled before any is jumped to, and the reply hooks before PREROUTING, so no flow is
    /// rewritten one way while its replies are not yet rewritten back.
    public var installCommands: [[String]] {
        chains.flatMap { c in [["-t", c.table, "-N", c.name]] + c.rules.map { ["-t", c.table, "-A", c.name] + $0 } }
            + hookJumps.map(\.insert)
    }

    /// Each hook's jump to its chain, reply hooks first (the order `installCommands` inserts them in):
    /// `check` (`-C`) says whether it is there, `insert` puts it first in the hook.
    public var hookJumps: [(check: [String], insert: [String])] {
        chains.reversed().map { c in
            (["-t", c.table, "-C", c.hook, "-j", c.name],
             c.appended ? ["-t", c.table, "-A", c.hook, "-j", c.name] : ["-t", c.table, "-I", c.hook, "1", "-j", c.name])
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

    /// The chains as shell commands, one per line.
    public func script(binary: String) -> String {
        installCommands.map { ([binary] + $0).map(shellQuoted).joined(separator: " ") }.joined(separator: "\n") + "\n"
    }
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
///
/// IPv6 services (issue 16) get the same four chains, of the same names, through ip6tables (`ipv6`):
/// `/128` host matches, ICMPv6 (RFC 4443) in place of ICMP: only its error messages are queued (in
/// the directions ICMP is, "packet too big" as the director's own message in OUTPUT like
/// "fragmentation needed"), never echo to a VIP, and neighbour discovery (RFC 4861) is returned to the
/// kernel first thing in every chain. Without IPv6 services (or IPv6 real servers still draining)
/// there is no `ipv6` part, and masq never runs ip6tables: a host without it works as before.
public struct IptablesPlan: Equatable, Sendable {
    public var chain: String
    public var queue: QueueSelection
    /// No `--queue-bypass`: packets for a dead masq are dropped, not passed (see
    /// `QueueSelection.targetArguments(failClosed:)`); a director of a sync pair runs so.
    public var failClosed: Bool
    /// The IPv4 services' chains, through iptables: always there, empty without IPv4 services, as
    /// an empty configuration's always were.
    public var ipv4: IptablesFamilyPlan
    /// The IPv6 services' chains, through ip6tables; nil without IPv6 services and IPv6 real servers
    /// still draining.
    public var ipv6: IptablesFamilyPlan?

    /// The table masq's FORWARD and INPUT chains live in (see the type's documentation).
    public static let afterRoutingTable = "security"

    /// `draining`: real servers no longer configured whose flows still live; their replies stay queued.
    public init(_ configuration: Configuration, queue: QueueSelection, chain: String = "MASQ",
                draining: [(proto: IPProtocol, address: IPAddress, port: UInt16)] = [], failClosed: Bool = false) {
        self.chain = chain
        self.queue = queue
        self.failClosed = failClosed
        let target = queue.targetArguments(failClosed: failClosed)
        ipv4 = IptablesFamilyPlan(.ipv4, configuration, chain: chain, target: target, draining: draining)
        let hasIPv6 = configuration.services.contains { $0.key.address.isIPv6 } || draining.contains { $0.address.isIPv6 }
        ipv6 = hasIPv6 ? IptablesFamilyPlan(.ipv6, configuration, chain: chain, target: target, draining: draining) : nil
    }

    /// The IPv4 chains' rules, hook by hook.
    public var preRouting: [[String]] { ipv4.preRouting }
    public var output: [[String]] { ipv4.output }
    public var forward: [[String]] { ipv4.forward }
    public var input: [[String]] { ipv4.input }

    /// The IPv4 chains (iptables'); the IPv6 ones are `ipv6?.chains`.
    public var chains: [IptablesChain] { ipv4.chains }

    /// The families the plan has chains in: IPv4 always, IPv6 with IPv6 services.
    public var families: [IptablesFamilyPlan] { [ipv4] + (ipv6.map { [$0] } ?? []) }

    /// `table/chain` of every chain, for messages; the IPv6 chains, of the same names, said after.
    public var chainNames: String { ipv4.chainNames + (ipv6 != nil ? " (iptables and ip6tables)" : "") }

    /// Every rule, in all chains of both families.
    public var ruleCount: Int { families.reduce(0) { $0 + $1.ruleCount } }

    /// The IPv4 chains' `IptablesFamilyPlan.installCommands` (iptables').
    public var installCommands: [[String]] { ipv4.installCommands }

    /// The IPv4 chains' `IptablesFamilyPlan.hookJumps`.
    public var hookJumps: [(check: [String], insert: [String])] { ipv4.hookJumps }

    /// The IPv4 chains' `IptablesFamilyPlan.removeCommands`.
    public var removeCommands: [[String]] { ipv4.removeCommands }

    /// The IPv4 chains' `IptablesFamilyPlan.removeInput`.
    public var removeInput: String { ipv4.removeInput }

    /// The IPv4 chains' `IptablesFamilyPlan.restoreInput`.
    public var restoreInput: String { ipv4.restoreInput }

    /// The plan as shell commands, one per line: iptables', then ip6tables' (`binary`'s counterpart,
    /// `IptablesFamily.ip6tables(for:)`) when there are IPv6 services.
    public func script(binary: String = "iptables") -> String {
        ipv4.script(binary: binary) + (ipv6?.script(binary: IptablesFamily.ip6tables(for: binary)) ?? "")
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
    /// Set when the plan went to `iptables-legacy` (or `ip6tables-legacy`) instead of the binary asked
    /// for, and why.
    public var note: String?
    /// How many of the hooks already jumped to masq's chains (four per family): all after a restart
    /// (SIGUSR2) or a crash, whose rules were then replaced in place; 0 on a clean start.
    public var hooksFound: Int
}

/// Runs iptables for a plan, and ip6tables for its IPv6 chains, remembering which binary worked for
/// each so removal uses the same one. The binaries are behind one lock held for each whole run, so
/// changes from several tasks (a reload, the 2-second refresh, shutdown) never interleave their commands.
/// ip6tables is named after `--iptables` (`IptablesFamily.ip6tables(for:)`), falls back to its legacy
/// backend on its own terms, and is run only while the plan has IPv6 chains.
public final class IptablesRunner: Sendable {
    private struct State {
        /// iptables, or iptables-legacy once the nft backend refused a rule.
        var ipv4: String
        /// The same for ip6tables.
        var ipv6: String
        /// The IPv6 chains installed (by `install` or a `refill` that brought the first IPv6 service),
        /// so the refill that takes the last IPv6 service away, and `remove`, take them down.
        var installedIPv6: IptablesFamilyPlan?
        /// The families whose firewall-mark chains (`IptablesFamilyPlan.markChains`) are installed, so
        /// a refill without firewall-mark services, and `remove`, take them down.
        var markChains: Set<IptablesFamily> = []
    }

    private let current: Mutex<State>
    /// Where `install` says, once per family, that it cannot tell whether the legacy backend holds masq's tables.
    private let logger: Logger?
    private let toldLegacyUnknown = Mutex(Set<IptablesFamily>())
    private let legacyTables: @Sendable () -> Result<String, ReadError>
    private let legacyTables6: @Sendable () -> Result<String, ReadError>

    public convenience init(binary: String = "iptables", logger: Logger? = nil) {
        self.init(binary: binary, logger: logger, legacyTables: { readProcFile(IptablesFamily.ipv4.legacyTablesPath) })
    }

    init(binary: String, logger: Logger?, legacyTables: @escaping @Sendable () -> Result<String, ReadError>,
         legacyTables6: @escaping @Sendable () -> Result<String, ReadError> = { readProcFile(IptablesFamily.ipv6.legacyTablesPath) }) {
        current = Mutex(State(ipv4: binary, ipv6: IptablesFamily.ip6tables(for: binary)))
        self.logger = logger
        self.legacyTables = legacyTables
        self.legacyTables6 = legacyTables6
    }

    /// The binary in use: the one asked for, or `iptables-legacy` once the nft backend refused a rule.
    public var binary: String { current.withLock { $0.ipv4 } }

    /// The ip6tables binary in use for the IPv6 chains (or the one that would be, before there are any).
    public var binary6: String { current.withLock { $0.ipv6 } }

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
    /// the queue) from the previous masq to this one. The IPv4 chains first, then the IPv6 ones.
    ///
    /// With `fallbackToLegacy` and `iptables`: if `iptables-legacy` holds masq's jumps (a previous
    /// masq fell back to it), the plan goes there; if the nft backend refuses a rule, its chains are
    /// removed and the plan goes to `iptables-legacy` (both backends' hooks run: masq's rules in both
    /// would queue each packet twice). The same for `ip6tables` and `ip6tables-legacy`.
    /// A failed install of a fresh plan leaves nothing behind (the IPv4 chains are taken back when the
    /// IPv6 ones fail); one over a previous masq's rules leaves them (its jumps, its chains partly
    /// refilled): removing them would open the window.
    public func install(_ plan: IptablesPlan, fallbackToLegacy: Bool = true) throws(IptablesError) -> IptablesInstallation {
        try current.withLock { state throws(IptablesError) -> IptablesInstallation in
            let first = try install(plan.ipv4, binary: &state.ipv4, fallbackToLegacy: fallbackToLegacy)
            if !plan.ipv4.marked.isEmpty { state.markChains.insert(.ipv4) }
            guard let ipv6 = plan.ipv6 else { return first }
            let second: IptablesInstallation
            do throws(IptablesError) {
                second = try install(ipv6, binary: &state.ipv6, fallbackToLegacy: fallbackToLegacy)
            } catch {
                if first.hooksFound == 0 { Self.remove(plan.ipv4, binary: state.ipv4) }
                throw error
            }
            state.installedIPv6 = ipv6
            if !ipv6.marked.isEmpty { state.markChains.insert(.ipv6) }
            let notes = [first.note, second.note].compactMap { $0 }
            return IptablesInstallation(note: notes.isEmpty ? nil : notes.joined(separator: "; "),
                                        hooksFound: first.hooksFound + second.hooksFound)
        }
    }

    /// `install`'s work for one family's chains, with its binary (which becomes the legacy one on a fallback).
    private func install(_ plan: IptablesFamilyPlan, binary: inout String, fallbackToLegacy: Bool) throws(IptablesError) -> IptablesInstallation {
        let family = plan.family
        let legacy = family.legacyBinary
        let present = Self.presentJumps(plan, binary: binary)
        let falls = fallbackToLegacy && binary == family.defaultBinary
        if falls && !present.contains(true) && legacyHoldsOrSay(plan) {
            let legacyPresent = Self.presentJumps(plan, binary: legacy)
            if legacyPresent.contains(true) {
                try Self.installInPlace(plan, binary: legacy, present: legacyPresent)
                binary = legacy
                return IptablesInstallation(
                    note: "masq's \(family.defaultBinary) rules were found in \(legacy) (a previous masq fell back to it): replaced there",
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
                note: "the nft backend of \(family.defaultBinary) refused a rule (\(error)); installed with \(legacy) instead",
                hooksFound: legacyPresent.filter { $0 }.count)
        }
    }

    /// The x_tables tables loaded in this network namespace (net/netfilter/x_tables.c), one name a line.
    /// Mode 0440, root's: masq.service's User=masq cannot read it.
    static let legacyTablesPath = IptablesFamily.ipv4.legacyTablesPath

    /// Whether the legacy (x_tables) back end has one of the plan's tables in this network namespace
    /// (`IptablesFamily.legacyTablesPath`); nil when the file cannot be read. Asked first because
    /// `iptables-legacy -C` itself would register the table it looks in: an empty table whose hooks
    /// every packet then crosses, and which makes every later `iptables` (nft) warn about it.
    static func legacyHolds(_ plan: IptablesFamilyPlan, tables: Result<String, ReadError>) -> Bool? {
        guard case .success(let names) = tables else { return nil }
        let loaded = Set(names.split(separator: "\n").map(String.init))
        return plan.chains.contains { loaded.contains($0.table) }
    }

    /// `legacyHolds` of the plan's IPv4 chains.
    static func legacyHolds(_ plan: IptablesPlan, tables: Result<String, ReadError>) -> Bool? {
        legacyHolds(plan.ipv4, tables: tables)
    }

    /// `legacyHolds` of this namespace's file, "no" when it cannot be read: root reads it (masq-unqueue.service,
    /// `masq iptables` by hand); masq.service's ExecStopPost runs as its user and cannot, which costs
    /// nothing there, as iptables-legacy cannot run as that user either.
    static func legacyHolds(_ plan: IptablesFamilyPlan) -> Bool {
        legacyHolds(plan, tables: readProcFile(plan.family.legacyTablesPath)) ?? false
    }

    /// `legacyHolds`, taken as "no" when the file cannot be read, which is said once per family (a notice:
    /// only a previous masq that fell back to the legacy backend, and ran as root, leaves rules there).
    func legacyHoldsOrSay(_ plan: IptablesFamilyPlan) -> Bool {
        let family = plan.family
        let tables = family == .ipv4 ? legacyTables() : legacyTables6()
        if let holds = Self.legacyHolds(plan, tables: tables) { return holds }
        if case .failure(let error) = tables, toldLegacyUnknown.withLock({ $0.insert(family).inserted }) {
            logger?.notice("cannot tell whether \(family.legacyBinary) holds masq's tables (\(family.legacyTablesPath): \(error)): taken as not; a previous masq's rules there (a fallback to \(family.legacyBinary), as root) would stay, and queue the VIP's packets a second time")
        }
        return false
    }

    /// `legacyHoldsOrSay` of the plan's IPv4 chains.
    func legacyHoldsOrSay(_ plan: IptablesPlan) -> Bool { legacyHoldsOrSay(plan.ipv4) }

    /// Which of the chains' hook jumps (`hookJumps`, in order) `binary` already has.
    private static func presentJumps(_ plan: IptablesFamilyPlan, binary: String) -> [Bool] {
        plan.hookJumps.map { run(binary, $0.check).status == 0 }
    }

    /// `install`'s steps with one binary: the chains in one transaction per table, then the missing
    /// jumps. On failure with no jump there before, everything is removed again.
    private static func installInPlace(_ plan: IptablesFamilyPlan, binary: String, present: [Bool]) throws(IptablesError) {
        do throws(IptablesError) {
            try restore(plan, binary: binary)
            for (jump, there) in zip(plan.hookJumps, present) where !there {
                let (status, output) = run(binary, jump.insert)
                if status != 0 { throw IptablesError(command: [binary] + jump.insert, output: output, status: status) }
            }
        } catch {
            if !present.contains(true) { for command in plan.removeCommands { run(binary, command) } }
            throw error
        }
    }

    /// The chains' rules replaced in one `-restore --noflush` run (see `IptablesFamilyPlan.restoreInput`).
    private static func restore(_ plan: IptablesFamilyPlan, binary: String) throws(IptablesError) {
        let restore = binary + "-restore"
        let (status, output) = run(restore, ["--noflush"], input: plan.restoreInput)
        if status != 0 { throw IptablesError(command: [restore, "--noflush"], output: output, status: status) }
    }

    /// Replaces the chains' rules (reload), table by table (see `restoreInput`), IPv4 first; on failure
    /// the caller keeps the old plan, so the next refresh tries again. The first IPv6 service installs
    /// the IPv6 chains whole (chains, then jumps, as `install`); the last one gone (and its real servers
    /// drained) removes them.
    public func refill(_ plan: IptablesPlan) throws {
        try current.withLock { state throws(IptablesError) in
            try Self.restore(plan.ipv4, binary: state.ipv4)
            try Self.refillMarkChains(plan.ipv4, binary: state.ipv4, installed: &state.markChains)
            if let ipv6 = plan.ipv6 {
                if state.installedIPv6 == nil {
                    _ = try install(ipv6, binary: &state.ipv6, fallbackToLegacy: true)
                } else {
                    try Self.restore(ipv6, binary: state.ipv6)
                }
                try Self.refillMarkChains(ipv6, binary: state.ipv6, installed: &state.markChains)
                state.installedIPv6 = ipv6
            } else if let installed = state.installedIPv6 {
                Self.remove(installed, binary: state.ipv6)
                Self.removeMarkChains(installed, binary: state.ipv6, installed: &state.markChains)
                state.installedIPv6 = nil
            }
        }
    }

    /// After a refill's restore: the first firewall-mark service's chains get their jumps (appended:
    /// `restoreInput` declares the chains, not the jumps); the last one gone takes them down.
    private static func refillMarkChains(_ plan: IptablesFamilyPlan, binary: String,
                                         installed: inout Set<IptablesFamily>) throws(IptablesError) {
        if plan.marked.isEmpty {
            removeMarkChains(plan, binary: binary, installed: &installed)
            return
        }
        for jump in plan.hookJumps where jump.insert.contains("-A") && run(binary, jump.check).status != 0 {
            let (status, output) = run(binary, jump.insert)
            if status != 0 { throw IptablesError(command: [binary] + jump.insert, output: output, status: status) }
        }
        installed.insert(plan.family)
    }

    /// The firewall-mark chains removed step by step, if installed.
    private static func removeMarkChains(_ plan: IptablesFamilyPlan, binary: String, installed: inout Set<IptablesFamily>) {
        guard installed.remove(plan.family) != nil else { return }
        for c in plan.markChains {
            run(binary, ["-t", c.table, "-D", c.hook, "-j", c.name])
            run(binary, ["-t", c.table, "-F", c.name])
            run(binary, ["-t", c.table, "-X", c.name])
        }
    }

    /// Removes the plan's chains, and the IPv6 ones installed; never fails on what is already gone
    /// (then step by step).
    public func remove(_ plan: IptablesPlan) {
        current.withLock { state in
            Self.remove(plan.ipv4, binary: state.ipv4)
            if plan.ipv4.marked.isEmpty { Self.removeMarkChains(plan.ipv4, binary: state.ipv4, installed: &state.markChains) }
            if let ipv6 = state.installedIPv6 ?? plan.ipv6 {
                Self.remove(ipv6, binary: state.ipv6)
                if ipv6.marked.isEmpty { Self.removeMarkChains(ipv6, binary: state.ipv6, installed: &state.markChains) }
                state.installedIPv6 = nil
            }
        }
    }

    /// One family's chains removed with `binary`: one transaction, or step by step when it fails.
    private static func remove(_ plan: IptablesFamilyPlan, binary: String) {
        if run(binary + "-restore", ["--noflush"], input: plan.removeInput).status == 0 { return }
        for command in plan.removeCommands { run(binary, command) }
    }

    /// `masq iptables --remove` (masq-unqueue.service): the plan's chains removed with `binary` and,
    /// for `iptables`, from `iptables-legacy` too when it has masq's tables, where a `masq run` may
    /// have fallen back; nothing may be left to drop a dead masq's packets. The IPv6 chains likewise
    /// with ip6tables, when the plan has them or, for a plan with none (`--remove` without a rules
    /// file), when ip6tables is installed and lists them (`ip6TablesHold`).
    public static func removeEverywhere(_ plan: IptablesPlan, binary: String) {
        remove(plan.ipv4, binary: binary)
        if binary == "iptables" && legacyHolds(plan.ipv4) { remove(plan.ipv4, binary: "iptables-legacy") }
        for (ipv6, binary6) in installedIPv6(plan, binary: binary) { remove(ipv6, binary: binary6) }
    }

    /// The IPv6 chains `masq iptables --remove` and `--unless-queue-bound` deal with, each with the
    /// ip6tables binary that holds it: the plan's own, or, for a plan without IPv6 services, the
    /// chains of its name found installed (a `masq run` of a rules file with IPv6 services).
    static func installedIPv6(_ plan: IptablesPlan, binary: String) -> [(IptablesFamilyPlan, String)] {
        let binary6 = IptablesFamily.ip6tables(for: binary)
        let ipv6 = plan.ipv6 ?? IptablesFamilyPlan(family: .ipv6, chain: plan.chain)
        var found: [(IptablesFamilyPlan, String)] = []
        if plan.ipv6 != nil || ip6TablesHold(ipv6, binary: binary6) { found.append((ipv6, binary6)) }
        if binary6 == IptablesFamily.ipv6.defaultBinary && legacyHolds(ipv6) { found.append((ipv6, IptablesFamily.ipv6.legacyBinary)) }
        return found
    }

    /// Whether `binary` (ip6tables) is installed and its ruleset has one of the chains, asked of
    /// `binary-save`, which only lists (the legacy one reads the tables already loaded, so registers
    /// none): a host without ip6tables, or without masq's IPv6 chains, gets no change from masq.
    static func ip6TablesHold(_ plan: IptablesFamilyPlan, binary: String) -> Bool {
        guard executableExists(binary + "-save") else { return false }
        let (status, output) = run(binary + "-save", [])
        return status == 0 && savedRulesetHasChain(output, of: plan)
    }

    /// Whether an `iptables-save` dump declares one of the plan's chains (`:NAME - [0:0]`).
    static func savedRulesetHasChain(_ text: String, of plan: IptablesFamilyPlan) -> Bool {
        let names = Set(plan.chains.map(\.name))
        return text.split(separator: "\n").contains { line in
            line.hasPrefix(":") && names.contains(String(line.dropFirst().prefix { $0 != " " }))
        }
    }

    /// Whether `name` runs: a path that is executable, or a bare name found so in `PATH` (as
    /// /usr/bin/env, which `run` goes through, looks it up).
    static func executableExists(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> Bool {
        if name.contains("/") { return access(name, X_OK) == 0 }
        return (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
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
    /// The IPv6 chains are asked of ip6tables the same way, when the plan has them or they are found
    /// installed (`IptablesRunner.installedIPv6`).
    public static func referenced(by plan: IptablesPlan, binary: String) -> Set<UInt16> {
        var lists: [(IptablesFamilyPlan, String)] = [(plan.ipv4, binary)]
        if binary == "iptables" && IptablesRunner.legacyHolds(plan.ipv4) { lists.append((plan.ipv4, "iptables-legacy")) }
        lists += IptablesRunner.installedIPv6(plan, binary: binary)
        var queues = Set<UInt16>()
        for (family, b) in lists {
            for c in family.chains {
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
