import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a control socket lives: a file path, or, with a leading `@`, a name in Linux's abstract
/// socket namespace (as `ss -x` shows them), which the kernel scopes to the network namespace: one
/// daemon per namespace can use the default name without meeting the others, and nothing is left in
/// the file system. An abstract socket has no file mode; the daemon checks every peer's credentials.
public struct ControlSocketAddress: Sendable, CustomStringConvertible {
    public let text: String
    public init(_ text: String) { self.text = text }

    public var isAbstract: Bool { text.hasPrefix("@") }
    public var description: String { text }

    /// The `sockaddr_un` and its length: for an abstract name, a leading NUL and the name's bytes only.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = isAbstract ? [0] + Array(text.utf8.dropFirst()) : Array(text.utf8) + [0]
        guard bytes.count <= MemoryLayout.size(ofValue: address.sun_path), bytes.count > 1 else { return nil }  // also "@" or "" alone
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count - (isAbstract ? 0 : 1))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}

/// The process at the other end of a connected Unix socket: `struct ucred` (SO_PEERCRED), which glibc
/// declares only under _GNU_SOURCE, laid out as the kernel writes it (pid, uid, gid).
public struct PeerCredentials: Sendable {
    public var pid: pid_t = 0
    public var uid: uid_t = 0
    public var gid: gid_t = 0

    public init() {}

    /// Root, or the user this process runs as: the only peers masq's control socket talks to.
    public var isRootOrSelf: Bool { uid == 0 || uid == getuid() }

    /// A daemon a client may trust: root, this user, or the system user masq.service runs masq as
    /// (`User=masq`, dist/sysusers.d/masq.conf): only root can start a process as that account, so a
    /// socket it holds is masq's. `serviceUID` is that account's uid, when the machine has one as a
    /// system account.
    public func isMasqDaemon(serviceUID: uid_t? = PeerCredentials.serviceUID) -> Bool {
        isRootOrSelf || (serviceUID.map { uid == $0 } ?? false)
    }

    /// The user masq.service runs masq as.
    public static let serviceUser = "masq"

    /// `serviceUser`'s uid, nil when there is no such account or it is not a system account.
    public static var serviceUID: uid_t? {
        serviceUID(account: userID(named: serviceUser), systemUIDMax: systemUIDMax(loginDefs: try? String(
            contentsOfFile: "/etc/login.defs", encoding: .utf8)))
    }

    /// The account's uid when it is a system uid (1 ... `systemUIDMax`). A `masq` created by hand as
    /// an ordinary login (uid 1000 and up, which its owner, not only root, can run processes as)
    /// makes no daemon: trusting it would let that login's sockets pass for masq's.
    public static func serviceUID(account uid: uid_t?, systemUIDMax: uid_t) -> uid_t? {
        guard let uid, uid != 0, uid <= systemUIDMax else { return nil }
        return uid
    }

    /// The highest system uid: login.defs(5)'s SYS_UID_MAX (useradd --system's range; Debian 12's
    /// adduser --system reads adduser.conf's LAST_SYSTEM_UID, 999 too, and systemd-sysusers its own
    /// build-time 999), 999 (Debian's default) when the file or the key is missing. Fails closed: a
    /// masq account above it is not trusted, so masqadm refuses a real masq rather than a fake one.
    public static func systemUIDMax(loginDefs text: String?) -> uid_t {
        for line in (text ?? "").split(separator: "\n") {
            let words = line.prefix { $0 != "#" }.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 2, words[0] == "SYS_UID_MAX", let value = uid_t(words[1]) { return value }
        }
        return 999
    }

    /// The uid of the account `name` (getpwnam_r(3), reentrant: clients may ask from several threads),
    /// nil when there is none.
    public static func userID(named name: String) -> uid_t? {
        let suggested = sysconf(Int32(_SC_GETPW_R_SIZE_MAX))
        var size = suggested > 0 ? suggested : 1024
        while true {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: size)
            let status = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
            if status == ERANGE && size < 1 << 20 {
                size *= 2
                continue
            }
            return status == 0 && result != nil ? entry.pw_uid : nil
        }
    }
}

/// The credentials of the peer of a connected Unix socket `fd` (nil if the kernel gives none).
public func unixPeerCredentials(_ fd: Int32) -> PeerCredentials? {
    var credentials = PeerCredentials()
    var length = socklen_t(MemoryLayout<PeerCredentials>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
    return credentials
}

/// The client side of the daemon's control socket (see `ControlService` in MasqDaemon): connect, send
/// one request, half-close, read the answer until the daemon closes.
public enum ControlClient {
    /// The daemon's default: an abstract name, so it is per network namespace (see `ControlSocketAddress`).
    public static let defaultSocket = "@masq"

    /// The socket a client talks to: `--socket` when given, else `MASQ_CONTROL_SOCKET`, else the default.
    public static func socketPath(option: String? = nil) -> String {
        option ?? ProcessInfo.processInfo.environment["MASQ_CONTROL_SOCKET"] ?? defaultSocket
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var errno: Int32
        public var path: String
        /// What went wrong, when the errno alone does not say it.
        public var reason: String?
        public init(errno: Int32, path: String, reason: String? = nil) {
            self.errno = errno
            self.path = path
            self.reason = reason
        }
        public var explanation: String { reason ?? String(cString: strerror(errno)) }
        public var description: String { "cannot reach masq at \(path): \(explanation)" }
    }

    /// Sends one request and reads the daemon's answer (see `ControlFraming`): connect, check the
    /// server is root or this user, send, half-close, read until the daemon closes. Throws when the
    /// daemon cannot be reached or talked to; what the daemon refuses is a `.failure` answer.
    public static func request(_ request: ControlRequest, socket path: String = defaultSocket) throws(Failure) -> ControlReply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(errno: errno, path: path) }
        defer { close(fd) }
        guard let connected = ControlSocketAddress(path).withSockaddr({ connect(fd, $0, $1) }) else {
            throw Failure(errno: ENAMETOOLONG, path: path, reason: path.count <= 1 ? "no socket name given" : nil)
        }
        guard connected == 0 else { throw Failure(errno: errno, path: path) }
        // Anyone may bind an abstract name first: talk only to root, to ourselves or to masq.service's
        // user, never send rules (or trust a listing) to another user's process holding masq's name.
        if let peer = unixPeerCredentials(fd), !peer.isMasqDaemon() {
            throw Failure(errno: EPERM, path: path,
                          reason: "the socket is held by pid \(peer.pid), uid \(peer.uid), which is neither root, nor you, nor the user \(PeerCredentials.serviceUser): not masq's")
        }
        let outgoing = ControlFraming.encode(request)
        var sent = 0
        while sent < outgoing.count {
            let n = outgoing[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(errno: errno, path: path) }
            sent += n
        }
        shutdown(fd, Int32(SHUT_WR))
        var incoming: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw Failure(errno: errno, path: path) }
            if n == 0 { break }
            incoming += buffer[0..<n]
            guard incoming.count <= ControlFraming.maximumReply else {
                throw Failure(errno: EMSGSIZE, path: path, reason: "the answer is larger than \(ControlFraming.maximumReply) bytes")
            }
        }
        return ControlFraming.decodeReply(incoming)
    }
}
