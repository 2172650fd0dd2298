import Foundation
import MasqControl
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: each state change is one datagram (`sendto`) to $NOTIFY_SOCKET
/// (a path, or "@name" in the abstract namespace), newline-separated `KEY=VALUE` assignments as
/// sd_notify's `state` string. Not under systemd (no NOTIFY_SOCKET): every call is a no-op.
///
/// masq.service is `Type=notify`: systemd counts the start done at `READY=1`, which masq sends only once
/// the queue is bound, the iptables rules are in, the control socket is bound, the metrics address is
/// found free (its listener binds as the service group starts) and the signal handlers are in;
/// `RELOADING=1`/`READY=1` bracket a SIGHUP (systemd 253's `Type=notify-reload` also wants
/// `MONOTONIC_USEC=` with it), and `STOPPING=1` says the stop systemd sees began in masq (systemd's
/// src/libsystemd/sd-daemon/sd-daemon.c writes the same datagram; the protocol is in sd_notify(3) and
/// systemd.service(5)).
public struct SystemdNotifier: Sendable {
    /// The socket's address as $NOTIFY_SOCKET gave it (nil: not under a notify-aware manager).
    public let socket: String?

    /// The environment variable the service manager sets.
    public static let environmentVariable = "NOTIFY_SOCKET"

    /// Reads NOTIFY_SOCKET and unsets it, so that children (iptables, notify scripts) never see it and
    /// cannot speak for masq (sd_notify's `unset_environment`; the unit's `NotifyAccess=main` makes
    /// systemd ignore them anyway). Call it before any thread starts: setenv/unsetenv are not safe
    /// against a concurrent getenv.
    public static func fromEnvironment() -> SystemdNotifier {
        fromEnvironment(variable: environmentVariable)
    }

    /// As `fromEnvironment()`, from another variable (the tests use their own name).
    static func fromEnvironment(variable: String) -> SystemdNotifier {
        guard let value = getenv(variable).map({ String(cString: $0) }) else { return SystemdNotifier(socket: nil) }
        unsetenv(variable)
        return SystemdNotifier(socket: value.isEmpty ? nil : value)
    }

    public init(socket: String?) { self.socket = socket }

    /// Sends `KEY=VALUE` lines as one datagram. nil when it was sent or when there is no socket; a
    /// failure names the socket and the reason, for the one warning masq logs (it never stops for it).
    /// A newline in a value would start a new assignment, so it becomes a space.
    @discardableResult
    public func send(_ assignments: [(String, String)]) -> NotifyFailure? {
        guard let socket else { return nil }
        let payload = assignments.map { key, value in "\(key)=\(value.replacingOccurrences(of: "\n", with: " "))" }
            .joined(separator: "\n")
        // Absolute paths and abstract names only, as sd_notify accepts them.
        guard socket.hasPrefix("/") || socket.hasPrefix("@") else {
            return NotifyFailure(socket: socket, reason: "neither an absolute path nor an @abstract name")
        }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return NotifyFailure(socket: socket, reason: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(payload.utf8)
        let sent = ControlSocketAddress(socket).withSockaddr { address, length in
            bytes.withUnsafeBytes { raw -> (Int, Int32) in
                let n = sendto(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), address, length)
                return (n, errno)
            }
        }
        guard let (count, code) = sent else {
            return NotifyFailure(socket: socket, reason: "no name, or one too long for a Unix socket address (sun_path: \(MemoryLayout.size(ofValue: sockaddr_un().sun_path)) bytes)")
        }
        guard count == bytes.count else {
            return NotifyFailure(socket: socket, reason: "sendto: \(count < 0 ? String(cString: strerror(code)) : "short write")")
        }
        return nil
    }

    /// `READY=1`: the start is done (and after a reload, the reload is).
    @discardableResult
    public func ready(status: String) -> NotifyFailure? {
        send([("READY", "1"), ("STATUS", status)])
    }

    /// `RELOADING=1` with the CLOCK_MONOTONIC time in µs, which systemd compares with its own to tell
    /// this reload from an earlier one (systemd.service(5), `Type=notify-reload`).
    @discardableResult
    public func reloading() -> NotifyFailure? {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        return send([("RELOADING", "1"), ("MONOTONIC_USEC", "\(microseconds)")])
    }

    /// `STOPPING=1`: masq began to shut down.
    @discardableResult
    public func stopping(status: String) -> NotifyFailure? {
        send([("STOPPING", "1"), ("STATUS", status)])
    }
}

/// A notify datagram that could not be sent.
public struct NotifyFailure: Error, Equatable, CustomStringConvertible {
    public var socket: String
    public var reason: String

    public var description: String { "NOTIFY_SOCKET=\(socket): \(reason)" }
}
