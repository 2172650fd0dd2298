import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `PING_CHECK { }` (keepalived/check/check_ping.c): to be built.
public struct PingCheck: Equatable, Sendable {
    public init() {}
}

extension KeepalivedFileParser {
    /// Reads a `PING_CHECK` block of a real server.
    func pingCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        warn(s.keyword, "PING_CHECK is not supported by masq: ignored (the real server is not checked by it)")
        try skipBlock(s)
        return nil
    }
}

extension Probe {
    /// One PING_CHECK probe.
    static func ping(_ check: PingCheck, address: IPAddress, bindTo: IPAddress?, timeout: Double) async -> Result {
        .failure(ProbeFailure(check: "PING_CHECK", reason: .other("not implemented")))
    }
}
