import MasqCore
import NIOCore
import NIOPosix

// The probe of SMTPCheck.swift's checker (kept apart from its settings and parser, which the
// keepalived fuzz target builds without SwiftNIO).

extension Probe {
    /// One SMTP_CHECK probe: greeting 220, HELO → 250, QUIT → a reply, within `timeout` in all.
    static func smtp(_ check: SMTPCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        let what = "SMTP on \(address.endpoint(port))"
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: Void.self)
        let dialogue = NIOLoopBoundBox.makeBoxSendingValue(SMTPDialogue(helo: check.heloName, promise: promise), eventLoop: eventLoop)
        do {
            let channel = try await bootstrap(eventLoop, bindTo: bindTo, timeout: .nanoseconds(Int64(timeout * 1e9)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(dialogue.value) }
                }
                .connect(to: socketAddress(address, port)).get()
            let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) { dialogue.value.fail(ResponseTimedOut()) }
            defer {
                timer.cancel()
                channel.close(promise: nil)
            }
            try await promise.futureResult.get()
            return .success
        } catch {
            eventLoop.execute { dialogue.value.fail(error) }
            return .failure(ProbeFailure(check: what, reason: .init(error, timeout: timeout)))
        }
    }
}

/// The client side of check_smtp.c's dialogue, reply by reply (RFC 5321 section 4.2: a reply is
/// lines `NNN-text` ending with `NNN text`). Lives on its channel's event loop.
final class SMTPDialogue: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case greeting, helo, quit }
    private var state = State.greeting
    private let helo: String
    private let promise: EventLoopPromise<Void>
    private var completed = false
    private var line: [UInt8] = []
    /// A reply longer than this is no SMTP server's (RFC 5321 section 4.5.3.1.5: 512 per line).
    private static let maximumReply = 64 << 10
    private var replyBytes = 0

    init(helo: String, promise: EventLoopPromise<Void>) {
        self.helo = helo
        self.promise = promise
    }

    func fail(_ error: Error) {
        guard !completed else { return }
        completed = true
        promise.fail(error)
    }

    private func finish(_ context: ChannelHandlerContext) {
        guard !completed else { return }
        completed = true
        promise.succeed(())
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView {
            guard !completed else { return }
            replyBytes += 1
            guard replyBytes <= Self.maximumReply else {
                fail(ProbeFailure(check: "", reason: .other("SMTP reply too long")))
                return
            }
            if byte == UInt8(ascii: "\n") {
                handleLine(context)
                line.removeAll(keepingCapacity: true)
            } else if byte != UInt8(ascii: "\r") {
                line.append(byte)
            }
        }
    }

    /// `smtp_get_status`: three digits, then a space (the last line) or the end; `-` continues.
    private func handleLine(_ context: ChannelHandlerContext) {
        let digits = line.prefix(3)
        guard digits.count == 3, digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let code = Int(String(decoding: digits, as: UTF8.self)) else {
            fail(ProbeFailure(check: "", reason: .other("malformed SMTP reply \"\(String(decoding: line.prefix(80), as: UTF8.self))\"")))
            return
        }
        if line.count > 3 && line[3] == UInt8(ascii: "-") { return }  // more lines of this reply
        replyBytes = 0
        switch state {
        case .greeting:
            guard code == 220 else { return fail(ProbeFailure(check: "", reason: .other("bad SMTP greeting \(code) (220 expected)"))) }
            state = .helo
            send("HELO \(helo)\r\n", context)
        case .helo:
            guard code == 250 else { return fail(ProbeFailure(check: "", reason: .other("bad HELO reply \(code) (250 expected)"))) }
            state = .quit
            send("QUIT\r\n", context)
        case .quit:
            finish(context)  // keepalived accepts any reply to QUIT
        }
    }

    private func send(_ text: String, _ context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: text.utf8.count)
        out.writeString(text)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.close(promise: nil)
    }
}
