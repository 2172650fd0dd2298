import Testing
@testable import MasqCore

@Suite struct FlowFilterTests {
    @Test func everyStateMasqPrintsIsAccepted() throws {
        #expect(FlowFilter.stateNames == [
            "NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
            "LAST_ACK", "LISTEN", "SYNACK", "UDP",
        ])
        for name in FlowFilter.stateNames {
            #expect(try FlowFilter("state=\(name)").state == name)
        }
        // Any case, as before.
        #expect(try FlowFilter("vip=198.18.0.1:80,state=time_wait").state == "TIME_WAIT")
    }

    @Test func unknownStateNamesTheValidOnes() {
        #expect {
            _ = try FlowFilter("vip=198.18.0.1:80 state=FOO")
        } throws: { error in
            (error as? FlowFilter.ParseError)?.description
                == "filter term 'state=FOO': unknown state; one of NONE, ESTABLISHED, SYN_SENT, SYN_RECV, "
                + "FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK, UDP"
        }
        // A number-named state (ConnectionState's fallback description) is no state either.
        #expect(throws: FlowFilter.ParseError.self) { _ = try FlowFilter("state=STATE12") }
    }
}
