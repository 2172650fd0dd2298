import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `MISC_CHECK { }` (keepalived/check/check_misc.c): to be built.
public struct MiscCheck: Equatable, Sendable {
    /// `misc_path`: the script and its arguments.
    public var path: String
    public init(path: String) { self.path = path }
}

extension KeepalivedFileParser {
    /// Reads a `MISC_CHECK` block of a real server.
    func miscCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        warn(s.keyword, "MISC_CHECK is not supported by masq: ignored (the real server is not checked by it)")
        try skipBlock(s)
        return nil
    }
}

extension Probe {
    /// One MISC_CHECK probe.
    static func misc(_ check: MiscCheck, address: IPAddress, port: UInt16, timeout: Double) async -> Result {
        .failure(ProbeFailure(check: "MISC_CHECK", reason: .other("not implemented")))
    }
}
