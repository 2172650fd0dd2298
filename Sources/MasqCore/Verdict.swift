/// What happens to a packet after the engine has seen it.
public enum Verdict: Equatable, Sendable {
    /// Let through unchanged: not for a virtual service, or nothing to translate.
    case accept
    /// Let through with its bytes rewritten (in place) for the given direction of a NAT connection.
    case rewritten(FlowDirection)
    /// Not let through.
    case drop(DropReason)

    public var accepts: Bool {
        if case .drop = self { return false }
        return true
    }
}
