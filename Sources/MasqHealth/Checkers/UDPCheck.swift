import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `UDP_CHECK { }` (keepalived/check/check_udp.c): to be built.
public struct UDPCheck: Equatable, Sendable {
    public init() {}
}

extension KeepalivedFileParser {
    /// Reads a `UDP_CHECK` block of a real server.
    func udpCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        warn(s.keyword, "UDP_CHECK is not supported by masq: ignored (the real server is not checked by it)")
        try skipBlock(s)
        return nil
    }
}

extension Probe {
    /// One UDP_CHECK probe.
    static func udp(_ check: UDPCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        .failure(ProbeFailure(check: "UDP_CHECK", reason: .other("not implemented")))
    }
}
