import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `SSL_GET { }` (keepalived/check/check_ssl.c): to be built.
public struct SSLCheck: Equatable, Sendable {
    /// The HTTP part: the urls, their status codes and digests, virtualhost, http_protocol.
    public var http = HTTPCheck(urls: [])
    public init(http: HTTPCheck = HTTPCheck(urls: [])) { self.http = http }
}

extension KeepalivedFileParser {
    /// Reads a `SSL_GET` block of a real server.
    func sslGet(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        warn(s.keyword, "SSL_GET is not supported by masq: ignored (the real server is not checked by it)")
        try skipBlock(s)
        return nil
    }
}

extension Probe {
    /// One SSL_GET probe.
    static func ssl(_ check: SSLCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        .failure(ProbeFailure(check: "SSL_GET", reason: .other("not implemented")))
    }
}
