import MasqCore

/// The daemon's configuration file: what `ipvsadm-save` prints, with `-n` (numbers) or without
/// (host names from /etc/hosts, service names from /etc/services), as the seed keeps it in
/// /etc/sysconfig/ipvsadm. One command per line; `#` starts a comment; blank lines are ignored.
public enum RulesFile {
    /// Parses and applies every line in order to an empty configuration. Either the whole file is good
    /// and a configuration comes back, or the first error comes back naming file:line and the token.
    ///
    /// `names` resolves host and service names as `ipvsadm -R` does, from files only (never DNS); nil
    /// reads the system's /etc/hosts and /etc/services, once, and only when a line has a name.
    public static func parse(_ text: String, file: String = "<rules>", names: NameResolver? = nil)
        throws(RulesError) -> Configuration {
        try load(text, file: file, names: names).configuration
    }

    /// A whole rules file: the configuration, and the sync daemons its `--start-daemon` lines start
    /// (at most one per role, as IPVS runs them: a second is "Daemon has already run").
    public struct Document: Equatable, Sendable {
        public var configuration: Configuration
        public var syncDaemons: [SyncDaemonConfig]
    }

    /// As `parse`, with the sync daemons the file starts.
    public static func load(_ text: String, file: String = "<rules>", names: NameResolver? = nil)
        throws(RulesError) -> Document {
        var daemons: [SyncDaemonConfig] = []
        let configuration = try apply(text, to: Configuration(), file: file, names: names) { daemon throws(RulesError) in
            guard !daemons.contains(where: { $0.role == daemon.role }) else {
                throw RulesError(token: "--start-daemon", message: "Daemon has already run (a second \(daemon.role) sync daemon)")
            }
            daemons.append(daemon)
        }
        return Document(configuration: configuration, syncDaemons: daemons)
    }

    /// Applies every line of `text` in order to `base` (`ipvsadm -R`); all or nothing. A
    /// `--start-daemon` line is refused here: a restore edits the table, the daemons are masqadm's.
    public static func apply(_ text: String, to base: Configuration, file: String, names: NameResolver? = nil)
        throws(RulesError) -> Configuration {
        try apply(text, to: base, file: file, names: names) { _ throws(RulesError) in
            throw RulesError(token: "--start-daemon",
                             message: "a sync daemon is started with masqadm --start-daemon or in the rules file, not restored")
        }
    }

    private static func apply(_ text: String, to base: Configuration, file: String, names: NameResolver?,
                              daemon: (SyncDaemonConfig) throws(RulesError) -> Void) throws(RulesError) -> Configuration {
        var configuration = base
        var resolver = names
        // Read the system's files the first time a name needs them, then keep them for the whole file.
        func lookup() -> NameResolver {
            if let resolver { return resolver }
            let system = NameResolver()
            resolver = system
            return system
        }
        for line in TextLine.lines(text) {
            do {
                switch try IPVSCommandParser.parseLine(line.words, names: lookup) {
                case .edit(let command): try configuration.apply(command)
                case .startDaemon(let config): try daemon(config)
                }
            } catch {
                var located = error
                located.file = file
                located.line = line.number
                throw located
            }
        }
        return configuration
    }

    /// Prints a configuration as `ipvsadm-save -n` would, so `-S` output and rules files round-trip:
    /// each service's `-A` line, then an `-a` line per real server.
    public static func format(_ configuration: Configuration) -> String {
        var out = ""
        for s in configuration.services {
            out += IPVSCommand(adding: s).ipvsadmArguments.joined(separator: " ") + "\n"
            for r in s.realServers {
                out += IPVSCommand(adding: r, to: s.key).ipvsadmArguments.joined(separator: " ") + "\n"
            }
        }
        return out
    }
}
