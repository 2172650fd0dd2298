#if canImport(Glibc)
import Glibc
#endif
import MasqCore
import Synchronization

/// keepalived's `PING_CHECK { }` (keepalived/check/check_ping.c): an ICMP (or ICMPv6) echo request with
/// 128 bytes of data to the real server; an echo reply of its sequence number within
/// `connect_timeout` passes. No settings of its own, only the common keywords.
///
/// keepalived uses an unprivileged ICMP datagram socket (the kernel sets the identifier and gives the
/// socket only its own replies) and, as root, widens net.ipv4.ping_group_range to allow it. masq never
/// sets a sysctl: it uses that socket when ping_group_range admits its group, else a raw socket
/// (CAP_NET_RAW, which masq.service grants for its ICMP errors) with an identifier of its own, and
/// skips every reply that is not to this probe (identifier, sequence and source), so parallel pings
/// of the same or other servers never answer each other.
public struct PingCheck: Equatable, Sendable {
    public init() {}
}

extension KeepalivedFileParser {
    /// Reads a `PING_CHECK` block of a real server (the common keywords only; connect_port has no
    /// meaning for ICMP and is ignored, as keepalived ignores it).
    func pingCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: false)
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            guard commonCheckKeywords.contains(st.name) else { throw refuse(st, in: "PING_CHECK") }
            if st.name == "connect_port" { warn(st.keyword, "connect_port has no meaning for PING_CHECK: ignored") }
            try checkKeyword(st, &check)
        }
        try checkFamilies(s, check, rs)
        check.kind = .ping(PingCheck())
        return check
    }
}
