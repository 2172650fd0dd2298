import Foundation
import MasqCore
import Testing
@testable import MasqHealth

@Suite struct PingCheckParseTests {
    @Test func values() throws {
        let (check, warnings) = try parsedCheck(checkerConfig("""
            PING_CHECK {
                connect_ip 198.19.0.202
                bindto 198.18.0.2
                connect_timeout 2
                retry 4
                delay_before_retry 2
                warmup 1
            }
            """, protocol: "UDP"))
        #expect(check.kind == .ping(PingCheck()))
        #expect(check.connectIP == IPAddress("198.19.0.202") && check.bindTo == IPAddress("198.18.0.2"))
        #expect(check.connectTimeout == 2 && check.retry == 4 && check.delayBeforeRetry == 2 && check.warmup == 1)
        #expect(!warnings.contains { $0.message.contains("PING_CHECK") })
    }

    @Test(arguments: [
        ("PING_CHECK {\n payload 00\n }", 9, "payload", "unknown keyword payload in PING_CHECK"),
        ("PING_CHECK {\n retry many\n }", 9, "many", "invalid retry"),
        ("PING_CHECK {\n bindto 2001:2::1\n }", 8, "PING_CHECK", "not of the family"),
        ("PING_CHECK extra {\n }", 8, "extra", "extra word"),
    ])
    func errors(block: String, line: Int, token: String, message: String) {
        let error = parseError(checkerConfig(block, protocol: "UDP"))
        #expect(error?.line == line, "\(String(describing: error))")
        #expect(error?.token == token)
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
    }

    @Test(arguments: ["keepalived.conf.PING_CHECK"])
    func sample(name: String) throws {
        let path = "/usr/share/doc/keepalived/samples/" + name
        guard FileManager.default.fileExists(atPath: path) else { return }
        let config = try KeepalivedParser.load(path: path)
        #expect(!config.warnings.contains { $0.message.contains("PING_CHECK") })
        #expect(config.virtualServers[0].realServers[0].checks.first?.kind == .ping(PingCheck()))
        #expect(config.virtualServers[0].realServers[0].checks.first?.retry == 4)
    }

    @Test func checksum() {
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2, checksum 220d.
        #expect(Pinger.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == 0x220d)
    }

    @Test func replyMatching() {
        let reply: [UInt8] = [0, 0, 0, 0, 0x12, 0x34, 0, 1]
        #expect(Pinger.isReply(reply[...], raw: false, v6: false, identifier: 0, sequence: 1))
        #expect(Pinger.isReply(reply[...], raw: true, v6: true, identifier: 0x1234, sequence: 1) == false)  // type 0 is not ICMPv6's reply
        #expect(Pinger.isReply(([0x45] + [UInt8](repeating: 0, count: 19) + reply)[...], raw: true, v6: false, identifier: 0x1234, sequence: 1))
        #expect(!Pinger.isReply(([0x45] + [UInt8](repeating: 0, count: 19) + reply)[...], raw: true, v6: false, identifier: 0x1235, sequence: 1))
        #expect(!Pinger.isReply([8, 0, 0, 0, 0x12, 0x34, 0, 1][...], raw: false, v6: false, identifier: 0, sequence: 1))  // a request
    }
}

/// Pings of loopback (a raw socket here: CI runs as root, ping_group_range may exclude it).
@Suite struct PingCheckProbeTests {
    @Test(arguments: ["127.0.0.1", "::1"])
    func loopback(address: String) async {
        let a = IPAddress(address)!
        #expect(await Probe.run(.ping(PingCheck()), address: a, port: 0, timeout: 5) == .success)
        #expect(await Probe.run(.ping(PingCheck()), address: a, port: 0, bindTo: a, timeout: 5) == .success)
    }

    /// Many pings at once each see their own reply.
    @Test func parallel() async {
        let results = await withTaskGroup(of: Probe.Result.self) { group in
            for i in 0..<16 {
                group.addTask { await Probe.run(.ping(PingCheck()), address: IPAddress(i % 2 == 0 ? "127.0.0.1" : "::1")!, port: 0, timeout: 5) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0 == .success }, "\(results)")
    }
}
