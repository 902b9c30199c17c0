import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TernRedis
import TernTimers

/// One event in a job's event stream: a stream entry, whose id clients resume after.
public typealias JobEvent = StreamEntry

extension StreamEntry {
    /// The event's type (`queued`, `token`, `completed`, ...).
    public var type: String { fields["type"] ?? "" }
}

/// The per-job event streams of a queue. The queue itself writes `queued` (before the job can
/// be claimed), `completed`, `error` (failed) and `cancelled`; workers append progress and output
/// (a chat's tokens); the API reads, resuming after any event id. Every append is announced on
/// the stream's own pub/sub channel (the stream's key), so a reader waits without holding a
/// Redis connection of its own: thousands of idle readers share one subscriber connection.
public struct JobEvents: Sendable {
    public let client: RedisClient
    /// The connection readers wait on (connected on first use).
    let subscriber: RedisSubscriber
    /// The queue's key prefix: a job's events share its queue's hash tag.
    let prefix: String
    /// How long a job's events are kept after the last append, in seconds.
    public let retentionSeconds: Int

    public init(queue: RedisJobQueue) {
        client = queue.client
        subscriber = RedisSubscriber(configuration: queue.client.configuration, logger: queue.client.logger)
        prefix = queue.prefix
        retentionSeconds = Int(max(1, queue.configuration.eventRetention.components.seconds))
    }

    public func key(_ job: JobID) -> String { prefix + "events:" + job.rawValue }

    /// Appends an event, refreshes the stream's retention and announces it, in one round trip.
    /// The announcement carries the event and the id of the one before it, so a reader that
    /// has read up to that one takes the event as it is, without reading the stream; an event
    /// over `announcedBytes` is announced without its fields.
    @discardableResult
    public func append(_ job: JobID, _ fields: KeyValuePairs<String, String>) async throws -> String {
        let size = fields.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        var arguments: [any RESPArgument] = [retentionSeconds, size <= Self.announcedBytes ? 1 : 0]
        for (field, value) in fields { arguments += [field, value] }
        return try await client.run(Self.appendScript, keys: [key(job)], arguments: arguments).string ?? ""
    }

    /// The largest event (its fields' bytes) an announcement carries.
    static let announcedBytes = 16 << 10

    /// KEYS stream; ARGV retention in seconds, whether to announce the fields, then the
    /// fields. Announces previous id, id, field, value, ... each as `LENGTH:BYTES` (its length
    /// in bytes, in decimal), one after the other, or `1`. Returns the id.
    static let appendScript = RedisScript("""
        local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
        local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
        redis.call('EXPIRE', KEYS[1], ARGV[1])
        if ARGV[2] == '1' then
          local previous = last[1] and last[1][1] or '0'
          local parts = {#previous, ':', previous, #id, ':', id}
          for i = 3, #ARGV do
            parts[#parts + 1] = #ARGV[i]; parts[#parts + 1] = ':'; parts[#parts + 1] = ARGV[i]
          end
          redis.call('PUBLISH', KEYS[1], table.concat(parts))
        else
          redis.call('PUBLISH', KEYS[1], '1')
        end
        return id
        """)
}

extension JobEvents {
    /// Follows a job's events after `lastID` ("0": from the start), in order: `onBatch` gets each
    /// batch of new events and returns whether to go on; `onIdle` runs once nothing came for half
    /// of `idle` (so never more than `idle` passes without one or the other) and returns whether
    /// to go on. Between batches the reader waits on the stream's announcements, taking the
    /// event an announcement carries when it comes right after the last one read, and reading
    /// the stream otherwise. Before each `onIdle` it reads once more, so an announcement lost
    /// while the subscriber reconnected delays events by at most `idle`.
    public func follow(
        _ job: JobID, after lastID: String, idle: Duration,
        onBatch: ([JobEvent]) async throws -> Bool,
        onIdle: () async throws -> Bool
    ) async throws {
        // Wake-ups come from announcements, put in `inbox` as they arrive (on the subscriber's
        // event loop: no task between), and from ticks twice per idle interval; a tick never
        // hides an announcement, which waits in `inbox`.
        let inbox = AnnouncementInbox()
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await subscriber.subscribe(to: [key(job)], onMessage: { message in
            inbox.put(message.payload)
            wake.yield()
        }) {
            let ticks = EventLoopTimer.repeating(every: idle / 2) { wake.yield() }
            defer { ticks.cancel() }
            var lastID = lastID
            // When the caller last heard something: events or an idle call.
            var lastHeard = ContinuousClock.now
            var iterator = wakeups.makeAsyncIterator()
            repeat {
                let (payloads, readNeeded) = inbox.take()
                var mustRead = readNeeded
                var announced: [JobEvent] = []
                for payload in payloads where !mustRead {
                    guard let (previous, event) = Self.announcedEvent(payload), previous == lastID else {
                        mustRead = true
                        break
                    }
                    announced.append(event)
                    lastID = event.id
                }
                if !announced.isEmpty {
                    lastHeard = .now
                    guard try await onBatch(announced) else { return }
                }
                // Before an idle call, read once more: an announcement may have been lost
                // while the subscriber reconnected.
                guard mustRead || ContinuousClock.now - lastHeard >= idle / 2 else { continue }
                while true {
                    let batch = try await client.streamRead(key(job), after: lastID, count: 256)
                    guard let last = batch.last else { break }
                    lastID = last.id
                    lastHeard = .now
                    guard try await onBatch(batch) else { return }
                    if batch.count < 256 { break }
                }
                if ContinuousClock.now - lastHeard >= idle / 2 {
                    lastHeard = .now
                    guard try await onIdle() else { return }
                }
            } while await iterator.next() != nil
        }
    }

    /// The event an announcement carries and the id of the one before it; `nil` for an
    /// announcement without one, or one that is not whole (`appendScript` writes them).
    static func announcedEvent(_ payload: ByteBuffer) -> (previous: String, event: JobEvent)? {
        guard let parts = lengthPrefixedStrings(payload), parts.count >= 2, parts.count % 2 == 0 else { return nil }
        var fields: [String: String] = [:]
        for index in stride(from: 2, to: parts.count, by: 2) { fields[parts[index]] = parts[index + 1] }
        return (parts[0], JobEvent(id: parts[1], fields: fields))
    }

    /// The strings of `LENGTH:BYTES` parts one after the other; `nil` unless the bytes are
    /// exactly such parts. Every piece of every answer comes this way: no escapes to undo.
    static func lengthPrefixedStrings(_ payload: ByteBuffer) -> [String]? {
        payload.withUnsafeReadableBytes { bytes -> [String]? in
            var parts: [String] = []
            var index = 0
            while index < bytes.count {
                var length = 0
                var digits = 0
                while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10, digits < 9 {
                    length = length * 10 + Int(bytes[index] &- UInt8(ascii: "0"))
                    index += 1
                    digits += 1
                }
                guard digits > 0, index < bytes.count, bytes[index] == UInt8(ascii: ":"), length <= bytes.count - index - 1 else { return nil }
                index += 1
                parts.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)]), as: UTF8.self))
                index += length
            }
            return parts
        }
    }

    /// Every event of a job so far, without waiting.
    public func all(_ job: JobID) async throws -> [JobEvent] {
        try await client.streamRange(key(job))
    }

}

/// The announcements a reader has received and not yet handled: at most `capacity`; past
/// that they are dropped and the reader reads the stream instead. It starts out wanting a
/// read, so a reader reads once before it waits.
final class AnnouncementInbox: Sendable {
    private let state = NIOLockedValueBox((payloads: [ByteBuffer](), mustRead: true))
    let capacity = 256

    func put(_ payload: ByteBuffer) {
        state.withLockedValue { state in
            if state.payloads.count < capacity { state.payloads.append(payload) } else { state.mustRead = true }
        }
    }

    /// The announcements so far, and whether the reader must read the stream (after them).
    func take() -> (payloads: [ByteBuffer], mustRead: Bool) {
        state.withLockedValue { state in
            defer { state = ([], false) }
            return state
        }
    }
}
