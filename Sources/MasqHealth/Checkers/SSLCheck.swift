#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore

/// keepalived's `SSL_GET { }`: HTTP_GET over TLS (keepalived/check/check_ssl.c, check_http.c), the
/// same `url { path digest status_code virtualhost }` blocks and pass rule.
///
/// TLS as keepalived sets it up (`build_ssl_ctx`, `ssl_connect`): any TLS version the library offers;
/// the server's certificate is **not verified** (keepalived never calls `SSL_CTX_set_verify`, so even
/// with the top-level `SSL { ca }` the check accepts any certificate: it checks the service, not its
/// identity); the client certificate and key of the top-level `SSL { certificate key password }`
/// block, when given, are presented. SNI only with `enable_sni` (or `sni_name`): `sni_name`, else the
/// url's virtualhost (masq resolves it from the url, SSL_GET, real server and virtual server).
public struct SSLCheck: Equatable, Sendable {
    /// The top-level `SSL { }` block (check_parser.c `ssl_handler`): file paths, PEM.
    public struct Client: Equatable, Sendable {
        /// `certificate`: the client's certificate chain.
        public var certificate: String?
        /// `key`: its private key; `password` decrypts it.
        public var key: String?
        public var password: String?
        /// `ca`: loaded by keepalived but never used to verify (see above); masq checks it is readable.
        public var ca: String?
        public init(certificate: String? = nil, key: String? = nil, password: String? = nil, ca: String? = nil) {
            self.certificate = certificate
            self.key = key
            self.password = password
            self.ca = ca
        }
    }

    /// The HTTP part: the urls, their status codes and digests, virtualhost, http_protocol.
    public var http = HTTPCheck(urls: [])
    /// `enable_sni` (or a `sni_name`): send the server name in the TLS ClientHello.
    public var enableSNI = false
    public var sniName: String?
    /// `tls_compliant`: keepalived then ends with a full TLS shutdown; NIOSSL always sends close_notify.
    public var tlsCompliant = false
    /// The top-level `SSL { }` block, if the file has one.
    public var client: Client?

    public init(http: HTTPCheck = HTTPCheck(urls: []), enableSNI: Bool = false, sniName: String? = nil,
                tlsCompliant: Bool = false, client: Client? = nil) {
        self.http = http
        self.enableSNI = enableSNI
        self.sniName = sniName
        self.tlsCompliant = tlsCompliant
        self.client = client
    }

    /// The server name to send for `url`, or nil (no SNI, or a name that is an address literal, which
    /// RFC 6066 section 3 forbids).
    func serverName(for url: HTTPCheck.URLCheck) -> String? {
        guard enableSNI, let name = sniName ?? url.virtualhost, IPAddress(name) == nil else { return nil }
        return name
    }
}

/// HTTP_GET's keywords besides the common ones (check_http.c `install_http_ssl_check_keyword`).
private let httpCheckKeywords: Set<String> = ["nb_get_retry", "virtualhost", "http_protocol", "url"]

extension KeepalivedFileParser {
    /// Reads a `SSL_GET` block of a real server: HTTP_GET's keywords, and `enable_sni`, `sni_name`,
    /// `tls_compliant`.
    func sslGet(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: true)
        var ssl = SSLCheck()
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            switch st.name {
            case "enable_sni": ssl.enableSNI = try self.flag(st)
            case "sni_name":
                // check_http.c `sni_name_handler`: naming it enables SNI.
                let t = try self.one(st)
                guard ssl.sniName == nil else { throw t.error("sni_name already given") }
                ssl.sniName = t.text
                ssl.enableSNI = true
            case "tls_compliant": ssl.tlsCompliant = try self.flag(st)
            case let name where httpCheckKeywords.contains(name): try self.checkKeyword(st, &check)
            default: try self.commonCheckKeyword(st, &check, in: "SSL_GET")
            }
        }
        if check.urls.isEmpty { throw s.keyword.error("SSL_GET needs at least one url { path ... }") }
        try checkBindFamily(check, rs)
        check.kind = .ssl(ssl)
        return check
    }

    /// The top-level `SSL { password ca certificate key }` block (check_parser.c `ssl_handler`; a
    /// second block replaces the first, with a warning, as keepalived does). Each file must be readable.
    func sslSection(_ s: KeepalivedStatement) throws(RulesError) -> SSLCheck.Client {
        try noMore(s, after: 1)
        var client = SSLCheck.Client()
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            let t = try self.one(st)
            func file() throws(RulesError) -> String {
                guard access(t.text, R_OK) == 0 else {
                    throw t.error("SSL \(st.name) \(t.text) cannot be read: \(String(cString: strerror(errno)).lowercased())")
                }
                return t.text
            }
            switch st.name {
            case "password": client.password = t.text
            case "ca": client.ca = try file()
            case "certificate": client.certificate = try file()
            case "key": client.key = try file()
            default: throw self.refuse(st, in: "SSL")
            }
        }
        if client.key != nil && client.certificate == nil {
            throw s.keyword.error("SSL: a key without a certificate")
        }
        return client
    }
}
