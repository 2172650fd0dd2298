#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqRules

/// Files for `KeepalivedParser.load(path:)`: MasqRules' plain POSIX reads (`TextFile`) and glob(3), no Foundation.
enum KeepalivedFiles {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The whole file as text.
    static func read(_ path: String) throws -> String {
        do {
            return try TextFile.read(path)
        } catch {
            throw Failure(description: error.description)
        }
    }

    /// The regular paths `pattern` matches, sorted (keepalived: `glob(GLOB_MARK | GLOB_BRACE)`, directories
    /// skipped); none when nothing matches.
    static func glob(_ pattern: String) throws -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        let flags = GLOB_MARK | GLOB_BRACE
        let rc = Self.systemGlob(pattern, flags, &matches)
        if rc == GLOB_NOMATCH { return [] }
        guard rc == 0 else { throw Failure(description: "glob(3) failed (\(rc))") }
        var paths: [String] = []
        for i in 0..<Int(matches.gl_pathc) {
            guard let p = matches.gl_pathv[i] else { continue }
            let path = String(cString: p)
            if !path.hasSuffix("/") { paths.append(path) }
        }
        return paths
    }

    private static func systemGlob(_ pattern: String, _ flags: Int32, _ matches: inout glob_t) -> Int32 {
        #if canImport(Glibc)
        Glibc.glob(pattern, flags, nil, &matches)
        #else
        Darwin.glob(pattern, flags, nil, &matches)
        #endif
    }
}
