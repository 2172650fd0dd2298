import Foundation
import MasqControl
import Testing
@testable import MasqDaemon
#if canImport(Glibc)
import Glibc
#endif

/// The notify protocol without systemd: a datagram socket stands in for systemd's NOTIFY_SOCKET and
/// receives exactly what masq sends, one datagram per state change, in order.
@Suite struct SystemdNotifyTests {
    /// A bound AF_UNIX SOCK_DGRAM socket, as systemd's notify socket is, at a path or an @abstract name.
    final class Listener {
        let address: String
        let descriptor: Int32

        init(_ address: String) throws {
            self.address = address
            descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(descriptor >= 0)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let bound = ControlSocketAddress(address).withSockaddr { bind(descriptor, $0, $1) }
            try #require(bound == 0, "bind \(address): \(String(cString: strerror(errno)))")
        }

        deinit {
            close(descriptor)
            if !address.hasPrefix("@") { unlink(address) }
        }

        /// The next datagram's text (nil: none within 5 s).
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(descriptor, &buffer, buffer.count, 0)
            return n < 0 ? nil : String(decoding: buffer.prefix(n), as: UTF8.self)
        }

        /// Whether a datagram is waiting (after the ones expected: there must be none).
        var hasMore: Bool {
            var buffer = [UInt8](repeating: 0, count: 16)
            return recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT)) >= 0
        }
    }

    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("masq-notify-\(UUID().uuidString.prefix(8))").path
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }

    @Test(arguments: [temporaryPath(), "@masq-notify-test-\(getpid())-\(UUID().uuidString.prefix(8))"])
    func aServiceLifeArrivesInOrder(address: String) throws {
        let listener = try Listener(address)
        let notifier = SystemdNotifier(socket: address)

        #expect(notifier.ready(status: "serving 2 virtual services on queue 0") == nil)
        let before = Self.monotonicMicroseconds()
        #expect(notifier.reloading() == nil)
        let after = Self.monotonicMicroseconds()
        #expect(notifier.ready(status: "serving 2 virtual services on queue 0; reload rejected: rules:3: unknown scheduler 'xx'") == nil)
        #expect(notifier.stopping(status: "stopping") == nil)

        #expect(listener.receive() == "READY=1\nSTATUS=serving 2 virtual services on queue 0")
        let reloading = try #require(listener.receive())
        let lines = reloading.split(separator: "\n")
        #expect(lines.count == 2 && lines[0] == "RELOADING=1")
        let stamp = try #require(lines.last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil })
        #expect(before <= stamp && stamp <= after)
        #expect(listener.receive() == "READY=1\nSTATUS=serving 2 virtual services on queue 0; reload rejected: rules:3: unknown scheduler 'xx'")
        #expect(listener.receive() == "STOPPING=1\nSTATUS=stopping")
        #expect(!listener.hasMore)
    }

    /// STATUS= keeps saying what serves after a reload, and adds how the reload ended.
    @Test func theStatusKeepsWhatServesAcrossReloads() {
        #expect(servingStatus(services: 2, queue: .single(0)) == "serving 2 virtual services on queue 0")
        #expect(servingStatus(services: 3, queue: .single(0), reload: .accepted)
                == "serving 3 virtual services on queue 0; reload accepted")
        #expect(servingStatus(services: 2, queue: .single(0), reload: .rejected("rules:3: unknown scheduler 'xx'\n  -A -t 198.18.0.1:80 -s xx\n"))
                == "serving 2 virtual services on queue 0; reload rejected: rules:3: unknown scheduler 'xx'")
        #expect(servingStatus(services: 1, queue: .cpuFanout(2, 3), reload: .rejected("\nrules: gone"))
                == "serving 1 virtual services on queues \(QueueSelection.cpuFanout(2, 3)); reload rejected: rules: gone")
    }

    @Test func aNewlineInAValueCannotStartAnAssignment() throws {
        let address = Self.temporaryPath()
        let listener = try Listener(address)
        #expect(SystemdNotifier(socket: address).send([("STATUS", "reload rejected\nREADY=1")]) == nil)
        #expect(listener.receive() == "STATUS=reload rejected READY=1")
    }

    @Test func fromEnvironmentTakesTheSocketAndUnsetsIt() {
        let variable = "MASQ_TEST_NOTIFY_SOCKET_\(getpid())"
        setenv(variable, "@masq-notify-env", 1)
        let notifier = SystemdNotifier.fromEnvironment(variable: variable)
        #expect(notifier.socket == "@masq-notify-env")
        #expect(getenv(variable) == nil)

        #expect(SystemdNotifier.fromEnvironment(variable: variable).socket == nil)
        setenv(variable, "", 1)
        #expect(SystemdNotifier.fromEnvironment(variable: variable).socket == nil)
        #expect(getenv(variable) == nil)
    }

    @Test func withoutASocketNothingIsSent() {
        let notifier = SystemdNotifier(socket: nil)
        #expect(notifier.send([("READY", "1")]) == nil)
        #expect(notifier.ready(status: "serving") == nil)
        #expect(notifier.reloading() == nil)
        #expect(notifier.stopping(status: "stopping") == nil)
    }

    @Test func aBadSocketIsReportedWithItsName() {
        let relative = SystemdNotifier(socket: "run/notify").ready(status: "serving")
        #expect(relative == NotifyFailure(socket: "run/notify", reason: "neither an absolute path nor an @abstract name"))
        #expect(relative?.description == "NOTIFY_SOCKET=run/notify: neither an absolute path nor an @abstract name")

        let unusable = "no name, or one too long for a Unix socket address (sun_path: 108 bytes)"
        #expect(SystemdNotifier(socket: "/" + String(repeating: "x", count: 120)).ready(status: "serving")?.reason == unusable)
        #expect(SystemdNotifier(socket: "@").ready(status: "serving")?.reason == unusable)

        let missing = Self.temporaryPath()
        #expect(SystemdNotifier(socket: missing).ready(status: "serving")
                == NotifyFailure(socket: missing, reason: "sendto: No such file or directory"))
    }
}
