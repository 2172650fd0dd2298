import MasqCore

/// The daemon's answer to one `ControlRequest`.
public enum ControlReply: Equatable, Sendable {
    /// Done, nothing to show (apply, restore, zero, setTimeouts).
    case done
    /// Text for a person or a file: `save`'s rules, `trace`'s note, `help`.
    case text(String)
    case state(AdminState)
    case flows([FlowRecord])
    case syncStatus(SyncStatus)
    /// Refused or failed; nothing changed.
    case failure(ControlError)
}

/// Why the daemon refused or failed a request, as the kernel answers IPVS's setsockopt: a code a
/// client can act on, which each client words as it likes (masqadm as ipvsadm would: its exit status
/// and libipvs's `ipvs_strerror` words), and the daemon's own message.
public struct ControlError: Error, Equatable, Sendable, Codable, CustomStringConvertible {
    /// The errno of an IPVS call that would fail the same way (ip_vs_ctl.c), where there is one.
    public enum Code: String, Equatable, Sendable, Codable {
        /// The request is not one the daemon reads (EINVAL before IPVS looks at it): not JSON, an
        /// unknown command, a filter or an ipvsadm command that does not parse.
        case badRequest
        /// The request is larger than `ControlFraming.maximumRequest` (E2BIG).
        case requestTooLarge
        /// The peer is neither root nor the daemon's user (EPERM).
        case permissionDenied
        /// A value IPVS would refuse (EINVAL).
        case invalidArgument
        /// No such virtual service (ESRCH: "No such service", "Service not defined").
        case noSuchService
        /// The virtual service exists already (EEXIST).
        case serviceExists
        /// No such real server in the service (ENOENT).
        case noSuchDestination
        /// The real server is in the service already (EEXIST).
        case destinationExists
        /// No scheduler of that name (ENOENT from the scheduler lookup).
        case noSuchScheduler
        /// Something already runs that there can be one of: a packet trace (EBUSY).
        case busy
        /// A sync daemon of that role runs already (EEXIST: libipvs's "Daemon has already run").
        case daemonExists
        /// No sync daemon of that role runs (ESRCH: "No daemon is running").
        case noDaemon
        /// The daemon could not do it: a file it cannot write, an answer it cannot encode (EIO).
        case failed
        /// The daemon closed the connection without an answer (the client's reading).
        case noAnswer
        /// The answer does not decode, or is not the kind the request asks for (the client's reading).
        case badReply
    }

    public var code: Code
    /// What went wrong, in masq's words (for an IPVS refusal, libipvs's and the token it is about).
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A rules error (masqadm's edit, `-R`, `-Z`) by the errno IPVS returns for it; the message is the
    /// error's own (libipvs's words and the token, e.g. "No such service (at '198.18.0.1:80')").
    public init(_ error: RulesError) {
        let code: Code
        switch error.kind {
        case .noSuchService: code = .noSuchService
        case .serviceExists: code = .serviceExists
        case .noSuchDestination: code = .noSuchDestination
        case .destinationExists: code = .destinationExists
        case .noSuchScheduler: code = .noSuchScheduler
        case .invalid: code = .invalidArgument
        }
        self.init(code, error.description)
    }

    public var description: String { message }
}

// MARK: - Wire form

/// `{"ok":"done"}`, `{"ok":"text","text":…}`, `{"ok":"state","state":{…}}`, `{"ok":"flows","flows":[…]}`,
/// or `{"error":{"code":"noSuchService","message":…}}`.
extension ControlReply: Codable {
    enum CodingKeys: String, CodingKey {
        case ok, text, state, flows, error, syncStatus
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .done:
            try c.encode("done", forKey: .ok)
        case .text(let text):
            try c.encode("text", forKey: .ok)
            try c.encode(text, forKey: .text)
        case .state(let state):
            try c.encode("state", forKey: .ok)
            try c.encode(state, forKey: .state)
        case .flows(let flows):
            try c.encode("flows", forKey: .ok)
            try c.encode(flows, forKey: .flows)
        case .syncStatus(let status):
            try c.encode("syncStatus", forKey: .ok)
            try c.encode(status, forKey: .syncStatus)
        case .failure(let error):
            try c.encode(error, forKey: .error)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let error = try c.decodeIfPresent(ControlError.self, forKey: .error) {
            self = .failure(error)
            return
        }
        switch try c.decode(String.self, forKey: .ok) {
        case "done": self = .done
        case "text": self = .text(try c.decode(String.self, forKey: .text))
        case "state": self = .state(try c.decode(AdminState.self, forKey: .state))
        case "flows": self = .flows(try c.decode([FlowRecord].self, forKey: .flows))
        case "syncStatus": self = .syncStatus(try c.decode(SyncStatus.self, forKey: .syncStatus))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .ok, in: c, debugDescription: "unknown answer '\(other)'")
        }
    }
}

// MARK: - Reading an answer

extension ControlReply {
    /// The answer of a request that only acts (`.done`), or its failure.
    public func requireDone() throws(ControlError) {
        switch self {
        case .done: return
        case .failure(let error): throw error
        default: throw unexpected("nothing")
        }
    }

    /// The text of a `save`, `trace` or `help` answer, or its failure.
    public func requireText() throws(ControlError) -> String {
        switch self {
        case .text(let text): return text
        case .failure(let error): throw error
        default: throw unexpected("text")
        }
    }

    public func requireState() throws(ControlError) -> AdminState {
        switch self {
        case .state(let state): return state
        case .failure(let error): throw error
        default: throw unexpected("the state")
        }
    }

    public func requireFlows() throws(ControlError) -> [FlowRecord] {
        switch self {
        case .flows(let flows): return flows
        case .failure(let error): throw error
        default: throw unexpected("flows")
        }
    }

    public func requireSyncStatus() throws(ControlError) -> SyncStatus {
        switch self {
        case .syncStatus(let status): return status
        case .failure(let error): throw error
        default: throw unexpected("the sync status")
        }
    }

    private var kind: String {
        switch self {
        case .done: "done"
        case .text: "text"
        case .state: "the state"
        case .flows: "flows"
        case .syncStatus: "the sync status"
        case .failure: "an error"
        }
    }

    private func unexpected(_ wanted: String) -> ControlError {
        ControlError(.badReply, "masq answered \(kind) where \(wanted) was expected")
    }
}
