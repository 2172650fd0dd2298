#if canImport(Glibc)
import Glibc
#endif
import MasqCore
import NIOCore
import NIOPosix

// The probe of MiscCheck.swift's checker (kept apart from its settings and parser, which the
// keepalived fuzz target builds without SwiftNIO).

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
