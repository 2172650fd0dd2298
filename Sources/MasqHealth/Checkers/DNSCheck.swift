import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `DNS_CHECK { }` (keepalived/check/check_dns.c): to be built.
public struct DNSCheck: Equatable, Sendable {
    public init() {}
}

extension KeepalivedFileParser {
    /// Reads a `DNS_CHECK` block of a real server.
    func dnsCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        warn(s.keyword, "DNS_CHECK is not supported by masq: ignored (the real server is not checked by it)")
        try skipBlock(s)
        return nil
    }
}

extension Probe {
    /// One DNS_CHECK probe.
    static func dns(_ check: DNSCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        .failure(ProbeFailure(check: "DNS_CHECK", reason: .other("not implemented")))
    }
}
