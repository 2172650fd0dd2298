import MasqCore
import MasqRules

// The resolver itself lives in MasqRules (the rules parser reads names too); these are the two
// ipvsadm helpers only its listing uses.
extension NameResolver {
    /// ipvsadm's `addr_to_anyname`: the host name, else the dotted quad.
    func anyName(_ address: IPv4Address) -> String {
        hostName(for: address) ?? address.description
    }

    /// ipvsadm's `port_to_anyname`: the service name for the protocol, else the number.
    func anyName(port: UInt16, proto: String) -> String {
        serviceName(forPort: port, proto: proto) ?? String(port)
    }
}
