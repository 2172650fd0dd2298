import MasqCore

/// An editing command (a rules file line, the daemon's `apply`) read by ipvsadm's own parser
/// (`IPVSAdmCommandLine`), as `ipvsadm -R` reads a line.
public enum IPVSCommandParser {
    /// Parses one command from its words (`["-A", "-t", "198.18.0.1:80", "-s", "rr"]`). Host and port
    /// names (`web1:http`) are looked up in `names`; the default knows none, so only numbers parse.
    public static func parse(_ tokens: [String], names: NameResolver = .numericOnly) throws(RulesError) -> IPVSCommand {
        try parse(tokens, names: { names })
    }

    /// As `parse(_:names:)`, asking `names` for the resolver only when a word is not numeric, so a
    /// numeric rules file never reads /etc/hosts or /etc/services.
    public static func parse(_ tokens: [String], names: @escaping () -> NameResolver) throws(RulesError) -> IPVSCommand {
        guard case .edit(let command) = try parseLine(tokens, names: names) else {
            throw RulesError(token: tokens.first ?? "",
                             message: "not an editing command (-A, -E, -D, -C, -a, -e or -d)")
        }
        return command
    }

    /// One rules file line: an editing command, or masq's extension `--start-daemon master|backup
    /// [options]` (ipvsadm-save has no form for a sync daemon; a director's file can start one).
    public static func parseLine(_ tokens: [String], names: @escaping () -> NameResolver) throws(RulesError) -> RulesLine {
        let parsed: IPVSAdmCommand
        do {
            parsed = try IPVSAdmCommandLine.parse(tokens, readingStdin: true, names: names)
        } catch {
            let kind: RulesError.Kind = switch error.kind {
            case .noSuchService: .noSuchService
            case .noSuchScheduler: .noSuchScheduler
            case .invalid, .unsupported, .notACommand, .popt: .invalid
            }
            throw RulesError(kind, token: error.token, message: error.kind == .popt ? "\(error.token): \(error.message)"
                                                                              : error.explained)
        }
        switch parsed {
        case .edit(let command): return .edit(command)
        case .startDaemon(let daemon): return .startDaemon(daemon)
        default:
            throw RulesError(token: tokens.first ?? "",
                             message: "not an editing command (-A, -E, -D, -C, -a, -e or -d) or --start-daemon")
        }
    }

    /// `A.B.C.D[:PORT]`, `[IPv6]:PORT` or a bare IPv6 address, numeric only (what `ipvsadm-save -n`
    /// prints).
    public static func parseEndpoint(_ text: String) -> (IPAddress, UInt16?)? {
        IPVSAdmCommandLine.endpoint(text, names: { .numericOnly })
    }
}

/// What a rules file line holds.
public enum RulesLine: Equatable, Sendable {
    case edit(IPVSCommand)
    case startDaemon(SyncDaemonConfig)
}
