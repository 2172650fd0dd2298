import Foundation
import NIOCore
import NIOPosix

/// What masq depends on in its host, checked at start and on every reload: each problem found is one
/// warning line naming the fix. masq needs of the host what IPVS needs (forwarding on), plus rules
/// that queue the traffic to it.
public enum HostChecks {
    /// `/proc/sys/net/ipv4/ip_forward` of this network namespace.
    static let ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

    /// The warnings for this host. `rulesInstalled`: masq installed its own iptables rules.
    public static func warnings(queues: [UInt16], rulesInstalled: Bool, iptablesBinary: String) -> [String] {
        var warnings: [String] = []
        if let text = try? String(contentsOfFile: ipForwardPath, encoding: .utf8),
           text.trimmingCharacters(in: .whitespacesAndNewlines) == "0" {
            warnings.append("net.ipv4.ip_forward is 0 in this network namespace: the kernel will not forward"
                + " packets to the real servers; set it with `sysctl -w net.ipv4.ip_forward=1` (and in /etc/sysctl.conf)")
        }
        if !rulesInstalled {
            let targeted = queuesTargeted(iptablesSave: ruleset(iptablesBinary + "-save"))
                .union(queuesTargeted(iptablesSave: ruleset(iptablesBinary == "iptables" ? "iptables-legacy-save" : "")))
                .union(queuesTargeted(nft: ruleset("nft", ["list", "ruleset"])))
            let missing = queues.filter { !targeted.contains($0) }
            if !missing.isEmpty {
                let list = missing.map(String.init).joined(separator: ", ")
                warnings.append("no iptables or nftables rule sends packets to NFQUEUE \(list): no traffic will reach"
                    + " masq; run it with --install-iptables, or install what `masq iptables --rules FILE` prints")
            }
        }
        return warnings
    }

    /// The output of a ruleset dump, or "" when the tool is missing or fails.
    private static func ruleset(_ tool: String, _ arguments: [String] = []) -> String {
        guard !tool.isEmpty else { return "" }
        let (status, output) = IptablesRunner.run(tool, arguments)
        return status == 0 ? output : ""
    }

    /// Queue numbers that `-j NFQUEUE` rules in `iptables-save` output send to (no number: queue 0).
    public static func queuesTargeted(iptablesSave text: String) -> Set<UInt16> {
        var queues = Set<UInt16>()
        for line in text.split(separator: "\n") where line.hasPrefix("-A ") {
            let words = line.split(separator: " ").map(String.init)
            guard let j = words.firstIndex(of: "-j"), j + 1 < words.count, words[j + 1] == "NFQUEUE" else { continue }
            let options = words[(j + 2)...]
            if let i = options.firstIndex(of: "--queue-balance"), i + 1 < options.endIndex {
                queues.formUnion(range(options[i + 1], separator: ":"))
            } else if let i = options.firstIndex(of: "--queue-num"), i + 1 < options.endIndex, let q = UInt16(options[i + 1]) {
                queues.insert(q)
            } else {
                queues.insert(0)
            }
        }
        return queues
    }

    /// Queue numbers that nftables `queue` statements send to (`queue num 1`, `queue flags bypass to
    /// 0-1`, `queue` alone: 0); iptables-nft's NFQUEUE rules appear here in this form too.
    public static func queuesTargeted(nft text: String) -> Set<UInt16> {
        var queues = Set<UInt16>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            for (i, word) in words.enumerated() where word == "queue" {
                var rest = words[(i + 1)...].prefix(4)
                if rest.first == "flags" { rest = rest.dropFirst(2) }
                if let first = rest.first, first == "num" || first == "to", rest.count > 1 {
                    queues.formUnion(range(rest[rest.index(after: rest.startIndex)], separator: "-"))
                } else {
                    queues.insert(0)
                }
            }
        }
        return queues
    }

    private static func range(_ text: String, separator: Character) -> Set<UInt16> {
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
