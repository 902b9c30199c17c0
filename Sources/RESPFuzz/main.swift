// libFuzzer target for the RESP decoder: any bytes, split anywhere, must decode or fail with
// RESPDecodingError, never crash, hang or grow without bound. Built and run by scripts/fuzz.
import NIOCore
import TernRedis

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    var limits = RESPLimits()
    limits.maximumBulkLength = 1 << 16
    limits.maximumAggregateCount = 1 << 12
    // The first byte picks where to split the input, so partial frames are exercised too.
    let split = count > 0 ? Int(bytes[0]) % (count + 1) : 0
    var decoder = RESPDecoder(limits: limits)
    var buffer = ByteBuffer(bytes: bytes[..<split])
    do {
        while let _ = try decoder.decode(buffer: &buffer) {}
        buffer.writeBytes(bytes[split...])
        while let _ = try decoder.decode(buffer: &buffer) {}
    } catch is RESPDecodingError {
        // Malformed input is expected to be rejected.
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    // The connection's path: the resumable frame scanner, then the decoder on each whole frame.
    var scanner = RESPFrameScanner(limits: limits)
    var received = ByteBuffer(bytes: bytes[..<split])
    do {
        for part in [Array(bytes[split...]), []] {
            received.writeBytes(part)
            while let length = try scanner.frameLength(in: received) {
                guard var frame = received.readSlice(length: length) else { fatalError("frame longer than the buffer") }
                var frameDecoder = RESPDecoder(limits: limits)
                // A complete frame never leaves the decoder asking for more bytes.
                if try frameDecoder.decode(buffer: &frame) == nil { fatalError("scanner and decoder disagree") }
            }
        }
    } catch is RESPDecodingError {
        // Malformed input is expected to be rejected.
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    return 0
}

#if FUZZING
/// SwiftPM links an executable's entry point as `RESPFuzz_main`; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("RESPFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { fuzz($0, $1) }
}
#else
/// Without libFuzzer (a plain `swift build`), a placeholder entry point explains how to run it.
@main
enum RESPFuzzEntry {
    static func main() {
        print("Build and run this target with scripts/fuzz (it links libFuzzer).")
    }
}
#endif
