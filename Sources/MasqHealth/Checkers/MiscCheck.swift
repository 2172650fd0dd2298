#if canImport(Glibc)
import Glibc
#endif
import MasqCore

/// keepalived's `MISC_CHECK { }` (keepalived/check/check_misc.c): a program is run, no shell, and its
/// exit status is the check. 0 passes; with `misc_dynamic`, 2-255 pass too and set the real server's
/// weight to the status minus 2 (misc_check_child_thread); anything else, a signal, or running past
/// `misc_timeout` (then SIGTERM to its process group, SIGKILL 2 s later, as keepalived does) fails.
public struct MiscCheck: Equatable, Sendable {
    /// `misc_path`: the command line as written (for the log).
    public var path: String
    /// The program and its arguments, split as keepalived splits script lines (set_script_params_array).
    public var arguments: [String]
    /// `misc_timeout` in seconds; nil in the file means the virtual server's delay_loop
    /// (misc_check_thread), which the parser fills in when the virtual server block closes.
    public var timeout: Double?
    /// `misc_dynamic`: exit statuses 2-255 pass and set the weight to status - 2.
    public var dynamic: Bool

    public init(path: String, arguments: [String]? = nil, timeout: Double? = nil, dynamic: Bool = false) {
        self.path = path
        self.arguments = arguments ?? KeepalivedParser.scriptArguments(path) ?? [path]
        self.timeout = timeout
        self.dynamic = dynamic
    }

    /// The weight a passing exit status sets (misc_dynamic's status - 2), nil for 0: the configured one.
    /// nil also for a status that does not pass.
    public func weight(forExitStatus status: Int32) -> Int? {
        guard dynamic, (2...255).contains(status) else { return nil }
        return Int(status) - 2
    }
}

/// The checker keywords MISC_CHECK shares with the others (check_api.c's
/// install_checker_common_keywords(false): no connection keywords, the script connects to nothing).
private let miscCommonKeywords: Set<String> = ["retry", "delay_before_retry", "warmup", "delay_loop", "alpha", "log_all_failures"]
/// The connection keywords, which keepalived does not take in MISC_CHECK.
private let connectionKeywords: Set<String> = ["connect_ip", "connect_port", "bindto", "bind_port", "bind_if",
                                               "connect_timeout", "fwmark"]

extension KeepalivedFileParser {
    /// Reads a `MISC_CHECK` block of a real server: `misc_path` (required: keepalived drops a checker
    /// without it, masq refuses the file), `misc_timeout` (whole seconds, as read_unsigned_strvec
    /// reads it), `misc_dynamic`, and the common timing keywords. `user` is refused: masq runs as its
    /// own unprivileged user and cannot switch to another one.
    func miscCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: false)
        var path: (text: String, arguments: [String])?
        var timeout: Double?
        var dynamic = false
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            switch st.name {
            case "misc_path":
                guard st.words.count >= 2 else { throw st.keyword.error("misc_path needs a program") }
                let values = st.words.dropFirst()
                let arguments: [String]
                if values.count == 1 {
                    // One (usually quoted) word: split it as keepalived splits a script line.
                    guard let split = KeepalivedParser.scriptArguments(values.first!.text) else {
                        throw values.first!.error("invalid misc_path command line")
                    }
                    arguments = split
                } else {
                    arguments = values.map(\.text)
                }
                guard let program = arguments.first, !program.isEmpty else { throw st.words[1].error("misc_path needs a program") }
                if path != nil { warn(st.keyword, "misc_path already specified: this one replaces it (as keepalived does)") }
                path = (values.map(\.text).joined(separator: " "), arguments)
            case "misc_timeout":
                timeout = Double(try unsigned(st, 0...UInt64(UInt32.max / 1_000_000)))
            case "misc_dynamic":
                try none(st)
                dynamic = true
            case "user":
                throw st.keyword.error("running MISC_CHECK as another user is not supported by masq (the script runs as masq's user)")
            case let name where connectionKeywords.contains(name):
                throw st.keyword.error("\(name) is not a MISC_CHECK keyword (the script makes its own connections)")
            case let name where miscCommonKeywords.contains(name):
                try checkKeyword(st, &check)
            default:
                throw refuse(st, in: "MISC_CHECK")
            }
        }
        guard let path else { throw s.keyword.error("MISC_CHECK needs a misc_path") }
        // misc_timeout 0 is keepalived's "not set" (misc_check_thread: `timeout ? timeout : delay_loop`).
        check.kind = .misc(MiscCheck(path: path.text, arguments: path.arguments, timeout: timeout == 0 ? nil : timeout,
                                     dynamic: dynamic))
        return check
    }
}
