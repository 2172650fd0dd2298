import Foundation
import Testing
@testable import MasqCore
@testable import MasqHealth

/// A temporary directory with a self-signed certificate and key (`openssl req -x509`) and a page.
final class TLSFiles {
    let directory: String
    var certificate: String { directory + "/cert.pem" }
    var key: String { directory + "/key.pem" }
    static let page = "<h1>This is web1 page over TLS.</h1>\n"

    init() throws {
        directory = NSTemporaryDirectory() + "masq-ssl-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.page.write(toFile: directory + "/index.html", atomically: true, encoding: .utf8)
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=www.name.test",
                             "-keyout", key, "-out", certificate]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        #expect(openssl.terminationStatus == 0)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

@Suite struct SSLCheckParseTests {
    static func ssl(_ body: String, before: String = "") -> String {
        checkerConfig("            SSL_GET {\n\(body)\n            }", port: 443, before: before)
    }

    /// keepalived's doc/samples/keepalived.conf.SSL_GET, its check.
    @Test func theSample() throws {
        let c = try #require(try checks(Self.ssl("""
            url {
              path /
              digest ff20ad2481f97b1754ef3e12ecd3a9cc
            }
            url {
              path /mrtg/
              digest 9b3a0c85a887a256d6939da88aabd8cd
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
            """)).first)
        guard case .ssl(let ssl) = c.kind else { Issue.record("not SSL_GET: \(c.kind)"); return }
        #expect(ssl.http.urls.map(\.path) == ["/", "/mrtg/"])
        #expect(ssl.http.urls.map(\.digest) == ["ff20ad2481f97b1754ef3e12ecd3a9cc", "9b3a0c85a887a256d6939da88aabd8cd"])
        #expect(!ssl.enableSNI && ssl.sniName == nil && ssl.client == nil)
        #expect(c.connectTimeout == 3 && c.retry == 3 && c.delayBeforeRetry == 3)
    }

    @Test func keepalivedsDefaults() throws {
        let c = try #require(try checks(Self.ssl("url {\npath /\n}")).first)
        #expect(c.retry == 1 && c.delayBeforeRetry == 3)
    }

    @Test func sniFromTheVirtualhostOrSniName() throws {
        let c = try checks(Self.ssl("enable_sni\nvirtualhost www.name.test\nurl {\npath /\n}"))
        guard case .ssl(let ssl) = c.first?.kind else { Issue.record("not SSL_GET"); return }
        #expect(ssl.enableSNI && ssl.serverName(for: ssl.http.urls[0]) == "www.name.test")
        let named = try checks(Self.ssl("sni_name sni.name.test\nurl {\npath /\nvirtualhost other.name.test\n}\ntls_compliant"))
        guard case .ssl(let n) = named.first?.kind else { Issue.record("not SSL_GET"); return }
        #expect(n.enableSNI && n.tlsCompliant && n.serverName(for: n.http.urls[0]) == "sni.name.test")
        let off = try checks(Self.ssl("enable_sni off\nvirtualhost www.name.test\nurl {\npath /\n}"))
        guard case .ssl(let o) = off.first?.kind else { Issue.record("not SSL_GET"); return }
        #expect(o.serverName(for: o.http.urls[0]) == nil)
    }

    @Test func theSSLBlockIsEverySSLGetsWhereverItIs() throws {
        let files = try TLSFiles()
        let block = "SSL {\ncertificate \(files.certificate)\nkey \(files.key)\npassword secret\nca \(files.certificate)\n}"
        for (before, after) in [(block, ""), ("", block)] {
            let config = try KeepalivedParser.parse(text: Self.ssl("url {\npath /\n}", before: before) + "\n" + after)
            guard case .ssl(let ssl) = config.virtualServers[0].realServers[0].checks.first?.kind else {
                Issue.record("not SSL_GET"); return
            }
            #expect(ssl.client == SSLCheck.Client(certificate: files.certificate, key: files.key, password: "secret",
                                                  ca: files.certificate))
            #expect(!config.warnings.contains { $0.message.contains("SSL") })
        }
    }

    @Test(arguments: [
        ("url {\npath /\n}\nregex x", "regex", "regex matching is not supported"),
        ("helo_name x\nurl {\npath /\n}", "helo_name", "unknown keyword helo_name in SSL_GET"),
        ("connect_timeout 1", "SSL_GET", "needs at least one url"),
        ("enable_sni maybe\nurl {\npath /\n}", "maybe", "invalid enable_sni"),
    ])
    func errors(body: String, token: String, message: String) throws {
        let e = try #require(parseError(Self.ssl(body)))
        #expect(e.token == token && e.message.contains(message) && e.line > 0)
    }

    @Test(arguments: ["certificate", "key", "ca"]) func anUnreadableFileIsAnError(keyword: String) throws {
        let text = Self.ssl("url {\npath /\n}", before: "SSL {\n\(keyword) /nonexistent/masq-test.pem\n}")
        let e = try #require(parseError(text))
        #expect(e.token == "/nonexistent/masq-test.pem" && e.line == 2 && e.file == "keepalived.conf")
        #expect(e.message.contains("cannot be read"))
    }
}

/// Against `openssl s_server -WWW` (files from its directory) with the test's own certificate.
@Suite(.serialized) struct SSLCheckProbeTests {
    static func server(_ files: TLSFiles, _ port: UInt16, extra: [String] = []) throws -> ExternalServer {
        try ExternalServer(port: port, ["openssl", "s_server", "-quiet", "-WWW", "-accept", "127.0.0.1:\(port)",
                                        "-cert", files.certificate, "-key", files.key] + extra,
                           directory: files.directory)
    }

    @Test func statusAndDigestOverTLS() async throws {
        let files = try TLSFiles()
        let port = ExternalServer.freePort()
        let server = try Self.server(files, port)
        defer { server.stop() }
        let digest = Probe.md5Hex(Array(TLSFiles.page.utf8))
        let good = SSLCheck(http: HTTPCheck(urls: [.init(path: "/index.html", digest: digest)]), enableSNI: true,
                            sniName: "www.name.test")
        let up = await ExternalServer.untilUp { await Probe.run(.ssl(good), address: loopback, port: port, timeout: 5) }
        #expect(up == .success)
        let wrong = SSLCheck(http: HTTPCheck(urls: [.init(path: "/index.html", digest: String(repeating: "0", count: 32))]))
        let mismatch = await Probe.run(.ssl(wrong), address: loopback, port: port, timeout: 5)
        #expect(mismatch == .failure(ProbeFailure(check: "GET /index.html on 127.0.0.1:\(port)",
                                                  reason: .digestMismatch(actual: digest, expected: String(repeating: "0", count: 32)))))
        // s_server -WWW answers a missing file with its own error text (no 404 status), so the page's
        // digest is what fails.
        let missing = await Probe.run(.ssl(SSLCheck(http: HTTPCheck(urls: [.init(path: "/none.html", digest: digest)]))),
                                      address: loopback, port: port, timeout: 5)
        #expect(!missing.succeeded, "a missing page passed")
        server.stop()
        let down = await Probe.run(.ssl(good), address: loopback, port: port, timeout: 3)
        #expect(down == .failure(ProbeFailure(check: "GET /index.html on 127.0.0.1:\(port)", reason: .connectionRefused)))
    }

    /// `-Verify 1`: the server requires a client certificate; the SSL block's is presented.
    @Test func theClientCertificateOfTheSSLBlock() async throws {
        let files = try TLSFiles()
        let port = ExternalServer.freePort()
        let server = try Self.server(files, port, extra: ["-Verify", "1", "-CAfile", files.certificate])
        defer { server.stop() }
        let url = HTTPCheck(urls: [.init(path: "/index.html")])
        let with = SSLCheck(http: url, client: .init(certificate: files.certificate, key: files.key))
        let up = await ExternalServer.untilUp { await Probe.run(.ssl(with), address: loopback, port: port, timeout: 5) }
        #expect(up == .success)
        let without = await Probe.run(.ssl(SSLCheck(http: url)), address: loopback, port: port, timeout: 5)
        #expect(!without.succeeded)
    }
}
