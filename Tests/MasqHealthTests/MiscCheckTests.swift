import Foundation
import MasqCore
import Testing
@testable import MasqHealth

/// A keepalived.conf with one TCP virtual server whose real server has `check` (a checker block).
func checkerConfig(_ check: String, protocol proto: String = "TCP", delayLoop: String = "6") -> String {
    """
    virtual_server 198.18.0.1 1358 {
        delay_loop \(delayLoop)
        lb_algo rr
        lb_kind NAT
        protocol \(proto)
        real_server 198.19.0.201 1358 {
            weight 3
            \(check)
        }
    }
    """
}

/// The first checker of the first real server, and the parse's warnings.
func parsedCheck(_ text: String) throws -> (HealthCheck, [RulesError]) {
    let config = try KeepalivedParser.parse(text: text)
    return (config.virtualServers[0].realServers[0].checks[0], config.warnings)
}

// `parseError(_:)`: CheckerServers.swift.

@Suite struct MiscCheckParseTests {
    @Test(arguments: [
        // (block, arguments, timeout, dynamic)
        ("MISC_CHECK {\n misc_path /usr/local/bin/script.sh\n }", ["/usr/local/bin/script.sh"], 6.0, false),
        ("MISC_CHECK {\n misc_path \"/usr/local/bin/script.sh arg1 arg2\"\n }", ["/usr/local/bin/script.sh", "arg1", "arg2"], 6.0, false),
        ("MISC_CHECK {\n misc_path \"/bin/sh -c 'exit 3'\"\n misc_timeout 2\n misc_dynamic\n }", ["/bin/sh", "-c", "exit 3"], 2.0, true),
        ("MISC_CHECK {\n misc_path /bin/true x\n misc_timeout 0\n }", ["/bin/true", "x"], 6.0, false),
    ])
    func values(block: String, arguments: [String], timeout: Double, dynamic: Bool) throws {
        let (check, warnings) = try parsedCheck(checkerConfig(block))
        guard case .misc(let misc) = check.kind else { Issue.record("not a MISC_CHECK: \(check.kind)"); return }
        #expect(misc.arguments == arguments)
        #expect(misc.timeout == timeout)  // unset: the virtual server's delay_loop
        #expect(misc.dynamic == dynamic)
        #expect(check.retry == 0)  // check_misc.c's default_retry
        #expect(!warnings.contains { $0.message.contains("MISC_CHECK") })
    }

    @Test func commonKeywords() throws {
        let (check, _) = try parsedCheck(checkerConfig("""
            MISC_CHECK {
                misc_path /bin/true
                retry 2
                delay_before_retry 4
                delay_loop 3
                alpha
            }
            """))
        #expect(check.retry == 2 && check.delayBeforeRetry == 4 && check.delayLoop == 3 && check.alpha)
    }

    @Test(arguments: [
        ("MISC_CHECK {\n retry 1\n }", 8, "MISC_CHECK", "needs a misc_path"),
        ("MISC_CHECK {\n misc_path /bin/true\n user nobody\n }", 10, "user", "another user"),
        ("MISC_CHECK {\n misc_path /bin/true\n connect_port 80\n }", 10, "connect_port", "not a MISC_CHECK keyword"),
        ("MISC_CHECK {\n misc_path /bin/true\n misc_timeout soon\n }", 10, "soon", "invalid misc_timeout"),
        ("MISC_CHECK {\n misc_path /bin/true\n misc_dynamic yes\n }", 10, "yes", "extra word"),
        ("MISC_CHECK {\n misc_path \"/bin/true 'open\"\n }", 9, "/bin/true 'open", "invalid misc_path"),
        ("MISC_CHECK {\n misc_path /bin/true\n frobnicate\n }", 10, "frobnicate", "unknown keyword frobnicate in MISC_CHECK"),
    ])
    func errors(block: String, line: Int, token: String, message: String) {
        let error = parseError(checkerConfig(block))
        #expect(error?.line == line, "\(String(describing: error))")
        #expect(error?.token == token)
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
    }

    /// keepalived's own samples parse with no checker ignored.
    @Test(arguments: ["keepalived.conf.misc_check", "keepalived.conf.misc_check_arg"])
    func samples(name: String) throws {
        let path = "/usr/share/doc/keepalived/samples/" + name
        guard FileManager.default.fileExists(atPath: path) else { return }
        let config = try KeepalivedParser.load(path: path)
        #expect(!config.warnings.contains { $0.message.contains("MISC_CHECK") })
        guard case .misc = config.virtualServers[0].realServers[0].checks.first?.kind else {
            Issue.record("no MISC_CHECK in \(name)"); return
        }
    }
}

@Suite struct MiscCheckProbeTests {
    static let loopback = IPAddress("127.0.0.1")!

    func run(_ arguments: [String], dynamic: Bool = false, timeout: Double = 20) async -> Probe.Result {
        await Probe.run(.misc(MiscCheck(path: arguments.joined(separator: " "), arguments: arguments, timeout: timeout,
                                        dynamic: dynamic)),
                        address: Self.loopback, port: 80, timeout: timeout)
    }

    @Test(arguments: [
        // (exit status, dynamic, expected: nil failure, -1 success, else weighted)
        (0, false, -1), (1, false, nil), (2, false, nil), (7, false, nil),
        (0, true, -1), (1, true, nil), (2, true, 0), (12, true, 10), (255, true, 253),
    ] as [(Int, Bool, Int?)])
    func exitStatus(status: Int, dynamic: Bool, expected: Int?) async {
        let result = await run(["/bin/sh", "-c", "exit \(status)"], dynamic: dynamic)
        switch expected {
        case nil: #expect(!result.succeeded, "\(result)")
        case -1: #expect(result == .success)
        case let weight?: #expect(result == .weighted(weight))
        }
    }

    /// No shell between masq and the program: the argument with a blank and a `$` arrives as written.
    @Test func argumentsAsWritten() async throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("masq-misc-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = await run(["/bin/sh", "-c", "printf '%s|' \"$@\" > \(out)", "sh", "a b", "$HOME"])
        #expect(result == .success)
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "a b|$HOME|")
    }

    /// A script that outlives misc_timeout is stopped, with what it started, and fails.
    @Test func sleeperIsKilled() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("masq-misc-sleep-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let started = ContinuousClock.now
        let result = await run(["/bin/sh", "-c", "sleep 60 & echo $! > \(pidFile); wait"], timeout: 1)
        #expect(result == .failure(ProbeFailure(check: "MISC_CHECK /bin/sh -c sleep 60 & echo $! > \(pidFile); wait",
                                                reason: .timeout(seconds: 1))))
        #expect(ContinuousClock.now - started < .seconds(20))  // a bound on hanging, not a tight clock
        // The sleeper, a child of the script, went with its process group.
        let child = pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))!
        // Gone, or a zombie waiting for its new parent (the sandbox's init may not reap at once).
        func ended() -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8) else { return true }
            return stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).first == "Z"
        }
        for _ in 0..<50 where !ended() { try await Task.sleep(for: .milliseconds(100)) }
        #expect(ended())
    }

    @Test func missingProgram() async {
        let result = await run(["/nonexistent/masq-check"])
        #expect(!result.succeeded)
    }
}

/// misc_dynamic's weights reach the service (check_misc.c: weight = status - 2; 0 brings back the
/// configured weight; a failure that takes the server down resets it).
@Suite struct MiscDynamicMonitorTests {
    @Test func weights() async throws {
        let config = try KeepalivedParser.parse(text: checkerConfig("""
            MISC_CHECK {
                misc_path /bin/true
                misc_dynamic
                delay_loop 1
            }
            """))
        let s: Int64 = 1_000_000_000
        let monitor = HealthMonitor(config, now: 0)
        func weight() -> Int32? { monitor.effectiveConfiguration(timeouts: Timeouts()).services[0].realServers.first?.weight }
        #expect(weight() == 3)
        var events = await monitor.tick(now: 1 * s) { _, _, _ in .weighted(10) }
        #expect(weight() == 10)
        #expect(events.map(\.kind) == [.weightChanged])
        #expect(events.first?.server?.weight == 10)
        events = await monitor.tick(now: 3 * s) { _, _, _ in .weighted(10) }
        #expect(events.isEmpty)
        _ = await monitor.tick(now: 5 * s) { _, _, _ in .success }
        #expect(weight() == 3)
        _ = await monitor.tick(now: 7 * s) { _, _, _ in .weighted(0) }
        #expect(weight() == 0)  // status 2: in the service at weight 0
        events = await monitor.tick(now: 9 * s) { _, _, _ in .failure(ProbeFailure(check: "MISC_CHECK", reason: .other("exited with status 1"))) }
        #expect(events.map(\.kind) == [.serverDown])
        #expect(weight() == nil)
        _ = await monitor.tick(now: 11 * s) { _, _, _ in .success }
        #expect(weight() == 3)
    }
}
