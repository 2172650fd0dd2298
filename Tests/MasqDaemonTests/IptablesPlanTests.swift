import Foundation
import MasqRules
import Testing
@testable import MasqCore
@testable import MasqDaemon

@Suite struct IptablesPlanTests {
    /// Where IPVS hooks: inbound before routing, replies after it (no accept_local, rp_filter=1 works),
    /// after filter (security table); every chain filled before the hooks jump to it.
    @Test func seedServiceInboundInRawRepliesInSecurityForward() throws {
        let configuration = try RulesFile.parse("""
            -A -t 12.0.0.1:80 -s rr
            -a -t 12.0.0.1:80 -r 192.168.100.101:80 -m -w 1
            -a -t 12.0.0.1:80 -r 192.168.100.102:80 -m -w 1
            """)
        let plan = IptablesPlan(configuration, queue: .single(0))
        let q = "-j NFQUEUE --queue-num 0 --queue-bypass"
        #expect(plan.script() == """
            iptables -t raw -N MASQ
            iptables -t raw -A MASQ -p tcp -s 192.168.100.101/32 --sport 80 -d 12.0.0.1/32 -j CT --notrack
            iptables -t raw -A MASQ -p tcp -s 192.168.100.101/32 --sport 80 -d 12.0.0.1/32 -j RETURN
            iptables -t raw -A MASQ -p tcp -s 192.168.100.102/32 --sport 80 -d 12.0.0.1/32 -j CT --notrack
            iptables -t raw -A MASQ -p tcp -s 192.168.100.102/32 --sport 80 -d 12.0.0.1/32 -j RETURN
            iptables -t raw -A MASQ -p tcp -d 12.0.0.1/32 --dport 80 -j CT --notrack
            iptables -t raw -A MASQ -p tcp -d 12.0.0.1/32 --dport 80 \(q)
            iptables -t raw -A MASQ -p tcp -s 192.168.100.101/32 --sport 80 -m addrtype '!' --dst-type LOCAL -j CT --notrack
            iptables -t raw -A MASQ -p tcp -s 192.168.100.102/32 --sport 80 -m addrtype '!' --dst-type LOCAL -j CT --notrack
            iptables -t raw -A MASQ -p icmp -s 192.168.100.101/32 -j RETURN
            iptables -t raw -A MASQ -p icmp -s 192.168.100.102/32 -j RETURN
            iptables -t raw -A MASQ -p icmp -d 12.0.0.1/32 \(q)
            iptables -t raw -N MASQ-OUTPUT
            iptables -t raw -A MASQ-OUTPUT -p tcp -d 12.0.0.1/32 --dport 80 -j CT --notrack
            iptables -t raw -A MASQ-OUTPUT -p tcp -d 12.0.0.1/32 --dport 80 \(q)
            iptables -t raw -A MASQ-OUTPUT -p icmp --icmp-type fragmentation-needed \(q)
            iptables -t raw -A MASQ-OUTPUT -p icmp -s 12.0.0.1/32 --icmp-type port-unreachable -j CT --notrack
            iptables -t security -N MASQ-FORWARD
            iptables -t security -A MASQ-FORWARD -p tcp -s 192.168.100.101/32 --sport 80 \(q)
            iptables -t security -A MASQ-FORWARD -p tcp -s 192.168.100.102/32 --sport 80 \(q)
            iptables -t security -A MASQ-FORWARD -p icmp --icmp-type destination-unreachable \(q)
            iptables -t security -A MASQ-FORWARD -p icmp --icmp-type source-quench \(q)
            iptables -t security -A MASQ-FORWARD -p icmp --icmp-type time-exceeded \(q)
            iptables -t security -A MASQ-FORWARD -p icmp --icmp-type parameter-problem \(q)
            iptables -t security -N MASQ-INPUT
            iptables -t security -A MASQ-INPUT -p tcp -s 192.168.100.101/32 --sport 80 -d 12.0.0.1/32 \(q)
            iptables -t security -A MASQ-INPUT -p tcp -s 192.168.100.102/32 --sport 80 -d 12.0.0.1/32 \(q)
            iptables -t security -A MASQ-INPUT -p icmp -s 192.168.100.101/32 \(q)
            iptables -t security -A MASQ-INPUT -p icmp -s 192.168.100.102/32 \(q)
            iptables -t security -I INPUT 1 -j MASQ-INPUT
            iptables -t security -I FORWARD 1 -j MASQ-FORWARD
            iptables -t raw -I OUTPUT 1 -j MASQ-OUTPUT
            iptables -t raw -I PREROUTING 1 -j MASQ

            """)
        // Removal and reload touch both tables, each in one transaction.
        #expect(plan.removeInput == """
            *raw
            -D PREROUTING -j MASQ
            -D OUTPUT -j MASQ-OUTPUT
            -F MASQ
            -F MASQ-OUTPUT
            -X MASQ
            -X MASQ-OUTPUT
            COMMIT
            *security
            -D FORWARD -j MASQ-FORWARD
            -D INPUT -j MASQ-INPUT
            -F MASQ-FORWARD
            -F MASQ-INPUT
            -X MASQ-FORWARD
            -X MASQ-INPUT
            COMMIT

            """)
        #expect(plan.restoreInput.contains("COMMIT\n*security\n:MASQ-FORWARD - [0:0]\n:MASQ-INPUT - [0:0]\n-A MASQ-FORWARD -p tcp"))
        #expect(plan.removeCommands.count == 12)
    }

    @Test func sharedRealServersAndPortZeroAndBalance() throws {
        let configuration = try RulesFile.parse("""
            -A -u 198.18.0.1:53 -s rr
            -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
            -A -u 198.18.0.2:53 -s rr
            -a -u 198.18.0.2:53 -r 198.19.0.201:53 -m
            -A -t 198.18.0.3:0 -p 60
            -a -t 198.18.0.3:0 -r 198.19.0.202 -m
            """)
        let plan = IptablesPlan(configuration, queue: .balance(0, 1), chain: "LB")
        let rules = plan.preRouting.map { $0.joined(separator: " ") }
        // Shared by two services: one notrack for forwarded replies, notrack + RETURN per VIP for local clients' replies.
        #expect(rules.filter { $0.contains("-s 198.19.0.201/32") && !$0.contains("icmp") }.count == 5)
        #expect(plan.forward.filter { $0.contains("198.19.0.201/32") }.count == 1)
        #expect(rules.contains("-p tcp -d 198.18.0.3/32 -j NFQUEUE --queue-balance 0:1 --queue-bypass"))
        #expect(rules.contains("-p tcp -s 198.19.0.202/32 -m addrtype ! --dst-type LOCAL -j CT --notrack"))
        #expect(plan.restoreInput.hasPrefix("*raw\n:LB - [0:0]\n:LB-OUTPUT - [0:0]\n-A LB -p udp"))
        #expect(plan.restoreInput.hasSuffix("COMMIT\n"))
        #expect(plan.removeCommands.first == ["-t", "raw", "-D", "PREROUTING", "-j", "LB"])
    }

    /// A local client's reply (real server → VIP) must never meet a service's own rule, which would
    /// rewrite it before routing: with a port-0 service every reply to the VIP would.
    @Test func localClientRepliesLeavePreroutingBeforeTheServiceRules() throws {
        let configuration = try RulesFile.parse("-A -t 198.18.0.3:0 -p 60\n-a -t 198.18.0.3:0 -r 198.19.0.202 -m")
        let rules = IptablesPlan(configuration, queue: .single(0)).preRouting.map { $0.joined(separator: " ") }
        let leave = try #require(rules.firstIndex(of: "-p tcp -s 198.19.0.202/32 -d 198.18.0.3/32 -j RETURN"))
        let service = try #require(rules.firstIndex(of: "-p tcp -d 198.18.0.3/32 -j NFQUEUE --queue-num 0 --queue-bypass"))
        #expect(leave < service)
        #expect(rules[leave - 1] == "-p tcp -s 198.19.0.202/32 -d 198.18.0.3/32 -j CT --notrack")
    }

    @Test func cpuFanoutSpreadsByCPU() throws {
        let configuration = try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m")
        let plan = IptablesPlan(configuration, queue: .cpuFanout(2, 3))
        #expect(plan.preRouting.map { $0.joined(separator: " ") }.contains(
            "-p tcp -d 198.18.0.1/32 --dport 80 -j NFQUEUE --queue-balance 2:3 --queue-cpu-fanout --queue-bypass"))
        #expect(QueueSelection.cpuFanout(2, 3).numbers == [2, 3])
    }

    /// A removed real server with live flows keeps its reply rule until they end.
    @Test func drainingRealServersKeepTheirReplyRules() throws {
        let configuration = try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m")
        let plan = IptablesPlan(configuration, queue: .single(0),
                                draining: [(.tcp, IPAddress("198.19.0.202")!, 80)])
        #expect(plan.preRouting.map { $0.joined(separator: " ") }.contains(
            "-p tcp -s 198.19.0.202/32 --sport 80 -m addrtype ! --dst-type LOCAL -j CT --notrack"))
        #expect(plan.forward.map { $0.joined(separator: " ") }.contains(
            "-p tcp -s 198.19.0.202/32 --sport 80 -j NFQUEUE --queue-num 0 --queue-bypass"))
        #expect(plan.input.map { $0.joined(separator: " ") }.contains(
            "-p tcp -s 198.19.0.202/32 --sport 80 -d 198.18.0.1/32 -j NFQUEUE --queue-num 0 --queue-bypass"))
    }

    /// The jumps go in reply hooks first, PREROUTING last, as `installCommands` inserts them.
    @Test func hookJumpsAreCheckedThenInsertedRepliesFirst() throws {
        let plan = IptablesPlan(try RulesFile.parse("-A -t 198.18.0.1:80 -s rr"), queue: .single(0))
        #expect(plan.hookJumps.map(\.check) == [
            ["-t", "security", "-C", "INPUT", "-j", "MASQ-INPUT"], ["-t", "security", "-C", "FORWARD", "-j", "MASQ-FORWARD"],
            ["-t", "raw", "-C", "OUTPUT", "-j", "MASQ-OUTPUT"], ["-t", "raw", "-C", "PREROUTING", "-j", "MASQ"]])
        #expect(plan.hookJumps.map(\.insert) == plan.installCommands.suffix(4))
    }

    /// A start over the rules a previous masq left (SIGUSR2, a crash) refills the chains in one
    /// transaction and adds no jump: nothing is removed, so no packet of the VIP goes unqueued.
    @Test func installOverAPreviousMasqsRulesRemovesNothing() throws {
        let fake = try FakeIptables()
        let plan = IptablesPlan(try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m"),
                                queue: .single(0), failClosed: true)
        fake.present(plan.hookJumps.map(\.check))
        let installation = try IptablesRunner(binary: fake.binary).install(plan)
        #expect(installation == IptablesInstallation(note: nil, hooksFound: 4))
        let calls = fake.calls
        #expect(calls.filter { $0.contains(" -D ") || $0.contains(" -F ") || $0.contains(" -X ") || $0.contains(" -I ") }.isEmpty)
        #expect(calls.count == 5)  // four -C, one restore
        #expect(calls.last == "iptables-restore --noflush")
        #expect(fake.restoreInput == plan.restoreInput)
    }

    /// A clean start: the chains in one transaction per table, then every jump, still nothing removed.
    @Test func installOnACleanHostAddsTheJumpsAfterTheChains() throws {
        let fake = try FakeIptables()
        let plan = IptablesPlan(try RulesFile.parse("-A -t 198.18.0.1:80 -s rr"), queue: .single(0))
        fake.present([plan.hookJumps[0].check])  // a jump left by hand: kept, not doubled
        let installation = try IptablesRunner(binary: fake.binary).install(plan)
        #expect(installation.hooksFound == 1)
        let calls = fake.calls
        let restore = try #require(calls.firstIndex(of: "iptables-restore --noflush"))
        let inserts = calls.indices.filter { calls[$0].contains(" -I ") }
        #expect(inserts.count == 3 && inserts.allSatisfy { $0 > restore })
        #expect(calls[inserts.last!] == "iptables -t raw -I PREROUTING 1 -j MASQ")
        #expect(calls.filter { $0.contains(" -D ") || $0.contains(" -X ") }.isEmpty)
    }

    /// A refused install leaves nothing of its own behind, and never takes away a previous masq's rules.
    @Test func aFailedInstallRollsBackOnlyWhatItAdded() throws {
        let plan = IptablesPlan(try RulesFile.parse("-A -t 198.18.0.1:80 -s rr"), queue: .single(0))
        let fresh = try FakeIptables(failRestore: true)
        #expect(throws: IptablesError.self) { try IptablesRunner(binary: fresh.binary).install(plan) }
        #expect(fresh.calls.filter { $0.contains(" -X ") }.count == 4)
        let over = try FakeIptables(failRestore: true)
        over.present(plan.hookJumps.map(\.check))
        #expect(throws: IptablesError.self) { try IptablesRunner(binary: over.binary).install(plan) }
        #expect(over.calls.filter { $0.contains(" -D ") || $0.contains(" -F ") || $0.contains(" -X ") }.isEmpty)
    }
}

/// `iptables`, `iptables-restore` and their ip6tables twins as shell scripts in a temporary directory
/// that log their arguments; `-C` succeeds for the rules `present` names (`present6` for ip6tables),
/// each restore logs its input to its own file.
final class FakeIptables {
    let directory: String
    var binary: String { directory + "/iptables" }
    var binary6: String { directory + "/ip6tables" }

    init(failRestore: Bool = false, failRestore6: Bool = false) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("masq-fake-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let log = "echo \"$(basename \"$0\") $*\" >>'\(directory)/calls'"
        for (tool, present, fails) in [("iptables", "present", failRestore), ("ip6tables", "present6", failRestore6)] {
            let path = directory + "/" + tool
            try """
                #!/bin/sh
                \(log)
                case " $* " in *" -C "*) grep -qxF -- "$*" '\(directory)/\(present)' 2>/dev/null; exit $? ;; esac
                exit 0

                """.write(toFile: path, atomically: true, encoding: .utf8)
            try """
                #!/bin/sh
                \(log)
                cat >>'\(directory)/\(tool)-restore-input'
                exit \(fails ? 1 : 0)

                """.write(toFile: path + "-restore", atomically: true, encoding: .utf8)
            for file in [path, path + "-restore"] {
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file)
            }
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func present(_ rules: [[String]], file: String = "present") {
        _ = FileManager.default.createFile(atPath: directory + "/" + file,
                                       contents: Data(rules.map { $0.joined(separator: " ") + "\n" }.joined().utf8))
    }

    func present6(_ rules: [[String]]) { present(rules, file: "present6") }

    var calls: [String] {
        ((try? String(contentsOfFile: directory + "/calls", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Forgets the calls so far.
    func clearCalls() { try? FileManager.default.removeItem(atPath: directory + "/calls") }

    var restoreInput: String { (try? String(contentsOfFile: directory + "/iptables-restore-input", encoding: .utf8)) ?? "" }
    var restoreInput6: String { (try? String(contentsOfFile: directory + "/ip6tables-restore-input", encoding: .utf8)) ?? "" }
}

@Suite("Queue bindings (masq iptables --remove --unless-queue-bound)")
struct QueueBindingsTests {
    @Test("the bound queues are the first column of /proc/net/netfilter/nfnetlink_queue")
    func boundQueues() {
        let proc = """
                0  12345     0 2 65531     0     0        7  1
                3 -4000123     2 2 65531     0     0      100  1

            """
        #expect(QueueBindings.parseBound(proc) == [0, 3])
        #expect(QueueBindings.parseBound("") == [])
    }

    @Test("the queues masq's rules send to, from iptables -S: --queue-num and --queue-balance ranges")
    func referencedQueues() {
        let rules = """
            -N MASQ
            -A MASQ -d 198.18.0.1/32 -p tcp -m tcp --dport 80 -j NFQUEUE --queue-num 4
            -A MASQ -s 198.19.0.2/32 -p tcp -m tcp --sport 80 -j CT --notrack
            -A MASQ -d 198.18.0.2/32 -p udp -j NFQUEUE --queue-balance 8:10 --queue-cpu-fanout
            -A MASQ -d 198.18.0.3/32 -p udp -j NFQUEUE --queue-balance 12:11
            """
        #expect(QueueBindings.referenced(byRules: rules) == [4, 8, 9, 10])
        #expect(QueueBindings.referenced(byRules: "-N MASQ") == [])
    }
}

@Suite("masq iptables --remove --if-stop-unhandled (masq.service's ExecStopPost)")
struct StopUnhandledTests {
    @Test("removes only after a death by SIGTERM/SIGINT or a stop timeout")
    func decision() {
        #expect(QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "success", "EXIT_CODE": "killed", "EXIT_STATUS": "TERM"]))
        #expect(QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "success", "EXIT_CODE": "killed", "EXIT_STATUS": "INT"]))
        #expect(QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "timeout", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"]))
        // An orderly exit (SIGTERM handled: rules already removed; SIGUSR2: they stay for the next masq).
        #expect(!QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"]))
        // A crash or kill -9: Restart= starts the next masq, which adopts rules and table.
        #expect(!QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"]))
        #expect(!QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "core-dump", "EXIT_CODE": "dumped", "EXIT_STATUS": "SEGV"]))
        #expect(!QueueBindings.stopWentUnhandled(["SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "1"]))
        #expect(!QueueBindings.stopWentUnhandled([:]))  // not under systemd
    }
}

@Suite("iptables errors for the user")
struct IptablesErrorTests {
    static let lockRefused = "Fatal: can't open lock file /run/xtables.lock: Permission denied\n"

    static let hint = "cannot open its lock file (iptables-legacy needs root and a writable /run/xtables.lock): use the nft backend (--iptables iptables-nft), or, under masq.service, the drop-in PREFIX/share/doc/masq/examples/masq.service.d/iptables-legacy.conf (PREFIX /usr for the package, /usr/local for scripts/install; User=root, the lock file writable)"

    @Test("iptables-legacy's lock file under User=masq: the way out is named")
    func legacyLockAsNonRoot() {
        let error = IptablesError(command: ["iptables-legacy", "-t", "raw", "-C", "PREROUTING", "-j", "MASQ"],
                                  output: Self.lockRefused, status: 4)
        #expect(error.description == "iptables-legacy \(Self.hint): iptables-legacy -t raw -C PREROUTING -j MASQ: Fatal: can't open lock file /run/xtables.lock: Permission denied")
    }

    @Test("as root under ProtectSystem=strict, a lock file not there yet: the same way out")
    func legacyLockOnAReadOnlyRun() {
        // `iptables`, with the alternatives on legacy: the hint names iptables-nft, not `iptables` again.
        let error = IptablesError(command: ["iptables", "-t", "raw", "-N", "MASQ"],
                                  output: "Fatal: can't open lock file /run/xtables.lock: Read-only file system\n", status: 4)
        #expect(error.description == "iptables \(Self.hint): iptables -t raw -N MASQ: Fatal: can't open lock file /run/xtables.lock: Read-only file system")
    }

    @Test("a refusal without the lock's words: the plain permission error")
    func permissionWithoutTheLock() {
        let error = IptablesError(command: ["iptables", "-t", "raw", "-N", "MASQ"],
                                  output: "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n", status: 4)
        #expect(error.description == "iptables needs root or CAP_NET_ADMIN: iptables -t raw -N MASQ")
    }
}

/// Under masq.service's User=masq, /proc/net/ip_tables_names (0440, root's) cannot be read: masq
/// cannot tell whether iptables-legacy holds a previous masq's tables, and says so once.
@Suite struct LegacyTablesTests {
    static let plan = IptablesPlan(Configuration(), queue: .single(0))

    @Test func theLoadedTablesDecide() {
        #expect(IptablesRunner.legacyHolds(Self.plan, tables: .success("filter\nraw\n")) == true)
        #expect(IptablesRunner.legacyHolds(Self.plan, tables: .success("filter\nnat\n")) == false)
        #expect(IptablesRunner.legacyHolds(Self.plan, tables: .success("")) == false)
        #expect(IptablesRunner.legacyHolds(Self.plan, tables: .failure(ReadError(code: EACCES))) == nil)
    }

    @Test func anUnreadableFileIsSaidOnceAndTakenAsNo() throws {
        let capture = LogCapture()
        let runner = IptablesRunner(binary: "iptables", logger: capture.logger(),
                                    legacyTables: { .failure(ReadError(code: EACCES)) })
        #expect(!runner.legacyHoldsOrSay(Self.plan))
        #expect(!runner.legacyHoldsOrSay(Self.plan))
        let lines = capture.lines.withLock { $0 }
        try #require(lines.count == 1)
        #expect(lines[0].0 == .notice)
        #expect(lines[0].1.hasPrefix("cannot tell whether iptables-legacy holds masq's tables (/proc/net/ip_tables_names: Permission denied): taken as not"))

        let readable = IptablesRunner(binary: "iptables", logger: capture.logger(), legacyTables: { .success("raw\n") })
        #expect(readable.legacyHoldsOrSay(Self.plan))
        #expect(capture.lines.withLock { $0.count } == 1)
    }
}
