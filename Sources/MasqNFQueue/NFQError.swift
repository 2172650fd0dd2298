#if canImport(Glibc)
import Glibc
#endif

/// What can go wrong talking to the kernel's NFQUEUE, each with the sentence a user needs.
public struct NFQError: Error, CustomStringConvertible, Sendable {
    public enum Step: String, Sendable {
        case open = "opening the netfilter netlink socket"
        case bind = "binding the queue"
        case configure = "configuring the queue"
        case socketOption = "sizing the socket buffers"
        case receive = "receiving packets"
        case send = "sending verdicts"
    }

    public var step: Step
    public var errno: Int32
    public var queue: UInt16

    public init(_ step: Step, errno: Int32, queue: UInt16) {
        self.step = step
        self.errno = errno
        self.queue = queue
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        switch (step, errno) {
        case (.open, EPERM), (.open, EACCES), (.socketOption, EPERM):
            return "NFQUEUE needs root or CAP_NET_ADMIN (\(step.rawValue): \(reason))"
        case (.bind, EPERM):
            return "queue \(queue) is already bound by another process (only one socket may bind a queue number), or this process lacks CAP_NET_ADMIN"
        case (.open, EPROTONOSUPPORT), (.bind, ENOENT), (.bind, EOPNOTSUPP), (.configure, EOPNOTSUPP):
            return "the kernel has no NFQUEUE support (load the nfnetlink_queue module: modprobe nfnetlink_queue) (\(reason))"
        case (.configure, EINVAL), (.bind, EINVAL):
            return "the kernel refused the queue configuration for queue \(queue) (too old for the GSO flag?): \(reason)"
        default:
            return "NFQUEUE queue \(queue): \(step.rawValue) failed: \(reason)"
        }
    }
}
