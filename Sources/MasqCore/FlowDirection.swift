/// Which way a packet travels through a NAT connection.
public enum FlowDirection: UInt8, Sendable {
    /// Client → virtual service (IPVS `IP_VS_DIR_INPUT`).
    case inbound = 0
    /// Real server → client (IPVS `IP_VS_DIR_OUTPUT`).
    case outbound = 1
}
