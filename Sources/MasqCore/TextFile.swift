#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole text files read with plain POSIX calls (the engine's modules use no Foundation): the rules
/// parser's /etc/hosts and /etc/services, keepalived.conf and its includes.
public enum TextFile {
    /// Why a file could not be read: the system's own words (`strerror`).
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var errno: Int32
        public var description: String { String(cString: strerror(errno)) }
    }

    /// The whole file, decoded as UTF-8 (invalid bytes replaced).
    public static func read(_ path: String) throws(Failure) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(errno: errno)
            }
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// read(2), by a name the static `read(_:)` above does not shadow.
    private static func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.read(fd, buffer, count)
        #elseif canImport(Musl)
        Musl.read(fd, buffer, count)
        #else
        Darwin.read(fd, buffer, count)
        #endif
    }
}
