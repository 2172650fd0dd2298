// libFuzzer target: SyncDecoder.decode (IPVS sync messages, v1 and v0) on arbitrary bytes. Never a
// crash; never more entries than the header announces or than the bytes hold (36 per v1 entry, 72 per
// IPv6 one, 24 per v0 one); every entry's addresses of one family; skipped entries carry entry-level reasons and a stop a datagram-level one; and whatever
// decodes re-encodes as one v1 message whose decoding is complete and gives the same entries; and
// what decodes, applied to a backup engine of four slots serving the seeds' services (as a forged
// datagram would be), never grows its table past its capacity nor leaves a real server's counts
// different from the entries that name it.
// Compiled together with Sources/MasqSync (scripts/fuzz), so MasqSync's names are this module's.
import MasqCore

@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }  // fatalError keeps its message in -O builds
}

/// The services of `masq sync-sample`'s entries (the seed corpus), persistent so templates apply.
let backupConfiguration: Configuration = {
    let vip = IPv4Address(198, 18, 1, 1)
    let web = [RealServerSpec(address: IPv4Address(198, 19, 0, 101), port: 8080),
               RealServerSpec(address: IPv4Address(198, 19, 0, 102), port: 8080)]
    let dns = [RealServerSpec(address: IPv4Address(198, 19, 0, 102), port: 53)]
    return Configuration(services: [
        ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 80), persistence: 360, realServers: web),
        ServiceSpec(key: ServiceKey(proto: .udp, address: vip, port: 53), persistence: 360, realServers: dns),
    ])
}()

/// Applies the entries to a fresh four-slot backup and checks its table and counts.
func applyToBackup(_ entries: [SyncEntry]) {
    let engine = Engine(configuration: backupConfiguration, capacity: 4)
    for (i, entry) in entries.enumerated() {
        engine.advanceClock(to: Int64(i) * 100_000_000)
        guard let update = entry.update else { continue }
        _ = engine.applySynced(update)
        let live = engine.table.liveEntries
        require(live.count <= 4, "sync oracle: the backup's table grew past its capacity")
        for case let d? in engine.destinations {
            let named = live.filter { $0.destinationID == d.id }
            let connections = named.filter { !$0.isTemplate }
            require(Int(d.activeConnections) == connections.filter(\.countedActive).count
                        && Int(d.inactiveConnections) == connections.filter { !$0.countedActive }.count
                        && Int(d.persistentConnections) == named.count - connections.count,
                    "sync oracle: a real server's counts differ from its entries")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    for syncID in [UInt8(0), bytes.first ?? 0] {
        let decoded = SyncDecoder.decode(bytes, syncID: syncID)
        let used = decoded.entries.count + decoded.rejectedEntries.count
        guard let header = decoded.header else {
            require(used == 0 && decoded.datagramRejection?.entryIndex == nil, "sync oracle: entries without a header")
            continue
        }
        require(header.size == size, "sync oracle: accepted a size other than the length")
        require(used <= header.count, "sync oracle: more entries than announced")
        let room = header.version == .v1 ? (size - 8) / SyncEntry.fixedLength : (size - 4) / SyncDecoder.v0EntryLength
        require(used <= room, "sync oracle: more entries than the bytes hold")
        let ipv6Room = header.version == .v1 ? (size - 8) / SyncEntry.ipv6FixedLength : 0
        require(decoded.entries.filter(\.isIPv6).count <= ipv6Room, "sync oracle: more IPv6 entries than the bytes hold")
        require(decoded.entries.allSatisfy(\.addressesShareFamily), "sync oracle: an entry of two families")
        require(decoded.rejectedEntries.allSatisfy { !$0.reason.dropsDatagram }, "sync oracle: a skip that drops")
        require(decoded.datagramRejection.map(\.reason.dropsDatagram) ?? true, "sync oracle: a stop that skips")
        if decoded.datagramRejection == nil {
            require(used == header.count, "sync oracle: entries lost without a reason")
        }
        var again: [UInt8] = []
        do {
            let taken = try SyncEncoder.encode(decoded.entries, syncID: header.syncID,
                                               maxLength: SyncEncoder.maximumMaxLength, into: &again)
            require(taken == decoded.entries.count, "sync oracle: re-encoding took \(taken) of \(decoded.entries.count)")
        } catch {
            fatalError("sync oracle: decoded entries do not re-encode: \(error)")
        }
        let redecoded = SyncDecoder.decode(again)
        require(redecoded.isComplete && redecoded.header?.version == .v1, "sync oracle: the re-encoding does not decode whole")
        require(redecoded.entries == decoded.entries, "sync oracle: the re-encoding decodes to other entries")
        applyToBackup(decoded.entries)
    }
    return 0
}
