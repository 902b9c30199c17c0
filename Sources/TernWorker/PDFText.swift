import Foundation

/// The text of a PDF, by Debian's `pdftotext` (poppler-utils): pages become paragraphs.
enum PDFText {
    /// Longest a conversion may take.
    static let timeout: Duration = .seconds(120)
    /// Most text kept from one PDF.
    static let maximumBytes = 16 << 20

    static func text(ofBase64 content: String) async throws -> String {
        guard let data = Data(base64Encoded: content, options: .ignoreUnknownCharacters), data.starts(with: Array("%PDF-".utf8)) else {
            throw PermanentFailure(message: "the document is not a PDF")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tern-\(UUID().uuidString).pdf")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["pdftotext", "-q", "-enc", "UTF-8", "-eol", "unix", file.path, "-"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { exited.continuation.yield($0.terminationStatus) }
        do {
            try process.run()
        } catch {
            throw PermanentFailure(message: "PDF needs pdftotext (Debian's poppler-utils) on the worker")
        }
        let pid = process.processIdentifier
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            kill(pid, SIGKILL)
        }
        defer { watchdog.cancel() }
        // Read as it comes (a full pipe would stall the child), up to the limit, on a thread of
        // its own: the read blocks.
        let reader = output.fileHandleForReading
        let text: Data = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var text = Data()
                while let chunk = try? reader.read(upToCount: 64 << 10), !chunk.isEmpty {
                    if text.count < maximumBytes { text.append(chunk.prefix(maximumBytes - text.count)) }
                }
                continuation.resume(returning: text)
            }
        }
        var iterator = exited.stream.makeAsyncIterator()
        let status = await iterator.next() ?? -1
        // pdftotext exits 127 through env when it is missing, 1 to 3 for a PDF it cannot read.
        if status == 127 { throw PermanentFailure(message: "PDF needs pdftotext (Debian's poppler-utils) on the worker") }
        guard status == 0 else { throw PermanentFailure(message: "the PDF could not be read") }
        return String(decoding: text, as: UTF8.self).replacingOccurrences(of: "\u{0C}", with: "\n\n")
    }
}
