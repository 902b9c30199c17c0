import Foundation

/// Splits a document into chunks for retrieval: sections under their headings (Markdown `#`
/// headings, HTML `<h1>`–`<h6>`), paragraphs kept whole where they fit, chunks of at most
/// `maximumTokens` (estimated: four bytes a token) that never cross a heading, and each
/// chunk after the first of a section repeating the end of the one before (`overlapTokens`),
/// so a fact cut at a boundary is whole in one of them.
public struct DocumentChunker: Sendable {
    public struct Chunk: Sendable, Equatable {
        /// The headings above the chunk, outermost first, joined with " > ".
        public var heading: String
        public var content: String
        public var tokens: Int
    }

    public var maximumTokens: Int
    public var overlapTokens: Int

    public init(maximumTokens: Int = 200, overlapTokens: Int = 30) {
        self.maximumTokens = max(16, maximumTokens)
        self.overlapTokens = min(max(0, overlapTokens), self.maximumTokens / 2)
    }

    /// The formats `chunks(of:format:)` reads.
    public static let formats = ["text", "markdown", "html"]

    static func tokens(_ text: String) -> Int { (text.utf8.count + 3) / 4 }

    public func chunks(of content: String, format: String) -> [Chunk] {
        let blocks: [(heading: [String], text: String)]
        switch format {
        case "markdown": blocks = Self.markdownBlocks(content)
        case "html": blocks = Self.markdownBlocks(HTMLText.markdown(content))
        default: blocks = Self.paragraphs(content).map { ([], $0) }
        }
        var chunks: [Chunk] = []
        var section: [String]?
        var current: [String] = []
        func flush() {
            guard !current.isEmpty else { return }
            let text = current.joined(separator: "\n\n")
            chunks.append(Chunk(heading: (section ?? []).joined(separator: " > "), content: text, tokens: Self.tokens(text)))
            current = []
        }
        for block in blocks {
            if section != block.heading {
                flush()
                section = block.heading
            }
            for piece in pieces(of: block.text) {
                let size = current.reduce(0) { $0 + Self.tokens($1) + 1 } + Self.tokens(piece)
                if !current.isEmpty, size > maximumTokens {
                    let tail = overlap(after: current.joined(separator: "\n\n"))
                    flush()
                    if !tail.isEmpty, Self.tokens(tail) + Self.tokens(piece) + 1 <= maximumTokens { current = [tail] }
                }
                current.append(piece)
            }
        }
        flush()
        return chunks
    }

    /// A paragraph as pieces that each fit a chunk with the overlap before them: the
    /// paragraph, else runs of its sentences, else runs of its words.
    private func pieces(of paragraph: String) -> [String] {
        guard Self.tokens(paragraph) > maximumTokens else { return [paragraph] }
        let budget = maximumTokens - overlapTokens - 1
        var pieces: [String] = []
        var current = ""
        for sentence in Self.sentences(paragraph) {
            for word in Self.tokens(sentence) > budget ? sentence.split(separator: " ").map(String.init) : [sentence] {
                let joined = current.isEmpty ? word : current + " " + word
                if Self.tokens(joined) > budget, !current.isEmpty {
                    pieces.append(current)
                    current = String(word.prefix(budget * 4))
                } else {
                    current = String(joined.prefix(budget * 4))
                }
            }
        }
        if !current.isEmpty { pieces.append(current) }
        return pieces
    }

    /// The last sentences of `text` within `overlapTokens` (none if even the last is longer).
    private func overlap(after text: String) -> String {
        guard overlapTokens > 0 else { return "" }
        var kept: [String] = []
        for sentence in Self.sentences(text).reversed() {
            let candidate = ([sentence] + kept).joined(separator: " ")
            guard Self.tokens(candidate) <= overlapTokens else { break }
            kept.insert(sentence, at: 0)
        }
        return kept.joined(separator: " ")
    }

    static func sentences(_ text: String) -> [String] {
        var sentences: [String] = []
        var current = ""
        var previous: Character = " "
        for character in text {
            if character.isWhitespace, ".!?".contains(previous), !current.isEmpty {
                sentences.append(current)
                current = ""
            } else if !(character.isWhitespace && current.isEmpty) {
                current.append(character.isNewline ? " " : character)
            }
            previous = character
        }
        let last = current.trimmingCharacters(in: .whitespaces)
        if !last.isEmpty { sentences.append(last) }
        return sentences
    }

    static func paragraphs(_ text: String) -> [String] {
        text.replacingOccurrences(of: "\r\n", with: "\n")
            .components(separatedBy: "\n\n")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
    }

    /// Markdown as paragraphs under their headings; a fenced code block is one paragraph.
    static func markdownBlocks(_ text: String) -> [(heading: [String], text: String)] {
        var blocks: [(heading: [String], text: String)] = []
        var headings: [(level: Int, title: String)] = []
        var paragraph: [String] = []
        var fence: String?
        func flush() {
            let text = paragraph.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { blocks.append((headings.map(\.title), text)) }
            paragraph = []
        }
        for line in text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if let open = fence {
                paragraph.append(line)
                if trimmed.hasPrefix(open) {
                    fence = nil
                    flush()
                }
                continue
            }
            if trimmed.hasPrefix("```") || trimmed.hasPrefix("~~~") {
                flush()
                fence = String(trimmed.prefix(3))
                paragraph.append(line)
                continue
            }
            let level = trimmed.prefix { $0 == "#" }.count
            if (1...6).contains(level), trimmed.dropFirst(level).first == " " {
                flush()
                let title = trimmed.dropFirst(level).trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "#")))
                headings.removeAll { $0.level >= level }
                headings.append((level, title))
                continue
            }
            if trimmed.isEmpty { flush() } else { paragraph.append(line) }
        }
        flush()
        return blocks
    }
}

/// HTML to Markdown-like text for chunking: headings become `#` lines, block elements
/// paragraph breaks, other tags vanish, scripts, styles and comments go with their content,
/// and character references are decoded.
enum HTMLText {
    static func markdown(_ html: String) -> String {
        var output = ""
        var index = html.startIndex
        while index < html.endIndex {
            let character = html[index]
            if character == "<" {
                if html[index...].hasPrefix("<!--") {
                    index = html[index...].range(of: "-->")?.upperBound ?? html.endIndex
                    continue
                }
                guard let close = html[index...].firstIndex(of: ">") else { break }
                let tag = html[html.index(after: index)..<close]
                let name = tag.drop { $0 == "/" }.prefix { $0.isLetter || $0.isNumber }.lowercased()
                index = html.index(after: close)
                if ["script", "style", "head", "template", "noscript"].contains(name), !tag.hasPrefix("/") {
                    index = html[index...].range(of: "</\(name)", options: .caseInsensitive).flatMap { html[$0.upperBound...].firstIndex(of: ">") }
                        .map { html.index(after: $0) } ?? html.endIndex
                    continue
                }
                if name.count == 2, name.first == "h", let level = Int(String(name.last!)), (1...6).contains(level) {
                    output += tag.hasPrefix("/") ? "\n\n" : "\n\n" + String(repeating: "#", count: level) + " "
                } else if ["p", "div", "li", "ul", "ol", "tr", "table", "section", "article", "blockquote", "pre", "main", "header", "footer", "br", "hr"].contains(name) {
                    output += "\n\n"
                } else if ["td", "th"].contains(name) {
                    output += " "
                }
                continue
            }
            if character == "&", let end = html[index...].prefix(12).firstIndex(of: ";"),
               let decoded = decode(String(html[html.index(after: index)..<end])) {
                output += decoded
                index = html.index(after: end)
                continue
            }
            output.append(character.isNewline ? " " : character)
            index = html.index(after: index)
        }
        return output
    }

    static func decode(_ entity: String) -> String? {
        switch entity {
        case "amp": return "&"
        case "lt": return "<"
        case "gt": return ">"
        case "quot": return "\""
        case "apos", "#39": return "'"
        case "nbsp": return " "
        default:
            let number: UInt32?
            if entity.hasPrefix("#x") || entity.hasPrefix("#X") { number = UInt32(entity.dropFirst(2), radix: 16) } else if entity.hasPrefix("#") {
                number = UInt32(entity.dropFirst())
            } else {
                number = nil
            }
            return number.flatMap(Unicode.Scalar.init).map { String(Character($0)) }
        }
    }
}
