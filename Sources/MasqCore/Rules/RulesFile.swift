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
        try apply(text, to: Configuration(), file: file, names: names)
    }

    /// Applies every line of `text` in order to `base` (`ipvsadm -R`); all or nothing.
    public static func apply(_ text: String, to base: Configuration, file: String, names: NameResolver? = nil)
        throws(RulesError) -> Configuration {
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
                let command = try IPVSCommandParser.parse(line.words, names: lookup)
                try configuration.apply(command)
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

extension Configuration {
    /// Applies one command as ipvsadm would to the kernel's table, with ipvsadm's error words.
    public mutating func apply(_ c: IPVSCommand) throws(RulesError) {
        switch c.kind {
        case .clear:
            services.removeAll()
        case .addService:
            let key = c.service!
            guard serviceIndex(key) == nil else {
                throw RulesError(.serviceExists, token: "\(key.address):\(key.port)", message: "Service already exists")
            }
            services.append(ServiceSpec(
                key: key, scheduler: c.scheduler ?? Schedulers.defaultName, schedulerFlags: c.schedulerFlags ?? [],
                persistence: c.persistence, netmask: c.netmask ?? IPv4Address(rawValue: 0xffff_ffff)))
        case .editService:
            let key = c.service!
            guard let i = serviceIndex(key) else {
                throw RulesError(.noSuchService, token: "\(key.address):\(key.port)", message: "No such service")
            }
            // ipvsadm -E sets the service afresh from its options, with the defaults for those not given.
            services[i].scheduler = c.scheduler ?? Schedulers.defaultName
            services[i].schedulerFlags = c.schedulerFlags ?? []
            services[i].persistence = c.persistence
            services[i].netmask = c.netmask ?? IPv4Address(rawValue: 0xffff_ffff)
        case .deleteService:
            let key = c.service!
            guard let i = serviceIndex(key) else {
                throw RulesError(.noSuchService, token: "\(key.address):\(key.port)", message: "No such service")
            }
            services.remove(at: i)
        case .addServer, .editServer, .deleteServer:
            let key = c.service!
            guard let i = serviceIndex(key) else {
                throw RulesError(.noSuchService, token: "\(key.address):\(key.port)", message: "Service not defined")
            }
            let rs = c.realServer!
            // ipvsadm: an omitted real-server port is the virtual port.
            let port = rs.port ?? key.port
            let existing = services[i].realServers.firstIndex { $0.address == rs.address && $0.port == port }
            let token = "\(rs.address):\(port)"
            switch c.kind {
            case .addServer:
                guard existing == nil else { throw RulesError(.destinationExists, token: token, message: "Destination already exists") }
                services[i].realServers.append(RealServerSpec(address: rs.address, port: port, weight: c.weight ?? 1))
            case .editServer:
                guard let j = existing else { throw RulesError(.noSuchDestination, token: token, message: "No such destination") }
                services[i].realServers[j].weight = c.weight ?? 1
            default:
                guard let j = existing else { throw RulesError(.noSuchDestination, token: token, message: "No such destination") }
                services[i].realServers.remove(at: j)
            }
        }
    }
}
