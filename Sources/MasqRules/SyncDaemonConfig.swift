import MasqCore

/// Which side of IPVS's connection sync a daemon is (`IP_VS_STATE_MASTER` 1, `IP_VS_STATE_BACKUP` 2,
/// include/uapi/linux/ip_vs.h): a master sends its connections, a backup receives and applies them.
/// One of each may run at once (`sync_state` is a bitmask).
public enum SyncDaemonRole: String, Equatable, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case master, backup

    public var description: String { rawValue }
}

/// A sync daemon's parameters as `ipvsadm --start-daemon` gives them (`ipvs_daemon_t`), and as the
/// kernel completes them when it starts the daemon (`start_sync_thread`, ip_vs_sync.c): the group,
/// port, TTL and maximum length the daemon really uses, which `ipvsadm -L --daemon` then shows.
public struct SyncDaemonConfig: Equatable, Hashable, Sendable, Codable {
    public var role: SyncDaemonRole
    /// `--mcast-interface`; ipvsadm's default `DEF_MCAST_IFN` is eth0.
    public var interface: String
    /// `--syncid` 0...255: the master's id in its messages; a backup's filter, 0 accepting every id.
    public var syncID: UInt8
    /// `--sync-maxlen`: the UDP payload's maximum; nil: the kernel's default (`resolved`).
    public var maxLength: Int?
    /// `--mcast-group` (IPv4 only in masq); nil: 224.0.0.81.
    public var group: IPv4Address?
    /// `--mcast-port`; nil: 8848.
    public var port: UInt16?
    /// `--mcast-ttl`; nil: 1.
    public var ttl: UInt8?

    /// ipvsadm's `DEF_MCAST_IFN`.
    public static let defaultInterface = "eth0"
    /// `IP_VS_SYNC_GROUP`, `IP_VS_SYNC_PORT`.
    public static let defaultGroup = IPv4Address(224, 0, 0, 81)
    public static let defaultPort: UInt16 = 8848
    /// IPv4 and UDP headers, which `sync_maxlen` leaves out of the MTU.
    public static let headerLength = 20 + 8
    /// `IP_VS_IFNAME_MAXLEN` − 1: ipvsadm copies at most 15 bytes of the interface name.
    public static let interfaceNameMaximum = 15

    public init(role: SyncDaemonRole, interface: String = SyncDaemonConfig.defaultInterface, syncID: UInt8 = 0,
                maxLength: Int? = nil, group: IPv4Address? = nil, port: UInt16? = nil, ttl: UInt8? = nil) {
        self.role = role
        self.interface = interface
        self.syncID = syncID
        self.maxLength = maxLength
        self.group = group
        self.port = port
        self.ttl = ttl
    }

    /// The parameters the kernel runs with (`start_sync_thread`): group 224.0.0.81, port 8848 and TTL
    /// 1 when not given; the length clamped to [1 (master) or 1024 (backup), 65535 − 28] when given,
    /// else 1500 − 28 on a master whatever the MTU, and the interface's MTU clamped to
    /// [1500, 65535] − 28 on a backup (whose receive buffer it is).
    public func resolved(interfaceMTU mtu: Int) -> SyncDaemonConfig {
        var c = self
        c.group = group ?? Self.defaultGroup
        c.port = port ?? Self.defaultPort
        c.ttl = ttl ?? 1
        let minimum = role == .backup ? 1024 : 1
        if let maxLength {
            c.maxLength = min(max(maxLength, minimum), 65535 - Self.headerLength)
        } else {
            c.maxLength = (role == .backup ? min(max(mtu, 1500), 65535) : 1500) - Self.headerLength
        }
        return c
    }

    /// The group, port, TTL and length in force (the defaults for what `resolved` has not filled).
    public var effectiveGroup: IPv4Address { group ?? Self.defaultGroup }
    public var effectivePort: UInt16 { port ?? Self.defaultPort }
    public var effectiveTTL: UInt8 { ttl ?? 1 }
    public var effectiveMaxLength: Int { maxLength ?? resolved(interfaceMTU: 1500).maxLength! }

    /// `ipvsadm -L --daemon`'s line for this daemon (`list_daemon`): the optional fields appear when
    /// set, and a running daemon's are all set (`resolved`), as the kernel reports them.
    public var listLine: String {
        var line = "\(role) sync daemon (mcast=\(interface), syncid=\(syncID)"
        if let maxLength, maxLength != 0 { line += ", maxlen=\(maxLength)" }
        if let group { line += ", group=\(group)" }
        if let port, port != 0 { line += ", port=\(port)" }
        if let ttl, ttl != 0 { line += ", ttl=\(ttl)" }
        return line + ")"
    }

    /// The words that start this daemon, as `ipvsadm --start-daemon` takes them (what masqadm sends and
    /// what a rules file line holds); only what was given.
    public var ipvsadmArguments: [String] {
        var words = ["--start-daemon", role.rawValue, "--mcast-interface", interface, "--syncid", "\(syncID)"]
        if let maxLength { words += ["--sync-maxlen", "\(maxLength)"] }
        if let group { words += ["--mcast-group", "\(group)"] }
        if let port { words += ["--mcast-port", "\(port)"] }
        if let ttl { words += ["--mcast-ttl", "\(ttl)"] }
        return words
    }
}

// MARK: - Wire form (control socket)

extension SyncDaemonConfig {
    enum CodingKeys: String, CodingKey {
        case role, interface, syncID = "syncid", maxLength = "maxlen", group, port, ttl
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(role, forKey: .role)
        try c.encode(interface, forKey: .interface)
        try c.encode(syncID, forKey: .syncID)
        try c.encodeIfPresent(maxLength, forKey: .maxLength)
        try c.encodeIfPresent(group?.description, forKey: .group)
        try c.encodeIfPresent(port, forKey: .port)
        try c.encodeIfPresent(ttl, forKey: .ttl)
    }

    /// Checked as ipvsadm checks the command line, so a request that decodes is one masq can start.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decode(SyncDaemonRole.self, forKey: .role)
        interface = try c.decode(String.self, forKey: .interface)
        guard !interface.isEmpty, interface.utf8.count <= Self.interfaceNameMaximum, !interface.contains("/"),
              !interface.utf8.contains(0) else {
            throw DecodingError.dataCorruptedError(forKey: .interface, in: c, debugDescription: "bad interface name '\(interface)'")
        }
        syncID = try c.decode(UInt8.self, forKey: .syncID)
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength)
        if let maxLength, !(1...(65535 - Self.headerLength)).contains(maxLength) {
            throw DecodingError.dataCorruptedError(forKey: .maxLength, in: c, debugDescription: "maxlen \(maxLength) out of range")
        }
        if let text = try c.decodeIfPresent(String.self, forKey: .group) {
            guard let address = IPv4Address(text), address.rawValue >> 28 == 0xe else {
                throw DecodingError.dataCorruptedError(forKey: .group, in: c, debugDescription: "'\(text)' is not an IPv4 multicast group")
            }
            group = address
        }
        port = try c.decodeIfPresent(UInt16.self, forKey: .port)
        ttl = try c.decodeIfPresent(UInt8.self, forKey: .ttl)
        if port == 0 || ttl == 0 {
            throw DecodingError.dataCorruptedError(forKey: port == 0 ? .port : .ttl, in: c, debugDescription: "port and ttl start at 1")
        }
    }
}
