import Foundation

/// keepalived's notify scripts (notify_up/down, quorum_up/down): run without a shell, the command
/// line split as keepalived splits it (`KeepalivedParser.scriptArguments`), each bounded in time so a
/// stuck script can neither pile up nor hold a shutdown.
public enum NotifyScripts {
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// The command line has an unbalanced quote or a trailing escape.
        case unparsable(String)
        case cannotStart(String, reason: String)

        public var description: String {
            switch self {
            case .unparsable(let line): "notify script \(line): cannot split its command line"
            case .cannotStart(let line, let reason): "notify script \(line) could not start: \(reason)"
            }
        }
    }

    /// How a script waited for ended.
    public enum Outcome: Equatable, Sendable {
        case exited(Int32)
        /// Ended by a signal it did not get from us.
        case signalled(Int32)
        /// Still running at the limit: sent SIGTERM, then SIGKILL.
        case stopped
    }

    static func process(_ commandLine: String) throws(Failure) -> Process {
        guard let argv = KeepalivedParser.scriptArguments(commandLine), let program = argv.first else {
            throw .unparsable(commandLine)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = Array(argv.dropFirst())
        do {
            try process.run()
        } catch {
            throw .cannotStart(commandLine, reason: error.localizedDescription)
        }
        return process
    }

    /// Starts a script and returns at once (health changes must not wait for their scripts); still
    /// running after `limit`, it gets SIGTERM and `onOverrun` is called.
    public static func start(_ commandLine: String, limit: Duration,
                             onOverrun: @escaping @Sendable () -> Void) throws(Failure) {
        let process = try process(commandLine)
        let (seconds, attoseconds) = limit.components
        DispatchQueue.global().asyncAfter(deadline: .now() + Double(seconds) + Double(attoseconds) / 1e18) {
            if process.isRunning {
                process.terminate()
                onOverrun()
            }
        }
    }

    /// Runs the scripts all at once and returns when each has ended, or at `limit` (plus a 100 ms
    /// grace for SIGTERM, then SIGKILL, which is not waited for): a shutdown with scripts stays bounded
    /// even when one ignores SIGTERM.
    public static func runAll(_ commandLines: [String], limit: Duration) async -> [Result<Outcome, Failure>] {
        var results: [Result<Outcome, Failure>?] = []
        var running: [(index: Int, process: Process)] = []
        for line in commandLines {
            do {
                running.append((results.count, try process(line)))
                results.append(nil)
            } catch {
                results.append(.failure(error))
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        var terminated = false
        func collect() {
            running.removeAll { entry in
                guard !entry.process.isRunning else { return false }
                let status = entry.process.terminationStatus
                results[entry.index] = .success(terminated ? .stopped
                    : entry.process.terminationReason == .exit ? .exited(status) : .signalled(status))
                return true
            }
        }
        collect()
        while !running.isEmpty && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
            collect()
        }
        if !running.isEmpty {
            for entry in running { entry.process.terminate() }
            terminated = true
            let grace = clock.now + .milliseconds(100)
            while !running.isEmpty && clock.now < grace {
                try? await Task.sleep(for: .milliseconds(5))
                collect()
            }
            for entry in running {
                kill(entry.process.processIdentifier, SIGKILL)
                results[entry.index] = .success(.stopped)
            }
        }
        return results.map { $0 ?? .success(.stopped) }
    }
}
