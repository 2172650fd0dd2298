import Foundation
import Logging
import MasqRules
import Synchronization
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// SIGHUP's reload against a running configuration that masqadm has edited: one log line per change.
@Suite struct ReloadLogTests {
    @Test func reloadLogsEachChangeAgainstTheRunningConfiguration() throws {
        let rules = """
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m -w 1

            """
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("masq-reload-\(UUID().uuidString)").path
        try rules.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }

        let captured = LogCapture()
        let logger = captured.logger()
        let configuration = try RulesFile.parse(rules)
        let core = ControlPlane(options: DaemonOptions(rulesPath: path), shared: SharedEngine(Engine(configuration: configuration)),
                              configuration: configuration, iptables: nil, logger: logger)
        // masqadm at run time: a third real server and a new weight, which the file does not have.
        try core.edit(try IPVSCommandParser.parse(["-a", "-t", "198.18.0.1:80", "-r", "198.19.0.203:80", "-m"]))
        try core.edit(try IPVSCommandParser.parse(["-e", "-t", "198.18.0.1:80", "-r", "198.19.0.201:80", "-m", "-w", "4"]))
        captured.lines.withLock { $0.removeAll() }

        // The file now changes the scheduler too.
        try rules.replacingOccurrences(of: "-s rr", with: "-s wlc").write(toFile: path, atomically: true, encoding: .utf8)
        try core.reload(from: path)

        let lines = captured.lines.withLock { $0 }
        let changes = lines.filter { $0.0 == .notice }
        #expect(changes.map(\.1) == [
            "service TCP 198.18.0.1:80 edited: scheduler rr → wlc",
            "real server 198.19.0.203:80 removed from TCP 198.18.0.1:80",
            "real server 198.19.0.201:80 of TCP 198.18.0.1:80 re-weighted 4 → 1",
        ])
        #expect(changes.allSatisfy { $0.2["by"] == "SIGHUP" && $0.2["service"] == "TCP 198.18.0.1:80" })
        #expect(changes[1].2["real_server"] == "198.19.0.203:80")
        #expect(lines.last?.1 == "configuration applied" && lines.last?.2["changes"] == "3")
        #expect(core.currentConfiguration == (try RulesFile.parse(rules.replacingOccurrences(of: "-s rr", with: "-s wlc"))))
    }
}
