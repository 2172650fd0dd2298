import MasqCore

/// What a replay did, for its summary.
public struct ReplaySummary: Sendable {
    public var records: UInt64 = 0
    public var written: UInt64 = 0
    /// Frames that carry neither IPv4 nor IPv6 (ARP, LLDP, …): written untouched without entering
    /// the engine.
    public var notIP: UInt64 = 0
    /// ICMP port-unreachable answers written (included in `written`).
    public var unreachableWritten: UInt64 = 0
    public var engine = EngineCounters()
    /// The verdict of each record in input order (`nil` for frames that carry no IP).
    public var verdicts: [Verdict?] = []

    public init() {}

    /// The summary `masq replay` prints.
    public var text: String {
        func row(_ label: String, _ value: UInt64, _ note: String = "") -> String {
            (label + ":").padding(toLength: 21) + "\(value)" + note
        }
        let untouchedNote = notIP > 0 || engine.truncated > 0
            ? " (\(notIP) not IP, \(engine.truncated) truncated by the capture)" : ""
        var lines = [
            row("packets in", records),
            row("rewritten inbound", engine.rewrittenInbound),
            row("rewritten outbound", engine.rewrittenOutbound),
            row("untouched", engine.untouched + notIP, untouchedNote),
            row("dropped", engine.droppedTotal),
        ]
        for reason in DropReason.allCases where engine[reason] > 0 {
            lines.append(row("  " + reason.description, engine[reason]))
        }
        let templates = engine.templatesCreated > 0 ? " (+\(engine.templatesCreated) persistence templates)" : ""
        lines.append(row("flows created", engine.connectionsCreated, templates))
        // Only when the table filled: the fixtures' summaries stay as they were.
        for reason in EvictionReason.allCases where engine[reason] > 0 {
            lines.append(row("evicted " + reason.description, engine[reason]))
        }
        lines.append(row("packets written", written, unreachableWritten > 0
            ? " (\(unreachableWritten) of them ICMP port unreachable to clients no real server could take)" : ""))
        return lines.joined(separator: "\n")
    }
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}

/// Runs every record of a capture through the engine in order, with capture timestamps as the clock,
/// and writes each accepted one (rewritten or not) to `output` with its original timestamp. The
/// records go through `Engine.process(batch:into:)` in batches of `Engine.batchSize`, the call the
/// daemon's queue threads make, so a replay runs the packet path production runs.
///
/// `fwmark`: the firewall mark every record gets (a capture holds none), as if the admin's `-j MARK`
/// rule matched every packet, so firewall-mark services (`-f`) can be replayed; 0: unmarked.
public func replay(_ engine: Engine, input: String, output: String?, recordVerdicts: Bool = false, fwmark: UInt32 = 0)
    throws(CaptureError) -> ReplaySummary {
    var reader = try CaptureReader(path: input)
    let writer: CaptureWriter? = try output.map { (path: String) throws(CaptureError) -> CaptureWriter in
        try CaptureWriter(path: path, linkType: reader.linkType)
    }
    var sink = ReplaySink(engine: engine, writer: writer, input: input, linkType: reader.linkType,
                          recordVerdicts: recordVerdicts)
    sink.batch.mark = fwmark
    defer { sink.batch.deallocate() }
    // The sink owns the batch (it writes the records out); the engine reads a copy of the view.
    while sink.batch.fill(from: &reader) {
        engine.process(batch: sink.batch, into: &sink)
        if let failure = sink.failure { throw failure }
    }
    // A capture that breaks off (a truncated file) fails after every whole record before the break
    // went through and was written, as a one-by-one replay would.
    if let failure = sink.batch.readFailure { throw failure }
    try sink.writer?.flush()
    sink.summary.engine = engine.counters
    return sink.summary
}

/// Up to `Engine.batchSize` records of a capture, copied out of the reader's reused buffer into one
/// of the batch's own (grown as needed, kept from batch to batch).
struct ReplayBatch: PacketBatchSource {
    struct Record {
        var offset: Int
        var length: Int
        var wireLength: Int
        var timestamp: Int64
        /// Where the IP header (IPv4 or IPv6) starts in the frame; nil for a frame that carries none.
        /// Both families go to the same engine call, which reads the version.
        var ipOffset: Int?
        /// tshark's frame.number, for error messages.
        var number: UInt64
    }

    private var storage = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
    private var capacity = 1 << 16
    private(set) var records: [Record] = []
    /// Why the capture could not be read further, once it could not: the batch before it still runs.
    private(set) var readFailure: CaptureError?
    /// The mark every record carries (`replay`'s `fwmark`).
    var mark: UInt32 = 0

    init() { records.reserveCapacity(Engine.batchSize) }

    func deallocate() { storage.deallocate() }

    /// Reads the next batch; false at the end of the capture, or after a read failure (`readFailure`),
    /// once the records read before it have been handed out.
    mutating func fill(from reader: inout CaptureReader) -> Bool {
        records.removeAll(keepingCapacity: true)
        guard readFailure == nil else { return false }
        var used = 0
        while records.count < Engine.batchSize {
            let next: CaptureRecord?
            do throws(CaptureError) {
                next = try reader.next()
            } catch {
                readFailure = error
                break
            }
            guard let record = next else { break }
            let length = record.bytes.count
            if used + length > capacity {
                capacity = max(capacity * 2, used + length)
                let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                grown.copyMemory(from: storage, byteCount: used)
                storage.deallocate()
                storage = grown
            }
            (storage + used).copyMemory(from: record.bytes.base, byteCount: length)
            records.append(Record(offset: used, length: length, wireLength: record.wireLength,
                                  timestamp: record.timestamp, ipOffset: reader.linkType.ipOffset(record.bytes),
                                  number: reader.recordNumber))
            used += length
        }
        return !records.isEmpty
    }

    /// Record `index` as captured, link-layer header and all.
    func frame(_ index: Int) -> PacketBytes {
        PacketBytes(base: storage + records[index].offset, count: records[index].length)
    }

    var count: Int { records.count }

    func packet(_ index: Int) -> PacketBytes {
        let record = records[index]
        return frame(index).slice(from: record.ipOffset ?? record.length)
    }

    func entersEngine(_ index: Int) -> Bool { records[index].ipOffset != nil }

    func meta(_ index: Int) -> PacketMeta {
        PacketMeta(truncated: records[index].wireLength > records[index].length, mark: mark)
    }

    func time(_ index: Int) -> Int64 { records[index].timestamp }
}

/// Writes each accepted record, and right after it the ICMP port unreachable answers the daemon would
/// send for it (to the client, in the packet's own link framing turned around).
struct ReplaySink: VerdictSink, ~Copyable {
    let engine: Engine
    let writer: CaptureWriter?
    let input: String
    let linkType: LinkType
    let recordVerdicts: Bool
    /// The records in flight.
    var batch = ReplayBatch()
    var summary = ReplaySummary()
    /// The first write that failed; the replay stops with it.
    var failure: CaptureError?

    init(engine: Engine, writer: consuming CaptureWriter?, input: String, linkType: LinkType, recordVerdicts: Bool) {
        self.engine = engine
        self.writer = writer
        self.input = input
        self.linkType = linkType
        self.recordVerdicts = recordVerdicts
    }

    mutating func take(_ verdict: Verdict?, of index: Int, _ packet: PacketBytes) -> Bool {
        do throws(CaptureError) {
            try write(verdict, of: index)
            return true
        } catch {
            failure = error
            return false
        }
    }

    private mutating func write(_ verdict: Verdict?, of index: Int) throws(CaptureError) {
        let record = batch.records[index]
        let frame = batch.frame(index)
        summary.records += 1
        if verdict == nil { summary.notIP += 1 }
        if recordVerdicts { summary.verdicts.append(verdict) }
        if verdict?.accepts ?? true {
            try writer?.write(frame, wireLength: record.wireLength, timestamp: record.timestamp,
                              packet: "packet \(record.number) of \(input)")
            summary.written += 1
        }
        guard engine.unreachable.count > 0, let offset = record.ipOffset else { return }
        var answers: [[UInt8]] = []
        let linkType = self.linkType
        engine.unreachable.drain { bytes, _ in
            var header = Array(UnsafeRawBufferPointer(start: frame.base, count: offset))
            if linkType == .ethernet && offset >= 12 {
                header.replaceSubrange(0..<12, with: header[6..<12] + header[0..<6])  // swap the MAC addresses
            }
            answers.append(header + Array(bytes))
        }
        for var answer in answers {
            let count = answer.count
            let failure = answer.withUnsafeMutableBytes { raw -> CaptureError? in
                do throws(CaptureError) {
                    try writer?.write(PacketBytes(raw), wireLength: count, timestamp: record.timestamp,
                                      packet: "the answer to packet \(record.number) of \(input)")
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw failure }
            summary.written += 1
            summary.unreachableWritten += 1
        }
    }
}
