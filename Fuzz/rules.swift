// libFuzzer target: RulesFile.parse (ipvsadm-save / ipvsadm -R text) on arbitrary bytes. Never a crash;
// a file that parses formats back (`ipvsadm-save -n`) to text that parses to the same configuration and
// formats the same again; and the engine takes the configuration, as a fresh start and as a reload.
import MasqCore
import MasqRules

/// Names resolve from these texts only: the system's /etc/hosts would make runs differ between hosts.
let names = NameResolver(hostsText: "198.18.0.1 vip www\n198.19.0.201 web1\n198.19.0.202 web2\n",
                         servicesText: "http 80/tcp\ndomain 53/udp\ndomain 53/tcp\nssh 22/tcp\n")
let previous = try! RulesFile.parse("""
    -A -t 198.18.0.1:80 -s rr -p 60
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
    """, names: .numericOnly)

/// What the saved form can say: `-M` only with `-p`, as ipvsadm-save prints it (print_service_entry),
/// the netmask being used by persistence alone. (Found by this target: `-A ... -M MASK` without `-p`
/// saves without its mask; ipvsadm does the same, and the engine never reads the mask then.)
func effective(_ c: Configuration) -> Configuration {
    var c = c
    for i in c.services.indices where c.services[i].persistence == nil {
        c.services[i].netmask = IPv4Address(rawValue: 0xffff_ffff)
    }
    return c
}

@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }  // fatalError keeps its message in -O builds
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let configuration = try? RulesFile.parse(text, names: names) else { return 0 }
    let saved = RulesFile.format(configuration)
    let again: Configuration
    do {
        again = try RulesFile.parse(saved, names: .numericOnly)
    } catch {
        fatalError("rules oracle: the saved form does not parse: \(error)\n--- input\n\(text)\n--- saved\n\(saved)")
    }
    require(again == effective(configuration), "rules oracle: the saved form parses to another configuration\n--- input\n\(text)\n--- saved\n\(saved)")
    require(RulesFile.format(again) == saved, "rules oracle: saving twice differs\n--- saved\n\(saved)")
    let engine = Engine(configuration: configuration, capacity: 8)
    require(engine.services.count == configuration.services.count, "rules oracle: the engine lost services")
    engine.apply(previous)
    engine.apply(configuration)
    require(engine.services.map(\.key) == configuration.services.map(\.key), "rules oracle: a reload reordered or lost services")
    return 0
}
