/// The members of a JSON object, read field by field with JSONDecoder's rules: an optional
/// field may be absent or `null`, a number read as an integer must be whole, unknown members
/// are ignored.
package struct JSONObject {
    /// A field missing or of the wrong type; `path` as JSONDecoder's coding path (`messages.3.role`).
    package struct Mismatch: Error {
        package let path: String
        package let missing: Bool

        package init(path: String, missing: Bool) {
            self.path = path
            self.missing = missing
        }
    }

    package let members: [String: JSONValue]
    /// Where this object is in the body (`""` for the body itself).
    package let path: String

    package init(_ value: JSONValue, path: String = "") throws {
        guard case .object(let members) = value else { throw Mismatch(path: path, missing: false) }
        self.members = members
        self.path = path
    }

    /// The path of a member, or of an element of a member.
    package func path(_ key: String, _ index: Int? = nil) -> String {
        (path.isEmpty ? key : "\(path).\(key)") + (index.map { ".\($0)" } ?? "")
    }

    package func wrongType(_ key: String, _ index: Int? = nil) -> Mismatch { Mismatch(path: path(key, index), missing: false) }

    /// A member's value; `nil` when it is absent or `null`.
    package subscript(key: String) -> JSONValue? {
        if case .null? = members[key] { return nil }
        return members[key]
    }

    /// A member that must be there: `value`, read by one of the `optional` accessors.
    package func required<Value>(_ value: Value?, _ key: String) throws -> Value {
        guard let value else { throw Mismatch(path: path(key), missing: true) }
        return value
    }

    package func string(_ key: String) throws -> String {
        try required(optionalString(key), key)
    }

    package func optionalString(_ key: String) throws -> String? { try optional(key, \.string) }

    /// A whole number, also one written with a fraction or an exponent (`1.0`, `1e3`).
    package func optionalInt(_ key: String) throws -> Int? { try optional(key, \.wholeNumber) }

    package func optionalDouble(_ key: String) throws -> Double? { try optional(key, \.double) }

    package func optionalBool(_ key: String) throws -> Bool? { try optional(key, \.bool) }

    /// A member read by `read` (`nil`: of the wrong type); `nil` when it is absent or `null`.
    private func optional<Value>(_ key: String, _ read: (JSONValue) -> Value?) throws -> Value? {
        guard let value = self[key] else { return nil }
        guard let read = read(value) else { throw wrongType(key) }
        return read
    }

    package func optionalObject(_ key: String) throws -> JSONObject? {
        guard let value = self[key] else { return nil }
        return try JSONObject(value, path: path(key))
    }

    package func optionalStrings(_ key: String) throws -> [String]? {
        try optionalArray(key) { element, _ in element.string }
    }

    /// Numbers as `Float`: one past its range is infinite, for the caller to refuse.
    package func optionalFloats(_ key: String) throws -> [Float]? {
        try optionalArray(key) { element, _ in element.float }
    }

    /// A member that is an array, each element read by `read` (`nil`: of the wrong type).
    package func optionalArray<Element>(_ key: String, _ read: (JSONValue, Int) throws -> Element?) throws -> [Element]? {
        guard let value = self[key] else { return nil }
        guard case .array(let elements) = value else { throw wrongType(key) }
        var values: [Element] = []
        values.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard let value = try read(element, index) else { throw wrongType(key, index) }
            values.append(value)
        }
        return values
    }
}

/// A value as one kind, `nil` when it is of another.
extension JSONValue {
    var string: String? {
        if case .string(let text) = self { text } else { nil }
    }

    var bool: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }

    var double: Double? {
        switch self {
        case .number(let number): number
        case .integer(let integer): Double(integer)
        default: nil
        }
    }

    var float: Float? {
        switch self {
        case .number(let number): Float(number)
        case .integer(let integer): Float(integer)
        default: nil
        }
    }

    var wholeNumber: Int? {
        switch self {
        case .integer(let integer): integer
        case .number(let number): Int(exactly: number)
        default: nil
        }
    }
}
