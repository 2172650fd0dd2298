import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `SMTP_CHECK { }` (keepalived/check/check_smtp.c): to be built.
public struct SMTPCheck: Equatable, Sendable {
    public init() {}
}

extension KeepalivedFileParser {
    /// Reads a `SMTP_CHECK` block of a real server.
    func smtpCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        warn(s.keyword, "SMTP_CHECK is not supported by masq: ignored (the real server is not checked by it)")
        try skipBlock(s)
        return nil
    }
}

extension Probe {
    /// One SMTP_CHECK probe.
    static func smtp(_ check: SMTPCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        .failure(ProbeFailure(check: "SMTP_CHECK", reason: .other("not implemented")))
    }
}
