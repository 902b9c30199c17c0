import Foundation
import Testing
@testable import TernAI

/// `JSONText.string` writes what a plain escaper writes, and JSON reads it back as the text.
@Suite struct JSONTextTests {
    /// The rule, one scalar at a time: `"` and `\` escaped, `\n` `\r` `\t` by letter, other
    /// control characters as `\u00XX`, everything else as it is.
    static func reference(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20: escaped += String(format: "\\u%04x", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }

    @Test func everyCharacterIsWrittenAsTheRuleSays() throws {
        var texts = (0..<0x80).map { String(UnicodeScalar(UInt8($0))) }
        texts += [
            "", "plain", #"a "quoted" \ word"#, "\"\"\\\\", "line\nbreak\ttab\rreturn\u{0}\u{1f}", "emoji 🚀, ünïcödé, 中文",
            "\u{2028}\u{2029}\u{7f}", "</script>", String(repeating: "long run ", count: 500) + "\"" + String(repeating: "é", count: 300),
        ]
        for text in texts {
            let written = JSONText.string(text)
            #expect(written == Self.reference(text))
            let read = try JSONSerialization.jsonObject(with: Data(written.utf8), options: .fragmentsAllowed) as? String
            #expect(read == text)
        }
    }
}
