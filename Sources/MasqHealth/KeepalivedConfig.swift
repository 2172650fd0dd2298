import MasqCore

/// The LVS part of a keepalived.conf: the IPVS table masq runs, and the health checks that keep it.
///
/// Times are seconds (keepalived's `read_timer` takes decimals, to the microsecond), as `CheckSchedule`
/// takes them. Every value is the effective one: keepalived's inheritance (checker ← real_server ←
/// virtual_server ← default) is resolved by the parser.
public struct KeepalivedConfig: Equatable, Sendable {
    /// The virtual services and their real servers as keepalived would first install them (every real
    /// server up, with its configured weight; sorry servers are not in it, `QuorumPolicy` swaps them in).
    public var configuration: Configuration
    /// Health-check specs, one per `virtual_server` block kept, in file order; each stands for the
    /// services of `configuration` its `keys` name (one, or a `virtual_server_group`'s members).
    public var virtualServers: [VirtualServerHealth]
    /// Non-fatal findings (unsupported sections skipped, keepalived's own corrections), file:line each.
    public var warnings: [RulesError]
    /// global_defs' `lvs_sync_daemon`, if the file has one.
    public var syncDaemon: KeepalivedSyncDaemon?

    public init(configuration: Configuration = Configuration(), virtualServers: [VirtualServerHealth] = [],
                warnings: [RulesError] = [], syncDaemon: KeepalivedSyncDaemon? = nil) {
        self.configuration = configuration
        self.virtualServers = virtualServers
        self.warnings = warnings
        self.syncDaemon = syncDaemon
    }
}

/// keepalived's defaults, as its source sets them (check_data.c `alloc_vs`/`alloc_rs`, check_api.c
/// `queue_checker`, check_http.c `http_get_handler`/`url_check`, libipvs.h).
public enum KeepalivedDefaults {
    /// `KEEPALIVED_DEFAULT_DELAY`, 60 s.
    public static let delayLoop: Double = 60
    /// `alloc_vs`: `connection_to = 5 * TIMER_HZ`.
    public static let connectTimeout: Double = 5
    /// `queue_checker`: `default_retry = 1` (TCP_CHECK and HTTP_GET alike).
    public static let retry = 1
    /// `queue_checker`: `default_delay_before_retry = 1 * TIMER_HZ`.
    public static let tcpDelayBeforeRetry: Double = 1
    /// `http_get_handler`: `default_delay_before_retry = 3 * TIMER_HZ`.
    public static let httpDelayBeforeRetry: Double = 3
    /// `alloc_vs`: `quorum = 1`, `hysteresis = 0`, `weight = 1` (the real servers' default weight).
    public static let quorum = 1
    public static let hysteresis = 0
    public static let weight: Int32 = 1
    /// `IPVS_DEF_SCHED`.
    public static let scheduler = "wlc"
    /// `url_check`: no `status_code` means `HTTP_DEFAULT_STATUS_CODE_MIN...MAX`.
    public static let httpStatusCodes: ClosedRange<UInt16> = 200...299
}

/// One `virtual_server IP PORT { ... }`, `virtual_server fwmark N { ... }` or `virtual_server group NAME { ... }`.
public struct VirtualServerHealth: Equatable, Sendable {
    /// The block's service: its first, for a group (the block's identity across a reload).
    public var key: ServiceKey
    /// Every service the block stands for, `key` first: a group's members, in the group's order. Its
    /// real servers' health applies to each (keepalived checks a real server once per block).
    public var keys: [ServiceKey]
    /// The service's `delay_loop` (each checker may override it: see `HealthCheck.delayLoop`).
    public var delayLoop: Double
    /// Alive real-server weight the service needs (`quorum`), and the band around it (`hysteresis`):
    /// quorum is lost below `quorum - hysteresis` and regained at `quorum + hysteresis`.
    public var quorum: Int
    public var hysteresis: Int
    /// Script command lines run when quorum is regained / lost (see `KeepalivedParser.scriptArguments`).
    public var quorumUp: String?
    public var quorumDown: String?
    /// Serves alone when quorum is lost. keepalived gives it weight 1; a port of 0 is the service's.
    public var sorryServer: RealServerSpec?
    /// `sorry_server_inhibit`: the sorry server is kept with weight 0 instead of removed when quorum is back.
    public var sorryServerInhibit: Bool
    /// `virtualhost`: the HTTP Host for HTTP_GET checks that set none closer (already resolved into
    /// each `HTTPCheck.URLCheck.virtualhost`).
    public var virtualhost: String?
    /// `alpha`: real servers start down and come up on their first successful check (the default for
    /// the real servers' own `alpha`).
    public var alpha: Bool
    /// `omega`: on shutdown keepalived also runs the quorum_down and notify_down scripts.
    public var omega: Bool
    /// `ha_suspend`: keepalived suspends the checks while the VIP is not on this host. Accepted and
    /// recorded (with a warning); masq does not track VIP ownership, so its checks keep running.
    public var haSuspend: Bool
    public var realServers: [RealServerHealth]

    public init(key: ServiceKey, keys: [ServiceKey]? = nil, delayLoop: Double = KeepalivedDefaults.delayLoop, quorum: Int = KeepalivedDefaults.quorum,
                hysteresis: Int = KeepalivedDefaults.hysteresis, quorumUp: String? = nil, quorumDown: String? = nil,
                sorryServer: RealServerSpec? = nil, sorryServerInhibit: Bool = false, virtualhost: String? = nil,
                alpha: Bool = false, omega: Bool = false, haSuspend: Bool = false, realServers: [RealServerHealth] = []) {
        self.key = key
        self.keys = keys ?? [key]
        self.delayLoop = delayLoop
        self.quorum = quorum
        self.hysteresis = hysteresis
        self.quorumUp = quorumUp
        self.quorumDown = quorumDown
        self.sorryServer = sorryServer
        self.sorryServerInhibit = sorryServerInhibit
        self.virtualhost = virtualhost
        self.alpha = alpha
        self.omega = omega
        self.haSuspend = haSuspend
        self.realServers = realServers
    }
}

/// One `real_server IP PORT { ... }` of a virtual server.
public struct RealServerHealth: Equatable, Sendable {
    /// Of the virtual server's family.
    public var address: IPAddress
    /// keepalived's NAT rule: a real server without a port (or port 0) takes the virtual server's.
    public var port: UInt16
    public var weight: Int32
    /// `uthreshold` / `lthreshold`: IPVS's connection thresholds (0: none).
    public var upperThreshold: UInt32
    public var lowerThreshold: UInt32
    /// On failure keep the server with weight 0 instead of removing it.
    public var inhibitOnFailure: Bool
    /// Starts down until its checks succeed (its own `alpha`, else the virtual server's).
    public var alpha: Bool
    /// Script command lines (see `KeepalivedParser.scriptArguments`).
    public var notifyUp: String?
    public var notifyDown: String?
    public var virtualhost: String?
    /// All must pass for the server to be up; none means always up.
    public var checks: [HealthCheck]

    public init(address: IPAddress, port: UInt16, weight: Int32 = KeepalivedDefaults.weight, upperThreshold: UInt32 = 0,
                lowerThreshold: UInt32 = 0, inhibitOnFailure: Bool = false,
                alpha: Bool = false, notifyUp: String? = nil, notifyDown: String? = nil, virtualhost: String? = nil,
                checks: [HealthCheck] = []) {
        self.address = address
        self.port = port
        self.weight = weight
        self.upperThreshold = upperThreshold
        self.lowerThreshold = lowerThreshold
        self.inhibitOnFailure = inhibitOnFailure
        self.alpha = alpha
        self.notifyUp = notifyUp
        self.notifyDown = notifyDown
        self.virtualhost = virtualhost
        self.checks = checks
    }

    public init(address: IPv4Address, port: UInt16, weight: Int32 = KeepalivedDefaults.weight, inhibitOnFailure: Bool = false,
                alpha: Bool = false, notifyUp: String? = nil, notifyDown: String? = nil, virtualhost: String? = nil,
                checks: [HealthCheck] = []) {
        self.init(address: .v4(address), port: port, weight: weight, inhibitOnFailure: inhibitOnFailure, alpha: alpha,
                  notifyUp: notifyUp, notifyDown: notifyDown, virtualhost: virtualhost, checks: checks)
    }

    /// The IPVS destination this server is while up.
    public var spec: RealServerSpec {
        RealServerSpec(address: address, port: port, weight: weight, upperThreshold: upperThreshold, lowerThreshold: lowerThreshold)
    }
}

/// One checker (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`, `UDP_CHECK`, `SMTP_CHECK`,
/// `DNS_CHECK`, `PING_CHECK`) of a real server, with keepalived's effective values.
public struct HealthCheck: Equatable, Sendable {
    /// Each checker's own settings live in its file under Checkers/ (with its probe).
    public enum Kind: Equatable, Sendable {
        case tcp
        case http(HTTPCheck)
        case ssl(SSLCheck)
        case misc(MiscCheck)
        case udp(UDPCheck)
        case smtp(SMTPCheck)
        case dns(DNSCheck)
        case ping(PingCheck)

        /// keepalived's default `retry` for the checker: 3 for DNS_CHECK (check_dns.c), 0 for
        /// MISC_CHECK (check_misc.c), else 1.
        public var defaultRetry: Int {
            switch self {
            case .dns: 3
            case .misc: 0
            default: KeepalivedDefaults.retry
            }
        }

        /// keepalived's default `delay_before_retry`: 3 s for HTTP_GET and SSL_GET, 1 s for the others.
        public var defaultDelayBeforeRetry: Double {
            switch self {
            case .http, .ssl: KeepalivedDefaults.httpDelayBeforeRetry
            default: KeepalivedDefaults.tcpDelayBeforeRetry
            }
        }
    }

    public var kind: Kind
    /// `connect_ip` / `connect_port`: where to connect instead of the real server's address / port.
    public var connectIP: IPAddress?
    public var connectPort: UInt16?
    /// `bindto`: the source address of the check's connection (of the family it connects to).
    public var bindTo: IPAddress?
    public var connectTimeout: Double
    /// Retries after a failed check before the server is declared down (keepalived's `retry`, formerly
    /// `nb_get_retry`): down after `retry + 1` failures in a row, `delayBeforeRetry` apart.
    public var retry: Int
    public var delayBeforeRetry: Double
    /// The first check waits a random part of this; nil: not set, keepalived then uses `delayLoop`
    /// (see `effectiveWarmup`).
    public var warmup: Double?
    public var delayLoop: Double
    /// Starts failed (the checker's `alpha`, else its real server's).
    public var alpha: Bool

    public init(kind: Kind, connectIP: IPAddress? = nil, connectPort: UInt16? = nil, bindTo: IPAddress? = nil,
                connectTimeout: Double = KeepalivedDefaults.connectTimeout, retry: Int = KeepalivedDefaults.retry,
                delayBeforeRetry: Double? = nil, warmup: Double? = nil, delayLoop: Double = KeepalivedDefaults.delayLoop,
                alpha: Bool = false) {
        self.kind = kind
        self.connectIP = connectIP
        self.connectPort = connectPort
        self.bindTo = bindTo
        self.connectTimeout = connectTimeout
        self.retry = retry
        self.delayBeforeRetry = delayBeforeRetry ?? kind.defaultDelayBeforeRetry
        self.warmup = warmup
        self.delayLoop = delayLoop
        self.alpha = alpha
    }

    /// check_data.c: an unset warmup is the checker's delay_loop.
    public var effectiveWarmup: Double { warmup ?? delayLoop }
}

/// `HTTP_GET { url { ... } ... }`: every url must answer (in turn, one per check round as keepalived
/// does) with an accepted status and, when a digest is given, a body whose MD5 matches.
public struct HTTPCheck: Equatable, Sendable {
    /// `http_protocol`: 1.0 (keepalived's default), 1.0C (1.0 with `Connection: close`), 1.1.
    public enum Version: String, Equatable, Sendable {
        case http10 = "1.0"
        case http10Close = "1.0C"
        case http11 = "1.1"
    }

    public struct URLCheck: Equatable, Sendable {
        public var path: String
        /// `status_code`: codes and ranges (`200`, `200-299`); nil: not given, keepalived accepts 2xx.
        public var statusCodes: [ClosedRange<UInt16>]?
        /// `digest`: MD5 of the body, 32 lowercase hex digits.
        public var digest: String?
        /// The Host to send: the url's own `virtualhost`, else HTTP_GET's, the real server's, the virtual
        /// server's (check_http.c); nil: keepalived sends the address (and port).
        public var virtualhost: String?

        public init(path: String, statusCodes: [ClosedRange<UInt16>]? = nil, digest: String? = nil,
                    virtualhost: String? = nil) {
            self.path = path
            self.statusCodes = statusCodes
            self.digest = digest
            self.virtualhost = virtualhost
        }

        /// Whether an HTTP status passes this url's check.
        public func accepts(status: Int) -> Bool {
            let ranges = statusCodes ?? [KeepalivedDefaults.httpStatusCodes]
            return ranges.contains { Int($0.lowerBound) <= status && status <= Int($0.upperBound) }
        }
    }

    public var urls: [URLCheck]
    public var version: Version

    public init(urls: [URLCheck], version: Version = .http10) {
        self.urls = urls
        self.version = version
    }
}
