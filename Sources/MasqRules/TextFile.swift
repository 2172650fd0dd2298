#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole text files read with plain POSIX calls (MasqCore and MasqRules use no Foundation): the rules
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

/// The words of a line-oriented text file, the one tokeniser for ipvsadm's formats and the name files:
/// a rules file (`ipvsadm-save` output), what `ipvsadm -R` reads (`config_stream_read`), /etc/hosts
/// and /etc/services (glibc's `files` backend).
public struct TextLine: Equatable, Sendable {
    /// Counting from 1, for file:line messages.
    public var number: Int
    /// Never empty.
    public var words: [String]

    public init(number: Int, words: [String]) {
        self.number = number
        self.words = words
    }

    /// Lines end at "\n" (over Unicode scalars: "\r\n" is a single Character in Swift); words are
    /// separated by blanks, tabs and carriage returns; with `comment`, that character and the rest of
    /// its line are ignored (ipvsadm's `-R` has none: in 1.31 its comment test never fires); lines
    /// with no words are left out.
    public static func lines(_ text: String, comment: Unicode.Scalar? = "#") -> [TextLine] {
        var out: [TextLine] = []
        var number = 0
        for line in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            var content = line[...]
            if let comment, let hash = content.firstIndex(of: comment) { content = content[..<hash] }
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                .map { String(String.UnicodeScalarView($0)) }
            if !words.isEmpty { out.append(TextLine(number: number, words: words)) }
        }
        return out
    }
}
