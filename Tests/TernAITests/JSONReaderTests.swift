import Foundation
import Testing
import TernAI

@Suite struct JSONReaderTests {
    /// Documents read the same as JSONSerialization reads them.
    @Test(arguments: [
        #"{}"#, #"[]"#, #"  {"a" : [1, -2.5, 3e2, 0.000123, -0, 1E-7, 12345678901234567890] }  "#, #""text""#, "true", "false", "null",
        #"{"nested":{"deeper":[[],[{}],{"x":null}]},"b":true,"c":false}"#,
        #"{"escapes":"\"\\\/\b\f\n\r\t\u00e9\u4e2d\ud83d\ude80 and plain"}"#,
        #"{"utf8":"ünïcödé 中文 🚀","empty":"","key with \"quotes\"":1}"#,
        #"[-1.7976931348623157e308, 4.9e-324, 0.1, 1.0, 100]"#,
    ])
    func readsWhatJSONSerializationReads(text: String) throws {
        let read = try JSONReader.read(text)
        let expected = try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
        #expect(Self.same(read, expected), "\(read)")
    }

    /// Not JSON: refused, never read as something else.
    @Test(arguments: [
        "", " ", "{", "}", "[1,]", #"{"a":1,}"#, "[01]", "[+1]", "[.5]", "[1.]", "[1e]", "[-]", "NaN", "[Infinity]", "tru", "nul",
        #"{"a" 1}"#, #"{a:1}"#, #"{"a":1}x"#, #"["a" "b"]"#, "\"tab\there\"", #""\x""#, #""\u12""#, #""\ud800""#, #""\udc00x""#,
        #""\ud800\u0041""#, #""unterminated"#, "[1] [2]", "// comment\n1", "'single'", "1e400", "[-1e392]",
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: JSONReader.Malformed.self) { try JSONReader.read(text) }
    }

    @Test func refusesInvalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0x61, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(throws: JSONReader.Malformed.self) { try bytes.withUnsafeBytes { try JSONReader.read($0) } }
        }
    }

    /// Integers are read exactly, to the last of 63 bits; larger ones as the nearest `Double`.
    @Test func readsIntegersExactly() throws {
        #expect(try JSONReader.read("[9007199254740993, -9223372036854775808, 9223372036854775807, -0, 1.0, 1e3, 9223372036854775808]")
            == .array([.integer(9_007_199_254_740_993), .integer(.min), .integer(.max), .integer(0), .number(1), .number(1000), .number(9.223372036854775808e18)]))
    }

    /// A byte order mark before the document is ignored, as RFC 8259 allows.
    @Test func ignoresAByteOrderMark() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("[1]".utf8)
        #expect(try bytes.withUnsafeBytes { try JSONReader.read($0) } == .array([.integer(1)]))
    }

    /// Nesting is bounded, so a body of brackets cannot exhaust the stack.
    @Test func boundsNesting() throws {
        let deepest = JSONReader.maximumDepth
        _ = try JSONReader.read(String(repeating: "[", count: deepest) + String(repeating: "]", count: deepest))
        #expect(throws: JSONReader.Malformed.self) {
            try JSONReader.read(String(repeating: "[", count: deepest + 1) + String(repeating: "]", count: deepest + 1))
        }
        #expect(throws: JSONReader.Malformed.self) { try JSONReader.read(String(repeating: "[{\"a\":", count: 100_000)) }
    }

    /// Random damage to a valid body never crashes the reader, and what it accepts JSONSerialization accepts too.
    @Test func survivesDamagedBodies() throws {
        let body = Array(#"{"model":"m","messages":[{"role":"user","content":"héllo \"x\" \u00e9"}],"embedding":[0.5,-1e-3,2],"stream":true,"top_k":null}"#.utf8)
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]",:.-+eE0123456789\ u"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xFF]
        for _ in 0..<5_000 {
            var damaged = body
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let at = Int.random(in: 0..<damaged.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: damaged[at] = alphabet.randomElement(using: &generator)!
                case 1: damaged.remove(at: at)
                default: damaged.insert(alphabet.randomElement(using: &generator)!, at: at)
                }
            }
            let read = try? damaged.withUnsafeBytes { try JSONReader.read($0) }
            if let read {
                let expected = try? JSONSerialization.jsonObject(with: Data(damaged), options: .fragmentsAllowed)
                #expect(expected.map { Self.same(read, $0) } == true, "\(String(decoding: damaged, as: UTF8.self))")
            }
        }
    }

    /// Whether a `JSONValue` holds what JSONSerialization read.
    static func same(_ value: JSONValue, _ object: Any) -> Bool {
        switch value {
        case .null: return object is NSNull
        // Foundation reads both as NSNumber, so a flag and a number are told apart by the text alone.
        case .bool(let flag): return (object as? Bool) == flag
        case .number(let number): return (object as? NSNumber)?.doubleValue == number
        case .integer(let integer): return (object as? NSNumber)?.int64Value == Int64(integer)
        case .string(let text): return (object as? String) == text
        case .array(let elements):
            guard let others = object as? [Any], others.count == elements.count else { return false }
            return zip(elements, others).allSatisfy(same)
        case .object(let members):
            guard let others = object as? [String: Any], others.count == members.count else { return false }
            return members.allSatisfy { key, value in others[key].map { same(value, $0) } ?? false }
        }
    }
}
