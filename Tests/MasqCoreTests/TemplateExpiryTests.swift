import MasqRules
import Testing
@testable import MasqCore

/// A persistence template re-armed by a new connection may move its expiry earlier; the wheel must then
/// move it to its new bucket, as `setState` does for a shortened connection timeout (issue 11, the table
/// bug the outside fuzz run found and `Fuzz/engine`'s expiry oracle reproduces).
@Suite struct TemplateExpiryTests {
    let ssh = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
    let reply = PacketBuilder(source: addr("198.19.0.201"), destination: addr("198.18.0.12"))

    func engine(persistence: UInt32) throws -> Engine {
        Engine(configuration: try RulesFile.parse("""
            -A -t 198.18.0.1:22 -s rr -p \(persistence)
            -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
            """))
    }

    func tick(_ engine: Engine, to seconds: Int64) {
        // One second at a time, as the daemon's timer does.
        var t = engine.now / ConnectionTable.nanosPerTick + 1
        while t <= seconds {
            engine.advanceClock(to: t * ConnectionTable.nanosPerTick)
            t += 1
        }
    }

    /// `-p` under the 60 s re-check: the re-check re-arms the template to 60 s after its first timeout,
    /// and the next connection's `-p` brings it back earlier than that.
    @Test func rearmedEarlierAfterTheRecheck() throws {
        let e = try engine(persistence: 30)
        #expect(run(e, ssh.tcp(40000, 22, flags: .syn), at: 0).0 == .rewritten(.inbound))
        tick(e, to: 31)  // the template's 30 s are up while it controls the SYN_RECV: re-armed to 91 s
        #expect(e.table.templateCount == 1)
        #expect(run(e, ssh.tcp(40001, 22, flags: .syn), at: 40).0 == .rewritten(.inbound))  // expiry now 70 s
        for port: UInt16 in [40000, 40001] {
            #expect(run(e, reply.tcp(22, port, flags: [.rst, .ack]), at: 40.5).0 == .rewritten(.outbound))
        }
        tick(e, to: 52)  // both CLOSE (10 s) and gone
        #expect(e.table.connectionCount == 0)
        #expect(e.table.templateCount == 1)
        tick(e, to: 71)  // the template's 70 s are up and it controls nothing: gone now, not at 92 s
        #expect(e.table.templateCount == 0)
        #expect(e.destinations[0]?.persistentConnections == 0)
    }

    /// A reload lowering `-p`: the next connection re-arms the template with the new, shorter timeout.
    @Test func rearmedEarlierAfterAReloadLoweringPersistence() throws {
        let e = try engine(persistence: 300)
        #expect(run(e, ssh.tcp(40000, 22, flags: .syn), at: 0).0 == .rewritten(.inbound))
        #expect(run(e, reply.tcp(22, 40000, flags: [.rst, .ack]), at: 0.5).0 == .rewritten(.outbound))
        e.apply(try RulesFile.parse("""
            -A -t 198.18.0.1:22 -s rr -p 20
            -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
            """))
        #expect(run(e, ssh.tcp(40001, 22, flags: .syn), at: 30).0 == .rewritten(.inbound))  // expiry now 50 s
        #expect(run(e, reply.tcp(22, 40001, flags: [.rst, .ack]), at: 30.5).0 == .rewritten(.outbound))
        tick(e, to: 42)
        #expect(e.table.connectionCount == 0)
        tick(e, to: 51)  // not at 301 s
        #expect(e.table.templateCount == 0)
    }

    /// The issue's sequence (`-p 10`): the second SYN moves the expiry from 71 s to 30 s, but the two
    /// connections it controls then live until 31 s, so the template's 30 s bucket finds them alive and
    /// re-checks it 60 s later (IPVS does the same), and it goes at 92 s; without the re-bucketing it sat
    /// in the 72 s bucket instead. What matters is that no live entry is ever past its expiry second
    /// unseen, which is what the fuzz oracle checks after every step.
    @Test func issueSequenceNeverLeavesAnOverdueEntry() throws {
        let e = try engine(persistence: 10)
        func noOverdueEntry() -> Bool {
            var ok = true
            e.table.forEachLive { _, c in
                if c.expires / ConnectionTable.nanosPerTick < e.now / ConnectionTable.nanosPerTick { ok = false }
            }
            return ok
        }
        #expect(run(e, ssh.tcp(40000, 22, flags: .syn), at: 0).0 == .rewritten(.inbound))
        tick(e, to: 11)
        #expect(run(e, ssh.tcp(40001, 22, flags: .syn), at: 20).0 == .rewritten(.inbound))
        for port: UInt16 in [40000, 40001] {
            #expect(run(e, reply.tcp(22, port, flags: [.rst, .ack]), at: 21).0 == .rewritten(.outbound))
        }
        var firstOverdue: Int64?
        for second in Int64(22)...95 {
            tick(e, to: second)
            if firstOverdue == nil && !noOverdueEntry() { firstOverdue = second }
        }
        #expect(firstOverdue == nil, "an entry past its expiry second was still in the table")
        #expect(e.table.templateCount == 0)
        #expect(e.table.connectionCount == 0)
    }
}
