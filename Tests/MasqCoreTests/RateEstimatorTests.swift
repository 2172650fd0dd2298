import MasqRules
import Testing
@testable import MasqCore

/// The rate estimator on a fake clock, against IPVS's own arithmetic (ip_vs_est.c's fixed point).
@Suite struct RateEstimatorTests {
    static let second: Int64 = 1_000_000_000

    /// ip_vs_est.c's `estimation_timer` for one counter, every 2 s: packets and connections scaled by
    /// 2^10 (`delta << 9`, the 2 s folded in), bytes by 2^5 (`delta << 4`), `avg += (rate - avg) >> 2`,
    /// read back rounded (`ip_vs_read_estimator`).
    struct IPVSEstimator {
        var last: UInt64 = 0
        var average: Int64 = 0
        let bytes: Bool

        mutating func sample(_ counter: UInt64) -> UInt64 {
            let rate = Int64(counter - last) << (bytes ? 4 : 9)
            last = counter
            average += (rate - average) >> 2
            return bytes ? UInt64((average + 0xF) >> 5) : UInt64((average + 0x1FF) >> 10)
        }
    }

    func counters(packets: UInt64, bytes: UInt64, connections: UInt64 = 0) -> TrafficCounters {
        var c = TrafficCounters()
        c.connections = connections
        c.packetsIn = packets
        c.packetsOut = packets / 2
        c.bytesIn = bytes
        c.bytesOut = bytes / 2
        return c
    }

    @Test func aSteadyRateConvergesAsIPVSs() {
        var estimator = RateEstimator()
        var packets = IPVSEstimator(bytes: false), bytes = IPVSEstimator(bytes: true)
        estimator.sample(TrafficCounters(), seconds: 0)
        for n in 1...60 {
            // 1000 packets and 1.5 MB a second, 10 connections a second, sampled every 2 s.
            let c = counters(packets: UInt64(n) * 2000, bytes: UInt64(n) * 3_000_000, connections: UInt64(n) * 20)
            estimator.sample(c, seconds: 2)
            let r = estimator.rates
            // masq's floating point and IPVS's fixed point agree to their rounding.
            let ipvsPackets = packets.sample(c.packetsIn), ipvsBytes = bytes.sample(c.bytesIn)
            #expect(abs(Int64(r.packetsInPerSecond) - Int64(ipvsPackets)) <= 1, "sample \(n)")
            #expect(abs(Int64(r.bytesInPerSecond) - Int64(ipvsBytes)) <= 1, "sample \(n)")
        }
        #expect(estimator.rates == TrafficRates(connectionsPerSecond: 10, packetsInPerSecond: 1000,
                                                packetsOutPerSecond: 500, bytesInPerSecond: 1_500_000,
                                                bytesOutPerSecond: 750_000))
    }

    /// avg += (rate − avg) / 4 at each 2-second sample: a step shows a quarter at once, then closes a
    /// quarter of what is left each time; silence decays the same way.
    @Test func twoSecondSmoothing() {
        var estimator = RateEstimator()
        estimator.sample(TrafficCounters(), seconds: 0)  // the first sample only takes note
        #expect(estimator.rates == TrafficRates())
        var expected = [UInt64]()
        var average = 0.0
        for n in 1...4 {
            average += (1000 - average) / 4
            expected.append(UInt64(average.rounded()))
            estimator.sample(counters(packets: UInt64(n) * 2000, bytes: 0), seconds: 2)
            #expect(estimator.rates.packetsInPerSecond == expected.last)
        }
        #expect(expected == [250, 438, 578, 684])
        // Traffic stops: each sample keeps three quarters.
        estimator.sample(counters(packets: 8000, bytes: 0), seconds: 2)
        #expect(estimator.rates.packetsInPerSecond == UInt64((average * 3 / 4).rounded()))
    }

    /// The rate is per second of the time that really passed, not per sample.
    @Test func ratesArePerSecondOfElapsedTime() {
        var estimator = RateEstimator()
        estimator.sample(TrafficCounters(), seconds: 0)
        for n in 1...60 { estimator.sample(counters(packets: UInt64(n) * 4000, bytes: 0), seconds: 4) }
        #expect(estimator.rates.packetsInPerSecond == 1000)
    }

    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m
        """

    /// 100 datagrams a second to each service for `seconds` seconds after `start`, the rates sampled
    /// every 2 s as the daemon's timer does.
    func traffic(_ engine: Engine, from start: Int, seconds: Int) {
        for s in stride(from: start, to: start + seconds, by: 2) {
            for i in 0..<200 {
                let t = Double(s) + Double(i) / 100
                _ = run(engine, c2v.udp(5000, 53), at: t)
                _ = run(engine, c2v.tcp(40000, 80, flags: i == 0 && s == 0 ? .syn : .ack), at: t)
            }
            engine.estimateRates(at: Int64(s + 2) * Self.second)
        }
    }

    @Test func theEngineEstimatesEveryServiceAndRealServer() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        engine.estimateRates(at: 0)
        traffic(engine, from: 0, seconds: 60)
        for service in engine.services {
            #expect(service.rates.packetsInPerSecond == 100)
            #expect(service.destinations[0].rates.packetsInPerSecond == 100)
        }
    }

    /// `ipvsadm -Z` of one service: its rates and its real servers' start over from zero, the other
    /// service's go on (IPVS `ip_vs_zero_stats` → `ip_vs_zero_estimator`).
    @Test func zeroingRestartsTheEstimators() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        engine.estimateRates(at: 0)
        traffic(engine, from: 0, seconds: 60)
        let web = ServiceKey(proto: .tcp, address: vip, port: 80), dns = ServiceKey(proto: .udp, address: vip, port: 53)
        engine.zeroCounters(web)
        #expect(engine.service(web)!.rates == TrafficRates())
        #expect(engine.service(web)!.destinations[0].rates == TrafficRates())
        #expect(engine.service(dns)!.rates.packetsInPerSecond == 100)
        // The first sample after zeroing counts from zero, a quarter of the way up as at the start.
        traffic(engine, from: 60, seconds: 2)
        #expect(engine.service(web)!.rates.packetsInPerSecond == 25)
        #expect(engine.service(web)!.destinations[0].rates.packetsInPerSecond == 25)
        #expect(engine.service(dns)!.rates.packetsInPerSecond == 100)
    }
}
