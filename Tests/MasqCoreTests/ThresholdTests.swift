import Testing
@testable import MasqCore

/// ipvsadm `-x`/`-y` (IPVS IP_VS_DEST_F_OVERLOAD): set by `ip_vs_bind_dest` at the upper threshold,
/// cleared by `ip_vs_unbind_dest` below the lower one (3/4 of the upper when none), and honoured by
/// every scheduler as `isAvailable`.
@Suite struct ThresholdTests {
    /// Binds and unbinds connections one at a time; `steps` is the change in connections (+1 / −1),
    /// `expected` the flag after each.
    @Test(arguments: [
        // -x 2: overloaded at 2; 3/4 × 2 = 1.5, so clear at 1.
        (2, 0, [1, 1, -1, 1, -1, -1], [false, true, false, true, false, false]),
        // -x 4: clear below 3 (3 × 4 < 12 is false: clear at 2).
        (4, 0, [1, 1, 1, 1, -1, -1, 1, 1], [false, false, false, true, true, false, false, true]),
        // -x 3 -y 2: clear below 2, so at 1.
        (3, 2, [1, 1, 1, -1, -1, 1, 1], [false, false, true, true, false, false, true]),
        // -y alone (no upper): never overloaded.
        (0, 1, [1, 1, 1, -1], [false, false, false, false]),
        // -x 1: overloaded with one connection.
        (1, 0, [1, -1, 1], [true, false, true]),
    ] as [(UInt32, UInt32, [Int], [Bool])])
    func bindAndUnbind(upper: UInt32, lower: UInt32, steps: [Int], expected: [Bool]) {
        let d = dests([1])[0]
        d.setThresholds(upper: upper, lower: lower)
        var active = 0
        for (step, flag) in zip(steps, expected) {
            if step > 0 { d.bindConnection(active: active % 2 == 0) } else { d.unbindConnection(active: false) }
            active += step
            #expect(d.overloaded == flag, "after \(step) to \(active)")
            #expect(d.isAvailable == !flag)
        }
    }

    /// A template counts toward nothing but checks the thresholds on bind and unbind, as the kernel's.
    @Test func templatesCheckButDoNotCount() {
        let d = dests([1])[0]
        d.setThresholds(upper: 2, lower: 0)
        d.bindTemplate()
        d.bindTemplate()
        #expect(!d.overloaded && d.persistentConnections == 2)
        d.bindConnection(active: false)
        d.bindConnection(active: true)
        #expect(d.overloaded)
        d.unbindConnection(active: true)
        d.unbindTemplate()  // total 1: 4 < 6, clears
        #expect(!d.overloaded)
    }

    /// `__ip_vs_update_dest`: the flag clears when the upper threshold goes or is raised, and stands
    /// when it is kept or lowered (until the next connection ends).
    @Test(arguments: [
        (2, 0, true), (3, 0, false), (0, 0, false), (1, 0, true), (2, 1, true),
    ] as [(UInt32, UInt32, Bool)])
    func changingThresholds(upper: UInt32, lower: UInt32, stillOverloaded: Bool) {
        let d = dests([1])[0]
        d.setThresholds(upper: 2, lower: 0)
        d.bindConnection(active: true)
        d.bindConnection(active: true)
        #expect(d.overloaded)
        d.setThresholds(upper: upper, lower: lower)
        #expect(d.overloaded == stillOverloaded)
    }

    /// After a restart the flag is recomputed from the adopted counts.
    @Test(arguments: [(2, 2, true), (2, 3, true), (2, 1, false), (0, 9, false)] as [(UInt32, Int32, Bool)])
    func restoredFromCounts(upper: UInt32, connections: Int32, overloaded: Bool) {
        let d = dests([1], active: [connections])[0]
        d.setThresholds(upper: upper, lower: 0)
        d.restoreOverload()
        #expect(d.overloaded == overloaded)
    }

    /// Every scheduler leaves an overloaded server alone (the hashing ones refuse its clients, as the
    /// kernel's `is_unavailable` does without fallback).
    @Test(arguments: Schedulers.all.map { $0.name })
    func everySchedulerSkipsAnOverloadedServer(name: String) {
        let d = dests([5, 1, 1])
        d[0].overloaded = true
        let s = Schedulers.make(name, flags: name == "sh" || name == "mh" ? .fallback : [])!
        s.destinationsChanged(d)
        for n in 0..<200 {
            let input = SchedulingInput(clientHashWord: 0xC612_0000 &+ UInt32(n) &* 7919, clientPort: 40000,
                                        virtualAddressHashWord: 0xC612_0001, virtualPort: 80,
                                        destinationAddress: target(UInt32(n)), now: 0)
            let picked = s.select(from: d, for: input)
            #expect(picked?.id != 0, "\(name) picked the overloaded server")
        }
    }

    // MARK: Through the engine

    static let key = ServiceKey(proto: .tcp, address: vip, port: 80)

    func engine(_ servers: [RealServerSpec], scheduler: String = "rr") -> Engine {
        Engine(configuration: Configuration(services: [
            ServiceSpec(key: Self.key, scheduler: scheduler, realServers: servers),
        ]))
    }

    func syn(_ engine: Engine, _ port: UInt16, at t: Double = 1) -> Verdict {
        run(engine, c2v.tcp(port, 80, flags: .syn), at: t).0
    }

    /// The real server resets the connection (SYN_RECV → CLOSE, 10 s; a client's RST there is
    /// ignored, as IPVS's state table ignores it) and the clock passes its expiry.
    func reset(_ engine: Engine, _ port: UInt16, at t: Double) {
        _ = run(engine, PacketBuilder(source: web1, destination: client).tcp(80, port, flags: .rst), at: t)
        engine.advanceClock(to: Int64((t + 11) * 1e9))
    }

    @Test func aServerWithUpperThresholdTwoRefusesTheThirdConnection() {
        let e = engine([RealServerSpec(address: .v4(web1), port: 80, upperThreshold: 2)])
        let server = e.service(Self.key)!.destinations[0]
        #expect(syn(e, 1000) == .rewritten(.inbound))
        #expect(syn(e, 1001) == .rewritten(.inbound))
        #expect(server.overloaded)
        #expect(syn(e, 1002) == .drop(.noRealServer))
        // One ends: 1 connection, under 3/4 of 2: it takes connections again.
        reset(e, 1000, at: 2)
        #expect(server.inactiveConnections == 1)
        #expect(!server.overloaded)
        #expect(syn(e, 1003, at: 14) == .rewritten(.inbound))
        #expect(syn(e, 1004, at: 14) == .drop(.noRealServer))
    }

    @Test func theLowerThresholdHoldsTheServerBackUntilItIsReached() {
        let e = engine([RealServerSpec(address: .v4(web1), port: 80, upperThreshold: 3, lowerThreshold: 2)])
        let server = e.service(Self.key)!.destinations[0]
        for port: UInt16 in 1000...1002 { #expect(syn(e, port) == .rewritten(.inbound)) }
        #expect(syn(e, 1003) == .drop(.noRealServer))
        reset(e, 1000, at: 2)  // 2 left: not under -y 2
        #expect(server.overloaded)
        #expect(syn(e, 1004, at: 14) == .drop(.noRealServer))
        reset(e, 1001, at: 14)  // 1 left
        #expect(!server.overloaded)
        #expect(syn(e, 1005, at: 26) == .rewritten(.inbound))
    }

    @Test func anOverloadedServerSendsNewConnectionsToTheOthers() {
        let e = engine([RealServerSpec(address: .v4(web1), port: 80, upperThreshold: 1),
                        RealServerSpec(address: .v4(web2), port: 80)])
        let servers = e.service(Self.key)!.destinations
        for port: UInt16 in 1000..<1006 { #expect(syn(e, port) == .rewritten(.inbound)) }
        #expect(servers.map(\.inactiveConnections) == [1, 5])
    }

    /// A reload carries new thresholds: raising the upper one frees the server at once.
    @Test func aReloadRaisingTheThresholdFreesTheServer() {
        let e = engine([RealServerSpec(address: .v4(web1), port: 80, upperThreshold: 1)])
        #expect(syn(e, 1000) == .rewritten(.inbound))
        #expect(syn(e, 1001) == .drop(.noRealServer))
        e.apply(Configuration(services: [ServiceSpec(key: Self.key, scheduler: "rr", realServers: [
            RealServerSpec(address: .v4(web1), port: 80, upperThreshold: 3),
        ])]))
        let server = e.service(Self.key)!.destinations[0]
        #expect(server.upperThreshold == 3 && !server.overloaded)
        #expect(syn(e, 1002) == .rewritten(.inbound))
        #expect(syn(e, 1003) == .rewritten(.inbound))
        #expect(syn(e, 1004) == .drop(.noRealServer))
    }
}
