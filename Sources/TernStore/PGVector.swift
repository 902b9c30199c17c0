import Foundation
import NIOCore
import PostgresNIO

/// A pgvector `vector`, in pgvector's binary format both ways: a 16-bit dimension count, 16
/// unused bits, then each value as a big-endian float4. A bound value's type is left for the
/// server to infer from the statement (`$1::vector`, or the column it goes to): the type's
/// oid differs from one database to the next.
public struct PGVector: Sendable, Hashable {
    /// pgvector's limit on dimensions.
    public static let maximumDimensions = 16_000

    public var values: [Float]

    public init(_ values: [Float]) {
        self.values = values
    }
}

extension PGVector: PostgresNonThrowingEncodable {
    public static var psqlType: PostgresDataType { PostgresDataType(0) }
    public static var psqlFormat: PostgresFormat { .binary }

    public func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        buffer.writeInteger(UInt16(truncatingIfNeeded: values.count))
        buffer.writeInteger(UInt16(0))
        for value in values { buffer.writeInteger(value.bitPattern) }
    }
}

extension PGVector: PostgresDecodable {
    public init<JSONDecoder: PostgresJSONDecoder>(
        from buffer: inout ByteBuffer, type: PostgresDataType, format: PostgresFormat, context: PostgresDecodingContext<JSONDecoder>
    ) throws {
        switch format {
        case .binary:
            guard let dimensions = buffer.readInteger(as: UInt16.self), let unused = buffer.readInteger(as: UInt16.self), unused == 0,
                  Int(dimensions) <= Self.maximumDimensions, buffer.readableBytes == Int(dimensions) * 4
            else { throw PostgresDecodingError.Code.failure }
            values = (0..<Int(dimensions)).map { _ in Float(bitPattern: buffer.readInteger(as: UInt32.self)!) }
        case .text:
            guard let text = buffer.readString(length: buffer.readableBytes), let parsed = Self.parse(text) else {
                throw PostgresDecodingError.Code.failure
            }
            values = parsed
        }
    }

    /// pgvector's text form, `[1,2.5,-3]`; `nil` for anything else.
    static func parse(_ text: String) -> [Float]? {
        guard text.hasPrefix("["), text.hasSuffix("]") else { return nil }
        let inner = text.dropFirst().dropLast()
        if inner.allSatisfy(\.isWhitespace) { return [] }
        var values: [Float] = []
        for part in inner.split(separator: ",", omittingEmptySubsequences: false) {
            guard values.count < maximumDimensions, let value = Float(part.trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
            values.append(value)
        }
        return values
    }
}
