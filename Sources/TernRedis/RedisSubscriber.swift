import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A message published on a channel.
public struct RedisMessage: Sendable, Hashable {
    public let channel: String
    public let payload: ByteBuffer
}

/// Pub/sub over one shared RESP3 connection. Subscriptions are scoped and reference-counted:
/// the first subscriber of a channel sends SUBSCRIBE, the last one to leave sends UNSUBSCRIBE.
/// If the connection drops, it is re-established in the background and every channel that still
/// has subscribers is subscribed again (messages published during the gap are not delivered:
/// that is pub/sub's contract).
public final class RedisSubscriber: Sendable {
    let configuration: RedisConfiguration
    let logger: Logger

    private struct State {
        var connection: RedisConnection?
        var subscribers: [String: [UUID: AsyncStream<RedisMessage>.Continuation]] = [:]
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
        guard !channels.isEmpty else { throw RedisError(.invalidArgument, "subscribe needs at least one channel") }
        let channels = Array(Set(channels))
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: RedisMessage.self, bufferingPolicy: .bufferingNewest(buffer))
        do {
            try await changes.withLock {
                let added = state.withLockedValue { state in
                    channels.filter { channel in
                        defer { state.subscribers[channel, default: [:]][id] = continuation }
                        return state.subscribers[channel]?.isEmpty ?? true
                    }
                }
                let connection = try await connected()
                try await connection.subscription(RESPCommand("SUBSCRIBE", added), channels: added.count)
            }
        } catch {
            await leave(id, channels: channels)
            throw error
        }
        do {
            let result = try await body(stream)
            await leave(id, channels: channels)
            return result
        } catch {
            await leave(id, channels: channels)
            throw error
        }
    }

    /// Closes the connection and ends every subscription's stream.
    public func shutdown() {
        let (connection, continuations) = state.withLockedValue { state in
            state.isShutdown = true
            defer { state.subscribers = [:]; state.connection = nil }
            return (state.connection, state.subscribers.values.flatMap(\.values))
        }
        continuations.forEach { $0.finish() }
        connection?.close()
    }

    private func leave(_ id: UUID, channels: [String]) async {
        try? await changes.withLock {
            let (removed, connection, continuation) = state.withLockedValue { state in
                var removed: [String] = []
                var continuation: AsyncStream<RedisMessage>.Continuation?
                for channel in channels {
                    continuation = state.subscribers[channel]?.removeValue(forKey: id) ?? continuation
                    if state.subscribers[channel]?.isEmpty == true {
                        state.subscribers[channel] = nil
                        removed.append(channel)
                    }
                }
                return (removed, state.connection, continuation)
            }
            continuation?.finish()
            // If the connection is gone, so is the server's subscription.
            if let connection, connection.isActive {
                try? await connection.subscription(RESPCommand("UNSUBSCRIBE", removed), channels: removed.count)
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
        guard frame.count == 3, frame[0].string == "message", let channel = frame[1].string,
              case .bulkString(let payload?) = frame[2] else { return }
        let continuations = state.withLockedValue { Array(($0.subscribers[channel] ?? [:]).values) }
        let message = RedisMessage(channel: channel, payload: payload)
        for continuation in continuations { continuation.yield(message) }
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
                        let channels = state.withLockedValue { $0.isShutdown ? [] : Array($0.subscribers.keys) }
                        guard !channels.isEmpty else { return true }
                        let connection = try await connected()
                        try await connection.subscription(RESPCommand("SUBSCRIBE", channels), channels: channels.count)
                        logger.info("pub/sub resubscribed", metadata: ["channels": "\(channels.count)"])
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
