/// A JSON value, as `JSONReader` reads it.
package enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number with a fraction or an exponent, or an integer beyond `Int`.
    case number(Double)
    /// An integer, exactly (a seed may use all 63 bits, which a `Double` rounds).
    case integer(Int)
    case string(String)
    case array([JSONValue])
    /// An object's members; of a key given twice, the last value.
    case object([String: JSONValue])
}

/// Reads a JSON document (RFC 8259, strictly: no comments, trailing commas, NaN or unescaped
/// control characters; valid UTF-8 only) into a `JSONValue`. For the JSON of hot paths (request
/// bodies, a job's payload, the model's streamed chunks), read from the value by hand
/// (`JSONObject`): JSONDecoder's generic decoding costs more than the rest of such a step, run
/// cold as one request at a time runs, and above all for a vector of numbers. The input's
/// size is bounded by the caller; its nesting here, so garbage cannot exhaust the stack.
package struct JSONReader {
    package struct Malformed: Error, Equatable {
        /// The byte offset where reading stopped.
        package let offset: Int
    }

    /// As deep as JSONDecoder goes.
    package static let maximumDepth = 512

    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    package static func read(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> JSONValue {
        var reader = JSONReader(bytes)
        // A byte order mark may come first (RFC 8259 lets a reader ignore it).
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { reader.index = 3 }
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw Malformed(offset: reader.index) }
        return value
    }

    /// Reads `text`'s UTF-8 in place (a payload, a streamed chunk: no copy on the way).
    package static func read(_ text: String) throws(Malformed) -> JSONValue {
        var text = text
        let result = text.withUTF8 { bytes in Result { () throws(Malformed) in try read(UnsafeRawBufferPointer(bytes)) } }
        return try result.get()
    }

    private var malformed: Malformed { Malformed(offset: index) }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
    }

    private mutating func expect(_ literal: StaticString) throws(Malformed) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw malformed }
        for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] { throw Malformed(offset: index + offset) }
        index += count
    }

    private mutating func value(depth: Int) throws(Malformed) -> JSONValue {
        guard depth < Self.maximumDepth else { throw malformed }
        skipWhitespace()
        switch current {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return try number()
        }
    }

    private mutating func object(depth: Int) throws(Malformed) -> JSONValue {
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw malformed }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw malformed }
            index += 1
            members[key] = try value(depth: depth + 1)
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default: throw malformed
            }
        }
    }

    private mutating func array(depth: Int) throws(Malformed) -> JSONValue {
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            elements.append(try value(depth: depth + 1))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default: throw malformed
            }
        }
    }

    /// A number by JSON's grammar: an integer exactly if `Int` holds it, otherwise the nearest
    /// `Double`; one past `Double`'s range is refused.
    private mutating func number() throws(Malformed) -> JSONValue {
        let start = index
        var whole = true
        if current == UInt8(ascii: "-") { index += 1 }
        guard let first = current, isDigit(first) else { throw malformed }
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        if current == UInt8(ascii: ".") {
            whole = false
            index += 1
            guard let digit = current, isDigit(digit) else { throw malformed }
            skipDigits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            whole = false
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard let digit = current, isDigit(digit) else { throw malformed }
            skipDigits()
        }
        // The text is digits, a sign, a point and an exponent, which `Int` and `Double` read exactly.
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if whole, let integer = Int(text) { return .integer(integer) }
        guard let value = Double(text), value.isFinite else { throw Malformed(offset: start) }
        return .number(value)
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func skipDigits() {
        while let byte = current, isDigit(byte) { index += 1 }
    }

    /// A string, from its opening quote past its closing one.
    private mutating func string() throws(Malformed) -> String {
        index += 1
        let start = index
        // Most strings hold no escape: taken as they are once their UTF-8 is checked.
        while let byte = current, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw malformed }
            index += 1
        }
        guard let stop = current else { throw malformed }
        guard let plain = String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self) else {
            throw Malformed(offset: start)
        }
        if stop == UInt8(ascii: "\"") {
            index += 1
            return plain
        }
        var text = plain
        var run = index
        while true {
            guard let byte = current else { throw malformed }
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                guard let piece = String(validating: UnsafeRawBufferPointer(rebasing: bytes[run..<index]), as: UTF8.self) else {
                    throw Malformed(offset: run)
                }
                text += piece
                index += 1
                if byte == UInt8(ascii: "\"") { return text }
                text.unicodeScalars.append(try escaped())
                run = index
            } else {
                guard byte >= 0x20 else { throw malformed }
                index += 1
            }
        }
    }

    /// The character of an escape, its backslash already read.
    private mutating func escaped() throws(Malformed) -> Unicode.Scalar {
        guard let byte = current else { throw malformed }
        index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{8}"
        case UInt8(ascii: "f"): return "\u{c}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let unit = try hexUnit()
            switch unit {
            case 0xD800..<0xDC00:
                // A high surrogate must come with its low one.
                try expect("\\u")
                let low = try hexUnit()
                guard (0xDC00..<0xE000).contains(low) else { throw malformed }
                return Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!
            case 0xDC00..<0xE000: throw malformed
            default: return Unicode.Scalar(unit)!
            }
        default: throw Malformed(offset: index - 1)
        }
    }

    private mutating func hexUnit() throws(Malformed) -> UInt32 {
        guard index + 4 <= bytes.count else { throw malformed }
        var unit: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw malformed
            }
            unit = unit << 4 | UInt32(digit)
            index += 1
        }
        return unit
    }
}
