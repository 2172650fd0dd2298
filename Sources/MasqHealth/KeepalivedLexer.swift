import MasqCore

/// A word or brace of a keepalived.conf, with where it came from.
struct KeepalivedToken: Equatable, Sendable {
    enum Kind: Equatable, Sendable { case word, open, close }

    var kind: Kind
    var text: String
    var file: String
    var line: Int
    /// Counts physical lines across all files: the words of one statement share it.
    var lineID: Int

    func error(_ message: String, token: String? = nil) -> RulesError {
        RulesError(file: file, line: line, token: token ?? text, message: message)
    }
}

/// keepalived's lexer (lib/parser.c), on bytes:
/// - `#` and `!` start a comment, except inside double quotes or escaped (`\#`, `\!`); leading and
///   trailing blanks go.
/// - Words are separated by blanks; `"..."` and `'...'` quote (the quotes go) and backslash escapes
///   (`\n`, `\t`, `\x41`, `\101`, `\cX`, `\"`, ...) are read as keepalived reads script lines
///   (`alloc_strvec_quoted_escaped`); `{` and `}` outside quotes are tokens of their own.
/// - `include PATTERN` alone on a line reads the files PATTERN matches there (relative patterns from
///   the including file's directory; nested; loops refused).
/// - keepalived's preprocessor (`$NAME=` definitions, `@id` conditional lines, `~SEQ`) is refused.
struct KeepalivedLexer {
    private(set) var tokens: [KeepalivedToken] = []
    /// With the line counter where each arose, so the parser can keep warnings in file order.
    private(set) var warnings: [(lineID: Int, warning: RulesError)] = []
    private var lineCounter = 0
    private var stack: [String] = []

    static let maxIncludeDepth = 32

    mutating func lex(text: String, file: String, glob: (String) throws -> [String],
                      read: (String) throws -> String) throws(RulesError) {
        stack.append(Self.normalize(file))
        defer { stack.removeLast() }
        var lineNumber = 0
        for var line in Array(text.utf8).split(separator: 0x0a, omittingEmptySubsequences: false) {
            lineNumber += 1
            lineCounter += 1
            while let last = line.last, last == 0x0d { line = line.dropLast() }
            let words = try Self.lexLine(Array(line), file: file, line: lineNumber, lineID: lineCounter)
            if let first = words.first, first.kind == .word, first.text == "include" {
                // keepalived spots an include before it splits braces off: `{a,b}` is glob's here.
                let words = try Self.lexLine(Array(line), file: file, line: lineNumber, lineID: lineCounter, braces: false)
                guard words.count == 2 else {
                    throw first.error("include takes one file name or glob pattern")
                }
                try include(words[1], from: file, glob: glob, read: read)
                continue
            }
            tokens += words
        }
    }

    private mutating func include(_ pattern: KeepalivedToken, from file: String, glob: (String) throws -> [String],
                                  read: (String) throws -> String) throws(RulesError) {
        guard !pattern.text.isEmpty else { throw pattern.error("include needs a file name", token: "include") }
        guard stack.count < Self.maxIncludeDepth else {
            throw pattern.error("includes nested deeper than \(Self.maxIncludeDepth) (an include loop?)")
        }
        let path = Self.resolve(pattern.text, relativeTo: file)
        let paths: [String]
        do {
            paths = try glob(path)
        } catch {
            throw pattern.error("cannot expand include pattern \(path): \(error)")
        }
        if paths.isEmpty {
            // keepalived logs "No config files matched" and goes on; a plain name that is not there is
            // more likely a mistake, so masq refuses it.
            guard Self.isPattern(pattern.text) else {
                throw pattern.error("included file \(path) does not exist (or is not a file)")
            }
            warnings.append((pattern.lineID, pattern.error("no file matches include pattern \(path): nothing included")))
            return
        }
        for included in paths {
            let normalized = Self.normalize(included)
            if let loop = stack.firstIndex(of: normalized) {
                let chain = (stack[loop...] + [normalized]).joined(separator: " -> ")
                throw pattern.error("include loop: \(chain)")
            }
            let text: String
            do {
                text = try read(included)
            } catch let error as RulesError {
                throw pattern.error("cannot read included file \(included): \(error.message)")
            } catch {
                throw pattern.error("cannot read included file \(included): \(error)")
            }
            try lex(text: text, file: included, glob: glob, read: read)
        }
    }

    /// A relative include is read from the including file's directory (keepalived chdir()s there).
    static func resolve(_ path: String, relativeTo file: String) -> String {
        guard !path.hasPrefix("/"), let slash = file.lastIndex(of: "/") else { return path }
        return String(file[...slash]) + path
    }

    static func isPattern(_ path: String) -> Bool { path.contains { "*?[{".contains($0) } }

    /// Lexically: no `.`, no `x/..`, no `//` (for loop detection).
    static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == "..", let last = parts.last, last != ".." {
                parts.removeLast()
                continue
            }
            if part == ".." && absolute { continue }
            parts.append(part)
        }
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : joined
    }

    // MARK: - One line

    private static let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
    private static let hash = UInt8(ascii: "#"), bang = UInt8(ascii: "!")
    private static let open = UInt8(ascii: "{"), close = UInt8(ascii: "}")

    private static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || (0x09...0x0d).contains(c) }

    static func lexLine(_ raw: [UInt8], file: String, line: Int, lineID: Int,
                        braces: Bool = true) throws(RulesError) -> [KeepalivedToken] {
        func fail(_ message: String, _ token: String) -> RulesError {
            RulesError(file: file, line: line, token: token, message: message)
        }
        let text = try decomment(raw, fail)
        guard let first = text.first else { return [] }
        let display = String(decoding: text, as: UTF8.self)
        switch first {
        case UInt8(ascii: "$"):
            if text.count > 1, text[1] == UInt8(ascii: "_") || isLetter(text[1]), text.contains(UInt8(ascii: "=")) {
                throw fail("keepalived parameter definitions ($NAME=...) are not supported by masq", display)
            }
        case UInt8(ascii: "@"):
            throw fail("keepalived conditional lines (@instance ...) are not supported by masq", display)
        case UInt8(ascii: "~"):
            throw fail("keepalived ~SEQ lines are not supported by masq", display)
        default:
            break
        }

        return try scan(text, braces: braces, fail).map {
            KeepalivedToken(kind: $0.kind, text: $0.text, file: file, line: line, lineID: lineID)
        }
    }

    /// Splits decommented text into words (and, with `braces`, `{` `}` tokens), quotes and escapes read.
    static func scan(_ text: [UInt8], braces: Bool, _ fail: (String, String) -> RulesError)
        throws(RulesError) -> [(kind: KeepalivedToken.Kind, text: String)] {
        let display = String(decoding: text, as: UTF8.self)
        var tokens: [(kind: KeepalivedToken.Kind, text: String)] = []
        var i = 0
        while i < text.count {
            let c = text[i]
            if isBlank(c) {
                i += 1
                continue
            }
            if braces && (c == open || c == close) {
                tokens.append(c == open ? (.open, "{") : (.close, "}"))
                i += 1
                continue
            }
            var word: [UInt8] = []
            var quoting: UInt8?
            while i < text.count {
                let c = text[i]
                if let q = quoting {
                    if c == q {
                        quoting = nil
                        i += 1
                        continue
                    }
                } else {
                    if isBlank(c) || (braces && (c == open || c == close)) { break }
                    if c == quote || c == apostrophe {
                        quoting = c
                        i += 1
                        continue
                    }
                }
                // Inside quotes or out, a backslash escapes and anything else is the word's.
                if c == backslash {
                    try escape(text, &i, into: &word, fail)
                } else {
                    word.append(c)
                    i += 1
                }
            }
            if let q = quoting {
                throw fail("missing terminating \(q == quote ? "\"" : "'")", display)
            }
            tokens.append((.word, String(decoding: word, as: UTF8.self)))
        }
        return tokens
    }

    private static func isLetter(_ c: UInt8) -> Bool { (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) }

    /// keepalived's `decomment`: cuts the comment, unescapes `\#` and `\!` outside quotes, trims blanks.
    private static func decomment(_ raw: [UInt8], _ fail: (String, String) -> RulesError) throws(RulesError) -> [UInt8] {
        var out: [UInt8] = []
        var inQuote = false
        var i = 0
        while i < raw.count {
            let c = raw[i]
            if c == backslash {
                guard i + 1 < raw.count else {
                    throw fail("a '\\' at the end of a line (line continuation) is not supported",
                               String(decoding: raw, as: UTF8.self).trimmingBlanks())
                }
                // Escaped characters are neither quotes nor comment starts; the word reader unescapes
                // them (`\#` gives `#`, as keepalived's decomment leaves it).
                out += [c, raw[i + 1]]
                i += 2
                continue
            }
            if c == quote { inQuote.toggle() }
            if !inQuote && (c == hash || c == bang) { break }
            out.append(c)
            i += 1
        }
        if inQuote {
            throw fail("missing terminating \"", String(decoding: raw, as: UTF8.self).trimmingBlanks())
        }
        while let f = out.first, f == 0x20 || f == 0x09 { out.removeFirst() }
        while let l = out.last, isBlank(l) { out.removeLast() }
        return out
    }

    /// One backslash escape at `text[i]` (keepalived's `alloc_strvec_quoted_escaped`).
    private static func escape(_ text: [UInt8], _ i: inout Int, into word: inout [UInt8],
                               _ fail: (String, String) -> RulesError) throws(RulesError) {
        i += 1
        guard i < text.count else {
            throw fail("missing escaped character at the end of the line", String(decoding: text, as: UTF8.self))
        }
        let c = text[i]
        func hexValue(_ h: UInt8) -> UInt8? {
            switch h {
            case 0x30...0x39: h - 0x30
            case 0x41...0x46: h - 0x41 + 10
            case 0x61...0x66: h - 0x61 + 10
            default: nil
            }
        }
        if c == UInt8(ascii: "x"), i + 1 < text.count, hexValue(text[i + 1]) != nil {
            var value: UInt8 = 0
            i += 1
            while i < text.count, let h = hexValue(text[i]) {
                value = value &<< 4 | h
                i += 1
            }
            word.append(value)
            return
        }
        if c == UInt8(ascii: "c"), i + 1 < text.count {
            word.append(text[i + 1] & 0x1f)
            i += 2
            return
        }
        if (0x30...0x37).contains(c) {
            var value: UInt8 = 0
            var digits = 0
            while digits < 3, i < text.count, (0x30...0x37).contains(text[i]) {
                value = value &<< 3 &+ (text[i] - 0x30)
                i += 1
                digits += 1
            }
            word.append(value)
            return
        }
        let mapped: UInt8 = switch c {
        case UInt8(ascii: "a"): 0x07
        case UInt8(ascii: "b"): 0x08
        case UInt8(ascii: "E"): 0x1b
        case UInt8(ascii: "f"): 0x0c
        case UInt8(ascii: "n"): 0x0a
        case UInt8(ascii: "r"): 0x0d
        case UInt8(ascii: "t"): 0x09
        case UInt8(ascii: "v"): 0x0b
        default: c
        }
        word.append(mapped)
        i += 1
    }
}

extension String {
    func trimmingBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
