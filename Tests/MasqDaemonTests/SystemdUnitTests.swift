import Foundation
import Testing

/// dist/systemd: the unit the README installs, its signals as masq reads them, and systemd's own
/// verdict on the files where `systemd-analyze` is installed.
@Suite struct SystemdUnitTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("dist/systemd").path

    /// `KEY=value` lines of a unit file (comments and sections dropped), in order.
    static func settings(_ file: String) throws -> [(String, String)] {
        try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), !line.hasPrefix("["), let equals = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<equals]), String(line[line.index(after: equals)...]))
        }
    }

    static func value(_ key: String, in file: String) throws -> String? {
        try settings(file).last { $0.0 == key }?.1
    }

    /// A restart is SIGUSR2 (rules and table kept), a stop SIGTERM (rules removed); a crash restarts
    /// within RestartSec, and a unit that keeps failing hands over to masq-unqueue.
    @Test func signalsAndRestartsAreMasqs() throws {
        #expect(try Self.value("RestartKillSignal", in: "masq.service") == "SIGUSR2")
        #expect(try Self.value("KillSignal", in: "masq.service") == "SIGTERM")
        #expect(try Self.value("Restart", in: "masq.service") == "always")
        #expect(try Self.value("RestartSec", in: "masq.service") == "100ms")
        #expect(try Self.value("OnFailure", in: "masq.service") == "masq-unqueue.service")
        #expect(try Self.value("ExecStopPost", in: "masq.service") == "/usr/local/sbin/masq iptables --remove --if-stop-unhandled $MASQ_IPTABLES_OPTIONS")
        #expect(try Self.value("ExecReload", in: "masq.service") == "/bin/kill -HUP $MAINPID")
        #expect(try Self.value("ExecStart", in: "masq.service") == "/usr/local/sbin/masq run $MASQ_CONFIG $MASQ_OPTIONS $MASQ_IPTABLES_OPTIONS")
        #expect(try Self.value("ExecStart", in: "masq-unqueue.service") == "/usr/local/sbin/masq iptables --remove --unless-queue-bound 5 $MASQ_IPTABLES_OPTIONS")
        #expect(try Self.settings("masq.service").contains { $0 == ("EnvironmentFile", "-/etc/default/masq") })
        // Every variable the units use but MASQ_CONFIG is set in the default file; MASQ_CONFIG is the
        // unit's (and the keepalived drop-in's): an EnvironmentFile= would override a drop-in's
        // Environment=.
        let defaults = try Self.settings("masq.default").map(\.0)
        #expect(defaults == ["MASQ_OPTIONS", "MASQ_IPTABLES_OPTIONS"])
        let environment = try Self.settings("masq.service").filter { $0.0 == "Environment" }.map(\.1)
        #expect(environment == ["\"MASQ_CONFIG=--rules /etc/masq/rules\"",
                                "\"MASQ_OPTIONS=--install-iptables --state-dir /run/masq\"",
                                "MASQ_IPTABLES_OPTIONS="])
        #expect(try Self.value("MASQ_OPTIONS", in: "masq.default") == "\"--install-iptables --state-dir /run/masq\"")
    }

    /// masq says READY=1 itself (sd_notify), and runs as its own user with CAP_NET_ADMIN and
    /// CAP_NET_RAW only, writing nowhere but /run/masq.
    @Test func notifyAndConfinement() throws {
        #expect(try Self.value("Type", in: "masq.service") == "notify")
        #expect(try Self.value("NotifyAccess", in: "masq.service") == "main")
        #expect(try Self.value("User", in: "masq.service") == "masq")
        #expect(try Self.value("Group", in: "masq.service") == "masq")
        #expect(try Self.value("AmbientCapabilities", in: "masq.service") == "CAP_NET_ADMIN CAP_NET_RAW")
        #expect(try Self.value("CapabilityBoundingSet", in: "masq.service") == "CAP_NET_ADMIN CAP_NET_RAW")
        #expect(try Self.value("NoNewPrivileges", in: "masq.service") == "yes")
        #expect(try Self.value("ProtectSystem", in: "masq.service") == "strict")
        #expect(try Self.value("ReadWritePaths", in: "masq.service") == "/run/masq")
        #expect(try Self.value("RuntimeDirectory", in: "masq.service") == "masq")
        #expect(try Self.value("RuntimeDirectoryPreserve", in: "masq.service") == "yes")
        // The state file's directory is the one masq may write, and the one masq run is told to use.
        #expect(try Self.settings("masq.service").contains { $0.0 == "Environment" && $0.1.contains("--state-dir /run/masq") })
        // The system user the unit names is the one sysusers.d creates.
        let sysusers = try String(contentsOfFile: "\(Self.directory)/../sysusers.d/masq.conf", encoding: .utf8)
        #expect(sysusers.split(separator: "\n").contains { $0.hasPrefix("u masq ") })
    }

    /// The keepalived drop-in replaces MASQ_CONFIG, and only that.
    @Test func keepalivedDropInSetsTheConfiguration() throws {
        let text = try String(contentsOfFile: "\(Self.directory)/keepalived.conf", encoding: .utf8)
        let sections = text.split(separator: "\n").filter { $0.hasPrefix("[") }
        #expect(sections == ["[Service]"])
        #expect(try Self.settings("keepalived.conf").map { "\($0.0)=\($0.1)" }
                == ["Environment=\"MASQ_CONFIG=--keepalived /etc/keepalived/keepalived.conf\""])
    }

    /// `systemd-analyze verify` accepts the units (with the binary's path pointed at one that exists),
    /// and masq.service again with the keepalived drop-in in its masq.service.d (a unit directory of
    /// its own, SYSTEMD_UNIT_PATH, so that the drop-in is read).
    @Test func systemdAcceptsTheUnits() throws {
        guard let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: FileManager.default.isExecutableFile)
        else { return }  // no systemd here: the static checks above are what there is
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("masq-units-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: "\(copy)/masq.service.d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        for (unit, target) in [("masq.service", "masq.service"), ("masq-unqueue.service", "masq-unqueue.service"),
                               ("run-masq.mount", "run-masq.mount"), ("keepalived.conf", "masq.service.d/keepalived.conf")] {
            let text = try String(contentsOfFile: "\(Self.directory)/\(unit)", encoding: .utf8)
            try text.replacingOccurrences(of: "/usr/local/sbin/masq", with: "/bin/true")
                .write(toFile: "\(copy)/\(target)", atomically: true, encoding: .utf8)
        }
        func verify(_ arguments: [String], unitPath: String? = nil) throws -> (Int32, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: analyze)
            process.arguments = ["verify", "--man=no"] + arguments
            if let unitPath {
                // The trailing colon keeps the system's directories (multi-user.target, ...) after it.
                process.environment = ProcessInfo.processInfo.environment.merging(["SYSTEMD_UNIT_PATH": unitPath + ":"]) { $1 }
            }
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, output)
        }
        let (status, output) = try verify(["\(copy)/masq.service", "\(copy)/masq-unqueue.service", "\(copy)/run-masq.mount"])
        #expect(status == 0, "systemd-analyze verify: \(output)")
        #expect(output.isEmpty, "systemd-analyze verify: \(output)")
        let (dropInStatus, dropInOutput) = try verify(["masq.service"], unitPath: copy)
        #expect(dropInStatus == 0, "systemd-analyze verify with the keepalived drop-in: \(dropInOutput)")
        #expect(dropInOutput.isEmpty, "systemd-analyze verify with the keepalived drop-in: \(dropInOutput)")
    }
}
