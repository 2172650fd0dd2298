#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore

/// keepalived's `DNS_CHECK { type T; name N }` (keepalived/check/check_dns.c): one query over UDP to
/// the real server's address and port (`connect_ip`/`connect_port` override them); it passes when a
/// response with the query's id arrives with RCODE 0 (NOERROR) — the answer count is not looked at,
/// as keepalived does not. Replies with another id, or that are queries, are ignored while waiting
/// (`dns_recv_thread`). keepalived's defaults: type SOA, name "" (the root), retry 3, and
/// delay_before_retry the checker's delay_loop (`dns_check_handler`: `default_delay_before_retry = 0`).
public struct DNSCheck: Equatable, Sendable {
    /// The query types keepalived knows (check_dns.c `DNS_TYPE`), by the name the file gives.
    public static let types: [(name: String, code: UInt16)] = [
        ("A", 1), ("NS", 2), ("CNAME", 5), ("SOA", 6), ("MX", 15), ("TXT", 16), ("AAAA", 28),
        ("RRSIG", 46), ("DNSKEY", 48),
    ]

    /// QTYPE; keepalived's `DNS_DEFAULT_TYPE` is SOA.
    public var type: UInt16
    /// QNAME in dotted form; "" (keepalived's `DNS_DEFAULT_NAME`) is the root.
    public var name: String

    public init(type: UInt16 = 6, name: String = "") {
        self.type = type
        self.name = name
    }

    public var typeName: String { Self.types.first { $0.code == type }?.name ?? "TYPE\(type)" }
}


extension KeepalivedFileParser {
    /// A keyword every checker shares, or an error naming the checker it is unknown in.
    func commonCheckKeyword(_ s: KeepalivedStatement, _ c: inout RawCheck, in checker: String) throws(RulesError) {
        guard commonCheckKeywords.contains(s.name) else { throw refuse(s, in: checker) }
        try checkKeyword(s, &c)
    }

    /// The checks TCP_CHECK gets too: a socket bound to one family cannot reach the other.
    func checkBindFamily(_ c: RawCheck, _ rs: RawRealServer) throws(RulesError) {
        if let bindTo = c.bindTo, bindTo.isIPv6 != (c.connectIP ?? rs.address).isIPv6 {
            throw c.opener.keyword.error("\(c.opener.name): bindto \(bindTo) is not of the family of the address it connects to, "
                                         + "\(c.connectIP ?? rs.address)")
        }
    }

    /// Reads a `DNS_CHECK` block of a real server (check_dns.c `install_dns_check_keyword`). Where
    /// keepalived warns and ignores a bad `type` or `name` (an empty label), masq refuses the file.
    func dnsCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: false)
        var dns = DNSCheck()
        var named: KeepalivedToken?
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            switch st.name {
            case "type":
                let t = try self.one(st)
                guard let type = DNSCheck.types.first(where: { $0.name.uppercased() == t.text.uppercased() }) else {
                    throw t.error("unknown DNS_CHECK type \(t.text) (\(DNSCheck.types.map(\.name).joined(separator: ", ")) expected)")
                }
                dns.type = type.code
            case "name":
                let t = try self.one(st)
                if let named { throw t.error("DNS_CHECK name already given at line \(named.line)") }
                guard DNSMessage.encodeName(t.text) != nil else {
                    throw t.error("invalid DNS_CHECK name \(t.text) (an empty label, or a label over 63 or a name over 255 bytes)")
                }
                named = t
                dns.name = t.text
            default:
                try self.commonCheckKeyword(st, &check, in: "DNS_CHECK")
            }
        }
        try checkBindFamily(check, rs)
        check.kind = .dns(dns)
        return check
    }
}

extension HealthCheck.Kind {
    var isDNS: Bool { if case .dns = self { true } else { false } }
}
