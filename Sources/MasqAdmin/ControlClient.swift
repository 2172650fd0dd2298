#if canImport(Glibc)
import Glibc
#endif

/// The client side of the daemon's control socket (see `ControlService` in MasqDaemon): connect,
/// send one request, half-close, read the answer until the daemon closes.
public enum ControlClient {
    public static let defaultSocket = "/run/masq/masq.sock"

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var errno: Int32
        public var path: String
        public var description: String {
            "cannot reach masq at \(path): \(String(cString: strerror(errno)))"
        }
    }

    /// The daemon's answer: `ok` with a body, or its exit code and message.
    public struct Reply: Sendable {
        public var ok: Bool
        public var exitCode: Int32
        public var message: String
        public var body: String
    }

    public static func request(_ text: String, socket path: String = defaultSocket) throws(Failure) -> Reply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(errno: errno, path: path) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(errno: ENAMETOOLONG, path: path) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw Failure(errno: errno, path: path) }
        var outgoing = Array(text.utf8)
        if outgoing.last != UInt8(ascii: "\n") { outgoing.append(UInt8(ascii: "\n")) }
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
        }
        let answer = String(decoding: incoming, as: UTF8.self)
        let split = answer.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let status = split.first.map(String.init) ?? ""
        let body = split.count > 1 ? String(split[1]) : ""
        if status == "OK" { return Reply(ok: true, exitCode: 0, message: "", body: body) }
        // "ERR <code> <message>"
        let words = status.split(separator: " ", maxSplits: 2)
        let code = words.count > 1 ? Int32(words[1]) ?? 1 : 1
        let message = words.count > 2 ? String(words[2]) : (status.isEmpty ? "masq closed the connection without an answer" : status)
        return Reply(ok: false, exitCode: code, message: message, body: body)
    }
}
