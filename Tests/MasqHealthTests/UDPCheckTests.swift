import Foundation
import MasqCore
import Testing
@testable import MasqHealth

@Suite struct UDPCheckParseTests {
    @Test(arguments: [
        ("Ab12f 3 456 546443123", [0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03] as [UInt8]),  // keepalived.conf(5)
        ("00", [0x00]), ("dead BEEF", [0xde, 0xad, 0xbe, 0xef]),
    ])
    func hex(text: String, bytes: [UInt8]) {
        #expect(UDPCheck.hex(text, wildcards: false)?.bytes == bytes)
    }

    @Test func hexWildcardsAndErrors() {
        let parsed = UDPCheck.hex("12x4 Xx", wildcards: true)
        #expect(parsed?.bytes == [0x12, 0x04, 0x00])
        #expect(parsed?.mask == [0x00, 0xf0, 0xff])
        #expect(UDPCheck.hex("12x4", wildcards: false) == nil)
        #expect(UDPCheck.hex("zz", wildcards: true) == nil)
        #expect(UDPCheck.hex("  ", wildcards: true) == nil)
    }

    @Test func values() throws {
        let (check, warnings) = try parsedCheck(checkerConfig("""
            UDP_CHECK {
                connect_ip 198.19.0.202
                connect_port 53
                bindto 198.18.0.2
                connect_timeout 3
                retry 3
                delay_before_retry 2
                payload 01 02 ab
                require_reply 6x 6b
                min_reply_length 2
                max_reply_length 100
            }
            """, protocol: "UDP"))
        #expect(check.kind == .udp(UDPCheck(payload: [1, 2, 0xab], requireReply: true, reply: [0x60, 0x6b], replyMask: [0x0f, 0],
                                            minReplyLength: 2, maxReplyLength: 100)))
        #expect(check.connectIP == IPAddress("198.19.0.202") && check.connectPort == 53 && check.bindTo == IPAddress("198.18.0.2"))
        #expect(check.connectTimeout == 3 && check.retry == 3 && check.delayBeforeRetry == 2)
        #expect(!warnings.contains { $0.message.contains("UDP_CHECK") })
    }

    @Test func defaults() throws {
        let (check, _) = try parsedCheck(checkerConfig("UDP_CHECK {\n}", protocol: "UDP"))
        #expect(check.kind == .udp(UDPCheck()))
        #expect(check.retry == 1 && check.connectTimeout == 5)
        let (bare, _) = try parsedCheck(checkerConfig("UDP_CHECK {\n require_reply\n }", protocol: "UDP"))
        #expect(bare.kind == .udp(UDPCheck(requireReply: true)))
    }

    @Test(arguments: [
        ("UDP_CHECK {\n payload\n }", 9, "payload", "requires a payload"),
        ("UDP_CHECK {\n payload 0g\n }", 9, "0g", "invalid hex string"),
        ("UDP_CHECK {\n require_reply 1?\n }", 9, "1?", "invalid hex string"),
        ("UDP_CHECK {\n max_reply_length 70000\n }", 9, "70000", "invalid max_reply_length"),
        ("UDP_CHECK {\n misc_path /bin/true\n }", 9, "misc_path", "unknown keyword misc_path in UDP_CHECK"),
        ("UDP_CHECK {\n bindto 2001:2::1\n }", 8, "UDP_CHECK", "not of the family"),
    ])
    func errors(block: String, line: Int, token: String, message: String) {
        let error = parseError(checkerConfig(block, protocol: "UDP"))
        #expect(error?.line == line, "\(String(describing: error))")
        #expect(error?.token == token)
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
    }

    @Test func lengthsWarn() throws {
        let (_, warnings) = try parsedCheck(checkerConfig("UDP_CHECK {\n min_reply_length 9\n max_reply_length 3\n }", protocol: "UDP"))
        #expect(warnings.contains { $0.message.contains("will always fail") })
    }

    @Test func replyMatching() {
        let check = UDPCheck(requireReply: true, reply: [0x60, 0x6b], replyMask: [0x0f, 0], minReplyLength: 1, maxReplyLength: 4)
        #expect(check.accepts([0x61, 0x6b, 0xff]))
        #expect(check.accepts([0x6f]))  // only the shorter of the two is compared (check_udp_reply)
        #expect(!check.accepts([0x71, 0x6b]))
        #expect(!check.accepts([]))
        #expect(!check.accepts([0x60, 0x6b, 0, 0, 0]))
        #expect(UDPCheck(requireReply: true).accepts([]))  // without a pattern any reply does
    }

    @Test(arguments: ["keepalived.conf.UDP_CHECK"])
    func sample(name: String) throws {
        let path = "/usr/share/doc/keepalived/samples/" + name
        guard FileManager.default.fileExists(atPath: path) else { return }
        let config = try KeepalivedParser.load(path: path)
        #expect(!config.warnings.contains { $0.message.contains("UDP_CHECK") })
        #expect(config.virtualServers[0].realServers[0].checks.first?.kind == .udp(UDPCheck()))
    }
}

/// Probes against socat on loopback: an echo server, a closed port (ICMP port unreachable), a
/// silent server.
@Suite(.serialized) struct UDPCheckProbeTests {
    static let loopback = IPAddress("127.0.0.1")!

    /// A free UDP port on 127.0.0.1 (bound, then released).
    static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: UInt32(0x7f00_0001).bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: a.sin_port)
    }

    /// socat as a UDP server on `port` (ExternalServer: under `timeout`, stopped and waited for):
    /// `echo` sends every datagram back, else it reads and says nothing.
    static func socat(port: UInt16, echo: Bool) throws -> ExternalServer {
        try ExternalServer(port: port, ["socat", "-T", "60", "UDP4-RECVFROM:\(port),bind=127.0.0.1,fork,reuseaddr",
                                        echo ? "PIPE" : "OPEN:/dev/null,wronly"])
    }

    func probe(_ check: UDPCheck, port: UInt16, timeout: Double = 2) async -> Probe.Result {
        await Probe.run(.udp(check), address: Self.loopback, port: port, timeout: timeout)
    }

    @Test func echoServer() async throws {
        let port = Self.freePort()
        let server = try Self.socat(port: port, echo: true)
        defer { server.stop() }
        // Until socat's socket is bound (before it, the port answers with an ICMP unreachable).
        #expect(await ExternalServer.untilUp { await probe(UDPCheck(requireReply: true), port: port, timeout: 2) } == .success)
        #expect(await probe(UDPCheck(), port: port) == .success)
        let hello = Array("hello".utf8)
        #expect(await probe(UDPCheck(payload: hello, requireReply: true, reply: Array("hel".utf8)), port: port, timeout: 10) == .success)
        let mismatch = await probe(UDPCheck(payload: hello, requireReply: true, reply: Array("bye".utf8)), port: port, timeout: 10)
        #expect(!mismatch.succeeded, "\(mismatch)")
    }

    @Test func closedPortFailsByICMP() async {
        let port = Self.freePort()
        let result = await probe(UDPCheck(), port: port)
        #expect(result == .failure(ProbeFailure(check: "UDP_CHECK to 127.0.0.1:\(port)", reason: .connectionRefused)))
        let v6 = await Probe.run(.udp(UDPCheck()), address: IPAddress("::1")!, port: port, timeout: 2)
        #expect(!v6.succeeded, "\(v6)")
    }

    @Test func silentServer() async throws {
        let port = Self.freePort()
        let server = try Self.socat(port: port, echo: false)
        defer { server.stop() }
        // Until socat's socket is bound: silence, no more ICMP unreachable.
        #expect(await ExternalServer.untilUp { await probe(UDPCheck(), port: port, timeout: 1) } == .success)
        // Silence passes unless a reply is required (udp_socket_state: a read timeout is a success).
        #expect(await probe(UDPCheck(), port: port, timeout: 1) == .success)
        let required = await probe(UDPCheck(requireReply: true), port: port, timeout: 1)
        #expect(required == .failure(ProbeFailure(check: "UDP_CHECK to 127.0.0.1:\(port)", reason: .timeout(seconds: 1))))
    }
}
