/// IPVS's rate estimator (net/netfilter/ipvs/ip_vs_est.c) for one set of counters, what
/// `ipvsadm --rate` shows: at each sample the counters' increase since the last one becomes a
/// per-second rate, smoothed as `avg += (rate - avg) / 4` (a moving average with weight 2^-2: a step
/// in traffic shows a quarter of its size at the first sample and 90 % after eight).
///
/// The engine keeps one in each service and real server and samples them all every 2 s, on the
/// daemon's timer (`Engine.estimateRates(at:)`); zeroing the counters (`ipvsadm -Z`) starts their
/// estimators over, as `ip_vs_zero_estimator` does. IPVS keeps the averages in fixed point and assumes
/// the timer's 2 s; masq divides by the time that has really passed, in floating point.
public struct RateEstimator: Equatable, Sendable {
    /// The counters at the last sample: a new estimator starts from zero counters, as a new service's,
    /// real server's or zeroed counters do.
    private var last = TrafficCounters()
    private var connections = 0.0, packetsIn = 0.0, packetsOut = 0.0, bytesIn = 0.0, bytesOut = 0.0

    public init() {}

    /// Takes a sample of `counters`, `seconds` after the previous one; 0 seconds (the first sample of
    /// all) only takes note of the counters.
    public mutating func sample(_ counters: TrafficCounters, seconds: Double) {
        if seconds > 0 {
            func step(_ average: inout Double, _ now: UInt64, _ then: UInt64) {
                average += (Double(now &- then) / seconds - average) / 4
            }
            step(&connections, counters.connections, last.connections)
            step(&packetsIn, counters.packetsIn, last.packetsIn)
            step(&packetsOut, counters.packetsOut, last.packetsOut)
            step(&bytesIn, counters.bytesIn, last.bytesIn)
            step(&bytesOut, counters.bytesOut, last.bytesOut)
        }
        last = counters
    }

    /// The smoothed rates, per second, rounded to whole units.
    public var rates: TrafficRates {
        TrafficRates(connectionsPerSecond: UInt64(connections.rounded()), packetsInPerSecond: UInt64(packetsIn.rounded()),
                     packetsOutPerSecond: UInt64(packetsOut.rounded()), bytesInPerSecond: UInt64(bytesIn.rounded()),
                     bytesOutPerSecond: UInt64(bytesOut.rounded()))
    }
}

/// Per-second rates of a service or real server (ipvsadm `--rate`: CPS, InPPS, OutPPS, InBPS, OutBPS).
/// Codable: the control protocol's `state` answer carries them as they are.
public struct TrafficRates: Codable, Equatable, Sendable {
    public var connectionsPerSecond: UInt64 = 0
    public var packetsInPerSecond: UInt64 = 0
    public var packetsOutPerSecond: UInt64 = 0
    public var bytesInPerSecond: UInt64 = 0
    public var bytesOutPerSecond: UInt64 = 0

    public init(connectionsPerSecond: UInt64 = 0, packetsInPerSecond: UInt64 = 0, packetsOutPerSecond: UInt64 = 0,
                bytesInPerSecond: UInt64 = 0, bytesOutPerSecond: UInt64 = 0) {
        self.connectionsPerSecond = connectionsPerSecond
        self.packetsInPerSecond = packetsInPerSecond
        self.packetsOutPerSecond = packetsOutPerSecond
        self.bytesInPerSecond = bytesInPerSecond
        self.bytesOutPerSecond = bytesOutPerSecond
    }
}
