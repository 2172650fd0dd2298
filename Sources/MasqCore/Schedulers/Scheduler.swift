/// A scheduling algorithm of a virtual service, as ipvsadm's `-s NAME` chooses it.
///
/// One instance per service; it may keep state between picks (rr's position, wrr's current weight, a
/// hash table) and rebuilds it in `destinationsChanged`, as IPVS's `update_service` hooks do.
public protocol Scheduler: AnyObject {
    /// The name ipvsadm uses: `rr`, `wlc`, `mh`, …
    static var name: String { get }
    init(flags: SchedulerFlags)
    /// Called when destinations are added, removed or reweighted.
    func destinationsChanged(_ destinations: [Destination])
    /// The destination for a new connection, or nil when none may take it.
    func select(from destinations: [Destination], for input: SchedulingInput) -> Destination?
}

extension Scheduler {
    public func destinationsChanged(_ destinations: [Destination]) {}
}

/// What a scheduler may look at when it picks a real server for a new connection.
///
/// The addresses come as the 32-bit words IPVS's hashing schedulers hash (`ip_vs_sh_hashkey`,
/// `ip_vs_dh_hashkey`, `ip_vs_mh_hashkey`): an IPv4 address itself, an IPv6 address folded as
/// `ip6[0] ^ ip6[1] ^ ip6[2] ^ ip6[3]` (`IPv6Address.folded`, `IPAddress.hashWord`), so sh, dh and mh
/// spread IPv6 clients as the kernel does, and one scheduler instance serves either family.
public struct SchedulingInput: Sendable {
    /// The client's address as a hash word (IPv4: the address; IPv6: its fold).
    public var clientHashWord: UInt32
    public var clientPort: UInt16
    /// The virtual address the client asked for, as a hash word (dh hashes it).
    public var virtualAddressHashWord: UInt32
    public var virtualPort: UInt16
    /// The packet's destination address in full (`iph->daddr`, what lblc and lblcr key their tables
    /// by): the VIP of an address service, the packet's own destination for a firewall-mark one.
    public var destinationAddress: IPAddress
    /// The engine's clock (`Engine.now`, nanoseconds): lblc and lblcr time their entries by it.
    public var now: Int64

    public init(clientHashWord: UInt32, clientPort: UInt16, virtualAddressHashWord: UInt32, virtualPort: UInt16,
                destinationAddress: IPAddress = .v4(IPv4Address(rawValue: 0)), now: Int64 = 0) {
        self.clientHashWord = clientHashWord
        self.clientPort = clientPort
        self.virtualAddressHashWord = virtualAddressHashWord
        self.virtualPort = virtualPort
        self.destinationAddress = destinationAddress
        self.now = now
    }

    public init(client: IPv4Address, clientPort: UInt16, virtualAddress: IPv4Address, virtualPort: UInt16,
                now: Int64 = 0) {
        self.init(clientHashWord: client.rawValue, clientPort: clientPort,
                  virtualAddressHashWord: virtualAddress.rawValue, virtualPort: virtualPort,
                  destinationAddress: .v4(virtualAddress), now: now)
    }

    public init(client: IPv6Address, clientPort: UInt16, virtualAddress: IPv6Address, virtualPort: UInt16,
                now: Int64 = 0) {
        self.init(clientHashWord: client.folded, clientPort: clientPort,
                  virtualAddressHashWord: virtualAddress.folded, virtualPort: virtualPort,
                  destinationAddress: .v6(virtualAddress), now: now)
    }
}

/// ipvsadm's `-b` scheduler flags: `sh-fallback`/`mh-fallback` (flag-1), `sh-port`/`mh-port` (flag-2).
public struct SchedulerFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// When the hashed server is unavailable, probe on for another (instead of refusing).
    public static let fallback = SchedulerFlags(rawValue: 1)
    /// Hash the client's port together with its address.
    public static let port = SchedulerFlags(rawValue: 2)
}

extension SchedulerFlags {
    /// The `-b` names ipvsadm gives these flags under `scheduler` (`print_sched_flags`): sh-… and mh-…
    /// for sh and mh, else flag-N, the names every scheduler accepts.
    public func names(scheduler: String) -> [String] {
        let prefix = scheduler == "sh" || scheduler == "mh" ? scheduler : ""
        var names: [String] = []
        if contains(.fallback) { names.append(prefix.isEmpty ? "flag-1" : "\(prefix)-fallback") }
        if contains(.port) { names.append(prefix.isEmpty ? "flag-2" : "\(prefix)-port") }
        return names
    }
}

/// The schedulers masq has, by ipvsadm name.
public enum Schedulers {
    public static var all: [any Scheduler.Type] { [
        RoundRobinScheduler.self, WeightedRoundRobinScheduler.self, LeastConnectionScheduler.self,
        WeightedLeastConnectionScheduler.self, ShortestExpectedDelayScheduler.self,
        NeverQueueScheduler.self, SourceHashingScheduler.self, DestinationHashingScheduler.self,
        MaglevHashingScheduler.self, LocalityBasedLeastConnectionScheduler.self,
        LocalityBasedLeastConnectionReplicationScheduler.self, WeightedFailoverScheduler.self,
        WeightedOverflowScheduler.self, PowerOfTwoChoicesScheduler.self,
    ] }

    /// ipvsadm's default scheduler.
    public static let defaultName = "wlc"

    public static func type(named name: String) -> (any Scheduler.Type)? {
        all.first { $0.name == name }
    }

    public static func make(_ name: String, flags: SchedulerFlags = []) -> (any Scheduler)? {
        type(named: name).map { $0.init(flags: flags) }
    }
}

/// IPVS `ip_vs_dest_conn_overhead`: active connections weigh 256 times an inactive one.
@inlinable func connectionOverhead(_ d: Destination) -> Int64 {
    Int64(d.activeConnections) << 8 + Int64(d.inactiveConnections)
}

/// Picks the available destination minimising `overhead / weight`, the first one winning ties, by
/// cross-multiplying as IPVS does (no division). Shared by wlc, sed and nq.
@inlinable func leastWeightedOverhead(_ destinations: [Destination],
                                      overhead: (Destination) -> Int64) -> Destination? {
    var least: Destination?
    var leastOverhead: Int64 = 0
    for d in destinations where d.isAvailable {
        let o = overhead(d)
        if let l = least {
            if leastOverhead * Int64(d.weight) > o * Int64(l.weight) {
                least = d
                leastOverhead = o
            }
        } else {
            least = d
            leastOverhead = o
        }
    }
    return least
}
