import Foundation
import NIOCore
import PostgresNIO
import Testing
@testable import TernStore
import TernTestSupport

/// pgvector's binary format, byte for byte, and both formats through the real server.
@Suite struct PGVectorTests {
    @Test func encodesPgvectorsBinaryFormat() {
        var buffer = ByteBuffer()
        PGVector([1, -2.5, 0]).encode(into: &buffer, context: .default)
        #expect(Array(buffer.readableBytesView) == [
            0x00, 0x03, 0x00, 0x00,  // 3 dimensions, unused
            0x3F, 0x80, 0x00, 0x00,  // 1.0
            0xC0, 0x20, 0x00, 0x00,  // -2.5
            0x00, 0x00, 0x00, 0x00,  // 0.0
        ])
    }

    @Test func decodesBinaryAndTextAndRefusesMalformedBytes() throws {
        var binary = ByteBuffer(bytes: [0x00, 0x02, 0x00, 0x00, 0x3F, 0x80, 0x00, 0x00, 0xC0, 0x20, 0x00, 0x00])
        #expect(try PGVector(from: &binary, type: PostgresDataType(0), format: .binary, context: .default) == PGVector([1, -2.5]))
        var text = ByteBuffer(string: "[1,-2.5, 3e2]")
        #expect(try PGVector(from: &text, type: PostgresDataType(0), format: .text, context: .default) == PGVector([1, -2.5, 300]))
        let malformed: [[UInt8]] = [
            [0x00, 0x02, 0x00, 0x00, 0x3F, 0x80, 0x00, 0x00],  // two dimensions, one value
            [0x00, 0x01, 0x00, 0x01, 0x3F, 0x80, 0x00, 0x00],  // the unused bits set
            [0x00],  // no header
            [0xFF, 0xFF, 0x00, 0x00],  // past pgvector's limit
        ]
        for bytes in malformed {
            var buffer = ByteBuffer(bytes: bytes)
            #expect(throws: (any Error).self) { try PGVector(from: &buffer, type: PostgresDataType(0), format: .binary, context: .default) }
        }
        for bad in ["1,2", "[1,,2]", "[1,x]", "[nan]", "[1,2"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: (any Error).self) { try PGVector(from: &buffer, type: PostgresDataType(0), format: .text, context: .default) }
        }
    }

    @Test func roundTripsThroughPostgres() async throws {
        try await TestServices.withStore { store in
            let vector = PGVector([0.25, -1, 3.5e-3, 1e10])
            let rows = try await store.client.query("SELECT \(vector)::vector, \(vector)::vector::text, vector_dims(\(vector)::vector)")
            for try await (back, text, dimensions) in rows.decode((PGVector, String, Int).self) {
                #expect(back == vector)
                #expect(text == "[0.25,-1,0.0035,1e+10]")
                #expect(dimensions == 4)
            }
        }
    }
}
