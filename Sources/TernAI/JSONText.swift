/// JSON written directly, for what every request of a hot path sends (a streamed piece, a
/// search's hits, the model call's body): JSONEncoder's generic encoding costs more than the
/// rest of building them. Tests compare each with its encoded form.
package enum JSONText {
    /// `text` as a JSON string, quotes included: `"` and `\` escaped, control characters as
    /// escapes, the rest as it is (UTF-8). Written byte by byte into the string's own storage,
    /// the runs between escapes copied whole: a search's hits and every streamed piece go
    /// through here.
    package static func string(_ text: String) -> String {
        var text = text
        return text.withUTF8 { bytes in
            var length = bytes.count + 2
            for byte in bytes {
                if let escape = escapes[Int(byte)] { length += escape == 0 ? 5 : 1 }
            }
            return String(unsafeUninitializedCapacity: length) { output in
                var at = 0
                func put(_ byte: UInt8) {
                    output[at] = byte
                    at += 1
                }
                put(UInt8(ascii: "\""))
                var run = 0
                for (index, byte) in bytes.enumerated() {
                    guard let escape = escapes[Int(byte)] else { continue }
                    at = output[at...].initialize(fromContentsOf: bytes[run..<index])
                    put(UInt8(ascii: "\\"))
                    if escape != 0 {
                        put(escape)
                    } else {
                        for digit in "u00".utf8 { put(digit) }
                        put(hexDigits[Int(byte >> 4)])
                        put(hexDigits[Int(byte & 0x0F)])
                    }
                    run = index + 1
                }
                at = output[at...].initialize(fromContentsOf: bytes[run...])
                put(UInt8(ascii: "\""))
                return at
            }
        }
    }

    /// For each byte, what follows the backslash that escapes it: a letter, or 0 for `\u00XX`
    /// (the other control characters); `nil` for a byte written as it is.
    private static let escapes: [UInt8?] = (0..<256).map { byte in
        switch byte {
        case 0x22, 0x5C: UInt8(byte)
        case 0x0A: UInt8(ascii: "n")
        case 0x0D: UInt8(ascii: "r")
        case 0x09: UInt8(ascii: "t")
        case 0..<0x20: 0
        default: nil
        }
    }
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A finite number as JSON (its shortest form that reads back as the same `Double`); JSON
    /// has no NaN or infinity, so those are written as 0.
    package static func number(_ value: Double) -> String {
        value.isFinite ? String(describing: value) : "0"
    }
}
