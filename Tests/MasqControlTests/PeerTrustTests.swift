import Glibc
import MasqControl
import Testing

/// Which daemons a client talks to: root, itself, or the user masq.service runs masq as; a socket
/// another user holds (anyone may bind an abstract name) is never taken for masq's.
@Suite struct PeerTrustTests {
    static func peer(uid: uid_t) -> PeerCredentials {
        var credentials = PeerCredentials()
        credentials.uid = uid
        return credentials
    }

    @Test func rootAndSelfAreTrustedWithOrWithoutTheServiceUser() {
        for serviceUID in [nil, uid_t(999)] as [uid_t?] {
            #expect(Self.peer(uid: 0).isMasqDaemon(serviceUID: serviceUID))
            #expect(Self.peer(uid: getuid()).isMasqDaemon(serviceUID: serviceUID))
        }
    }

    @Test func theServiceUserIsTrustedOnlyWhenTheAccountExists() {
        #expect(Self.peer(uid: 999).isMasqDaemon(serviceUID: 999))
        #expect(!Self.peer(uid: 999).isMasqDaemon(serviceUID: nil))
        #expect(!Self.peer(uid: 998).isMasqDaemon(serviceUID: 999))
        #expect(!Self.peer(uid: 65534).isMasqDaemon(serviceUID: 999))
    }

    @Test func theServiceUIDIsTheMasqAccounts() {
        let entry = getpwnam("masq")
        #expect(PeerCredentials.serviceUID == entry.map { $0.pointee.pw_uid })
    }
}
