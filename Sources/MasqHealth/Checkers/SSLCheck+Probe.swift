#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore
import NIOCore
import NIOPosix
import NIOSSL

// The probe of SSLCheck.swift's checker (kept apart from its settings and parser, which the
// keepalived fuzz target builds without SwiftNIO).

extension Probe {
    /// One SSL_GET probe: each url in turn, as HTTP_GET, over a TLS connection of its own.
    static func ssl(_ check: SSLCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        let context: NIOSSLContext
        do {
            context = try tlsContext(check.client)
        } catch {
            return .failure(ProbeFailure(check: "SSL_GET on \(address.endpoint(port))",
                                         reason: .other("cannot set up TLS: \(error)")))
        }
        for url in check.http.urls {
            let serverName = check.serverName(for: url)
            let result = await get(url, address: address, port: port, host: nil, bindTo: bindTo, timeout: timeout, group: group) { channel in
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
            }
            if !result.succeeded { return result }
        }
        return .success
    }

    /// keepalived's `build_ssl_ctx`: no verification of the server; the client's certificate and key.
    static func tlsContext(_ client: SSLCheck.Client?) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        if let certificate = client?.certificate {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            let keyFile = client?.key ?? certificate  // SSL_CTX_use_certificate_chain_file's PEM may hold the key
            if let password = client?.password {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem) { setter in
                    setter(Array(password.utf8))
                })
            } else {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            }
        }
        return try NIOSSLContext(configuration: configuration)
    }
}
