#if canImport(Glibc)
import Glibc
#endif
import MasqCore
import NIOCore
import NIOPosix

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

extension Probe {
    /// One MISC_CHECK probe: runs the program (no shell; its own process group, stdin/stdout/stderr
    /// on /dev/null, default signal dispositions) and waits for it up to `check.timeout` (else
    /// `timeout`). A passing misc_dynamic status 2-255 is `.weighted(status - 2)`.
    static func misc(_ check: MiscCheck, address: IPAddress, port: UInt16, timeout: Double) async -> Result {
        let limit = check.timeout ?? timeout
        let what = "MISC_CHECK \(check.path)"
        let pid: pid_t
        switch MiscProcess.spawn(check.arguments) {
        case .success(let p): pid = p
        case .failure(let error):
            return .failure(ProbeFailure(check: what, reason: .other("cannot run it: \(String(cString: strerror(error.code)))")))
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .nanoseconds(Int64(limit * 1e9))
        var status: Int32 = 0
        while true {
            if let s = MiscProcess.reap(pid) { status = s; break }
            if clock.now >= deadline {
                // check_misc.c: SIGTERM to the group, 2 s, then SIGKILL; a forced end is a failure.
                kill(-pid, SIGTERM)
                let grace = clock.now + .seconds(2)
                while clock.now < grace, MiscProcess.reap(pid) == nil {
                    try? await Task.sleep(for: .milliseconds(10))
                }
                kill(-pid, SIGKILL)
                while MiscProcess.reap(pid) == nil { try? await Task.sleep(for: .milliseconds(10)) }
                return .failure(ProbeFailure(check: what, reason: .timeout(seconds: limit)))
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        // The status from waitpid: exited (low 7 bits 0) or killed by a signal.
        if status & 0x7f == 0 {
            let code = (status >> 8) & 0xff
            if code == 0 { return .success }
            if let weight = check.weight(forExitStatus: code) { return .weighted(weight) }
            return .failure(ProbeFailure(check: what, reason: .other("exited with status \(code)")))
        }
        // Children it left behind go with it (keepalived kills the group after a signalled end too).
        kill(-pid, SIGKILL)
        return .failure(ProbeFailure(check: what, reason: .other("ended by signal \(status & 0x7f)")))
    }
}

/// posix_spawn for MISC_CHECK: Foundation's Process puts the child in masq's process group, and a
/// script's own children must be killed with it at the timeout (keepalived's `kill(-pid, ...)`).
enum MiscProcess {
    /// Starts `arguments[0]` (looked up in PATH when it has no slash) in a process group of its own.
    static func spawn(_ arguments: [String]) -> Swift.Result<pid_t, Errno> {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in 0...2 {
            posix_spawn_file_actions_addopen(&actions, Int32(fd), "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        // No descriptor of masq's (the queue's netlink socket, the state file) reaches the script.
        _ = spawnAddCloseFrom(&actions, 3)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0]!, &actions, &attributes, &argv, environ)
        return rc == 0 ? .success(pid) : .failure(Errno(rc))
    }

    /// The wait status once the child has ended (reaped), nil while it runs.
    static func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return status }
        // ECHILD: reaped already by someone else; nothing left to wait for.
        if r < 0 && errno == ECHILD { return 0x7f00 /* "exited 127" */ }
        return nil
    }

    /// glibc 2.34's posix_spawn_file_actions_addclosefrom_np, which the Glibc module does not
    /// import (it is declared for _GNU_SOURCE only).
    @_silgen_name("posix_spawn_file_actions_addclosefrom_np")
    static func spawnAddCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32

    struct Errno: Error { var code: Int32; init(_ c: Int32) { code = c } }
}
