#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import MasqCore
@testable import MasqHealth

/// A real server of the kind a checker probes (openssl s_server, python3's smtpd, dnsmasq), run on
/// loopback under `timeout` for the test's life. A missing binary fails the test (CI installs them).
final class ExternalServer {
    let process = Process()
    let port: UInt16

    init(port: UInt16, _ arguments: [String], directory: String? = nil) throws {
        self.port = port
        let binary = arguments[0]
        let path = ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"].map { $0 + binary }.first { access($0, X_OK) == 0 }
        guard let path else {
            Issue.record("\(binary) is not installed (scripts/test installs it)")
            throw CocoaError(.fileNoSuchFile)
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        // KILL: a server left running (a test that failed before `stop()`) ends at the bound even with
        // SIGTERM blocked.
        process.arguments = ["-s", "KILL", "120", path] + arguments.dropFirst()
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// SIGKILL to `timeout` and the server: both start with the test process's blocked signals
    /// (Foundation's Process keeps the mask), so a SIGTERM may never arrive and a wait would hang.
    func stop() {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        if let children = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) {
            for child in children.split(separator: " ") { if let c = pid_t(child) { kill(c, SIGKILL) } }
        }
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }

    /// A loopback port nothing listens on now (bound to port 0, then released).
    static func freePort(udp: Bool = false) -> UInt16 {
        let fd = socket(AF_INET, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Runs `probe` until it succeeds (the server is up) or `seconds` pass; the last result.
    static func untilUp(seconds: Double = 20, _ probe: () async -> Probe.Result) async -> Probe.Result {
        let end = Date().addingTimeInterval(seconds)
        var result = await probe()
        while !result.succeeded && Date() < end {
            try? await Task.sleep(for: .milliseconds(200))
            result = await probe()
        }
        return result
    }
}

let loopback = IPAddress("127.0.0.1")!

/// A keepalived.conf of one virtual server with one real server whose body is `realServer`.
func checkerConfig(_ realServer: String, port: Int = 80, proto: String = "TCP", before: String = "") -> String {
    """
    \(before)
    virtual_server 198.18.0.1 \(port) {
        lb_algo rr
        lb_kind NAT
        protocol \(proto)
        delay_loop 7
        real_server 198.18.1.1 \(port) {
    \(realServer)
        }
    }
    """
}

func checks(_ text: String) throws(RulesError) -> [HealthCheck] {
    try KeepalivedParser.parse(text: text).virtualServers[0].realServers[0].checks
}

func parseError(_ text: String) -> RulesError? {
    do {
        _ = try KeepalivedParser.parse(text: text)
        return nil
    } catch {
        return error
    }
}
