/// JSON written directly, for what every request of a hot path sends (a streamed piece, a
/// search's hits, the model call's body): JSONEncoder's generic encoding costs more than the
/// rest of building them. Tests compare each with its encoded form.
package enum JSONText {
    /// `text` as a JSON string, quotes included: `"` and `\` escaped, control characters as
    /// escapes, the rest as it is (UTF-8).
    package static func string(_ text: String) -> String {
        var escaped = "\""
        escaped.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20:
                escaped += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }

    /// A finite number as JSON (its shortest form that reads back as the same `Double`); JSON
    /// has no NaN or infinity, so those are written as 0.
    package static func number(_ value: Double) -> String {
        value.isFinite ? String(describing: value) : "0"
    }
}
