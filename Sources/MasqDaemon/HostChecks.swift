import Foundation
import Logging
import MasqCore
import NIOCore
import NIOPosix

/// What masq depends on in its host, checked at start and on every reload: each problem found is one
/// warning line naming the fix. masq needs of the host what IPVS needs (forwarding on, for IPv6 too
/// with IPv6 services), plus rules that queue the traffic to it.
public enum HostChecks {
    /// `/proc/sys/net/ipv4/ip_forward` of this network namespace.
    static let ipForwardPath = "/proc/sys/net/ipv4/ip_forward"
    /// IPv6's sysctls of this network namespace: absent without IPv6 in the kernel (`ipv6.disable=1`).
    static let ipv6SysctlPath = "/proc/sys/net/ipv6"
    static let ipv6ForwardingPath = "/proc/sys/net/ipv6/conf/all/forwarding"
    static let ipv6DisabledPath = "/proc/sys/net/ipv6/conf/all/disable_ipv6"

    /// The warnings for this host. `rulesInstalled`: masq installed its own iptables rules;
    /// `expectsReplies`: the configuration has real servers, whose replies must reach masq after routing;
    /// `ipv6Services`: it has IPv6 services, which need of the host what IPVS's IPv6 NAT needs, and
    /// whose queue rules (when masq does not install them) ip6tables holds.
    public static func warnings(queues: [UInt16], rulesInstalled: Bool, expectsReplies: Bool,
                                iptablesBinary: String, ipv6Services: Bool = false) -> [String] {
        var warnings = forwardingWarnings(
            ipv4Forward: try? String(contentsOfFile: ipForwardPath, encoding: .utf8),
            ipv6: !ipv6Services ? nil : IPv6Sysctls(
                present: FileManager.default.fileExists(atPath: ipv6SysctlPath),
                forwarding: try? String(contentsOfFile: ipv6ForwardingPath, encoding: .utf8),
                disabled: try? String(contentsOfFile: ipv6DisabledPath, encoding: .utf8)))
        guard !rulesInstalled else { return warnings }
        var rulesets = [
            QueueRules(iptablesSave: ruleset(iptablesBinary + "-save")),
            QueueRules(iptablesSave: ruleset(iptablesBinary == "iptables" ? "iptables-legacy-save" : "")),
            QueueRules(nft: ruleset("nft", ["list", "ruleset"])),
        ]
        // ip6tables only for IPv6 services: a host without it, or without IPv6, is asked nothing.
        if ipv6Services {
            let ip6tables = IptablesFamily.ip6tables(for: iptablesBinary)
            rulesets.append(QueueRules(iptablesSave: ruleset(ip6tables + "-save")))
            rulesets.append(QueueRules(iptablesSave: ruleset(ip6tables == "ip6tables" ? "ip6tables-legacy-save" : "")))
        }
        let targeted = rulesets.reduce(into: Set<UInt16>()) { $0.formUnion($1.queues()) }
        let missing = queues.filter { !targeted.contains($0) }
        if !missing.isEmpty {
            warnings.append("no iptables or nftables rule sends packets to NFQUEUE \(list(missing)): no traffic will"
                + " reach masq; run it with --install-iptables, or install what `masq iptables --rules FILE` prints")
        } else if expectsReplies {
            let afterRouting = rulesets.reduce(into: Set<UInt16>()) { $0.formUnion($1.queues(reachableFrom: "forward")) }
            let late = queues.filter { !afterRouting.contains($0) }
            if !late.isEmpty {
                warnings.append("no rule reached from FORWARD sends packets to NFQUEUE \(list(late)): the real servers'"
                    + " replies are not rewritten after routing (rules from masq before 0.10 queued them in raw"
                    + " PREROUTING, where the director drops them as martians); install what"
                    + " `masq iptables --rules FILE` prints, or run with --install-iptables")
            }
        }
        return warnings
    }

    /// What this network namespace's IPv6 sysctls say: whether the directory is there at all, and the
    /// text of `conf/all/forwarding` and `conf/all/disable_ipv6` (nil: unreadable).
    struct IPv6Sysctls {
        var present: Bool
        var forwarding: String?
        var disabled: String?
    }

    /// The forwarding warnings from the sysctls' text (nil: unreadable, then nothing is said): IPv4's
    /// `ip_forward`, always; with IPv6 services (`ipv6` given) what IPVS's IPv6 NAT needs too: a kernel
    /// with IPv6, IPv6 not disabled on every interface, and `net.ipv6.conf.all.forwarding=1` (the
    /// kernel forwards IPv6 only then, RFC 8200's router behaviour; `ip6_forward`).
    static func forwardingWarnings(ipv4Forward: String?, ipv6: IPv6Sysctls?) -> [String] {
        func isZero(_ text: String?) -> Bool { text?.trimmingCharacters(in: .whitespacesAndNewlines) == "0" }
        func isOne(_ text: String?) -> Bool { text?.trimmingCharacters(in: .whitespacesAndNewlines) == "1" }
        var warnings: [String] = []
        if isZero(ipv4Forward) {
            warnings.append("net.ipv4.ip_forward is 0 in this network namespace: the kernel will not forward"
                + " packets to the real servers; set it with `sysctl -w net.ipv4.ip_forward=1` (and in /etc/sysctl.conf)")
        }
        guard let ipv6 else { return warnings }
        guard ipv6.present else {
            warnings.append("this kernel has no IPv6 in this network namespace (no /proc/sys/net/ipv6: ipv6.disable=1"
                + " on its command line?): the IPv6 services' packets never reach masq; boot it with IPv6")
            return warnings
        }
        if isOne(ipv6.disabled) {
            warnings.append("net.ipv6.conf.all.disable_ipv6 is 1 in this network namespace: no interface takes IPv6"
                + " packets for the IPv6 services; set it with `sysctl -w net.ipv6.conf.all.disable_ipv6=0` (and in /etc/sysctl.conf)")
        }
        if isZero(ipv6.forwarding) {
            warnings.append("net.ipv6.conf.all.forwarding is 0 in this network namespace: the kernel will not forward"
                + " IPv6 packets to the real servers; set it with `sysctl -w net.ipv6.conf.all.forwarding=1` (and in /etc/sysctl.conf)")
        }
        return warnings
    }

    /// Logs `warnings` for a daemon running `configuration` with `options`: at start and after a reload.
    static func log(_ options: DaemonOptions, _ configuration: Configuration, to logger: Logger) {
        for warning in warnings(queues: options.queue.numbers, rulesInstalled: options.installIptables,
                                expectsReplies: configuration.services.contains { !$0.realServers.isEmpty },
                                iptablesBinary: options.iptablesBinary,
                                ipv6Services: configuration.services.contains { $0.key.address.isIPv6 }) {
            logger.warning("\(warning)")
        }
    }

    private static func list(_ queues: [UInt16]) -> String { queues.map(String.init).joined(separator: ", ") }

    /// The output of a ruleset dump, or "" when the tool is missing or fails.
    private static func ruleset(_ tool: String, _ arguments: [String] = []) -> String {
        guard !tool.isEmpty else { return "" }
        let (status, output) = IptablesRunner.run(tool, arguments)
        return status == 0 ? output : ""
    }

    /// Queue numbers that `-j NFQUEUE` rules in `iptables-save` output send to (no number: queue 0).
    public static func queuesTargeted(iptablesSave text: String) -> Set<UInt16> { QueueRules(iptablesSave: text).queues() }

    /// Queue numbers that nftables `queue` statements send to (`queue num 1`, `queue flags bypass to
    /// 0-1`, `queue` alone: 0); iptables-nft's NFQUEUE rules appear here in this form too.
    public static func queuesTargeted(nft text: String) -> Set<UInt16> { QueueRules(nft: text).queues() }

    /// The queue rules of a ruleset dump: in which table and chain each lives, which chains jump to
    /// which, and which chains a netfilter hook enters (iptables' built-in chains; nft's base chains).
    struct QueueRules {
        /// table → chain → queues its rules send to.
        var queuesByChain: [String: [String: Set<UInt16>]] = [:]
        /// table → chain → chains it jumps or goes to.
        var jumps: [String: [String: Set<String>]] = [:]
        /// table → hook (lowercase: "forward", "prerouting", ...) → the chains it enters.
        var hooks: [String: [String: Set<String>]] = [:]

        /// All queues any rule sends to.
        func queues() -> Set<UInt16> {
            queuesByChain.values.reduce(into: Set<UInt16>()) { all, chains in
                for q in chains.values { all.formUnion(q) }
            }
        }

        /// The queues of the rules a packet at `hook` can reach, through jumps, in any table.
        func queues(reachableFrom hook: String) -> Set<UInt16> {
            var found = Set<UInt16>()
            for (table, entered) in hooks {
                var seen = Set<String>()
                var work = Array(entered[hook] ?? [])
                while let chain = work.popLast() {
                    guard seen.insert(chain).inserted else { continue }
                    found.formUnion(queuesByChain[table]?[chain] ?? [])
                    work += jumps[table]?[chain] ?? []
                }
            }
            return found
        }

        init(iptablesSave text: String) {
            var table = ""
            for line in text.split(separator: "\n") {
                if line.hasPrefix("*") {
                    table = String(line.dropFirst())
                    continue
                }
                let words = line.split(separator: " ").map(String.init)
                if line.hasPrefix(":"), let name = words.first?.dropFirst() {
                    // A built-in chain (its policy is not "-") is where its hook enters the table.
                    if words.count > 1 && words[1] != "-" { hooks[table, default: [:]][name.lowercased(), default: []].insert(String(name)) }
                    continue
                }
                guard line.hasPrefix("-A "), words.count > 1 else { continue }
                let chain = words[1]
                guard let j = words.firstIndex(where: { $0 == "-j" || $0 == "-g" }), j + 1 < words.count else { continue }
                let target = words[j + 1]
                guard target == "NFQUEUE" else {
                    jumps[table, default: [:]][chain, default: []].insert(target)
                    continue
                }
                let options = words[(j + 2)...]
                var queues = Set<UInt16>()
                if let i = options.firstIndex(of: "--queue-balance"), i + 1 < options.endIndex {
                    queues = HostChecks.range(options[i + 1], separator: ":")
                } else if let i = options.firstIndex(of: "--queue-num"), i + 1 < options.endIndex, let q = UInt16(options[i + 1]) {
                    queues = [q]
                } else {
                    queues = [0]
                }
                queuesByChain[table, default: [:]][chain, default: []].formUnion(queues)
            }
        }

        init(nft text: String) {
            var table = "", chain = ""
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ").map(String.init)
                guard let first = words.first else { continue }
                if first == "table", words.count >= 3 { table = words[1] + " " + words[2]; chain = ""; continue }
                if first == "chain", words.count >= 2 { chain = words[1]; continue }
                if first == "type", let h = words.firstIndex(of: "hook"), h + 1 < words.count {
                    hooks[table, default: [:]][words[h + 1], default: []].insert(chain)
                    continue
                }
                for (i, word) in words.enumerated() {
                    if (word == "jump" || word == "goto"), i + 1 < words.count {
                        jumps[table, default: [:]][chain, default: []].insert(words[i + 1])
                    }
                    // A chain may be called "queue" too: the word after jump/goto is a name.
                    guard word == "queue", i == 0 || (words[i - 1] != "jump" && words[i - 1] != "goto") else { continue }
                    var rest = words[(i + 1)...].prefix(4)
                    if rest.first == "flags" { rest = rest.dropFirst(2) }
                    let queues: Set<UInt16>
                    if let next = rest.first, next == "num" || next == "to", rest.count > 1 {
                        queues = HostChecks.range(rest[rest.index(after: rest.startIndex)], separator: "-")
                    } else {
                        queues = [0]
                    }
                    queuesByChain[table, default: [:]][chain, default: []].formUnion(queues)
                }
            }
        }
    }

    static func range(_ text: String, separator: Character) -> Set<UInt16> {
        let parts = text.split(separator: separator).compactMap { UInt16($0) }
        guard let low = parts.first else { return [] }
        let high = parts.count > 1 ? parts[1] : low
        return low <= high ? Set(low...high) : []
    }

    /// Binds `host:port` once and lets go, so a `--metrics` address that is taken (or not the host's)
    /// stops start-up with its name, before masq says it is serving.
    public static func probeListen(host: String, port: Int) async throws(DaemonError) {
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).get()
            try await channel.close()
        } catch {
            throw DaemonError("--metrics \(host):\(port): cannot listen there: \(describe(error))")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return "\(error)"
    }
}

/// Why a file could not be read: open(2)'s or read(2)'s errno.
struct ReadError: Error, Equatable, CustomStringConvertible {
    var code: Int32
    var description: String { String(cString: strerror(code)) }
}

/// A /proc file's text, or the errno of open(2)/read(2) (Foundation's errors lose it): /proc files
/// report size 0, so this reads until EOF.
func readProcFile(_ path: String) -> Result<String, ReadError> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(ReadError(code: errno)) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(ReadError(code: errno))
        }
        if n == 0 { return .success(String(decoding: bytes, as: UTF8.self)) }
        bytes += chunk[..<n]
    }
}
