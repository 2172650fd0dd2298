import Foundation
import Testing
@testable import MasqCore
@testable import MasqHealth

@Suite struct SMTPCheckParseTests {
    static func smtp(_ body: String) -> String {
        checkerConfig("            SMTP_CHECK {\n\(body)\n            }", port: 25)
    }

    @Test func keepalivedsDefaults() throws {
        let c = try checks(Self.smtp(""))
        #expect(c.count == 1)
        #expect(c.first?.kind == .smtp(SMTPCheck(heloName: "smtpchecker.keepalived.org")))
        #expect(c.first?.retry == 1 && c.first?.delayBeforeRetry == 1 && c.first?.connectPort == nil)
    }

    @Test(arguments: ["helo_name \"foo.bar.com\"", "helo_name foo.bar.com"]) func heloName(line: String) throws {
        let c = try checks(Self.smtp("\(line)\nconnect_timeout 30\nretry 2\ndelay_before_retry 5"))
        #expect(c.first?.kind == .smtp(SMTPCheck(heloName: "foo.bar.com")))
        #expect(c.first?.connectTimeout == 30 && c.first?.retry == 2 && c.first?.delayBeforeRetry == 5)
    }

    /// check_smtp.c `smtp_check_end_handler`: with no connection option of its own, the block is its hosts.
    @Test func hostBlocksAreACheckerEach() throws {
        let text = Self.smtp("""
            helo_name foo.bar.com
            retry 2
            host {
                connect_ip 198.18.1.1
            }
            host {
                connect_ip 198.18.2.10
                connect_port 587
                bindto 198.18.0.2
            }
            """)
        let config = try KeepalivedParser.parse(text: text)
        let c = config.virtualServers[0].realServers[0].checks
        #expect(c.map { $0.connectIP?.description } == ["198.18.1.1", "198.18.2.10"])
        #expect(c.map(\.connectPort) == [nil, 587] && c.map(\.bindTo) == [nil, IPAddress("198.18.0.2")])
        #expect(c.allSatisfy { $0.kind == .smtp(SMTPCheck(heloName: "foo.bar.com")) && $0.retry == 2 })
        #expect(config.warnings.filter { $0.message.contains("deprecated") }.count == 2)
        // A connection option of its own: the block checks too.
        let own = try checks(Self.smtp("connect_port 2525\nhost {\nconnect_ip 198.18.2.10\n}"))
        #expect(own.map(\.connectPort) == [2525, nil])
    }

    @Test(arguments: [
        ("helo_name", "helo_name", "needs a value"),
        ("helo_name a\nhelo_name b", "b", "already given"),
        ("url {\npath /\n}", "url", "unknown keyword url in SMTP_CHECK"),
        ("host {\nhelo_name x\n}", "helo_name", "unknown keyword helo_name in SMTP_CHECK host"),
        ("bindto 2001:2::1", "SMTP_CHECK", "not of the family"),
    ])
    func errors(body: String, token: String, message: String) throws {
        let e = try #require(parseError(Self.smtp(body)))
        #expect(e.token == token && e.message.contains(message) && e.line > 0)
    }
}

/// Against python3's smtpd (the standard library's SMTP server) on loopback.
@Suite(.serialized) struct SMTPCheckProbeTests {
    @Test func aRealSMTPServerPassesAndAStoppedOneFails() async throws {
        let port = ExternalServer.freePort()
        let server = try ExternalServer(port: port, ["python3", "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer",
                                                     "127.0.0.1:\(port)"])
        defer { server.stop() }
        let check = SMTPCheck(heloName: "checker.name.test")
        let up = await ExternalServer.untilUp { await Probe.run(.smtp(check), address: loopback, port: port, timeout: 3) }
        #expect(up == .success)
        server.stop()
        let down = await Probe.run(.smtp(check), address: loopback, port: port, timeout: 3)
        #expect(down == .failure(ProbeFailure(check: "SMTP on 127.0.0.1:\(port)", reason: .connectionRefused)))
    }

    /// socat speaking a refusing greeting (554), a multi-line one, and a refused HELO.
    @Test(arguments: [
        ("554 no service\\r\\n", "bad SMTP greeting 554"),
        ("220-first\\r\\n220 second\\r\\n500 what\\r\\n", "bad HELO reply 500"),
        ("hello\\r\\n", "malformed SMTP reply"),
    ])
    func badReplies(script: String, reason: String) async throws {
        let port = ExternalServer.freePort()
        // The dialogue in a file socat runs (socat's own quoting would split an inline SYSTEM: line).
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("masq-smtp-\(port).sh").path
        try "printf '\(script)'; sleep 2\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let server = try ExternalServer(port: port, ["socat", "TCP4-LISTEN:\(port),bind=127.0.0.1,reuseaddr,fork",
                                                     "EXEC:/bin/sh \(file)"])
        defer { server.stop() }
        var result = Probe.Result.success
        for _ in 0..<100 {
            result = await Probe.run(.smtp(SMTPCheck()), address: loopback, port: port, timeout: 5)
            if case .failure(let f) = result, f.reason == .connectionRefused {
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            break
        }
        guard case .failure(let failure) = result else { Issue.record("passed"); return }
        #expect(failure.description.contains(reason))
    }
}
