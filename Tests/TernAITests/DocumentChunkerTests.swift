import Testing
@testable import TernAI

/// Chunks follow headings and paragraphs, fit their size, and overlap within a section.
@Suite struct DocumentChunkerTests {
    @Test func markdownSectionsAreChunksUnderTheirHeadings() {
        let markdown = """
            # Guide

            Intro paragraph.

            ## Install

            Run the script.

            ```sh
            scripts/install

            # not a heading inside a fence
            ```

            ### Linux

            Use apt.

            ## Use
            Start it.
            """
        let chunks = DocumentChunker().chunks(of: markdown, format: "markdown")
        #expect(chunks.map(\.heading) == ["Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Use"])
        #expect(chunks[1].content == "Run the script.\n\n```sh\nscripts/install\n\n# not a heading inside a fence\n```")
        #expect(chunks[3].content == "Start it.")
    }

    @Test func aLongSectionIsSplitWithinItsSizeAndOverlaps() {
        let sentences = (1...60).map { "Sentence number \($0) says something short." }
        let text = sentences[0..<30].joined(separator: " ") + "\n\n" + sentences[30...].joined(separator: " ")
        let chunker = DocumentChunker(maximumTokens: 64, overlapTokens: 16)
        let chunks = chunker.chunks(of: text, format: "text")
        #expect(chunks.count > 4)
        #expect(chunks.allSatisfy { $0.tokens <= 64 })
        // Every sentence is in some chunk, in order; each chunk after the first starts with the
        // end of the one before.
        let joined = chunks.map(\.content).joined(separator: " ")
        for sentence in sentences { #expect(joined.contains(sentence)) }
        for (before, after) in zip(chunks, chunks.dropFirst()) {
            let lastSentence = DocumentChunker.sentences(before.content).last!
            #expect(after.content.hasPrefix(lastSentence) || !after.content.contains(lastSentence))
        }
        #expect(zip(chunks, chunks.dropFirst()).contains { DocumentChunker.sentences($1.content).first == DocumentChunker.sentences($0.content).last })
    }

    @Test func htmlLosesItsTagsScriptsAndEntitiesButKeepsItsHeadings() {
        let html = """
            <html><head><title>x</title><style>p { color: red }</style></head><body>
            <h1>Fish &amp; Chips</h1><p>Served <b>hot</b>&nbsp;daily &#8212; since 1901.</p>
            <script>alert("no")</script><!-- a comment -->
            <h2>Prices</h2><ul><li>Cod: &pound;9</li><li>Plaice &lt;fresh&gt;</li></ul></body></html>
            """
        let chunks = DocumentChunker().chunks(of: html, format: "html")
        #expect(chunks.map(\.heading) == ["Fish & Chips", "Fish & Chips > Prices"])
        #expect(chunks[0].content == "Served hot daily — since 1901.")
        #expect(chunks[1].content.contains("Plaice <fresh>"))
        #expect(!chunks.map(\.content).joined().contains("alert"))
    }

    @Test func aWordLongerThanAChunkIsCut() {
        let chunks = DocumentChunker(maximumTokens: 16, overlapTokens: 0).chunks(of: String(repeating: "x", count: 1000), format: "text")
        #expect(chunks.allSatisfy { $0.tokens <= 16 })
    }
}
