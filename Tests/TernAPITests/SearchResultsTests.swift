import Foundation
import NIOCore
import TernAI
import Testing
@testable import TernAPI

@Suite struct SearchResultsTests {
    /// The hand-written answer holds the same JSON as the encoded results, whatever the texts
    /// and numbers hold.
    @Test func theWrittenAnswerIsTheEncodedResults() throws {
        let texts = [
            "", "Hello", #"a "quoted" word and a \ backslash"#, "line\nbreak\ttab\rreturn", "\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
            "emoji 🚀, ünïcödé, 中文", "</script><script>alert(1)</script>", "a/b", "\u{2028}\u{2029}",
        ]
        let numbers = [0, 1, -1, 0.1, 1.0 / 3, 0.016393442622950821, 1e-5, 2.5e-12, 123_456_789.125, Double.leastNonzeroMagnitude]
        let hits = texts.indices.map { index in
            SearchResults.Hit(
                document_id: UUID().uuidString.lowercased(), title: texts[index], chunk_id: Int64(index) * 1_000_000_007, position: index,
                heading: texts[(index + 3) % texts.count], text: texts[(index + 5) % texts.count],
                score: numbers[index % numbers.count], similarity: -numbers[(index + 1) % numbers.count])
        }
        for results in [SearchResults(data: hits, mode: "hybrid"), SearchResults(data: [], mode: "text")] {
            let written = try JSONSerialization.jsonObject(with: Data(results.json.readableBytesView)) as? NSDictionary
            let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(results)) as? NSDictionary
            #expect(written != nil && written == encoded)
        }
    }

    /// JSON has no NaN or infinity: such a number is written as 0 rather than break the answer.
    @Test func aNumberJSONCannotHoldIsZero() {
        #expect([Double.nan, .infinity, -.infinity].map(JSONText.number) == ["0", "0", "0"])
        #expect(JSONText.number(0.5) == "0.5")
    }
}
