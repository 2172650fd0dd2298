import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
@testable import MasqCore
@testable import MasqHealth

/// A loopback HTTP server (NIOHTTP1's server pipeline) answering every GET with a fixed status and body,
/// or never answering at all.
final class TestServer: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let status: HTTPResponseStatus
    let body: String
    let silent: Bool

    init(status: HTTPResponseStatus, body: String, silent: Bool) {
        self.status = status
        self.body = body
        self.silent = silent
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data), !silent else { return }
        var head = HTTPResponseHead(version: .http1_1, status: status)
        head.headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    static func start(status: HTTPResponseStatus = .ok, body: String = "<h1>This is web1 page.</h1>\n",
                      silent: Bool = false) async throws -> Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(TestServer(status: status, body: body, silent: silent))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }
}

@Suite struct ProbeTests {
    let loopback = IPv4Address("127.0.0.1")!

    @Test func tcpCheckConnectsOrFails() async throws {
        let server = try await TestServer.start()
        let port = UInt16(server.localAddress!.port!)
        #expect(await Probe.run(.tcp, address: loopback, port: port, timeout: 2) == .success)
        try await server.close()
        #expect(!(await Probe.run(.tcp, address: loopback, port: port, timeout: 2)).succeeded)
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
        #expect(r == .failure("GET / on 127.0.0.1:\(port): status 500, expected 2xx"))
    }

    @Test func aSilentServerTimesOut() async throws {
        let server = try await TestServer.start(silent: true)
        defer { server.close(promise: nil) }
        let port = UInt16(server.localAddress!.port!)
        let start = ContinuousClock.now
        let r = await Probe.run(.http(urls: [.init(path: "/")], virtualHost: nil), address: loopback, port: port, timeout: 0.3)
        #expect(!r.succeeded)
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    /// keepalived's genhash of an empty body.
    @Test func md5OfNothing() {
        #expect(Probe.md5Hex([]) == "d41d8cd98f00b204e9800998ecf8427e")
    }
}
