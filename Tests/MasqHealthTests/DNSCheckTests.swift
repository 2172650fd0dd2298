import Foundation
import NIOPosix
import Testing
@testable import MasqCore
@testable import MasqHealth

@Suite struct DNSMessageTests {
    /// RFC 1035 section 4.1: header (id, RD, one question), QNAME labels, QTYPE, QCLASS IN.
    @Test func aQueryAsKeepalivedBuildsIt() {
        #expect(DNSMessage.query(id: 0x1234, name: "name.test", type: 1) == [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
            4, 0x6e, 0x61, 0x6d, 0x65, 4, 0x74, 0x65, 0x73, 0x74, 0,
            0, 1, 0, 1,
        ])
    }

    @Test(arguments: ["", "."]) func theRootIsOneZeroByte(name: String) {
        #expect(DNSMessage.query(id: 1, name: name, type: 6)?.dropFirst(12) == [0, 0, 6, 0, 1])
    }

    @Test(arguments: ["a..b", ".a", String(repeating: "x", count: 64) + ".test",
                      Array(repeating: String(repeating: "x", count: 63), count: 5).joined(separator: ".")])
    func namesThatCannotBeEncoded(name: String) {
        #expect(DNSMessage.query(id: 1, name: name, type: 1) == nil)
    }

    @Test func aTrailingDotIsTheSameName() {
        #expect(DNSMessage.query(id: 1, name: "a.test.", type: 1) == DNSMessage.query(id: 1, name: "a.test", type: 1))
    }

    @Test func theHeaderOfAReply() {
        let header = DNSMessage.header([0xab, 0xcd, 0x81, 0x83, 0, 1, 0, 2, 0, 3, 0, 4, 99])
        #expect(header == DNSMessage.Header(id: 0xabcd, flags: 0x8183, questions: 1, answers: 2, authorities: 3, additionals: 4))
        #expect(header?.isResponse == true && header?.responseCode == 3)
        #expect(DNSMessage.header([UInt8](repeating: 0, count: 11)) == nil)
        #expect(DNSMessage.header([UInt8]()) == nil)
    }
}

@Suite struct DNSCheckParseTests {
    static func dns(_ body: String) -> String {
        checkerConfig("            DNS_CHECK {\n\(body)\n            }", port: 53, proto: "UDP")
    }

    @Test func keepalivedsDefaults() throws {
        let c = try #require(try checks(Self.dns("")).first)
        #expect(c.kind == .dns(DNSCheck(type: 6, name: "")))
        // check_dns.c: retry 3, delay_before_retry the delay_loop.
        #expect(c.retry == 3 && c.delayBeforeRetry == 7 && c.delayLoop == 7)
        #expect(c.connectPort == nil)
    }

    @Test(arguments: [("A", UInt16(1)), ("ns", 2), ("CNAME", 5), ("soa", 6), ("MX", 15), ("TXT", 16), ("aaaa", 28),
                      ("RRSIG", 46), ("DNSKEY", 48)])
    func types(name: String, code: UInt16) throws {
        let c = try checks(Self.dns("type \(name)\nname www.name.test\nconnect_port 5353\nretry 1\ndelay_before_retry 2"))
        #expect(c.first?.kind == .dns(DNSCheck(type: code, name: "www.name.test")))
        #expect(c.first?.connectPort == 5353 && c.first?.retry == 1 && c.first?.delayBeforeRetry == 2)
    }

    @Test(arguments: [
        ("type PTR", "PTR", "unknown DNS_CHECK type PTR"),
        ("name a..b", "a..b", "empty label"),
        ("name .x", ".x", "empty label"),
        ("name a\nname b", "b", "already given"),
        ("path /", "path", "unknown keyword path in DNS_CHECK"),
        ("type", "type", "needs a value"),
    ])
    func errors(body: String, token: String, message: String) throws {
        let e = try #require(parseError(Self.dns(body)))
        #expect(e.token == token && e.message.contains(message) && e.line > 0 && e.file == "keepalived.conf")
    }

    @Test func noWarningForItsKeywords() throws {
        let c = try KeepalivedParser.parse(text: Self.dns("type A\nname name.test"))
        #expect(!c.warnings.contains { $0.message.contains("DNS") })
    }
}

/// Against dnsmasq on loopback: `name.test` is its own (198.18.0.5); anything else is refused, having
/// no upstream.
@Suite(.serialized) struct DNSCheckProbeTests {
    static func dnsmasq(_ port: UInt16) throws -> ExternalServer {
        try ExternalServer(port: port, ["dnsmasq", "--no-daemon", "--port", "\(port)", "--listen-address", "127.0.0.1",
                                        "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                                        "--address=/name.test/198.18.0.5", "--user=\(getuid() == 0 ? "root" : "nobody")"])
    }

    @Test func aServedNamePassesAndAnUnknownOneFails() async throws {
        let port = ExternalServer.freePort(udp: true)
        let server = try Self.dnsmasq(port)
        defer { server.stop() }
        let up = await ExternalServer.untilUp {
            await Probe.run(.dns(DNSCheck(type: 1, name: "name.test")), address: loopback, port: port, timeout: 2)
        }
        #expect(up == .success)
        let soa = await Probe.run(.dns(DNSCheck()), address: loopback, port: port, timeout: 5)
        // The root's SOA: dnsmasq has no upstream, so it answers with an error code (REFUSED).
        guard case .failure(let failure) = soa else { Issue.record("the root's SOA passed"); return }
        #expect(failure.description.contains("DNS error rcode"))
        server.stop()
        let down = await Probe.run(.dns(DNSCheck(type: 1, name: "name.test")), address: loopback, port: port, timeout: 2)
        guard case .failure(let gone) = down else { Issue.record("a stopped server passed"); return }
        // Connected UDP: the ICMP port unreachable comes back as ECONNREFUSED.
        #expect(gone.reason == .connectionRefused || gone.reason == .timeout(seconds: 2))
    }

    @Test func silenceIsATimeout() async throws {
        // A UDP socket that never answers.
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { channel.close(promise: nil) }
        let port = UInt16(channel.localAddress!.port!)
        let start = Date()
        let result = await Probe.run(.dns(DNSCheck()), address: loopback, port: port, timeout: 0.5)
        #expect(result == .failure(ProbeFailure(check: "DNS SOA query for . to 127.0.0.1:\(port)", reason: .timeout(seconds: 0.5))))
        #expect(Date().timeIntervalSince(start) < 20)
    }
}
