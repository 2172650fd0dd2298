/// One ipvsadm command (a line of an `ipvsadm-save` file, or a `masqadm` command line), parsed.
public struct IPVSCommand: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case addService = "-A", editService = "-E", deleteService = "-D", clear = "-C"
        case addServer = "-a", editServer = "-e", deleteServer = "-d"
    }

    public var kind: Kind
    public var service: ServiceKey?
    public var scheduler: String?
    public var schedulerFlags: SchedulerFlags?
    /// `-p [SECS]`: present with the timeout (ipvsadm's default when no value follows).
    public var persistence: UInt32?
    /// `-M` of an IPv4 service: a dotted netmask.
    public var netmask: IPv4Address?
    /// `-M` of an IPv6 service: a prefix length (ipvsadm's `-M 64`).
    public var prefixLength: UInt8?
    /// `-o`/`--ops`: one-packet scheduling.
    public var onePacket: Bool?
    public var realServer: (address: IPAddress, port: UInt16?)?
    public var weight: Int32?
    /// `-x`/`--u-threshold` and `-y`/`--l-threshold` of a real server.
    public var upperThreshold: UInt32?
    public var lowerThreshold: UInt32?

    /// The command with no option given yet.
    public init(kind: Kind) {
        self.kind = kind
    }

    public static func == (a: IPVSCommand, b: IPVSCommand) -> Bool {
        a.kind == b.kind && a.service == b.service && a.scheduler == b.scheduler
            && a.schedulerFlags == b.schedulerFlags && a.persistence == b.persistence && a.netmask == b.netmask && a.prefixLength == b.prefixLength
            && a.realServer?.address == b.realServer?.address && a.realServer?.port == b.realServer?.port
            && a.weight == b.weight && a.onePacket == b.onePacket
            && a.upperThreshold == b.upperThreshold && a.lowerThreshold == b.lowerThreshold
    }
}

extension IPVSCommand {
    /// `-A` for a service as a rules file holds it: what `ipvsadm-save` prints for it (`-M` only with
    /// `-p`, as `print_service_entry` does, and only when it is not 255.255.255.255; `-o` for a
    /// one-packet service).
    public init(adding service: ServiceSpec) {
        self.init(kind: .addService)
        self.service = service.key
        scheduler = service.scheduler
        schedulerFlags = service.schedulerFlags.isEmpty ? nil : service.schedulerFlags
        persistence = service.persistence
        if service.persistence != nil && service.hasPersistenceMask {
            if service.key.address.isIPv6 { prefixLength = service.prefixLength } else { netmask = service.netmask }
        }
        if service.onePacket { onePacket = true }
    }

    /// `-a` for a real server of the service `key`, with its port, weight and thresholds (`-x`/`-y`
    /// when set: masq's rules file keeps them, which `ipvsadm-save`, and so `masqadm -S`, does not).
    public init(adding server: RealServerSpec, to key: ServiceKey) {
        self.init(kind: .addServer)
        service = key
        realServer = (server.address, server.port)
        weight = server.weight
        if server.upperThreshold != 0 { upperThreshold = server.upperThreshold }
        if server.lowerThreshold != 0 { lowerThreshold = server.lowerThreshold }
    }

    /// The command as numeric ipvsadm words, short options in the order of an `ipvsadm-save -n` line
    /// (`print_service_entry`'s FMT_RULE branch: `-f N -6`, `-s`, `-p`, `-M`, `-o`, `-b`; `-r`, `-m`,
    /// `-w`, then masq's `-x`, `-y`): the one writer of ipvsadm's syntax, for the control protocol's
    /// `apply`, the lines masqadm `-R` sends, and the rules file (`RulesFile.format`).
    /// `IPVSCommandParser.parse` reads them back to this command.
    public var ipvsadmArguments: [String] {
        var words = [kind.rawValue]
        if let service {
            if service.isFirewallMark {
                // The mark unsigned (ipvsadm-save's `%d` would print a mark above 2^31 negative, which
                // parse_fwmark then refuses); `-6` right after it, so a `-M` after reads as a prefix.
                words += ["-f", String(service.fwmark)] + (service.address.isIPv6 ? ["-6"] : [])
            } else {
                words += [service.proto == .udp ? "-u" : "-t", service.endpoint]
            }
        }
        if let scheduler { words += ["-s", scheduler] }
        if let persistence { words += ["-p", String(persistence)] }
        if let netmask { words += ["-M", netmask.description] }
        if let prefixLength { words += ["-M", String(prefixLength)] }
        if onePacket == true { words.append("-o") }
        if let flags = schedulerFlags, !flags.isEmpty {
            words += ["-b", flags.names(scheduler: scheduler ?? Schedulers.defaultName).joined(separator: ",")]
        }
        if let realServer {
            // ipvsadm-save brackets an IPv6 real server even without a port: `-r [2001:2::100]`.
            let bare = realServer.address.isIPv6 ? "[\(realServer.address)]" : realServer.address.description
            words += ["-r", realServer.port.map { realServer.address.endpoint($0) } ?? bare]
            if kind != .deleteServer { words.append("-m") }
        }
        if let weight { words += ["-w", String(weight)] }
        if let upperThreshold { words += ["-x", String(upperThreshold)] }
        if let lowerThreshold { words += ["-y", String(lowerThreshold)] }
        return words
    }
}

/// An error in a rules file or command, naming where and which token.
public struct RulesError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What IPVS would answer an edit with (libipvs's errno), so a caller can tell a refusal of the
    /// change apart from a command that does not parse without reading the words.
    public enum Kind: Equatable, Sendable {
        /// The text is not a valid command or value (EINVAL, and every syntax error).
        case invalid
        /// ESRCH: the service does not exist ("No such service", "Service not defined").
        case noSuchService
        /// EEXIST on a service.
        case serviceExists
        /// ENOENT on a real server.
        case noSuchDestination
        /// EEXIST on a real server.
        case destinationExists
        /// ENOENT on `-s`: no such scheduler or persistence engine.
        case noSuchScheduler
    }

    public var kind: Kind
    public var file: String
    public var line: Int
    public var token: String
    public var message: String

    public init(_ kind: Kind = .invalid, file: String = "", line: Int = 0, token: String, message: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.token = token
        self.message = message
    }

    public var description: String {
        let place = file.isEmpty ? "" : line > 0 ? "\(file):\(line): " : "\(file): "
        return token.isEmpty ? "\(place)\(message)" : "\(place)\(message) (at '\(token)')"
    }
}
