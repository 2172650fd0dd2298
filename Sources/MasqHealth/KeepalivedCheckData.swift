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

struct RawVirtualServer {
    var opener: KeepalivedStatement
    var address: IPAddress
    var port: UInt16
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
    mutating func add(_ vs: RawVirtualServer, warn: (KeepalivedToken, String) -> Void) throws(RulesError) {
        let at = vs.opener.keyword
        let proto = vs.proto ?? .udp
        let key = ServiceKey(proto: proto, address: vs.address, port: vs.port)
        let name = "virtual server \(key)"
        if let previous = defined[key] {
            throw at.error("\(name) is already defined at \(previous.file):\(previous.line)")
        }
        defined[key] = at
        if vs.proto == nil { warn(at, "\(name): no protocol set, keepalived defaults to UDP") }
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
        if persistence == nil && vs.port == 0 {
            warn(at, "\(name): a zero port is only valid for persistent services, "
                     + "persistence_timeout \(ServiceSpec.defaultPersistence) set (as keepalived does)")
            persistence = ServiceSpec.defaultPersistence
        }

        var realServers: [RealServerHealth] = []
        for rs in vs.realServers {
            let port = rs.port == 0 ? vs.port : rs.port
            // IPVS takes a real server of the other family only for tunnelling, which NAT is not:
            // keepalived reports it and skips the server.
            if rs.address.isIPv6 != vs.address.isIPv6 {
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
                                   delayBeforeRetry: c.delayBeforeRetry ?? delayBeforeRetry,
                                   warmup: c.warmup ?? warmup, delayLoop: c.delayLoop ?? delayLoop,
                                   alpha: c.alpha ?? alpha)
            }
            realServers.append(RealServerHealth(
                address: rs.address, port: port, weight: rs.weight ?? vs.weight, inhibitOnFailure: rs.inhibit ?? vs.inhibit,
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

        services.append(ServiceSpec(key: key, scheduler: scheduler, schedulerFlags: flags, persistence: persistence,
                                    netmask: vs.netmask ?? IPv4Address(rawValue: 0xffff_ffff),
                                    prefixLength: vs.prefixLength ?? 128,
                                    realServers: realServers.map(\.spec)))
        virtualServers.append(VirtualServerHealth(
            key: key, delayLoop: vs.delayLoop, quorum: quorum, hysteresis: hysteresis, quorumUp: vs.quorumUp,
            quorumDown: vs.quorumDown, sorryServer: sorry, sorryServerInhibit: vs.sorryInhibit, virtualhost: vs.virtualhost,
            alpha: vs.alpha, omega: vs.omega, haSuspend: vs.haSuspend, realServers: realServers))
    }
}
