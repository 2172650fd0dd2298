import MasqCore
import MasqRules

/// keepalived's `lvs_sync_daemon` (global_defs; global_parser.c `lvs_syncd_handler`):
/// `lvs_sync_daemon IF [[inst] VRRP_INSTANCE] [id 0..255] [maxlen 1..65507] [port P] [ttl 1..255]
/// [group IP]`. keepalived drives IPVS's sync daemons with it (master while the instance is MASTER,
/// backup otherwise; both all the time without an instance); masq reads it so the same file
/// describes masq's daemons, which keepalived's state then moves through `--vrrp-notify-fifo`.
public struct KeepalivedSyncDaemon: Equatable, Sendable {
    public var interface: String
    /// The vrrp_instance whose state selects the daemon; nil: both daemons run.
    public var instance: String?
    /// `id`; nil: the instance's `virtual_router_id`, or 0 without an instance (`vrrp_complete_init`).
    public var syncID: UInt8?
    public var maxLength: Int?
    public var port: UInt16?
    public var ttl: UInt8?
    public var group: IPv4Address?
    /// The instance's `virtual_router_id`, when the file has that vrrp_instance.
    public var instanceRouterID: UInt8?

    public init(interface: String, instance: String? = nil, syncID: UInt8? = nil, maxLength: Int? = nil,
                port: UInt16? = nil, ttl: UInt8? = nil, group: IPv4Address? = nil, instanceRouterID: UInt8? = nil) {
        self.interface = interface
        self.instance = instance
        self.syncID = syncID
        self.maxLength = maxLength
        self.port = port
        self.ttl = ttl
        self.group = group
        self.instanceRouterID = instanceRouterID
    }

    /// The daemon of `role` with these parameters, the syncid defaulted as keepalived does.
    public func config(role: SyncDaemonRole) -> SyncDaemonConfig {
        SyncDaemonConfig(role: role, interface: interface, syncID: syncID ?? instanceRouterID ?? 0,
                         maxLength: maxLength, group: group, port: port, ttl: ttl)
    }
}
