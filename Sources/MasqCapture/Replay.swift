import MasqCore

/// What a replay did, for its summary.
public struct ReplaySummary: Sendable {
    public var records: UInt64 = 0
    public var written: UInt64 = 0
    /// Frames that carry no IPv4 (ARP, IPv6, …): written untouched without entering the engine.
    public var notIPv4: UInt64 = 0
    /// ICMP port-unreachable answers written (included in `written`).
    public var unreachableWritten: UInt64 = 0
    public var engine = EngineCounters()
    /// The verdict of each record in input order (`nil` for frames that carry no IPv4).
    public var verdicts: [Verdict?] = []

    public init() {}

    /// The summary `masq replay` prints.
    public var text: String {
        func row(_ label: String, _ value: UInt64, _ note: String = "") -> String {
            (label + ":").padding(toLength: 21) + "\(value)" + note
        }
        let untouchedNote = notIPv4 > 0 || engine.truncated > 0
            ? " (\(notIPv4) not IPv4, \(engine.truncated) truncated by the capture)" : ""
        var lines = [
            row("packets in", records),
            row("rewritten inbound", engine.rewrittenInbound),
            row("rewritten outbound", engine.rewrittenOutbound),
            row("untouched", engine.untouched + notIPv4, untouchedNote),
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
/// and writes each accepted one (rewritten or not) to `output` with its original timestamp.
public func replay(_ engine: Engine, input: String, output: String?, recordVerdicts: Bool = false)
    throws(CaptureError) -> ReplaySummary {
    var reader = try CaptureReader(path: input)
    let writer: CaptureWriter? = try output.map { (path: String) throws(CaptureError) -> CaptureWriter in
        try CaptureWriter(path: path, linkType: reader.linkType)
    }
    var summary = ReplaySummary()
    while let record = try reader.next() {
        summary.records += 1
        var verdict: Verdict?
        if let offset = reader.linkType.ipv4Offset(record.bytes) {
            let meta = PacketMeta(truncated: record.wireLength > record.bytes.count)
            verdict = engine.process(record.bytes.slice(from: offset), meta: meta, now: record.timestamp)
        } else {
            summary.notIPv4 += 1
            engine.advanceClock(to: record.timestamp)
        }
        if recordVerdicts { summary.verdicts.append(verdict) }
        if verdict?.accepts ?? true {
            try writer?.write(record.bytes, wireLength: record.wireLength, timestamp: record.timestamp,
                              packet: "packet \(reader.recordNumber) of \(input)")
            summary.written += 1
        }
        // What the daemon would send (ICMP port unreachable to the client), written right after the
        // packet that caused it, in the packet's own link framing turned around.
        if engine.unreachable.count > 0, let offset = reader.linkType.ipv4Offset(record.bytes) {
            var answers: [[UInt8]] = []
            engine.unreachable.drain { bytes, _ in
                var frame = Array(UnsafeRawBufferPointer(start: record.bytes.base, count: offset))
                if reader.linkType == .ethernet && offset >= 12 {
                    frame.replaceSubrange(0..<12, with: frame[6..<12] + frame[0..<6])  // swap the MAC addresses
                }
                answers.append(frame + Array(bytes))
            }
            for var frame in answers {
                let count = frame.count
                let failure = frame.withUnsafeMutableBytes { raw -> CaptureError? in
                    do throws(CaptureError) {
                        try writer?.write(PacketBytes(raw), wireLength: count, timestamp: record.timestamp,
                                          packet: "the answer to packet \(reader.recordNumber) of \(input)")
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
    try writer?.flush()
    summary.engine = engine.counters
    return summary
}
