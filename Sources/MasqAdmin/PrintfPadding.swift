// printf's padding as ipvsadm's listing uses it (glibc has no function that returns it as a string).

/// The few printf conversions ipvsadm's listing uses. Widths count bytes, as C does.
enum CFormat {
    /// `%-Ns`: the text, then blanks up to N bytes (never cut).
    static func left(_ text: String, _ width: Int) -> String {
        let n = text.utf8.count
        return n >= width ? text : text + String(repeating: " ", count: width - n)
    }

    /// `%Ns` / `%Nllu`: blanks up to N bytes, then the text.
    static func right(_ text: String, _ width: Int) -> String {
        let n = text.utf8.count
        return n >= width ? text : String(repeating: " ", count: width - n) + text
    }

    /// `buf[n] = '\0'`: the first n bytes.
    static func cut(_ text: String, _ bytes: Int) -> String {
        let u = Array(text.utf8)
        return u.count <= bytes ? text : String(decoding: u[..<bytes], as: UTF8.self)
    }

    /// `%u` of a C `unsigned` holding a kernel `__u32` the state carries as Int32.
    static func unsigned(_ value: Int32) -> String { String(UInt32(bitPattern: value)) }
}
