#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
@testable import MasqCore
@testable import MasqHealth

/// A loopback HTTP server (NIOHTTP1's server pipeline) answering every GET with a fixed status and body,
/// or never answering at all; with `checksHost`, 400 to a request whose Host header is not the
/// listener's own address:port (an IPv6 one in brackets, RFC 7230 section 5.4).
final class TestServer: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let status: HTTPResponseStatus
    let body: String
    let silent: Bool
    let checksHost: Bool
    private var hostMatched = true

    init(status: HTTPResponseStatus, body: String, silent: Bool, checksHost: Bool = false) {
        self.status = status
        self.body = body
        self.silent = silent
        self.checksHost = checksHost
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .head(let request) = part, checksHost, let local = context.channel.localAddress,
           let ip = local.ipAddress, let port = local.port {
            let expected = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
            hostMatched = request.headers["Host"] == [expected]
        }
        guard case .end = part, !silent else { return }
        var head = HTTPResponseHead(version: .http1_1, status: hostMatched ? status : .badRequest)
        head.headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    static func start(status: HTTPResponseStatus = .ok, body: String = "<h1>This is web1 page.</h1>\n",
                      silent: Bool = false, host: String = "127.0.0.1", checksHost: Bool = false) async throws -> Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        TestServer(status: status, body: body, silent: silent, checksHost: checksHost))
                }
            }
            .bind(host: host, port: 0).get()
    }
}

/// A loopback port that refuses connections for as long as this lives: bound, never listening, so the
/// kernel answers a SYN with RST and no other socket (a concurrent test's server) can take the port,
/// as it could a closed server's.
final class RefusedPort {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
            }
        }
        guard fd >= 0, bound else {
            let code = errno
            if fd >= 0 { close(fd) }
            throw IOError(errnoCode: code, reason: "binding a loopback port")
        }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }
}

@Suite struct ProbeTests {
    let loopback = IPAddress("127.0.0.1")!

    @Test func tcpCheckConnectsOrFails() async throws {
        let server = try await TestServer.start()
        let port = UInt16(server.localAddress!.port!)
        #expect(await Probe.run(.tcp, address: loopback, port: port, timeout: 2) == .success)
        try await server.close()
        let refused = try RefusedPort()
        #expect(!(await Probe.run(.tcp, address: loopback, port: refused.port, timeout: 2)).succeeded)
    }

    @Test func httpStatusAndDigest() async throws {
        let body = "<h1>This is web1 page.</h1>\n"
        let server = try await TestServer.start(body: body)
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        let digest = Probe.md5Hex(Array(body.utf8))
        func check(_ url: Probe.HTTPURL) async -> Probe.Result {
            await Probe.run(.http(urls: [url], virtualHost: nil), address: loopback, port: port, timeout: 2)
        }
        #expect(await check(.init(path: "/")) == .success)
        #expect(await check(.init(path: "/", statusCodes: [200...200], digest: digest)) == .success)
        #expect(!(await check(.init(path: "/", statusCodes: [404...404]))).succeeded)
        #expect(!(await check(.init(path: "/", digest: String(repeating: "0", count: 32)))).succeeded)
    }

    @Test func errorStatusFailsWithoutAnExpectedCode() async throws {
        let server = try await TestServer.start(status: .internalServerError, body: "oops")
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        let r = await Probe.run(.http(urls: [.init(path: "/")], virtualHost: nil), address: loopback, port: port, timeout: 2)
        #expect(r == .failure(ProbeFailure(check: "GET / on 127.0.0.1:\(port)", reason: .httpStatus(500, expected: "2xx"))))
        #expect(r.failureText == "GET / on 127.0.0.1:\(port): HTTP 500 (expected 2xx)")
    }

    @Test func aSilentServerTimesOut() async throws {
        let server = try await TestServer.start(silent: true)
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        let start = ContinuousClock.now
        let r = await Probe.run(.http(urls: [.init(path: "/")], virtualHost: nil), address: loopback, port: port, timeout: 0.3)
        #expect(r.failureText == "GET / on 127.0.0.1:\(port): timeout after 0.3 s")
        // A bound on hanging, not a timing test: the whole suite runs in parallel on as few as two
        // cores, where the probe's event loop may wait seconds for one (3.7 s seen in CI at 0.15.0).
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    /// A port nobody listens on: the kernel's RST reads as "connection refused" for both checkers.
    @Test func aClosedPortIsConnectionRefused() async throws {
        let refused = try RefusedPort()
        let port = refused.port
        let tcp = await Probe.run(.tcp, address: loopback, port: port, timeout: 2)
        #expect(tcp.failureText == "TCP connect to 127.0.0.1:\(port): connection refused")
        let http = await Probe.run(.http(urls: [.init(path: "/health")], virtualHost: nil), address: loopback, port: port, timeout: 2)
        #expect(http == .failure(ProbeFailure(check: "GET /health on 127.0.0.1:\(port)", reason: .connectionRefused)))
    }

    /// A status outside status_code is "HTTP 404" with what was expected; a wrong body, "digest mismatch".
    @Test func notFoundAndDigestInWords() async throws {
        let server = try await TestServer.start(status: .notFound, body: "gone")
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        func check(_ url: Probe.HTTPURL) async -> Probe.Result {
            await Probe.run(.http(urls: [url], virtualHost: nil), address: loopback, port: port, timeout: 2)
        }
        #expect(await check(.init(path: "/")).failureText == "GET / on 127.0.0.1:\(port): HTTP 404 (expected 2xx)")
        #expect(await check(.init(path: "/x", statusCodes: [200...200, 301...302])).failureText
            == "GET /x on 127.0.0.1:\(port): HTTP 404 (expected 200,301-302)")
        let wrong = String(repeating: "0", count: 32)
        #expect(await check(.init(path: "/", statusCodes: [404...404], digest: wrong)).failureText
            == "GET / on 127.0.0.1:\(port): digest mismatch: got \(Probe.md5Hex(Array("gone".utf8))), expected \(wrong)")
    }

    /// NIO's and the kernel's errors, as the log words them.
    @Test func errorsInWords() {
        func words(_ error: any Error, timeout: Double = 5) -> String { ProbeFailure.Reason(error, timeout: timeout).description }
        #expect(words(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == "connection refused")
        #expect(words(IOError(errnoCode: ETIMEDOUT, reason: "connect")) == "timeout after 5 s")
        #expect(words(IOError(errnoCode: ECONNRESET, reason: "read")) == "connection reset")
        #expect(words(IOError(errnoCode: EPIPE, reason: "write")) == "connection reset")
        #expect(words(IOError(errnoCode: EHOSTUNREACH, reason: "connect")) == "no route to host")
        #expect(words(IOError(errnoCode: ENETUNREACH, reason: "connect")) == "network unreachable")
        #expect(words(IOError(errnoCode: EACCES, reason: "connect")) == "permission denied")
        #expect(words(ChannelError.connectTimeout(.seconds(3)), timeout: 3) == "timeout after 3 s")
        #expect(words(ChannelError.eof) == "connection closed before the answer was complete")
        #expect(words(ResponseTimedOut(), timeout: 1.5) == "timeout after 1.5 s")
        #expect(words(HTTPParserError.invalidStatus) == "malformed HTTP response")
    }

    /// keepalived's genhash of an empty body.
    @Test func md5OfNothing() {
        #expect(Probe.md5Hex([]) == "d41d8cd98f00b204e9800998ecf8427e")
    }
}

extension Probe.Result {
    /// The failure as it is logged; nil for a success.
    var failureText: String? {
        if case .failure(let why) = self { return why.description }
        return nil
    }
}

/// TCP_CHECK and HTTP_GET over IPv6: to listeners these tests open on ::1 (loopback only).
@Suite struct IPv6ProbeTests {
    let loopback6 = IPAddress("::1")!

    @Test func tcpCheckConnectsToAnIPv6Listener() async throws {
        let server = try await TestServer.start(host: "::1")
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        #expect(await Probe.run(.tcp, address: loopback6, port: port, timeout: 2) == .success)
        // From a bound IPv6 source (keepalived's bindto).
        #expect(await Probe.run(.tcp, address: loopback6, port: port, bindTo: loopback6, timeout: 2) == .success)
    }

    @Test func httpGetSendsABracketedHost() async throws {
        // RFC 7230 section 5.4: Host is "[::1]:PORT" for an IPv6 literal; the listener answers 400 to
        // any other Host, so a virtualhost fails there, named by the bracketed endpoint.
        let server = try await TestServer.start(host: "::1", checksHost: true)
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        #expect(await Probe.run(.http(urls: [.init(path: "/")], virtualHost: nil), address: loopback6, port: port,
                                timeout: 2) == .success)
        let named = await Probe.run(.http(urls: [.init(path: "/")], virtualHost: "www.example"), address: loopback6,
                                    port: port, timeout: 2)
        #expect(named == .failure(ProbeFailure(check: "GET / on [::1]:\(port)", reason: .httpStatus(400, expected: "2xx"))))
    }
}
