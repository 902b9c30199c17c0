import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A message published on a channel.
public struct RedisMessage: Sendable, Hashable {
    public let channel: String
    /// The pattern the channel matched, for a pattern subscription.
    public let pattern: String?
    public let payload: ByteBuffer

    public init(channel: String, pattern: String? = nil, payload: ByteBuffer) {
        self.channel = channel
        self.pattern = pattern
        self.payload = payload
    }
}

/// What a subscription listens to: one channel, or every channel matching a glob-style pattern.
enum RedisTopic: Hashable, Sendable {
    case channel(String)
    case pattern(String)
}

/// Pub/sub over one shared RESP3 connection. Subscriptions are scoped and reference-counted:
/// the first subscriber of a channel (or pattern) sends SUBSCRIBE (PSUBSCRIBE), the last one to
/// leave sends UNSUBSCRIBE (PUNSUBSCRIBE).
/// If the connection drops, it is re-established in the background and every channel that still
/// has subscribers is subscribed again (messages published during the gap are not delivered:
/// that is pub/sub's contract).
public final class RedisSubscriber: Sendable {
    let configuration: RedisConfiguration
    let logger: Logger

    /// Where one subscription's messages go, and what ends it.
    private struct Listener: Sendable {
        let deliver: @Sendable (RedisMessage) -> Void
        let end: @Sendable () -> Void
    }

    private struct State {
        var connection: RedisConnection?
        var subscribers: [RedisTopic: [UUID: Listener]] = [:]
        var isShutdown = false
    }
    private let state = NIOLockedValueBox(State())
    /// Orders every change of subscriptions (and the reconnect) with the SUBSCRIBE or
    /// UNSUBSCRIBE it sends, so the server's view follows the table: a channel left by one
    /// subscriber and joined by the next is unsubscribed, then subscribed, never the reverse.
    private let changes = AsyncLock()

    public init(configuration: RedisConfiguration, logger: Logger = Logger(label: "tern.redis.subscriber")) {
        var configuration = configuration
        configuration.protocolVersion = 3  // messages arrive as push frames beside ordinary replies
        configuration.clientName = configuration.clientName.map { "\($0)-subscriber" }
        self.configuration = configuration
        self.logger = logger
    }

    /// Subscribes to `channels` for the duration of `body`, which reads the messages. Returns
    /// once the server has confirmed the subscription, so a message published after that point
    /// reaches `body`. At most `buffer` unread messages are kept; older ones are dropped.
    @discardableResult
    public func subscribe<Result: Sendable>(
        to channels: [String], buffer: Int = 1024,
        _ body: (AsyncStream<RedisMessage>) async throws -> Result
    ) async throws -> Result {
        try await subscribe(channels.map(RedisTopic.channel), buffer: buffer, body)
    }

    /// Subscribes to every channel matching one of `patterns` (glob-style: `jobs:*`) for the
    /// duration of `body`, as `subscribe(to:)` does for channels.
    @discardableResult
    public func subscribe<Result: Sendable>(
        toPatterns patterns: [String], buffer: Int = 1024,
        _ body: (AsyncStream<RedisMessage>) async throws -> Result
    ) async throws -> Result {
        try await subscribe(patterns.map(RedisTopic.pattern), buffer: buffer, body)
    }

    /// Subscribes to `channels` for the duration of `body`, handing each message to `onMessage`
    /// as it arrives, on the connection's event loop: no stream and no task between the
    /// connection and the subscriber, so `onMessage` must be quick and must not block. Every
    /// message published once the server has confirmed the subscription (when `body` starts)
    /// reaches it, until `body` ends; one published just before may too.
    @discardableResult
    public func subscribe<Result: Sendable>(
        to channels: [String], onMessage: @escaping @Sendable (RedisMessage) -> Void, _ body: () async throws -> Result
    ) async throws -> Result {
        try await subscribe(channels.map(RedisTopic.channel), Listener(deliver: onMessage, end: {}), body)
    }

    private func subscribe<Result: Sendable>(
        _ topics: [RedisTopic], buffer: Int,
        _ body: (AsyncStream<RedisMessage>) async throws -> Result
    ) async throws -> Result {
        let (stream, continuation) = AsyncStream.makeStream(of: RedisMessage.self, bufferingPolicy: .bufferingNewest(buffer))
        let listener = Listener(deliver: { continuation.yield($0) }, end: { continuation.finish() })
        return try await subscribe(topics, listener) { try await body(stream) }
    }

    private func subscribe<Result: Sendable>(_ topics: [RedisTopic], _ listener: Listener, _ body: () async throws -> Result) async throws -> Result {
        guard !topics.isEmpty else { throw RedisError(.invalidArgument, "subscribe needs at least one channel or pattern") }
        let topics = Array(Set(topics))
        let id = UUID()
        do {
            try await changes.withLock {
                let added = state.withLockedValue { state in
                    topics.filter { topic in
                        defer { state.subscribers[topic, default: [:]][id] = listener }
                        return state.subscribers[topic]?.isEmpty ?? true
                    }
                }
                try await Self.send(subscribe: true, added, on: try await connected())
            }
        } catch {
            await leave(id, topics: topics)
            throw error
        }
        do {
            let result = try await body()
            await leave(id, topics: topics)
            return result
        } catch {
            await leave(id, topics: topics)
            throw error
        }
    }

    /// SUBSCRIBE and PSUBSCRIBE (or their UNSUBSCRIBE forms) for `topics`, each confirmed.
    private static func send(subscribe: Bool, _ topics: [RedisTopic], on connection: RedisConnection) async throws {
        var channels: [String] = []
        var patterns: [String] = []
        for topic in topics {
            switch topic {
            case .channel(let name): channels.append(name)
            case .pattern(let pattern): patterns.append(pattern)
            }
        }
        try await connection.subscription(RESPCommand(subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE", channels), channels: channels.count)
        try await connection.subscription(RESPCommand(subscribe ? "PSUBSCRIBE" : "PUNSUBSCRIBE", patterns), channels: patterns.count)
    }

    /// Closes the connection and ends every subscription's stream.
    public func shutdown() {
        let (connection, listeners) = state.withLockedValue { state in
            state.isShutdown = true
            defer { state.subscribers = [:]; state.connection = nil }
            return (state.connection, state.subscribers.values.flatMap(\.values))
        }
        listeners.forEach { $0.end() }
        connection?.close()
    }

    private func leave(_ id: UUID, topics: [RedisTopic]) async {
        try? await changes.withLock {
            let (removed, connection, listener) = state.withLockedValue { state in
                var removed: [RedisTopic] = []
                var listener: Listener?
                for topic in topics {
                    listener = state.subscribers[topic]?.removeValue(forKey: id) ?? listener
                    if state.subscribers[topic]?.isEmpty == true {
                        state.subscribers[topic] = nil
                        removed.append(topic)
                    }
                }
                return (removed, state.connection, listener)
            }
            listener?.end()
            // If the connection is gone, so is the server's subscription.
            if let connection, connection.isActive {
                try? await Self.send(subscribe: false, removed, on: connection)
            }
        }
    }

    /// The live connection, or a new one. Called only while holding `changes`.
    private func connected() async throws -> RedisConnection {
        let current = try state.withLockedValue { state -> RedisConnection? in
            if state.isShutdown { throw RedisError(.connectionClosed, "subscriber is shut down") }
            return state.connection
        }
        if let current, current.isActive { return current }
        let connection = try await RedisConnection.connect(to: configuration, logger: logger) { [weak self] frame in
            self?.deliver(frame)
        }
        guard connection.protocolVersion == 3 else {
            connection.close()
            throw RedisError(.unexpectedReply, "pub/sub needs RESP3 (Redis 6 or later)")
        }
        let isShutdown = state.withLockedValue { state in
            if !state.isShutdown { state.connection = connection }
            return state.isShutdown
        }
        if isShutdown {
            connection.close()
            throw RedisError(.connectionClosed, "subscriber is shut down")
        }
        connection.closeFuture.whenComplete { [weak self] _ in self?.connectionClosed(connection) }
        return connection
    }

    private func deliver(_ frame: [RESPValue]) {
        // [message, channel, payload] or [pmessage, pattern, channel, payload]
        let topic: RedisTopic
        let message: RedisMessage
        switch frame.first?.string {
        case "message":
            guard frame.count == 3, let channel = frame[1].string, case .bulkString(let payload?) = frame[2] else { return }
            topic = .channel(channel)
            message = RedisMessage(channel: channel, pattern: nil, payload: payload)
        case "pmessage":
            guard frame.count == 4, let pattern = frame[1].string, let channel = frame[2].string,
                  case .bulkString(let payload?) = frame[3] else { return }
            topic = .pattern(pattern)
            message = RedisMessage(channel: channel, pattern: pattern, payload: payload)
        default:
            return
        }
        let listeners = state.withLockedValue { Array(($0.subscribers[topic] ?? [:]).values) }
        for listener in listeners { listener.deliver(message) }
    }

    /// Reconnects and subscribes again to every channel that still has subscribers.
    private func connectionClosed(_ connection: RedisConnection) {
        let shouldReconnect = state.withLockedValue { state -> Bool in
            guard state.connection === connection else { return false }
            state.connection = nil
            return !state.isShutdown && !state.subscribers.isEmpty
        }
        guard shouldReconnect else { return }
        logger.warning("pub/sub connection lost; reconnecting")
        // Unstructured: the reconnect belongs to no subscriber; it ends once subscribed again,
        // or when no subscriber is left, or on shutdown.
        Task {
            var delay = Duration.milliseconds(50)
            while true {
                do {
                    let done = try await changes.withLock { () async throws -> Bool in
                        let topics = state.withLockedValue { $0.isShutdown ? [] : Array($0.subscribers.keys) }
                        guard !topics.isEmpty else { return true }
                        try await Self.send(subscribe: true, topics, on: try await connected())
                        logger.info("pub/sub resubscribed", metadata: ["topics": "\(topics.count)"])
                        return true
                    }
                    if done { return }
                } catch {
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(2))
                }
            }
        }
    }
}

/// A lock for async code: waiters queue instead of blocking a thread.
final class AsyncLock: Sendable {
    private let state = NIOLockedValueBox((locked: false, waiters: [CheckedContinuation<Void, Never>]()))

    func withLock<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLockedValue { state -> Bool in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
