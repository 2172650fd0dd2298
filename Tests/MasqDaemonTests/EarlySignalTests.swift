import Foundation
import Testing
@testable import MasqDaemon
#if canImport(Glibc)
import Glibc
#endif

/// masq traps SIGHUP, SIGUSR1 and SIGUSR2 before READY=1 (`DaemonSignals.install`) and serves them
/// only once the service group runs: a signal sent in between (`systemctl start masq && systemctl
/// reload masq`) must neither end the process (the default action of all three) nor be lost. (Were
/// the handlers not in when `install` returns, this test process would die.)
@Suite(.serialized) struct EarlySignalTests {
    @Test(.timeLimit(.minutes(1))) func signalsBeforeTheLoopsWaitForThem() async throws {
        for round in 1...20 {
            let signals = await DaemonSignals.install()
            for signal in [SIGHUP, SIGUSR1, SIGUSR2] { kill(getpid(), signal) }
            // Time for the kernel to deliver them, before anything iterates.
            try await Task.sleep(for: .milliseconds(20))
            var reload = signals.reload.makeAsyncIterator()
            var restart = signals.restart.makeAsyncIterator()
            var caught: Set<Int32> = []
            for _ in 1...2 { if let signal = await reload.next() { caught.insert(signal.rawValue) } }
            #expect(caught == [SIGHUP, SIGUSR1], "round \(round)")
            #expect(await restart.next()?.rawValue == SIGUSR2, "round \(round)")
        }
    }
}
