import ArgumentParser
import Foundation
import MasqCapture
import MasqCore
import MasqHealth
import MasqDaemon
import MasqRules

@main
struct Masq: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "masq",
        abstract: "An LVS-NAT director in userspace: IPVS's NAT over NFQUEUE, and offline over captures.",
        version: masqVersion,
        subcommands: [Run.self, Iptables.self, Flows.self, Trace.self, Ready.self, SyncStatusCommand.self, Replay.self, Check.self,
                      SyncSample.self]
    )
}

/// An error for the user: one sentence, no usage text.
struct MasqError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads and parses a rules file, or exits with the file:line error.
func loadRules(_ path: String) throws -> Configuration {
    do {
        return try MasqDaemon.loadRules(path)
    } catch {
        throw MasqError(error.description)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a rules file (ipvsadm-save format) and print it back as masq understood it.")

    @Argument(help: "The rules file, as `ipvsadm-save` writes it (with or without -n: names come from /etc/hosts and /etc/services).")
    var rules: String?

    @Option(help: "Check a keepalived.conf instead (its LVS part and health checks).")
    var keepalived: String?

    func validate() throws {
        guard (rules == nil) != (keepalived == nil) else { throw ValidationError("give a RULES file or --keepalived FILE") }
    }

    @Flag(name: .shortAndLong, help: "Print nothing when the file is good.")
    var quiet = false

    func run() throws {
        let configuration: Configuration
        var daemons: [SyncDaemonConfig] = []
        if let keepalived {
            let parsed: KeepalivedConfig
            do { parsed = try KeepalivedParser.load(path: keepalived) } catch { throw MasqError(error.description) }
            for warning in parsed.warnings { print("warning: \(warning.description)") }
            configuration = parsed.configuration
            if !quiet {
                let checks = parsed.virtualServers.reduce(0) { $0 + $1.realServers.reduce(0) { $0 + $1.checks.count } }
                print("\(keepalived): OK, \(checks) health checks")
            }
        } else {
            let document: RulesFile.Document
            do { document = try loadRulesDocument(rules!) } catch { throw MasqError(error.description) }
            configuration = document.configuration
            daemons = document.syncDaemons
        }
        guard !quiet else { return }
        let servers = configuration.services.reduce(0) { $0 + $1.realServers.count }
        print("\(rules ?? keepalived!): OK, \(configuration.services.count) virtual services, \(servers) real servers")
        print(RulesFile.format(configuration), terminator: "")
        for daemon in daemons { print(daemon.ipvsadmArguments.joined(separator: " ")) }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a pcap or pcapng capture through the engine and write what it lets through.",
        discussion: """
            Capture timestamps drive the clock, so a replay is deterministic. The packets go through the \
            engine in batches of \(Engine.batchSize), by the call the daemon makes for each receive batch. \
            Accepted packets (rewritten or untouched) are written with their original timestamps; dropped \
            ones are left out.
            """)

    @Option(help: "The rules file (ipvsadm-save format).")
    var rules: String

    @Option(name: .customLong("in"), help: "The capture to read (pcap or pcapng; IPv4 or IPv6 in Ethernet, Linux SLL/SLL2, raw IP, raw IPv4 or raw IPv6).")
    var input: String

    @Option(name: .customLong("out"), help: "The pcap file to write.")
    var output: String

    @Option(help: "Write the final connection table here, one JSON object per line.")
    var flows: String?

    @Option(help: "The most connections the table holds; new flows beyond it are dropped and counted.")
    var maxFlows = Engine.defaultCapacity

    @Option(help: ArgumentHelp("The firewall mark every packet carries (a capture holds none), as if a -j MARK rule matched them all, for firewall-mark services (-f); 0: unmarked.", valueName: "MARK"))
    var fwmark: UInt32 = 0

    func validate() throws {
        guard (1...ConnectionTable.maximumCapacity).contains(maxFlows) else {
            throw ValidationError("--max-flows: \(maxFlows) is not between 1 and \(ConnectionTable.maximumCapacity)")
        }
    }

    func run() throws {
        let configuration = try loadRules(rules)
        let engine = Engine(configuration: configuration, capacity: maxFlows)
        let summary: ReplaySummary
        do {
            summary = try replay(engine, input: input, output: output, fwmark: fwmark)
        } catch {
            throw MasqError(error.description)
        }
        print(summary.text)
        if let flows {
            let lines = engine.flowRecords().map(\.jsonLine)
            let text = lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
            do {
                try text.write(toFile: flows, atomically: true, encoding: .utf8)
            } catch {
                throw MasqError("\(flows): cannot write: \(error.localizedDescription)")
            }
            print("flows written:".padding(toLength: 21, withPad: " ", startingAt: 0) + "\(lines.count)")
        }
    }
}
