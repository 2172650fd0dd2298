import Foundation
import MasqCore
import MasqRules
#if canImport(Glibc)
import Glibc
#endif

/// Why a sync daemon's socket could not be set up; each names the interface (and the address or
/// call), as the kernel's `start_sync_thread` logs "Unknown mcast interface: %s".
public enum SyncSocketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No interface of that name in this network namespace (the kernel's ENODEV).
    case noSuchInterface(String)
    /// The interface has no IPv4 address to bind to (`bind_mcastif_addr`: EADDRNOTAVAIL).
    case noIPv4Address(String)
    /// A socket call failed: which, on which interface, and errno.
    case call(String, interface: String, errno: Int32)

    /// libipvs's first words for the errno the kernel would return (`ipvs_strerror` falls back to
    /// strerror), then which interface.
    public var description: String {
        switch self {
        case .noSuchInterface(let name):
            "No such device (mcast-interface \(name): no such interface in this network namespace)"
        case .noIPv4Address(let name):
            "Cannot assign requested address (mcast-interface \(name) has no IPv4 address to send from)"
        case .call(let call, let name, let errno):
            "\(String(cString: strerror(errno))) (\(call) on mcast-interface \(name))"
        }
    }
}

/// The interface a sync daemon runs on: its index, primary IPv4 address and MTU.
struct SyncInterface: Sendable {
    var name: String
    var index: Int32
    var address: IPv4Address
    var mtu: Int

    /// Looks `name` up in this network namespace: `if_nametoindex`, the first IPv4 address
    /// `getifaddrs` lists for it (the primary, `inet_select_addr`'s choice), `SIOCGIFMTU`.
    static func lookup(_ name: String) throws(SyncSocketError) -> SyncInterface {
        let index = if_nametoindex(name)
        guard index != 0 else { throw .noSuchInterface(name) }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { throw .call("getifaddrs", interface: name, errno: errno) }
        defer { freeifaddrs(list) }
        var address: IPv4Address?
        var entry = list
        while let e = entry, address == nil {
            if let sa = e.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET),
               String(cString: e.pointee.ifa_name) == name {
                address = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    IPv4Address(rawValue: UInt32(bigEndian: $0.pointee.sin_addr.s_addr))
                }
            }
            entry = e.pointee.ifa_next
        }
        guard let address else { throw .noIPv4Address(name) }
        return SyncInterface(name: name, index: Int32(index), address: address, mtu: interfaceMTU(name) ?? 1500)
    }

    /// `SIOCGIFMTU`; nil when the kernel does not say.
    static func interfaceMTU(_ name: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var request = ifreq()
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            for (i, b) in name.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        guard ioctl(fd, UInt(SIOCGIFMTU), &request) == 0 else { return nil }
        return Int(request.ifr_ifru.ifru_mtu)
    }
}

/// A sync daemon's two sockets, made as the kernel makes them (ip_vs_sync.c, reference §1.1).
enum SyncSockets {
    /// `make_send_sock`: multicast out of the interface (`IP_MULTICAST_IF` by index), no loopback,
    /// the TTL, fragmentation allowed (`IP_PMTUDISC_DONT`), bound to the interface's primary address
    /// and connected to group:port. Non-blocking sends (`MSG_DONTWAIT` at each send too).
    static func sender(_ config: SyncDaemonConfig, on interface: SyncInterface) throws(SyncSocketError) -> Int32 {
        let fd = try open(interface.name)
        do throws(SyncSocketError) {
            var request = ip_mreqn()
            request.imr_ifindex = interface.index
            request.imr_address.s_addr = interface.address.rawValue.bigEndian
            try option(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &request, "IP_MULTICAST_IF", interface.name)
            var off: Int32 = 0
            try option(fd, Int32(IPPROTO_IP), IP_MULTICAST_LOOP, &off, "IP_MULTICAST_LOOP", interface.name)
            var ttl = Int32(config.effectiveTTL)
            try option(fd, Int32(IPPROTO_IP), IP_MULTICAST_TTL, &ttl, "IP_MULTICAST_TTL", interface.name)
            var pmtu = Int32(IP_PMTUDISC_DONT)
            try option(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, &pmtu, "IP_MTU_DISCOVER", interface.name)
            var local = socketAddress(interface.address, port: 0)
            guard withSockaddr(&local, { bind(fd, $0, $1) }) == 0 else {
                throw .call("bind to \(interface.address)", interface: interface.name, errno: errno)
            }
            var group = socketAddress(config.effectiveGroup, port: config.effectivePort)
            guard withSockaddr(&group, { connect(fd, $0, $1) }) == 0 else {
                throw .call("connect to \(config.effectiveGroup):\(config.effectivePort)", interface: interface.name, errno: errno)
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// `make_receive_sock`: SO_REUSEADDR (a master and a backup may both listen), bound to the device,
    /// bound to group:port, the group joined on the interface. Non-blocking.
    static func receiver(_ config: SyncDaemonConfig, on interface: SyncInterface) throws(SyncSocketError) -> Int32 {
        let fd = try open(interface.name)
        do throws(SyncSocketError) {
            var on: Int32 = 1
            try option(fd, SOL_SOCKET, SO_REUSEADDR, &on, "SO_REUSEADDR", interface.name)
            var device = Array(interface.name.utf8) + [0]
            guard setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, &device, socklen_t(device.count)) == 0 else {
                throw .call("SO_BINDTODEVICE", interface: interface.name, errno: errno)
            }
            var group = socketAddress(config.effectiveGroup, port: config.effectivePort)
            guard withSockaddr(&group, { bind(fd, $0, $1) }) == 0 else {
                throw .call("bind to \(config.effectiveGroup):\(config.effectivePort)", interface: interface.name, errno: errno)
            }
            var membership = ip_mreqn()
            membership.imr_multiaddr.s_addr = config.effectiveGroup.rawValue.bigEndian
            membership.imr_address.s_addr = interface.address.rawValue.bigEndian
            membership.imr_ifindex = interface.index
            try option(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &membership, "IP_ADD_MEMBERSHIP", interface.name)
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    private static func open(_ name: String) throws(SyncSocketError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .call("socket", interface: name, errno: errno) }
        return fd
    }

    private static func option<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: inout T,
                                                   _ what: String, _ interface: String) throws(SyncSocketError) {
        let result = withUnsafeBytes(of: &value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
        guard result == 0 else {
            throw .call(what, interface: interface, errno: errno)
        }
    }

    static func socketAddress(_ address: IPv4Address, port: UInt16) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = address.rawValue.bigEndian
        return sa
    }

    static func withSockaddr<R>(_ sa: inout sockaddr_in, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
