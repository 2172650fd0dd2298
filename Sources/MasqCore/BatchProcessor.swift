// The one driver path: a batch of packets from a source, through the engine with its prefetching,
// each verdict to a sink. The daemon's queue threads (an NFQUEUE receive batch in, a verdict batch
// out) and `masq replay` (a capture's records in, a capture out) both run their packets through
// `Engine.process(batch:into:)`, so the fixtures test the code production runs (glb-director's
// one processor with the packet source a small hook).
//
// The hooks are generic parameters, not existentials, and the call is inlinable, so it is specialised
// for the daemon's source and sink (no witness-table call). It runs inside `Engine.prefetching`, the
// loop the daemon ran before, whose per-packet body is a non-escaping closure (its context on the
// stack): no allocation per batch or per packet, what the old in-place loop cost.

/// Where a batch's packets come from.
public protocol PacketBatchSource {
    /// Packets in this batch.
    var count: Int { get }
    /// Packet `index`'s IPv4 bytes, writable in place (read ahead of time, for prefetching, too).
    func packet(_ index: Int) -> PacketBytes
    /// False for a record that carries no IPv4 (a capture's ARP or IPv6 frame; its `packet` should be
    /// empty): the engine then only moves its clock to `time(index)`. The daemon's packets all do.
    func entersEngine(_ index: Int) -> Bool
    /// What the engine must know about packet `index` besides its bytes (checksum state, truncation).
    func meta(_ index: Int) -> PacketMeta
    /// Packet `index`'s time on the engine's clock, nanoseconds (the daemon: one time per batch; a
    /// replay: each record's timestamp).
    func time(_ index: Int) -> Int64
}

/// Where each verdict goes.
public protocol VerdictSink: ~Copyable {
    /// Packet `index` as it arrived, before the engine sees it (a packet trace records it here).
    mutating func willProcess(_ index: Int, _ packet: PacketBytes)
    /// Packet `index`'s verdict (nil: not for the engine, see `PacketBatchSource.entersEngine`), its
    /// bytes already rewritten in place. False stops the batch: the packets after it are not
    /// processed (the daemon when a verdict send fails; the loop then ends with that error).
    mutating func take(_ verdict: Verdict?, of index: Int, _ packet: PacketBytes) -> Bool
}

extension PacketBatchSource {
    @inlinable public func entersEngine(_ index: Int) -> Bool { true }
}

extension VerdictSink where Self: ~Copyable {
    @inlinable public mutating func willProcess(_ index: Int, _ packet: PacketBytes) {}
}

extension Engine {
    /// The size of a batch: the datagrams of one NFQUEUE `recvmmsg`, and the records a replay reads
    /// before running them (so a replay's prefetching looks as far ahead as the daemon's).
    public static let batchSize = 64

    /// Runs every packet of `source` through `process` in order, prefetching ahead (see
    /// `prefetching`), and hands each verdict to `sink`. Returns how many packets were processed
    /// (fewer than `source.count` only if the sink stopped the batch).
    @inlinable
    @discardableResult
    public func process<Source: PacketBatchSource, Sink: VerdictSink & ~Copyable>(
        batch source: Source, into sink: inout Sink
    ) -> Int {
        let count = source.count
        var processed = 0
        var stopped = false
        prefetching(count: count, bytes: { source.packet($0) }) { i in
            guard !stopped else { return }
            let now = source.time(i)
            let packet = source.packet(i)
            guard source.entersEngine(i) else {
                advanceClock(to: now)
                processed += 1
                stopped = !sink.take(nil, of: i, packet)
                return
            }
            sink.willProcess(i, packet)
            let verdict = process(packet, meta: source.meta(i), now: now)
            processed += 1
            stopped = !sink.take(verdict, of: i, packet)
        }
        return processed
    }
}
