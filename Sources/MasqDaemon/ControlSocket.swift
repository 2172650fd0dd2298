import Foundation
import MasqControl
#if canImport(Glibc)
import Glibc
#endif

/// The control socket's listening descriptor, made by hand rather than by NIO's `bind(unixDomainSocketPath:
/// cleanupExistingSocketFile:)`, which unlinks whatever is at the path: a second daemon would take over
/// the first one's socket and delete it at exit, leaving the first uncontrollable. Here a path that a
/// live daemon answers on is refused, only a stale one (nobody listening) is replaced, and at exit the
/// file is removed only while it is still the one this daemon bound.
struct ControlSocketListener {
    let address: ControlSocketAddress
    let descriptor: Int32
    /// The socket file's device and inode (nil for an abstract name).
    private let identity: (dev: UInt64, ino: UInt64)?

    init(_ text: String) throws(DaemonError) {
        address = ControlSocketAddress(text)
        if !address.isAbstract {
            let directory = (text as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                         attributes: [.posixPermissions: 0o700])
            }
            try Self.clearStale(address)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DaemonError("control socket \(text): socket: \(Self.text(errno))") }
        // Created 0600 from the start: the umask applies at bind.
        let oldMask = umask(0o177)
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        let bindErrno = errno
        umask(oldMask)
        guard let bound else {
            close(fd)
            throw DaemonError("control socket '\(text)': " + (text.count <= 1 ? "no name given" : "the name is too long for a Unix socket"))
        }
        guard bound == 0 else {
            close(fd)
            if bindErrno == EADDRINUSE && address.isAbstract {
                let holder = Self.knock(address)?.peer.map { " (pid \($0.pid), uid \($0.uid))" } ?? ""
                throw DaemonError("control socket \(text): a process\(holder) already listens on this name in this"
                    + " network namespace; give this daemon its own --control-socket, or stop that one first")
            }
            throw DaemonError("control socket \(text): cannot bind: \(Self.text(bindErrno))")
        }
        guard listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw DaemonError("control socket \(text): cannot listen: \(Self.text(e))")
        }
        descriptor = fd
        if address.isAbstract {
            identity = nil
        } else {
            chmod(text, 0o600)
            var st = stat()
            identity = stat(text, &st) == 0 ? (UInt64(st.st_dev), UInt64(st.st_ino)) : nil
        }
    }

    /// A socket file at the path: refused if a daemon answers on it, removed if nobody does.
    private static func clearStale(_ address: ControlSocketAddress) throws(DaemonError) {
        let path = address.text
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw DaemonError("control socket \(path): the path exists and is not a socket")
        }
        guard let answer = knock(address) else { return }
        let connectErrno = answer.errno
        if connectErrno == 0 || connectErrno == EINPROGRESS || connectErrno == EAGAIN {
            let owner = answer.peer.map { " (pid \($0.pid))" } ?? ""
            throw DaemonError("control socket \(path): another masq\(owner) is serving it; give this daemon its own"
                + " --control-socket, or stop that one first")
        }
        // Only ECONNREFUSED means nobody listens: a file left by a daemon that died.
        guard connectErrno == ECONNREFUSED else {
            throw DaemonError("control socket \(path): cannot tell whether a daemon serves it: \(Self.text(connectErrno))")
        }
        unlink(path)
    }

    /// One connect to `address`, without blocking (a live daemon whose backlog is full answers EAGAIN
    /// instead of stalling start-up): errno 0 and the listener's credentials when it answered, else the
    /// connect's errno. nil when no probe socket could be made.
    private static func knock(_ address: ControlSocketAddress) -> (errno: Int32, peer: PeerCredentials?)? {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard probe >= 0 else { return nil }
        defer { close(probe) }
        guard address.withSockaddr({ connect(probe, $0, $1) }) == 0 else { return (errno, nil) }
        return (0, unixPeerCredentials(probe))
    }

    /// Gives the socket up before it was ever served (start-up failed after it was bound).
    func abandon() {
        close(descriptor)
        removeFile()
    }

    /// Removes the socket file if it is still the one this listener bound (not a successor's).
    func removeFile() {
        guard let identity else { return }
        var st = stat()
        if stat(address.text, &st) == 0 && UInt64(st.st_dev) == identity.dev && UInt64(st.st_ino) == identity.ino {
            unlink(address.text)
        }
    }

    private static func text(_ code: Int32) -> String { String(cString: strerror(code)) }
}
