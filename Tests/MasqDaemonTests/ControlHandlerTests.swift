import Foundation
import Logging
import MasqControl
import MasqRules
import NIOCore
import NIOEmbedded
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// The control socket's handler on NIO's EmbeddedChannel, over a control plane with no iptables: what
/// a connection carries in, what comes out, and when.
@Suite struct ControlHandlerTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1

        """

    static func core() throws -> ControlPlane {
        let configuration = try RulesFile.parse(rules)
        return ControlPlane(options: DaemonOptions(rulesPath: "/nonexistent"), shared: SharedEngine(Engine(configuration: configuration)),
                          configuration: configuration, iptables: nil, logger: Logger(label: "test"))
    }

    /// A connected channel with the handler, its peer allowed or not.
    static func channel(_ core: ControlPlane, peerAllowed: Bool = true) throws -> EmbeddedChannel {
        let handler = ControlHandler(dispatcher: ControlDispatcher(core: core)) { channel in
            channel.eventLoop.makeSucceededFuture(peerAllowed)
        }
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: try SocketAddress(unixDomainSocketPath: "/tmp/masq-test.sock")).wait()
        return channel
    }

    static func send(_ channel: EmbeddedChannel, _ bytes: [UInt8]) throws {
        try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
    }

    /// The client's half-close: the end of its request.
    static func halfClose(_ channel: EmbeddedChannel) {
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    static func reply(_ channel: EmbeddedChannel) throws -> ControlReply? {
        var all: [UInt8] = []
        while let part = try channel.readOutbound(as: ByteBuffer.self) { all += part.readableBytesView }
        return all.isEmpty ? nil : ControlFraming.decodeReply(all)
    }

    /// One request, cut in two reads: no answer until the client half-closes, then one answer and the
    /// connection closed.
    @Test func answersOnceTheClientHalfCloses() throws {
        let core = try Self.core()
        let channel = try Self.channel(core)
        let request = ControlFraming.encode(.save)
        try Self.send(channel, Array(request[..<5]))
        try Self.send(channel, Array(request[5...]))
        #expect(try Self.reply(channel) == nil)
        #expect(channel.isActive)
        Self.halfClose(channel)
        #expect(try Self.reply(channel) == .text(RulesFile.format(core.currentConfiguration)))
        #expect(!channel.isActive)
    }

    @Test func stateAndAnEditThroughTheSocket() throws {
        let core = try Self.core()
        var channel = try Self.channel(core)
        try Self.send(channel, ControlFraming.encode(.apply(try IPVSCommandParser.parse(
            ["-a", "-t", "198.18.0.1:80", "-r", "198.19.0.202:80", "-m", "-w", "2"]))))
        Self.halfClose(channel)
        #expect(try Self.reply(channel) == .done)

        channel = try Self.channel(core)
        try Self.send(channel, ControlFraming.encode(.state))
        Self.halfClose(channel)
        let state = try #require(try Self.reply(channel)).requireState()
        #expect(state == core.state())
        #expect(state.services.first?.destinations.map(\.address) == ["198.19.0.201", "198.19.0.202"])
    }

    /// IPVS's refusal comes back as its code and libipvs's words; nothing changes.
    @Test func aRefusedEditIsTypedAndChangesNothing() throws {
        let core = try Self.core()
        let before = core.currentConfiguration
        let channel = try Self.channel(core)
        try Self.send(channel, ControlFraming.encode(.apply(try IPVSCommandParser.parse(["-A", "-t", "198.18.0.1:80"]))))
        Self.halfClose(channel)
        #expect(try Self.reply(channel) == .failure(ControlError(.serviceExists, "Service already exists (at '198.18.0.1:80')")))
        #expect(core.currentConfiguration == before)
    }

    @Test func aBadRequestIsRefused() throws {
        let channel = try Self.channel(try Self.core())
        try Self.send(channel, Array("apply -C\n".utf8))  // the old text protocol
        Self.halfClose(channel)
        guard case .failure(let error) = try Self.reply(channel) else {
            Issue.record("a text request was accepted")
            return
        }
        #expect(error.code == .badRequest)
        #expect(!channel.isActive)
    }

    @Test func anEmptyRequestIsRefused() throws {
        let channel = try Self.channel(try Self.core())
        Self.halfClose(channel)
        #expect(try Self.reply(channel) == .failure(ControlError(.badRequest, "empty request")))
    }

    /// More than 16 MiB: refused at once, without waiting for the end, and the rest is not read.
    @Test func theSizeLimit() throws {
        let channel = try Self.channel(try Self.core())
        let chunk = [UInt8](repeating: UInt8(ascii: " "), count: 1 << 20)
        for _ in 0..<(ControlFraming.maximumRequest >> 20) { try Self.send(channel, chunk) }
        #expect(try Self.reply(channel) == nil)
        try Self.send(channel, [UInt8(ascii: " ")])
        #expect(try Self.reply(channel) == .failure(ControlError(.requestTooLarge, "request too large")))
        #expect(!channel.isActive)
    }

    /// Another user's request is read to its end and refused; the control plane never sees it.
    @Test func aPeerThatIsNeitherRootNorTheDaemonsUser() throws {
        let core = try Self.core()
        let channel = try Self.channel(core, peerAllowed: false)
        try Self.send(channel, ControlFraming.encode(.apply(try IPVSCommandParser.parse(["-C"]))))
        #expect(try Self.reply(channel) == nil)
        Self.halfClose(channel)
        #expect(try Self.reply(channel) == .failure(ControlError(.permissionDenied, "Permission denied (you must be root)")))
        #expect(!core.currentConfiguration.services.isEmpty)
    }

    /// A channel that is not a socket cannot show credentials: refused.
    @Test func noCredentialsNoService() throws {
        let channel = EmbeddedChannel(handler: ControlHandler(dispatcher: ControlDispatcher(core: try Self.core())))
        try channel.connect(to: try SocketAddress(unixDomainSocketPath: "/tmp/masq-test.sock")).wait()
        try Self.send(channel, ControlFraming.encode(.state))
        Self.halfClose(channel)
        #expect(try Self.reply(channel) == .failure(ControlError(.permissionDenied, "Permission denied (you must be root)")))
    }
}
