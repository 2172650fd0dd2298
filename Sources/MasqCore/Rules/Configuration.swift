/// What a rules file says: the virtual services and their real servers (ipvsadm's model), as values.
public struct Configuration: Equatable, Sendable {
    public var services: [ServiceSpec] = []
    public var timeouts = Timeouts()

    public init(services: [ServiceSpec] = [], timeouts: Timeouts = Timeouts()) {
        self.services = services
        self.timeouts = timeouts
    }

    public func serviceIndex(_ key: ServiceKey) -> Int? { services.firstIndex { $0.key == key } }
}

/// A virtual service's identity: protocol, address and port (`-t 198.18.0.1:80`, `-t [2001:2::1]:80`),
/// or a firewall mark (`-f 1`, `-f 1 -6`).
///
/// A firewall-mark service (IPVS `IP_VS_SVC_F_FWMARK`, ipvsadm `-f`) takes every packet of its family
/// that carries its mark, whatever its protocol, address or port: `fwmark` is non-zero, `address` the
/// family's unspecified address (0.0.0.0 or ::), `port` 0 and `proto` TCP, as ipvsadm sets them
/// ("a sane value, even though it is not used").
public struct ServiceKey: Hashable, Sendable, CustomStringConvertible {
    public var proto: IPProtocol
    public var address: IPAddress
    public var port: UInt16
    /// The firewall mark of a `-f` service; 0 for a service by address and port.
    public var fwmark: UInt32 = 0

    public init(proto: IPProtocol, address: IPAddress, port: UInt16) {
        self.proto = proto
        self.address = address
        self.port = port
    }

    /// A firewall-mark service (`-f MARK`, with `-6` for IPv6).
    public init(fwmark: UInt32, ipv6: Bool = false) {
        self.init(proto: .tcp, address: ipv6 ? .v6(.unspecified) : .v4(IPv4Address(rawValue: 0)), port: 0)
        self.fwmark = fwmark
    }

    /// A `-f` service.
    @inlinable public var isFirewallMark: Bool { fwmark != 0 }

    public init(proto: IPProtocol, address: IPv4Address, port: UInt16) {
        self.init(proto: proto, address: .v4(address), port: port)
    }

    public init(proto: IPProtocol, address: IPv6Address, port: UInt16) {
        self.init(proto: proto, address: .v6(address), port: port)
    }

    /// `address:port`, an IPv6 address in brackets, as ipvsadm prints a service; a firewall-mark
    /// service's mark (ipvsadm's `-f` argument).
    public var endpoint: String { isFirewallMark ? String(fwmark) : address.endpoint(port) }

    /// `TCP 198.18.0.1:80`; `FWM 1` (`FWM 1 IPv6`) for a firewall-mark service.
    public var description: String {
        isFirewallMark ? "FWM \(fwmark)" + (address.isIPv6 ? " IPv6" : "") : "\(proto) \(endpoint)"
    }
}

/// A virtual service (`-A`).
public struct ServiceSpec: Equatable, Sendable {
    public var key: ServiceKey
    public var scheduler: String = Schedulers.defaultName
    public var schedulerFlags: SchedulerFlags = []
    /// Persistence timeout in seconds (`-p`), nil when not persistent.
    public var persistence: UInt32?
    /// Persistence granularity (`-M`) of an IPv4 service: clients whose addresses agree under this mask
    /// share a server.
    public var netmask = IPv4Address(rawValue: 0xffff_ffff)
    /// Persistence granularity of an IPv6 service: ipvsadm's `-M` is a prefix length there (1...128).
    public var prefixLength: UInt8 = 128
    /// `-o`/`--ops`: one-packet scheduling (IPVS `IP_VS_SVC_F_ONEPACKET`): each UDP datagram is
    /// scheduled on its own and no connection entry is kept (DNS). ipvsadm takes it for UDP services
    /// and firewall-mark services (whose UDP packets it applies to).
    public var onePacket = false
    public var realServers: [RealServerSpec] = []

    public init(key: ServiceKey, scheduler: String = Schedulers.defaultName, schedulerFlags: SchedulerFlags = [],
                persistence: UInt32? = nil, netmask: IPv4Address = IPv4Address(rawValue: 0xffff_ffff),
                prefixLength: UInt8 = 128, onePacket: Bool = false, realServers: [RealServerSpec] = []) {
        self.key = key
        self.onePacket = onePacket
        self.scheduler = scheduler
        self.schedulerFlags = schedulerFlags
        self.persistence = persistence
        self.netmask = netmask
        self.prefixLength = prefixLength
        self.realServers = realServers
    }

    /// Whether `-M` differs from its default (255.255.255.255, or 128 for IPv6): ipvsadm prints it then.
    public var hasPersistenceMask: Bool {
        key.address.isIPv6 ? prefixLength != 128 : netmask.rawValue != 0xffff_ffff
    }

    /// `-M` as ipvsadm prints it: a dotted mask for IPv4, a prefix length for IPv6.
    public var persistenceMaskText: String { key.address.isIPv6 ? String(prefixLength) : netmask.description }

    /// The client address a persistence template is keyed by: masked to `-M`'s granularity.
    public func persistenceKey(_ client: IPAddress) -> IPAddress {
        switch client {
        case .v4(let a): .v4(IPv4Address(rawValue: a.rawValue & netmask.rawValue))
        case .v6(let a): .v6(a.masked(prefixLength: Int(prefixLength)))
        }
    }

    /// The `-b` flag names ipvsadm prints for this service: sh-/mh- names for sh and mh, else flag-N.
    public var schedulerFlagNames: [String] { schedulerFlags.names(scheduler: scheduler) }

    /// ipvsadm's default persistence timeout when `-p` has no value (`IPVS_SVC_PERSISTENT_TIMEOUT`, 6 min).
    public static let defaultPersistence: UInt32 = 360
}

/// A real server of a service (`-a ... -r 198.19.0.201:80 -m -w 1`). Of the service's family: IPVS
/// takes mixed families only for tunnelled real servers, which masq, a NAT director, has not.
///
/// A real server of a firewall-mark service may have port 0: the connection keeps the packet's own
/// destination port (IPVS `ip_vs_schedule`: `dport = dest->port ? dest->port : vport`).
public struct RealServerSpec: Equatable, Sendable {
    public var address: IPAddress
    public var port: UInt16
    public var weight: Int32
    /// `-x`/`--u-threshold`: at this many connections (active + inactive, IPVS
    /// `ip_vs_dest_totalconns`) the server is overloaded and takes no new ones; 0: no limit.
    public var upperThreshold: UInt32 = 0
    /// `-y`/`--l-threshold`: an overloaded server takes new connections again once its connections
    /// are at most this; 0: three quarters of the upper threshold (IPVS `ip_vs_dest_set_overload`).
    public var lowerThreshold: UInt32 = 0

    public init(address: IPAddress, port: UInt16, weight: Int32 = 1, upperThreshold: UInt32 = 0, lowerThreshold: UInt32 = 0) {
        self.address = address
        self.port = port
        self.weight = weight
        self.upperThreshold = upperThreshold
        self.lowerThreshold = lowerThreshold
    }

    public init(address: IPv4Address, port: UInt16, weight: Int32 = 1) {
        self.init(address: .v4(address), port: port, weight: weight)
    }

    public init(address: IPv6Address, port: UInt16, weight: Int32 = 1) {
        self.init(address: .v6(address), port: port, weight: weight)
    }

    /// `address:port`, an IPv6 address in brackets.
    public var endpoint: String { address.endpoint(port) }
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
                throw RulesError(.serviceExists, token: key.endpoint, message: "Service already exists")
            }
            services.append(ServiceSpec(
                key: key, scheduler: c.scheduler ?? Schedulers.defaultName, schedulerFlags: c.schedulerFlags ?? [],
                persistence: c.persistence, netmask: c.netmask ?? IPv4Address(rawValue: 0xffff_ffff),
                prefixLength: c.prefixLength ?? 128, onePacket: c.onePacket ?? false))
        case .editService:
            let key = c.service!
            guard let i = serviceIndex(key) else {
                throw RulesError(.noSuchService, token: key.endpoint, message: "No such service")
            }
            // ipvsadm -E sets the service afresh from its options, with the defaults for those not given.
            services[i].scheduler = c.scheduler ?? Schedulers.defaultName
            services[i].schedulerFlags = c.schedulerFlags ?? []
            services[i].persistence = c.persistence
            services[i].netmask = c.netmask ?? IPv4Address(rawValue: 0xffff_ffff)
            services[i].prefixLength = c.prefixLength ?? 128
            services[i].onePacket = c.onePacket ?? false
        case .deleteService:
            let key = c.service!
            guard let i = serviceIndex(key) else {
                throw RulesError(.noSuchService, token: key.endpoint, message: "No such service")
            }
            services.remove(at: i)
        case .addServer, .editServer, .deleteServer:
            let key = c.service!
            guard let i = serviceIndex(key) else {
                throw RulesError(.noSuchService, token: key.endpoint, message: "Service not defined")
            }
            let rs = c.realServer!
            // ipvsadm: an omitted real-server port is the virtual port (0 for a firewall-mark service:
            // the packet's own port).
            let port = rs.port ?? key.port
            let existing = services[i].realServers.firstIndex { $0.address == rs.address && $0.port == port }
            let token = rs.address.endpoint(port)
            // -a and -e send both thresholds afresh (0 when not given); IPVS's ip_vs_add_dest and
            // ip_vs_edit_dest refuse a lower above the upper with ERANGE (upper 0 included), before
            // they look the destination up; libipvs has no words for it: strerror's.
            let upper = c.upperThreshold ?? 0, lower = c.lowerThreshold ?? 0
            if c.kind != .deleteServer, lower > upper {
                throw RulesError(token: token, message: "Numerical result out of range (the lower threshold, -y \(lower), "
                                 + "is above the upper, -x \(upper))")
            }
            switch c.kind {
            case .addServer:
                guard existing == nil else { throw RulesError(.destinationExists, token: token, message: "Destination already exists") }
                // IPVS (ip_vs_ctl.c) takes another family only for tunnelled real servers; masq is NAT only.
                guard rs.address.isIPv6 == key.address.isIPv6 else {
                    throw RulesError(token: token, message: "Different address family is allowed only for tunneling servers")
                }
                services[i].realServers.append(RealServerSpec(address: rs.address, port: port, weight: c.weight ?? 1,
                                                              upperThreshold: upper, lowerThreshold: lower))
            case .editServer:
                guard let j = existing else { throw RulesError(.noSuchDestination, token: token, message: "No such destination") }
                // ipvsadm -e sets the server afresh: an omitted -w is 1, an omitted -x or -y 0.
                services[i].realServers[j].weight = c.weight ?? 1
                services[i].realServers[j].upperThreshold = upper
                services[i].realServers[j].lowerThreshold = lower
            default:
                guard let j = existing else { throw RulesError(.noSuchDestination, token: token, message: "No such destination") }
                services[i].realServers.remove(at: j)
            }
        }
    }
}
