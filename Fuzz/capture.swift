// libFuzzer target: capture files (pcap and pcapng, through libpcap and MasqCapture's link-type and
// timestamp handling) replayed through an engine as `masq replay` does. Never a crash; every record
// is either written out or dropped by the engine; what is written reads back as a capture of the
// same link type with as many records. libpcap reads from a path, so each input goes through a file.
#if canImport(Glibc)
import Glibc
#endif
import MasqCore
import MasqRules

let rules = try! RulesFile.parse("""
    -A -t 198.18.0.1:80 -s rr
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 1
    -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
    -A -u 198.18.0.1:53 -s rr -p 30
    -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m
    """, names: .numericOnly)
let inputPath = "/tmp/masq-fuzz-capture-\(getpid()).in"
let outputPath = "/tmp/masq-fuzz-capture-\(getpid()).out"

@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }  // fatalError keeps its message in -O builds
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let file = fopen(inputPath, "wb") else { fatalError("capture fuzz: cannot write \(inputPath)") }
    require(fwrite(data, 1, size, file) == size, "capture fuzz: short write to \(inputPath)")
    fclose(file)
    defer { unlink(inputPath); unlink(outputPath) }
    let engine = Engine(configuration: rules, capacity: 64)
    guard let summary = try? replay(engine, input: inputPath, output: outputPath) else { return 0 }
    require(summary.written + summary.engine.droppedTotal == summary.records,
            "capture oracle: \(summary.records) records, \(summary.written) written, \(summary.engine.droppedTotal) dropped")
    let linkType: LinkType
    var count: UInt64 = 0
    do {
        var reader = try CaptureReader(path: outputPath)
        linkType = reader.linkType
        while try reader.next() != nil { count += 1 }
    } catch {
        fatalError("capture oracle: the replay's output does not read back: \(error)")
    }
    let inputLinkType: LinkType
    do {
        inputLinkType = try CaptureReader(path: inputPath).linkType
    } catch {
        fatalError("capture oracle: the input read once and not twice: \(error)")
    }
    require(inputLinkType == linkType, "capture oracle: the output's link type is not the input's")
    require(count == summary.written, "capture oracle: \(summary.written) records written, \(count) read back")
    return 0
}
