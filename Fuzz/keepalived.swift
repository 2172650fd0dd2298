// libFuzzer target: keepalived.conf's lexer and parser (MasqHealth's KeepalivedLexer/KeepalivedParser,
// compiled in without the checkers, which need NIO and Crypto). Never a crash; a file that parses gives
// services the engine takes and that survive ipvsadm-save's form unchanged, so `masqadm -S` and the
// keepalived file describe the same table.
import MasqCore
import MasqRules

/// Two include targets, so `include` lines are followed (and loops between them refused).
func include(_ path: String) throws -> String {
    switch path {
    case "/etc/keepalived/rs.conf": return "real_server 198.19.0.202 80 {\n weight 2\n TCP_CHECK {\n connect_timeout 3\n }\n}\n"
    case "/etc/keepalived/loop.conf": return "include loop.conf\n"
    default: throw RulesError(token: path, message: "no such file")
    }
}

@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }  // fatalError keeps its message in -O builds
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = KeepalivedParser.scriptArguments(String(text.prefix { $0 != "\n" }))
    guard let config = try? KeepalivedParser.parse(text: text, file: "/etc/keepalived/keepalived.conf",
                                                   glob: { [$0] }, include: include) else { return 0 }
    require(!config.virtualServers.isEmpty, "keepalived oracle: a file without virtual servers parsed")
    let saved = RulesFile.format(config.configuration)
    let again: Configuration
    do {
        again = try RulesFile.parse(saved, names: .numericOnly)
    } catch {
        fatalError("keepalived oracle: its services' saved form does not parse: \(error)\n--- input\n\(text)\n--- saved\n\(saved)")
    }
    require(again.services == config.configuration.services,
            "keepalived oracle: its services change through the saved form\n--- input\n\(text)\n--- saved\n\(saved)")
    let engine = Engine(configuration: config.configuration, capacity: 8)
    require(engine.services.count == config.configuration.services.count, "keepalived oracle: the engine lost services")
    return 0
}
