/// Idle timeouts per state, in seconds; IPVS's defaults unless `--set tcp tcpfin udp` changed them.
public struct Timeouts: Equatable, Sendable {
    public var seconds: [UInt32]

    public init() {
        seconds = [UInt32](repeating: 0, count: ConnectionState.count)
        for table in TransportProtocols.all {
            for (state, value) in table.defaultTimeouts { seconds[Int(state.rawValue)] = value }
        }
    }

    /// A state no protocol has (only an adopted table's damaged entry can carry one) reads 0: the
    /// entry expires at once instead of trapping the packet path.
    @inlinable public subscript(state: ConnectionState) -> UInt32 {
        get { Int(state.rawValue) < seconds.count ? seconds[Int(state.rawValue)] : 0 }
        set { seconds[Int(state.rawValue)] = newValue }
    }

    /// `ipvsadm --set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP; 0 leaves a value as it is.
    public mutating func set(tcp: UInt32, tcpFin: UInt32, udp: UInt32) {
        if tcp != 0 { self[.established] = tcp }
        if tcpFin != 0 { self[.finWait] = tcpFin }
        if udp != 0 { self[.udp] = udp }
    }
}
