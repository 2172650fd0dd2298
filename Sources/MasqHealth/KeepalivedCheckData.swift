import MasqCore

// keepalived's check_data.c: the virtual server, real server and checker blocks as the parser read
// them (the values given, nothing inherited yet), and the pass that resolves them
// (`validate_check_config`).

struct RawCheck {
    var opener: KeepalivedStatement
    /// HTTP_GET or SSL_GET: `url` blocks, `virtualhost` and `http_protocol` apply.
    var http: Bool
    /// The checker's own settings, for the checkers other than TCP_CHECK and HTTP_GET (set by their
    /// parsers, KeepalivedParser+NAME.swift); SSL_GET's HTTP part is filled in from `urls` below.
    var kind: HealthCheck.Kind?
    var connectIP: IPAddress?
    var connectPort: UInt16?
    var bindTo: IPAddress?
    var connectTimeout: Double?
    var retry: Int?
    var delayBeforeRetry: Double?
    var warmup: Double?
    var delayLoop: Double?
    var alpha: Bool?
    var urls: [HTTPCheck.URLCheck] = []
    var version: HTTPCheck.Version = .http10
    var virtualhost: String?
}

struct RawRealServer {
    var opener: KeepalivedStatement
    var address: IPAddress
    var port: UInt16
    var weight: Int32?
    var upperThreshold: UInt32 = 0
    var lowerThreshold: UInt32 = 0
    var inhibit: Bool?
    var alpha: Bool?
    var notifyUp: String?
    var notifyDown: String?
    var retry: Int?
    var delayBeforeRetry: Double?
    var warmup: Double?
    var connectTimeout: Double?
    var delayLoop: Double?
    var virtualhost: String?
    var checks: [RawCheck] = []
}

/// What a `virtual_server` line names (keepalived's alloc_vs): an address and port, a firewall mark,
/// or a `virtual_server_group`.
enum RawVirtualServerTarget {
    case address(IPAddress, UInt16)
    case fwmark(UInt32)
    case group(KeepalivedToken)
}

/// One line of a `virtual_server_group` (check_data.c `alloc_vsg_entry`), a range already expanded.
struct RawGroupMember {
    enum Kind: Hashable {
        case address(IPAddress, UInt16)
        /// A mark, with the family its line gave (`fwmark N inet6`), if any.
        case fwmark(UInt32, ipv6: Bool?)
    }
    var token: KeepalivedToken
    var kind: Kind
}

/// A `virtual_server_group NAME { ... }`, its members in file order, each once.
struct RawGroup {
    var opener: KeepalivedStatement
    var name: String
    var members: [RawGroupMember] = []
    /// keepalived's `have_ipv4` / `have_ipv6` / `fwmark_no_family`.
    var haveIPv4 = false
    var haveIPv6 = false
    var fwmarkWithoutFamily = false
    var hasAddresses: Bool { members.contains { if case .address = $0.kind { true } else { false } } }
    var hasFwmarks: Bool { members.contains { if case .fwmark = $0.kind { true } else { false } } }
}

struct RawVirtualServer {
    var opener: KeepalivedStatement
    var target: RawVirtualServerTarget
    /// The address family as keepalived settles it while parsing (`current_vs->af`): the address's, else
    /// `ip_family`, else the first real / sorry server's or `persistence_granularity`'s; nil: not yet known.
    var ipv6: Bool?
    var onePacket = false
    var proto: IPProtocol?
    var scheduler: String?
    var flags: [KeepalivedToken] = []
    var forwardingSet = false
    var persistence: UInt32?
    var netmask: IPv4Address?
    /// `persistence_granularity` of an IPv6 virtual server: a prefix length (1-128).
    var prefixLength: UInt8?
    var quorum = KeepalivedDefaults.quorum
    var hysteresis = KeepalivedDefaults.hysteresis
    var quorumUp: String?
    var quorumDown: String?
    var sorry: RealServerSpec?
    var sorryInhibit = false
    var virtualhost: String?
    var alpha = false
    var omega = false
    var haSuspend = false
    var inhibit = false
    var weight = KeepalivedDefaults.weight
    var retry: Int?
    var delayBeforeRetry: Double?
    var warmup: Double?
    var connectTimeout = KeepalivedDefaults.connectTimeout
    var delayLoop = KeepalivedDefaults.delayLoop
    var realServers: [RawRealServer] = []

    init(opener: KeepalivedStatement, target: RawVirtualServerTarget) {
        self.opener = opener
        self.target = target
        if case .address(let address, _) = target { ipv6 = address.isIPv6 }
    }

    /// The port of an address virtual server (0 for marks and groups: their real servers keep their own).
    var port: UInt16 { if case .address(_, let port) = target { port } else { 0 } }
}

/// The virtual servers of a keepalived.conf, resolved block by block.
struct KeepalivedCheckData {
    private(set) var services: [ServiceSpec] = []
    private(set) var virtualServers: [VirtualServerHealth] = []
    /// Where each service was first defined, for "already defined at file:line".
    private var defined: [ServiceKey: KeepalivedToken] = [:]

    /// Resolves one `virtual_server` block (`validate_check_config`): defaults and inheritance from
    /// the virtual server to its real servers and their checkers, keepalived's corrections (each with
    /// a warning), and the block's service and health configuration appended; a block without real
    /// servers is ignored, as keepalived does.
    ///
    /// A `virtual_server group NAME` block (`group`, the group it names) gives one service per member of
    /// the group, all with the block's settings and real servers, and one `VirtualServerHealth` standing
    /// for all of them: keepalived's checkers belong to the block's real servers, so one check moves the
    /// server in every member (ipwrapper.c `update_svr_wgt` over the group's entries).
    mutating func add(_ vs: RawVirtualServer, group: RawGroup? = nil,
                      warn: (KeepalivedToken, String) -> Void) throws(RulesError) {
        let at = vs.opener.keyword
        var vs = vs
        let name: String
        let isFwmarkOnly: Bool, hasAddresses: Bool
        switch vs.target {
        case .address(let address, let port):
            name = "virtual server \(ServiceKey(proto: vs.proto ?? .udp, address: address, port: port))"
            isFwmarkOnly = false
            hasAddresses = true
        case .fwmark(let mark):
            name = "virtual server fwmark \(mark)"
            isFwmarkOnly = true
            hasAddresses = false
        case .group(let t):
            name = "virtual server group \(t.text)"
            guard let group else { return }
            isFwmarkOnly = !group.hasAddresses
            hasAddresses = group.hasAddresses
            // ipwrapper.c `link_vsg_to_vs`: the block's family (set by its real servers, for NAT) must be
            // the group's; a group of both families cannot serve a NAT block.
            if group.haveIPv4 && group.haveIPv6 {
                warn(t, "\(group.name): virtual server group with IPv4 & IPv6 doesn't match \(name): "
                         + "this virtual server is ignored (as keepalived does)")
                return
            }
            let groupIPv6: Bool? = group.haveIPv6 ? true : group.haveIPv4 ? false : nil
            if let groupIPv6, let own = vs.ipv6, own != groupIPv6 {
                warn(t, "\(group.name): address family doesn't match \(name): this virtual server is ignored (as keepalived does)")
                return
            }
            if vs.ipv6 == nil { vs.ipv6 = groupIPv6 }
        }
        // check_parser.c `vs_end_handler`: a family still unknown (a mark or a group of marks) is the
        // real servers', else IPv4.
        let ipv6 = vs.ipv6 ?? vs.realServers.first?.address.isIPv6 ?? false

        if hasAddresses {
            if vs.proto == nil { warn(at, "\(name): no protocol set, keepalived defaults to UDP") }
            if vs.onePacket && (vs.proto ?? .udp) != .udp {
                // validate_check_config: one-packet scheduling is for UDP (or a mark) only.
                warn(at, "\(name): one packet scheduling requires UDP, ops reset (as keepalived does)")
                vs.onePacket = false
            }
        } else if vs.proto != nil {
            warn(at, "\(name): protocol specified for fwmark, the protocol is ignored (as keepalived does)")
        }
        let proto = vs.proto ?? .udp
        if vs.haSuspend && (isFwmarkOnly || group?.hasFwmarks == true) {
            warn(at, "\(name): cannot use ha_suspend with fwmarks, ha_suspend cleared (as keepalived does)")
            vs.haSuspend = false
        }

        // The services the block stands for, in order.
        var keys: [ServiceKey] = []
        var origins: [KeepalivedToken] = []
        switch vs.target {
        case .address(let address, let port):
            keys = [ServiceKey(proto: proto, address: address, port: port)]
            origins = [at]
        case .fwmark(let mark):
            keys = [ServiceKey(fwmark: mark, ipv6: ipv6)]
            origins = [at]
        case .group:
            for m in group?.members ?? [] {
                switch m.kind {
                case .address(let address, let port): keys.append(ServiceKey(proto: proto, address: address, port: port))
                case .fwmark(let mark, let family): keys.append(ServiceKey(fwmark: mark, ipv6: family ?? ipv6))
                }
                origins.append(m.token)
            }
        }
        for (key, origin) in zip(keys, origins) {
            if let previous = defined[key] {
                let via = origin.lineID == at.lineID ? "" : " (\(name), from \(origin.file):\(origin.line))"
                throw at.error("virtual server \(key)\(via) is already defined at \(previous.file):\(previous.line)")
            }
        }
        for (key, origin) in zip(keys, origins) { defined[key] = origin }

        if vs.scheduler == nil { warn(at, "\(name): no lvs_sched set, keepalived uses \(KeepalivedDefaults.scheduler)") }
        if !vs.forwardingSet { warn(at, "\(name): no lvs_method set, keepalived uses NAT") }
        guard !vs.realServers.isEmpty else {
            warn(at, "\(name) has no real servers: ignored (as keepalived does)")
            return
        }

        let scheduler = vs.scheduler ?? KeepalivedDefaults.scheduler
        var flags: SchedulerFlags = []
        for t in vs.flags {
            switch t.text {
            case "flag-1": flags.insert(.fallback)
            case "flag-2": flags.insert(.port)
            default:
                let owner = String(t.text.prefix(2))  // sh- or mh-
                guard owner == scheduler else {
                    warn(t, "\(t.text) only applies to the \(owner) scheduler: ignored")
                    continue
                }
                flags.insert(t.text.hasSuffix("-port") ? .port : .fallback)
            }
        }

        var persistence = vs.persistence
        if persistence == nil && (vs.netmask != nil || vs.prefixLength != nil) { persistence = ServiceSpec.defaultPersistence }
        // A zero port is only valid for a persistent service: an address virtual server's, or any
        // address member's of a group (marks have no port).
        let zeroPort = hasAddresses && keys.contains { !$0.isFirewallMark && $0.port == 0 }
        if persistence == nil && zeroPort {
            warn(at, "\(name): a zero port is only valid for persistent services, "
                     + "persistence_timeout \(ServiceSpec.defaultPersistence) set (as keepalived does)")
            persistence = ServiceSpec.defaultPersistence
        }

        var realServers: [RealServerHealth] = []
        for rs in vs.realServers {
            // validate_check_config: a NAT real server without a port takes an address virtual server's;
            // for a mark or a group it keeps 0, IPVS then forwards to the port the packet was sent to.
            let port = rs.port == 0 ? vs.port : rs.port
            // IPVS takes a real server of the other family only for tunnelling, which NAT is not:
            // keepalived reports it and skips the server.
            if rs.address.isIPv6 != ipv6 {
                warn(rs.opener.keyword, "address family of virtual server and real server \(rs.address.endpoint(port)) "
                         + "don't match: this real server is ignored (as keepalived does)")
                continue
            }
            if realServers.contains(where: { $0.address == rs.address && $0.port == port }) {
                warn(rs.opener.keyword,
                     "real server \(rs.address.endpoint(port)) is already in \(name): this one is ignored (as keepalived does)")
                continue
            }
            let alpha = rs.alpha ?? vs.alpha
            let retry = rs.retry ?? vs.retry
            let timeout = rs.connectTimeout ?? vs.connectTimeout
            let delayLoop = rs.delayLoop ?? vs.delayLoop
            let warmup = rs.warmup ?? vs.warmup
            let delayBeforeRetry = rs.delayBeforeRetry ?? vs.delayBeforeRetry
            let checks = rs.checks.map { c in
                var kind = c.kind ?? .tcp
                // MISC_CHECK without misc_timeout: the virtual server's delay_loop (misc_check_thread).
                if case .misc(var misc) = kind, misc.timeout == nil {
                    misc.timeout = vs.delayLoop
                    kind = .misc(misc)
                }
                if c.http {
                    let urls = c.urls.map { u in
                        var u = u
                        u.virtualhost = u.virtualhost ?? c.virtualhost ?? rs.virtualhost ?? vs.virtualhost
                        return u
                    }
                    let http = HTTPCheck(urls: urls, version: c.version)
                    if case .ssl(var ssl) = kind {
                        ssl.http = http
                        kind = .ssl(ssl)
                    } else {
                        kind = .http(http)
                    }
                }
                return HealthCheck(kind: kind, connectIP: c.connectIP, connectPort: c.connectPort, bindTo: c.bindTo,
                                   connectTimeout: c.connectTimeout ?? timeout,
                                   retry: c.retry ?? retry ?? kind.defaultRetry,
                                   // DNS_CHECK's default is its delay_loop (check_dns.c `dns_check_handler`).
                                   delayBeforeRetry: c.delayBeforeRetry ?? delayBeforeRetry
                                       ?? (kind.isDNS ? c.delayLoop ?? delayLoop : nil),
                                   warmup: c.warmup ?? warmup, delayLoop: c.delayLoop ?? delayLoop,
                                   alpha: c.alpha ?? alpha)
            }
            realServers.append(RealServerHealth(
                address: rs.address, port: port, weight: rs.weight ?? vs.weight,
                upperThreshold: rs.upperThreshold, lowerThreshold: rs.lowerThreshold, inhibitOnFailure: rs.inhibit ?? vs.inhibit,
                alpha: alpha, notifyUp: rs.notifyUp, notifyDown: rs.notifyDown, virtualhost: rs.virtualhost, checks: checks))
        }

        var quorum = vs.quorum, hysteresis = vs.hysteresis
        let weightSum = realServers.reduce(0) { $0 + Int($1.weight) }
        if quorum > weightSum {
            warn(at, "\(name): quorum \(quorum) exceeds the real servers' total weight \(weightSum), "
                     + "reduced to \(weightSum) (as keepalived does)")
            quorum = weightSum
        }
        if hysteresis >= quorum && hysteresis > 0 {
            let reduced = max(0, quorum - 1)
            warn(at, "\(name): hysteresis \(hysteresis) >= quorum \(quorum), set to \(reduced) (as keepalived does)")
            hysteresis = reduced
        }
        var sorry = vs.sorry
        if sorry?.port == 0 { sorry?.port = vs.port }

        for key in keys {
            services.append(ServiceSpec(key: key, scheduler: scheduler, schedulerFlags: flags, persistence: persistence,
                                        netmask: vs.netmask ?? IPv4Address(rawValue: 0xffff_ffff),
                                        prefixLength: vs.prefixLength ?? 128, onePacket: vs.onePacket,
                                        realServers: realServers.map(\.spec)))
        }
        virtualServers.append(VirtualServerHealth(
            key: keys[0], keys: keys, delayLoop: vs.delayLoop, quorum: quorum, hysteresis: hysteresis, quorumUp: vs.quorumUp,
            quorumDown: vs.quorumDown, sorryServer: sorry, sorryServerInhibit: vs.sorryInhibit, virtualhost: vs.virtualhost,
            alpha: vs.alpha, omega: vs.omega, haSuspend: vs.haSuspend, realServers: realServers))
    }
}
