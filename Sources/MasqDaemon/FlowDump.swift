import MasqCore
#if canImport(Glibc)
import Glibc
#endif

/// SIGUSR1's dump of the connection table: the flow records as JSON lines (the `masq replay --flows`
/// schema, `FlowRecord.jsonLines`), in a new file readable by root only. The records are taken under
/// the engine's lock by the caller; formatting and writing happen here, outside it.
func writeDump(_ records: [FlowRecord], to path: String) -> Result<Int, DaemonError> {
    var text = FlowRecord.jsonLines(records)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return .failure(DaemonError("\(path): \(String(cString: strerror(errno)))")) }
    defer { close(fd) }
    let ok = text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
    return ok ? .success(records.count) : .failure(DaemonError("\(path): \(String(cString: strerror(errno)))"))
}
