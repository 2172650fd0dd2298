import MasqControl
import MasqCore
import MasqRules

/// Renders the daemon's state exactly as ipvsadm 1.31 prints the kernel's (ipvsadm.c's `list_all`,
/// `list_service`, `print_title`, `print_service_entry`, `print_largenum`, `print_sched_flags`,
/// `list_conn`/`print_conn`, `list_timeout`, `list_daemon`; libipvs's sort comparators).
///
/// What ipvsadm does that shows here:
/// - services are sorted by firewall mark, family, protocol, address, port (`ipvs_cmp_services`) and each service's real
///   servers by address, port (`ipvs_cmp_dests`) unless `--nosort`, where the daemon's order (the
///   configuration's) stands for the kernel's; the comparators subtract 32-bit addresses into an int,
///   reproduced with glibc's merge sort (see `glibcMergeSort`);
/// - a real server's counters pass through libipvs's `ipvs_parse_stats` even when the kernel sends
///   64-bit ones, so connections, packets and all five rates print modulo 2^32, bytes in full
///   (services go through `ipvs_parse_stats64`: everything in full);
/// - names (no `-n`) come from `NameResolver`: /etc/hosts and /etc/services, never DNS;
///   `addrport_to_anyname` writes into 60 bytes, so a name:port is at most 59 bytes; a service's
///   "PROT name:port" is cut to 33 bytes and a real server's name:port to 28 (not in `-S`), but not
///   an IPv6 service's (`if (se->af != AF_INET6)`), whose names only the 64-byte `svc_name` bounds;
/// - an IPv6 address prints in brackets, `[2001:2::1]:80`, and never as a host name: ipvsadm's
///   `addr_to_host` asks `gethostbyaddr` with an IPv4 address's length (4) for AF_INET6, which glibc
///   never answers, so `-L` without `-n` shows `[2001:2::1]:http` (the port still named);
/// - IPv4 services sort before IPv6 ones (`ipvs_cmp_services` compares the family first, AF_INET 2
///   before AF_INET6 10), IPv6 addresses by their four 32-bit words in turn.
public struct IPVSAdmFormat: Sendable {
    public var resolver: NameResolver

    public init(resolver: NameResolver = NameResolver()) {
        self.resolver = resolver
    }

    /// `ipvsadm -L|-l [options]`: `list_conn` for `-c` (given the daemon's flow records),
    /// `list_service` for `-t|-u` (no version line; "No such service", exit 1, when absent),
    /// `list_timeout` for `--timeout`, `list_daemon` for `--daemon` (given the daemon's sync status:
    /// a line per sync daemon, nothing when none runs), `list_all` otherwise. The order of these tests is `process_options`'.
    public func list(_ state: AdminState, _ options: ListOptions, connections: [FlowRecord] = [],
                     syncStatus: SyncStatus? = nil) throws(AdminError) -> String {
        if options.connections {
            return self.connections(connections, numeric: options.numeric,
                                    persistentConnections: options.persistentConnections)
        }
        let format = Format(options)
        if let key = options.service {
            guard let s = state.services.first(where: { matches($0, key) }) else {
                throw AdminError(message: "No such service", exitCode: 1)
            }
            return title(format) + service(s, format)
        }
        if options.timeout { return timeouts(state.timeouts) }
        if options.daemon { return syncStatus?.listText ?? "" }
        return listAll(state, format)
    }

    /// `ipvsadm -S|--save [-n]` (ipvsadm-save): `list_all` with FMT_RULE, no version line, no title.
    public func save(_ state: AdminState, numeric: Bool) -> String {
        var f = Format(ListOptions(numeric: numeric))
        f.rule = true
        return listAll(state, f)
    }

    /// `ipvsadm -L -c [-n] [--persistent-conn]` (`list_conn`, `print_conn`), entries in the order given
    /// (the kernel prints its hash table's order; the daemon gives its own).
    ///
    /// With `--persistent-conn` the title gains "pe name" and "pe_data" columns; a row only gains them
    /// when the kernel's line carries persistence-engine data (11 fields), which needs `--pe sip`, so
    /// masq's rows keep the plain layout.
    public func connections(_ entries: [FlowRecord], numeric: Bool, persistentConnections: Bool = false) -> String {
        var out = "IPVS connection entries\n"
        if persistentConnections {
            // printf("pro expire %-11s %-18s %-18s %-18s %-16s %s\n", "state", "source", "virtual",
            //        "destination", "pe name", "pe_data")
            out += "pro expire " + CFormat.left("state", 11) + " " + CFormat.left("source", 18) + " "
                + CFormat.left("virtual", 18) + " " + CFormat.left("destination", 18) + " "
                + CFormat.left("pe name", 16) + " pe_data\n"
        } else {
            // printf("pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
            out += "pro expire " + CFormat.left("state", 11) + " " + CFormat.left("source", 18) + " "
                + CFormat.left("virtual", 18) + " destination\n"
        }
        for e in entries {
            let proto = e.protoName
            let cname = name(e.client.description, e.clientPort, proto: proto, numeric: numeric)
            let vname = name(e.virtualAddress.description, e.virtualPort, proto: proto, numeric: numeric)
            let dname = name(e.server.description, e.serverPort, proto: proto, numeric: numeric)
            // sprintf(expire_str, "%02d:%02d", expires / 60, expires % 60) of an unsigned
            let expires = UInt32(clamping: e.expiresIn)
            let expire = Self.twoDigits(expires / 60) + ":" + Self.twoDigits(expires % 60)
            // printf("%-3s %-6s %-11s %-18s %-18s %s\n", protocol, expire_str, state, cname, vname, dname)
            out += CFormat.left(proto.uppercased(), 3) + " " + CFormat.left(expire, 6) + " "
                + CFormat.left(e.state.description, 11) + " "
                + CFormat.left(cname, 18) + " " + CFormat.left(vname, 18) + " " + dname + "\n"
        }
        return out
    }

    /// `ipvsadm -L --timeout` (`list_timeout`): `printf("Timeout (tcp tcpfin udp): %d %d %d\n", …)`.
    public func timeouts(_ t: TimeoutState) -> String {
        "Timeout (tcp tcpfin udp): \(Int32(bitPattern: t.tcp)) \(Int32(bitPattern: t.tcpFin)) \(Int32(bitPattern: t.udp))\n"
    }

    /// ipvsadm's `print_largenum`: with `--exact`, `printf("%*llu", len <= 8 ? 9 : len + 1, n)`;
    /// else `%9llu` below 10^8, then `%8lluK` (n/10^3) below 10^9, `%8lluM` (n/10^6) below 10^11,
    /// `%8lluG` (n/10^9) below 10^14, `%8lluT` (n/10^12).
    public static func largeNumber(_ n: UInt64, exact: Bool) -> String {
        if exact {
            let digits = String(n)
            return CFormat.right(digits, digits.utf8.count <= 8 ? 9 : digits.utf8.count + 1)
        }
        if n < 100_000_000 { return CFormat.right(String(n), 9) }
        if n < 1_000_000_000 { return CFormat.right(String(n / 1000), 8) + "K" }
        if n < 100_000_000_000 { return CFormat.right(String(n / 1_000_000), 8) + "M" }
        if n < 100_000_000_000_000 { return CFormat.right(String(n / 1_000_000_000), 8) + "G" }
        return CFormat.right(String(n / 1_000_000_000_000), 8) + "T"
    }

    // MARK: - list_all and its parts

    /// ipvsadm's FMT_* flags; the first that applies wins, in `print_title`'s order.
    struct Format {
        var numeric = false
        var rule = false
        var stats = false
        var rate = false
        var thresholds = false
        var persistentConnections = false
        var noSort = false
        var exact = false
        var tunnelInfo = false

        init(_ o: ListOptions) {
            numeric = o.numeric
            stats = o.stats
            rate = o.rate
            thresholds = o.thresholds
            persistentConnections = o.persistentConnections
            noSort = o.noSort
            exact = o.exact
            tunnelInfo = o.tunnelInfo
        }
    }

    /// `list_all`: the version line (not for -S), the title, every service.
    func listAll(_ state: AdminState, _ f: Format) -> String {
        var out = ""
        if !f.rule {
            // printf("IP Virtual Server version %d.%d.%d (size=%d)\n", NVERSION(version), size)
            out += "IP Virtual Server version \(state.version) (size=\(state.size))\n"
        }
        out += title(f)
        let services = f.noSort ? state.services : glibcMergeSort(state.services, by: Self.compareServices)
        for s in services { out += service(s, f) }
        return out
    }

    /// `print_title`.
    func title(_ f: Format) -> String {
        func five(_ a: String, _ b: String, _ c: String, _ d: String, _ e: String) -> String {
            // "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n"
            CFormat.left("Prot LocalAddress:Port", 33) + " " + [a, b, c, d, e].map { CFormat.right($0, 8) }
                .joined(separator: " ") + "\n  -> RemoteAddress:Port\n"
        }
        if f.stats { return five("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes") }
        if f.rate { return five("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS") }
        if f.thresholds {
            // "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n"
            return CFormat.left("Prot LocalAddress:Port", 33) + " "
                + ["Uthreshold", "Lthreshold", "ActiveConn", "InActConn"].map { CFormat.left($0, 10) }
                .joined(separator: " ") + "\n  -> RemoteAddress:Port\n"
        }
        if f.persistentConnections {
            // "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n"
            return CFormat.left("Prot LocalAddress:Port", 33) + " " + CFormat.left("Weight", 9) + " "
                + CFormat.left("PersistConn", 11) + " " + CFormat.left("ActiveConn", 10) + " "
                + CFormat.left("InActConn", 10) + "\n  -> RemoteAddress:Port\n"
        }
        if f.tunnelInfo {
            return "Prot LocalAddress:Port Scheduler Flags\n"
                + "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        }
        if f.rule { return "" }
        return "Prot LocalAddress:Port Scheduler Flags\n"
            + "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    }

    /// `print_service_entry`: the service's line and its real servers' lines.
    func service(_ s: ServiceState, _ f: Format) -> String {
        let proto = s.proto.lowercased()
        let ipv6 = Self.isIPv6(s.address)
        let vname = name(s.address, s.port, proto: proto, numeric: f.numeric)
        var out = ""
        let svcName: String
        // sprintf(svc_name, "%d", se->fwmark) of an unsigned mark: above 2^31 it prints negative.
        let mark = Int32(bitPattern: s.fwmark)
        if f.rule {
            if s.fwmark != 0 {
                // sprintf(svc_name, "-f %d -6") for AF_INET6, else "-f %d"
                svcName = ipv6 ? "-f \(mark) -6" : "-f \(mark)"
            } else {
                // snprintf(svc_name, …, "%s %s", option_from_protocol(proto) ?: "--xxx-service", vname)
                let option = proto == "tcp" ? "-t" : proto == "udp" ? "-u" : proto == "sctp" ? "--sctp-service" : "--xxx-service"
                svcName = option + " " + vname
            }
            // "-A %s -s %s", " -p %u", " -M %s", " -o", " -b " + print_sched_flags
            out += "-A \(svcName) -s \(s.scheduler)"
            if let p = s.persistence {
                out += " -p \(p)"
                if let mask = Self.netmask(s) { out += " -M \(mask)" }
            }
            if s.onePacket { out += " -o" }
            if let flags = Self.schedulerFlags(s) { out += " -b \(flags)" }
        } else {
            if s.fwmark != 0 {
                // sprintf(svc_name, "FWM  %d IPv6") for AF_INET6, else "FWM  %d": not cut
                svcName = ipv6 ? "FWM  \(mark) IPv6" : "FWM  \(mark)"
            } else {
                // snprintf(svc_name, 64, "%-4s %s", protocol_name(proto), vname);
                // if (se->af != AF_INET6) svc_name[33] = '\0'
                svcName = CFormat.cut(CFormat.left(Self.protocolName(proto), 4) + " " + vname, ipv6 ? 63 : 33)
            }
            if f.stats || f.rate {
                // printf("%-33s", svc_name) then print_largenum × 5 (stats64: full 64 bits)
                out += CFormat.left(svcName, 33)
                let values = f.stats
                    ? [s.stats.connections, s.stats.packetsIn, s.stats.packetsOut, s.stats.bytesIn, s.stats.bytesOut]
                    : [s.rates.connectionsPerSecond, s.rates.packetsInPerSecond, s.rates.packetsOutPerSecond,
                       s.rates.bytesInPerSecond, s.rates.bytesOutPerSecond]
                out += values.map { Self.largeNumber($0, exact: f.exact) }.joined()
            } else {
                // printf("%s %s", svc_name, sched_name), " (%flags)", " persistent %u", " mask %s"
                out += "\(svcName) \(s.scheduler)"
                if let flags = Self.schedulerFlags(s) { out += " (\(flags))" }
                if let p = s.persistence {
                    out += " persistent \(p)"
                    if let mask = Self.netmask(s) { out += " mask \(mask)" }
                }
                if s.onePacket { out += " ops" }
            }
        }
        out += "\n"

        let dests = f.noSort ? s.destinations : glibcMergeSort(s.destinations, by: Self.compareDestinations)
        for d in dests {
            var dname = name(d.address, d.port, proto: proto, numeric: f.numeric)
            if !f.rule && !ipv6 { dname = CFormat.cut(dname, 28) }  // if (se->af != AF_INET6) dname[28] = '\0'
            if f.rule {
                // printf("-a %s -r %s %s -w %d\n", svc_name, dname, fwd_switch(conn_flags), weight)
                out += "-a \(svcName) -r \(dname) \(Self.forwardSwitch(d.forward)) -w \(d.weight)\n"
            } else if f.stats {
                // printf("  -> %-28s", dname) then print_largenum × 5 (ipvs_parse_stats: 32-bit counts)
                out += "  -> " + CFormat.left(dname, 28)
                let values = [Self.u32(d.stats.connections), Self.u32(d.stats.packetsIn), Self.u32(d.stats.packetsOut),
                              d.stats.bytesIn, d.stats.bytesOut]
                out += values.map { Self.largeNumber($0, exact: f.exact) }.joined() + "\n"
            } else if f.rate {
                // printf("  -> %-28s %8llu %8llu %8llu", dname, cps, inpps, outpps) then print_largenum × 2
                out += "  -> " + CFormat.left(dname, 28)
                for v in [d.rates.connectionsPerSecond, d.rates.packetsInPerSecond, d.rates.packetsOutPerSecond] {
                    out += " " + CFormat.right(String(Self.u32(v)), 8)
                }
                out += Self.largeNumber(Self.u32(d.rates.bytesInPerSecond), exact: f.exact)
                out += Self.largeNumber(Self.u32(d.rates.bytesOutPerSecond), exact: f.exact) + "\n"
            } else if f.thresholds {
                // printf("  -> %-28s %-10u %-10u %-10u %-10u\n", dname, u_threshold, l_threshold, active, inact)
                out += "  -> " + CFormat.left(dname, 28) + " " + CFormat.left(String(d.upperThreshold), 10) + " "
                    + CFormat.left(String(d.lowerThreshold), 10)
                    + " " + CFormat.left(CFormat.unsigned(d.activeConnections), 10) + " "
                    + CFormat.left(CFormat.unsigned(d.inactiveConnections), 10) + "\n"
            } else if f.persistentConnections {
                // printf("  -> %-28s %-9u %-11u %-10u %-10u\n", dname, weight, persistconns, active, inact)
                out += "  -> " + CFormat.left(dname, 28) + " " + CFormat.left(CFormat.unsigned(d.weight), 9) + " "
                    + CFormat.left(CFormat.unsigned(d.persistentConnections), 11) + " "
                    + CFormat.left(CFormat.unsigned(d.activeConnections), 10) + " "
                    + CFormat.left(CFormat.unsigned(d.inactiveConnections), 10) + "\n"
            } else if f.tunnelInfo {
                // printf("  -> %-28s %-7s %-13s %-6d %-10u %-10u\n", dname, fwd, tun_info ?: "n/a", weight, …)
                out += "  -> " + CFormat.left(dname, 28) + " " + CFormat.left(d.forward, 7) + " "
                    + CFormat.left("n/a", 13) + " " + CFormat.left(String(d.weight), 6) + " "
                    + CFormat.left(CFormat.unsigned(d.activeConnections), 10) + " "
                    + CFormat.left(CFormat.unsigned(d.inactiveConnections), 10) + "\n"
            } else {
                // printf("  -> %-28s %-7s %-6d %-10u %-10u\n", dname, fwd_name, weight, activeconns, inactconns)
                out += "  -> " + CFormat.left(dname, 28) + " " + CFormat.left(d.forward, 7) + " "
                    + CFormat.left(String(d.weight), 6) + " "
                    + CFormat.left(CFormat.unsigned(d.activeConnections), 10) + " "
                    + CFormat.left(CFormat.unsigned(d.inactiveConnections), 10) + "\n"
            }
        }
        return out
    }

    // MARK: - helpers

    /// `addrport_to_anyname`: "%s:%u" with -n, else "%s:%s" of the host and service names; into a
    /// 60-byte buffer. An IPv6 address is bracketed, in RFC 5952 text (`inet_ntop`), and never named
    /// (see the type's notes).
    func name(_ address: String, _ port: UInt16, proto: String, numeric: Bool) -> String {
        let portText = numeric ? String(port) : resolver.anyName(port: port, proto: proto)
        let text: String
        if let v6 = IPv6Address(address), address.contains(":") {
            text = "[\(v6)]:\(portText)"
        } else if numeric {
            text = "\(Self.dotted(address)):\(portText)"
        } else {
            let host = IPv4Address(address).map { resolver.anyName($0) } ?? address
            text = "\(host):\(portText)"
        }
        return CFormat.cut(text, 59)
    }

    /// Whether an address in the daemon's state is IPv6 (`se->af == AF_INET6`).
    static func isIPv6(_ address: String) -> Bool { address.contains(":") && IPv6Address(address) != nil }

    /// `ipvs_get_service(fwmark, af, protocol, addr, port)`: a firewall-mark service by its mark and
    /// family, any other by protocol, address and port.
    func matches(_ s: ServiceState, _ key: ServiceKey) -> Bool {
        if s.fwmark != 0 || key.isFirewallMark {
            return s.fwmark == key.fwmark && Self.isIPv6(s.address) == key.address.isIPv6
        }
        return s.proto.lowercased() == (key.proto == .udp ? "udp" : "tcp") && IPAddress(s.address) == key.address
            && s.port == key.port
    }

    /// `protocol_name`.
    static func protocolName(_ proto: String) -> String {
        switch proto {
        case "tcp": return "TCP"
        case "udp": return "UDP"
        case "sctp": return "SCTP"
        default: return "?"
        }
    }

    /// `fwd_switch`.
    static func forwardSwitch(_ forward: String) -> String {
        switch forward {
        case "Tunnel": return "-i"
        case "Route", "Local": return "-g"
        default: return "-m"
        }
    }

    /// `inet_ntoa(mask)` when the persistence mask isn't 255.255.255.255; for an IPv6 service
    /// `"%i"` of the prefix length (the state's `netmask` holds it) when it isn't 128.
    static func netmask(_ s: ServiceState) -> String? {
        if isIPv6(s.address) {
            guard let length = Int(s.netmask) else { return s.netmask }
            return length == 128 ? nil : String(length)
        }
        let mask = IPv4Address(s.netmask)
        if mask?.rawValue == 0xffff_ffff { return nil }
        return mask?.description ?? s.netmask
    }

    /// `print_sched_flags`: the flags IPVS holds (SCHED1, SCHED2, SCHED3) named for the scheduler
    /// (sh-…, mh-…, else flag-N), comma-joined; nil when there are none. Names IPVS doesn't know are
    /// kept, after.
    static func schedulerFlags(_ s: ServiceState) -> String? {
        var bits = 0
        var unknown: [String] = []
        for name in s.schedulerFlags {
            switch name {
            case "sh-fallback", "mh-fallback", "flag-1": bits |= 1
            case "sh-port", "mh-port", "flag-2": bits |= 2
            case "flag-3": bits |= 4
            default: unknown.append(name)
            }
        }
        var names: [String] = []
        switch s.scheduler {
        case "sh", "mh":
            if bits & 1 != 0 { names.append("\(s.scheduler)-fallback") }
            if bits & 2 != 0 { names.append("\(s.scheduler)-port") }
        default:
            if bits & 1 != 0 { names.append("flag-1") }
            if bits & 2 != 0 { names.append("flag-2") }
            if bits & 4 != 0 { names.append("flag-3") }
        }
        names += unknown
        return names.isEmpty ? nil : names.joined(separator: ",")
    }

    static func dotted(_ address: String) -> String { IPv4Address(address)?.description ?? address }

    static func twoDigits(_ n: UInt32) -> String { n < 10 ? "0\(n)" : String(n) }

    /// What `nla_get_u32` keeps of a 64-bit counter (the low half, on a little-endian host).
    static func u32(_ n: UInt64) -> UInt64 { n & 0xffff_ffff }

    static func protocolNumber(_ proto: String) -> Int32 {
        switch proto.lowercased() {
        case "tcp": return 6
        case "udp": return 17
        case "sctp": return 132
        default: return 0
        }
    }

    /// libipvs's `ipvs_cmp_services`: the firewall mark (`s1->fwmark - s2->fwmark` as an int, so
    /// mark services follow the others, those above 2^31 precede them), the family (`s1->af -
    /// s2->af`), protocol, then the address (`ntohl(a) - ntohl(b)` as an int, word by word for IPv6),
    /// then port.
    static func compareServices(_ a: ServiceState, _ b: ServiceState) -> Int32 {
        let mark = Int32(bitPattern: a.fwmark &- b.fwmark)
        if mark != 0 { return mark }
        let af = addressFamily(a.address) - addressFamily(b.address)
        if af != 0 { return af }
        let r = protocolNumber(a.proto) - protocolNumber(b.proto)
        if r != 0 { return r }
        let d = compareAddresses(a.address, b.address)
        if d != 0 { return d }
        return Int32(a.port) - Int32(b.port)
    }

    /// libipvs's `ipvs_cmp_dests`: the address (`ntohl(a) - ntohl(b)` as an int, word by word for
    /// IPv6), then port.
    static func compareDestinations(_ a: DestinationState, _ b: DestinationState) -> Int32 {
        let d = compareAddresses(a.address, b.address)
        if d != 0 { return d }
        return Int32(a.port) - Int32(b.port)
    }

    /// AF_INET (2) or AF_INET6 (10), as libipvs subtracts them.
    static func addressFamily(_ address: String) -> Int32 { isIPv6(address) ? 10 : 2 }

    /// The comparators' address step: one 32-bit difference for IPv4; for IPv6 the first nonzero of
    /// the four words' differences (`for (i = 0; !r && i < 4; i++) r = ntohl(a[i]) - ntohl(b[i])`).
    static func compareAddresses(_ a: String, _ b: String) -> Int32 {
        if isIPv6(a), isIPv6(b), let x = IPv6Address(a), let y = IPv6Address(b) {
            let xs = [UInt32(x.high >> 32), UInt32(truncatingIfNeeded: x.high), UInt32(x.low >> 32),
                      UInt32(truncatingIfNeeded: x.low)]
            let ys = [UInt32(y.high >> 32), UInt32(truncatingIfNeeded: y.high), UInt32(y.low >> 32),
                      UInt32(truncatingIfNeeded: y.low)]
            for i in 0..<4 {
                let r = Int32(bitPattern: xs[i] &- ys[i])
                if r != 0 { return r }
            }
            return 0
        }
        let x = IPv4Address(a)?.rawValue ?? 0
        let y = IPv4Address(b)?.rawValue ?? 0
        return Int32(bitPattern: x &- y)
    }
}
