import MasqCore

/// keepalived's `SMTP_CHECK { helo_name NAME }` (keepalived/check/check_smtp.c, `smtp_engine_thread`):
/// connect to the real server's address and port (`connect_ip`/`connect_port` override them; keepalived
/// has no port 25 default), read the greeting and require 220, send `HELO helo_name` and require 250,
/// send `QUIT` and read its reply (any). keepalived's defaults: helo_name `smtpchecker.keepalived.org`
/// (`SMTP_DEFAULT_HELO`), retry 1, delay_before_retry 1 s.
///
/// Deviation: keepalived reads only a reply's first line, so a multi-line greeting (`220-...`, RFC 5321
/// section 4.2.1) fails its check; masq reads a reply to its last line (`220 ...`) and judges its code.
public struct SMTPCheck: Equatable, Sendable {
    public static let defaultHeloName = "smtpchecker.keepalived.org"
    public var heloName: String
    public init(heloName: String = SMTPCheck.defaultHeloName) { self.heloName = heloName }
}

extension KeepalivedFileParser {
    /// Reads a `SMTP_CHECK` block of a real server: one checker, or with the deprecated `host { }`
    /// sub-blocks one checker per host (`smtp_check_end_handler`): each host takes the block's settings
    /// with its own connection options; the block itself is a checker too only when it sets a connection
    /// option (connect_ip, connect_port, bindto, connect_timeout) or has no host.
    func smtpCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> [RawCheck] {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: false)
        var smtp = SMTPCheck()
        var helo: KeepalivedToken?
        var hosts: [RawCheck] = []
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            switch st.name {
            case "helo_name":
                let t = try self.one(st)
                if let helo { throw t.error("SMTP_CHECK helo_name already given at line \(helo.line)") }
                guard !t.text.isEmpty, !t.text.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                    throw t.error("invalid helo_name")
                }
                helo = t
                smtp.heloName = t.text
            case "host":
                try self.noMore(st, after: 1)
                self.warn(st.keyword, "the SMTP_CHECK host block is deprecated: define one SMTP_CHECK per host (keepalived says so too)")
                var host = RawCheck(opener: st, http: false)
                try self.block(st) { (hs: KeepalivedStatement) throws(RulesError) in
                    try self.commonCheckKeyword(hs, &host, in: "SMTP_CHECK host")
                }
                try self.checkBindFamily(host, rs)
                hosts.append(host)
            default:
                try self.commonCheckKeyword(st, &check, in: "SMTP_CHECK")
            }
        }
        try checkBindFamily(check, rs)
        check.kind = .smtp(smtp)
        let hostChecks = hosts.map { host in
            var c = check
            c.opener = host.opener
            c.connectIP = host.connectIP
            c.connectPort = host.connectPort
            c.bindTo = host.bindTo
            c.connectTimeout = host.connectTimeout ?? check.connectTimeout
            c.retry = host.retry ?? check.retry
            c.delayBeforeRetry = host.delayBeforeRetry ?? check.delayBeforeRetry
            c.warmup = host.warmup ?? check.warmup
            c.delayLoop = host.delayLoop ?? check.delayLoop
            c.alpha = host.alpha ?? check.alpha
            return c
        }
        let ownConnection = check.connectIP != nil || check.connectPort != nil || check.bindTo != nil || check.connectTimeout != nil
        return ownConnection || hosts.isEmpty ? [check] + hostChecks : hostChecks
    }
}
