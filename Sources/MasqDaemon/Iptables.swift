import Foundation
import MasqCore

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

    /// The NFQUEUE target's options. `--queue-bypass`: while no process has the queue bound, packets
    /// go on through the stack instead of being dropped.
    var targetArguments: [String] {
        switch self {
        case .single(let q): ["-j", "NFQUEUE", "--queue-num", "\(q)", "--queue-bypass"]
        case .balance(let a, let b): ["-j", "NFQUEUE", "--queue-balance", "\(a):\(b)", "--queue-bypass"]
        case .cpuFanout(let a, let b):
            ["-j", "NFQUEUE", "--queue-balance", "\(a):\(b)", "--queue-cpu-fanout", "--queue-bypass"]
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

/// The iptables rules masq needs, derived from the rules file: both directions of every service
/// queued in the **raw** table, before conntrack, and kept out of conntrack (`-j CT --notrack`).
///
/// Why raw + notrack: rewriting after conntrack (mangle) leaves the kernel's conntrack entry keyed on
/// the VIP; the real server's reply then matches nothing, is "invalid", and NAT breaks. IPVS also keeps
/// its flows out of conntrack. ICMP errors are queued too (all of the four types masq translates, and
/// the director's own "fragmentation needed" from OUTPUT); unrelated ones come back untouched.
public struct IptablesPlan: Equatable, Sendable {
    public var chain: String
    public var queue: QueueSelection
    public var preRouting: [[String]] = []
    public var output: [[String]] = []

    /// `draining`: real servers no longer configured whose flows still live; their replies stay queued.
    public init(_ configuration: Configuration, queue: QueueSelection, chain: String = "MASQ",
                draining: [(proto: IPProtocol, address: IPv4Address, port: UInt16)] = []) {
        self.chain = chain
        self.queue = queue
        var seen = Set<[String]>()
        func add(_ match: [String]) {
            guard seen.insert(match).inserted else { return }
            let notrack = match.first == "-p" && match[1] != "icmp"
            if notrack { preRouting.append(match + ["-j", "CT", "--notrack"]) }
            preRouting.append(match + queue.targetArguments)
        }
        for service in configuration.services {
            let proto = service.key.proto == .udp ? "udp" : "tcp"
            var inbound = ["-p", proto, "-d", "\(service.key.address)/32"]
            if service.key.port != 0 { inbound += ["--dport", "\(service.key.port)"] }
            add(inbound)
        }
        for service in configuration.services {
            let proto = service.key.proto == .udp ? "udp" : "tcp"
            for rs in service.realServers {
                let port = rs.port == 0 ? service.key.port : rs.port
                var outbound = ["-p", proto, "-s", "\(rs.address)/32"]
                if port != 0 { outbound += ["--sport", "\(port)"] }
                // Not the real server's answers to the director itself (health checks, admin sessions):
                // those keep conntrack, or stateful INPUT rules would drop them.
                outbound += ["-m", "addrtype", "!", "--dst-type", "LOCAL"]
                add(outbound)
            }
        }
        for rs in draining {
            var outbound = ["-p", rs.proto == .udp ? "udp" : "tcp", "-s", "\(rs.address)/32"]
            if rs.port != 0 { outbound += ["--sport", "\(rs.port)"] }
            add(outbound + ["-m", "addrtype", "!", "--dst-type", "LOCAL"])
        }
        for address in Set(configuration.services.map(\.key.address)).sorted() {
            add(["-p", "icmp", "-d", "\(address)/32"])
        }
        for type in ["destination-unreachable", "source-quench", "time-exceeded", "parameter-problem"] {
            add(["-p", "icmp", "--icmp-type", type])
        }
        output.append(["-p", "icmp", "--icmp-type", "fragmentation-needed"] + queue.targetArguments)
    }

    public var outputChain: String { chain + "-OUTPUT" }

    /// Every iptables invocation that installs the plan, in order (arguments after the binary).
    public var installCommands: [[String]] {
        var commands: [[String]] = [["-t", "raw", "-N", chain]]
        commands += preRouting.map { ["-t", "raw", "-A", chain] + $0 }
        commands.append(["-t", "raw", "-I", "PREROUTING", "1", "-j", chain])
        commands.append(["-t", "raw", "-N", outputChain])
        commands += output.map { ["-t", "raw", "-A", outputChain] + $0 }
        commands.append(["-t", "raw", "-I", "OUTPUT", "1", "-j", outputChain])
        return commands
    }

    /// Removes what `installCommands` added (each step may fail harmlessly if already gone).
    public var removeCommands: [[String]] {
        [
            ["-t", "raw", "-D", "PREROUTING", "-j", chain], ["-t", "raw", "-F", chain], ["-t", "raw", "-X", chain],
            ["-t", "raw", "-D", "OUTPUT", "-j", outputChain], ["-t", "raw", "-F", outputChain],
            ["-t", "raw", "-X", outputChain],
        ]
    }

    /// `removeCommands` as one `iptables-restore --noflush` transaction (one process: shutdown is fast).
    public var removeInput: String {
        ["*raw", "-D PREROUTING -j \(chain)", "-D OUTPUT -j \(outputChain)", "-F \(chain)", "-F \(outputChain)",
         "-X \(chain)", "-X \(outputChain)", "COMMIT"].joined(separator: "\n") + "\n"
    }

    /// The chains' new contents as one `iptables-restore --noflush` transaction (reload): declaring a
    /// chain empties it, and the kernel swaps the whole table at COMMIT, so no packet ever sees the
    /// chains half filled.
    public var restoreInput: String {
        var lines = ["*raw", ":\(chain) - [0:0]", ":\(outputChain) - [0:0]"]
        // iptables-restore splits on blanks and takes no shell quoting; no token here has a blank.
        lines += preRouting.map { (["-A", chain] + $0).joined(separator: " ") }
        lines += output.map { (["-A", outputChain] + $0).joined(separator: " ") }
        lines.append("COMMIT")
        return lines.joined(separator: "\n") + "\n"
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
        if status == 127 || text.contains("No such file") {
            return "\(command[0]) is not installed (apt-get install iptables): \(shown)"
        }
        if text.contains("Permission denied") || text.contains("you must be root") {
            return "iptables needs root or CAP_NET_ADMIN: \(shown)"
        }
        if text.contains("NFQUEUE") || text.contains("No chain/target/match") || text.contains("CT") && text.contains("target") {
            return "the kernel or \(command[0]) lacks the NFQUEUE or CT target (modules nfnetlink_queue, xt_NFQUEUE, xt_CT): \(shown): \(text)"
        }
        return "\(shown) failed (exit \(status)): \(text)"
    }
}

/// Runs iptables for a plan, remembering which binary worked so removal uses the same one.
public final class IptablesRunner: @unchecked Sendable {
    public private(set) var binary: String
    private let lock = NSLock()

    public init(binary: String = "iptables") { self.binary = binary }

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

    /// Installs the plan. With `fallbackToLegacy`, a rule the nft backend refuses makes the whole plan
    /// go through `iptables-legacy` instead (and the caller is told, to say so in the log).
    public func install(_ plan: IptablesPlan, fallbackToLegacy: Bool = true) throws -> String? {
        lock.lock()
        defer { lock.unlock() }
        do {
            try apply(plan.installCommands, binary: binary, rollback: plan.removeCommands)
            return nil
        } catch let error as IptablesError where fallbackToLegacy && binary == "iptables"
            && error.status != 127 && !error.output.contains("Permission denied") {
            try apply(plan.installCommands, binary: "iptables-legacy", rollback: plan.removeCommands)
            binary = "iptables-legacy"
            return "the nft backend of iptables refused a rule (\(error)); installed with iptables-legacy instead"
        }
    }

    /// Replaces the chains' rules in one transaction (reload); on failure the old rules stay.
    public func refill(_ plan: IptablesPlan) throws {
        lock.lock()
        defer { lock.unlock() }
        let restore = binary + "-restore"
        let (status, output) = Self.run(restore, ["--noflush"], input: plan.restoreInput)
        if status != 0 {
            throw IptablesError(command: [restore, "--noflush"], output: output, status: status)
        }
    }

    /// Removes the plan's chains; never fails on what is already gone (then step by step).
    public func remove(_ plan: IptablesPlan) {
        lock.lock()
        defer { lock.unlock() }
        if Self.run(binary + "-restore", ["--noflush"], input: plan.removeInput).status == 0 { return }
        for command in plan.removeCommands { Self.run(binary, command) }
    }

    private func apply(_ commands: [[String]], binary: String, rollback: [[String]]) throws {
        // A chain left by a daemon that died without cleaning up: start from nothing.
        for command in rollback { Self.run(binary, command) }
        for command in commands {
            let (status, output) = Self.run(binary, command)
            if status != 0 {
                for undo in rollback { Self.run(binary, undo) }
                throw IptablesError(command: [binary] + command, output: output, status: status)
            }
        }
    }
}
