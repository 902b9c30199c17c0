import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One connection to a Redis server. Commands are pipelined: any number of callers may send at
/// once, and replies are matched to them in order (RESP is first-in, first-out).
public final class RedisConnection: Sendable {
    let channel: any Channel
    /// The channel's command handler, which callers hand their commands to directly: no trip
    /// through the channel pipeline, no boxing of the request, no write promise.
    private let handler: NIOLoopBound<RedisCommandHandler>
    let logger: Logger
    /// 3 when the handshake switched to RESP3 (maps, sets, push frames), else 2.
    public let protocolVersion: Int
    /// How long a reply may take (see `RedisConfiguration.commandTimeout`).
    public let commandTimeout: TimeAmount

    init(channel: any Channel, handler: NIOLoopBound<RedisCommandHandler>, protocolVersion: Int, commandTimeout: TimeAmount, logger: Logger) {
        self.channel = channel
        self.handler = handler
        self.protocolVersion = protocolVersion
        self.commandTimeout = commandTimeout
        self.logger = logger
    }

    /// Opens a connection and runs the handshake (AUTH and SELECT from the configuration).
    /// `onPush` receives out-of-band push frames (pub/sub messages on a RESP3 connection), on the
    /// connection's event loop.
    public static func connect(
        to configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "tern.redis"),
        onPush: (@Sendable ([RESPValue]) -> Void)? = nil
    ) async throws -> RedisConnection {
        let tlsContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        let channel: any Channel
        let handler: NIOLoopBound<RedisCommandHandler>
        do {
            channel = try await ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                // A peer that vanished without closing (host gone, network cut) is noticed.
                .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tlsContext {
                            let serverName = configuration.host.first?.isLetter == true ? configuration.host : nil
                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tlsContext, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHandler(RedisCommandHandler(
                            commandTimeout: configuration.commandTimeout, keepAliveInterval: configuration.keepAliveInterval, onPush: onPush))
                    }
                }
                .connect(host: configuration.host, port: configuration.port)
                .get()
            handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self), eventLoop: channel.eventLoop)
            }.get()
        } catch {
            throw RedisError(.connectFailed, "\(configuration.host):\(configuration.port): \(error)")
        }
        // A server that accepts the connection but never answers (frozen, or a proxy in front of
        // a dead one) must not hold the caller: the handshake shares the connect timeout.
        let timeout = channel.eventLoop.scheduleTask(in: configuration.connectTimeout) { channel.close(promise: nil) }
        defer { timeout.cancel() }
        do {
            let bare = RedisConnection(
                channel: channel, handler: handler, protocolVersion: 2, commandTimeout: configuration.commandTimeout,
                logger: Logger(label: "tern.redis.handshake"))
            let protocolVersion = try await handshake(bare, configuration: configuration)
            return RedisConnection(
                channel: channel, handler: handler, protocolVersion: protocolVersion, commandTimeout: configuration.commandTimeout, logger: logger)
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    /// HELLO 3 (with AUTH and SETNAME) when the configuration asks for RESP3 and the server knows
    /// it; otherwise RESP2 with AUTH and CLIENT SETNAME. Then SELECT. Returns the protocol spoken.
    private static func handshake(_ bare: RedisConnection, configuration: RedisConfiguration) async throws -> Int {
        var protocolVersion = 2
        if configuration.protocolVersion == 3 {
            var hello: [any RESPArgument] = [3]
            if let password = configuration.password { hello += ["AUTH", configuration.username ?? "default", password] }
            if let name = configuration.clientName { hello += ["SETNAME", name] }
            do {
                _ = try await bare.send(RESPCommand("HELLO", hello))
                protocolVersion = 3
            } catch let error as RedisError where error.code == .server && (error.message.hasPrefix("NOPROTO") || error.message.contains("unknown command")) {
                // A server before Redis 6: speak RESP2.
            }
        }
        if protocolVersion == 2 {
            // Servers before Redis 6 know only the one-argument AUTH.
            if let password = configuration.password {
                let auth: [any RESPArgument] = configuration.username.map { [$0, password] } ?? [password]
                _ = try await bare.send(RESPCommand("AUTH", auth))
            }
            if let name = configuration.clientName { _ = try await bare.send(RESPCommand("CLIENT", "SETNAME", name)) }
        }
        if configuration.database != 0 { _ = try await bare.send(RESPCommand("SELECT", configuration.database)) }
        return protocolVersion
    }

    /// Whether the connection can still carry commands.
    public var isActive: Bool { channel.isActive }

    /// Sends one command and returns its reply; an error reply throws `RedisError.server`.
    /// `blockingFor` is how long the server may hold the command before it answers (BLPOP,
    /// XREAD BLOCK): it adds to the command timeout. A caller whose task is cancelled stops
    /// waiting at once (`CancellationError`), unless `waitingThroughCancellation`: then it gets
    /// the reply all the same, for a command whose outcome must not be lost.
    public func send(_ command: RESPCommand, blockingFor: TimeAmount = .zero, waitingThroughCancellation: Bool = false) async throws -> RESPValue {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        let reply = try await submit(
            .one(command, promise), timeout: commandTimeout + blockingFor, promise, waitingThroughCancellation: waitingThroughCancellation)
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// Sends several commands with one flush and returns each reply (error replies included).
    /// `blockingFor` is how long the server may hold one of them (see `send`).
    public func pipeline(_ commands: [RESPCommand], blockingFor: TimeAmount = .zero) async throws -> [Result<RESPValue, RedisError>] {
        guard !commands.isEmpty else { return [] }
        let promise = channel.eventLoop.makePromise(of: [Result<RESPValue, RedisError>].self)
        return try await submit(.many(commands, promise), timeout: commandTimeout + blockingFor, promise)
    }

    private func submit<Reply: Sendable>(
        _ request: RedisRequest, timeout: TimeAmount, _ promise: EventLoopPromise<Reply>, waitingThroughCancellation: Bool = false
    ) async throws -> Reply {
        // The handler fails the request itself if the connection has closed.
        if channel.eventLoop.inEventLoop {
            handler.value.send(request, timeout: timeout)
        } else {
            let handler = self.handler
            channel.eventLoop.execute { handler.value.send(request, timeout: timeout) }
        }
        if waitingThroughCancellation { return try await promise.futureResult.get() }
        // A cancelled caller stops waiting at once. The commands were sent and cannot be taken
        // back; their replies still arrive in order and complete the (already failed) promise,
        // which ignores them, so the connection stays in step for everyone else.
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(CancellationError())
        }
    }

    /// Sends SUBSCRIBE or UNSUBSCRIBE (or their pattern forms) on a RESP3 connection, whose
    /// answer is one confirmation push frame per channel (or one error reply). Returns once all
    /// confirmations have arrived.
    public func subscription(_ command: RESPCommand, channels: Int) async throws {
        guard channels > 0 else { return }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        try await submit(.subscription(command, confirmations: channels, promise), timeout: commandTimeout, promise)
    }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Closes the connection; pending commands fail with `connectionClosed`.
    public func close() {
        channel.close(promise: nil)
    }
}

/// Commands on their way to the channel, with the promise their replies complete.
enum RedisRequest: Sendable {
    case one(RESPCommand, EventLoopPromise<RESPValue>)
    case many([RESPCommand], EventLoopPromise<[Result<RESPValue, RedisError>]>)
    /// SUBSCRIBE or UNSUBSCRIBE: answered by a confirmation push frame per channel.
    case subscription(RESPCommand, confirmations: Int, EventLoopPromise<Void>)

    func fail(_ error: any Error) {
        switch self {
        case .one(_, let reply): reply.fail(error)
        case .many(_, let replies): replies.fail(error)
        case .subscription(_, _, let confirmed): confirmed.fail(error)
        }
    }
}

/// Writes commands, decodes the byte stream into replies and hands them back in order. Runs on
/// the channel's event loop only. A timer closes the connection when its oldest command has
/// waited too long, and sends PING when the connection has been quiet for a while.
final class RedisCommandHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Waiting {
        case one(EventLoopPromise<RESPValue>)
        case many(EventLoopPromise<[Result<RESPValue, RedisError>]>, expected: Int)
        case subscription(EventLoopPromise<Void>, remaining: Int)
        /// A keep-alive PING, whose answer nobody waits for.
        case keepAlive
    }
    private struct Pending {
        var waiting: Waiting
        var deadline: NIODeadline
    }

    private let commandTimeout: TimeAmount
    private let keepAliveInterval: TimeAmount?
    private var timer: RepeatedTask?
    /// When the server last sent something, or a command was last written.
    private var lastTraffic = NIODeadline.now()
    private var pending = CircularBuffer<Pending>(initialCapacity: 64)
    private var closed = false
    /// This handler's place in the pipeline, while it is in it.
    private var context: ChannelHandlerContext?
    private var scanner = RESPFrameScanner()
    /// Whether the reply at the front is incomplete and the scanner is following it.
    private var awaitingFrame = false
    private let limits = RESPLimits()
    /// Bytes read but not yet decoded.
    private var received: ByteBuffer?
    /// Replies gathered so far for the pipeline at the head of `pending` (only the head gathers).
    private var gathered: [Result<RESPValue, RedisError>] = []
    private let onPush: (@Sendable ([RESPValue]) -> Void)?

    init(commandTimeout: TimeAmount, keepAliveInterval: TimeAmount?, onPush: (@Sendable ([RESPValue]) -> Void)? = nil) {
        self.commandTimeout = commandTimeout
        self.keepAliveInterval = keepAliveInterval
        self.onPush = onPush
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        failAll(RedisError(.connectionClosed, "connection is closed"))
    }

    func channelActive(context: ChannelHandlerContext) {
        // Checks a few times per timeout: a stuck reply is noticed within a quarter of the
        // timeout after its deadline, at a cost of one timer per connection.
        let shortest = min(commandTimeout, keepAliveInterval ?? commandTimeout)
        let tick = TimeAmount.nanoseconds(min(max(shortest.nanoseconds / 4, 10_000_000), 1_000_000_000))
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let contextBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
            loopBound.value.checkTimers(context: contextBound.value)
        }
        context.fireChannelActive()
    }

    private func checkTimers(context: ChannelHandlerContext) {
        guard !closed else { return }
        let now = NIODeadline.now()
        if let oldest = pending.first {
            guard oldest.deadline < now else { return }
            failAll(RedisError(.timedOut, "no reply from the server within \(commandTimeout)"))
            context.close(promise: nil)
        } else if let keepAliveInterval, now - lastTraffic >= keepAliveInterval {
            pending.append(Pending(waiting: .keepAlive, deadline: now + commandTimeout))
            lastTraffic = now
            context.writeAndFlush(wrapOutboundOut(Self.ping.encoded), promise: nil)
        }
    }

    private static let ping = RESPCommand("PING")

    /// Writes a request's commands and flushes them; its replies complete its promise.
    func send(_ request: RedisRequest, timeout: TimeAmount) {
        guard let context, !closed else {
            request.fail(RedisError(.connectionClosed, "connection is closed"))
            return
        }
        lastTraffic = .now()
        let deadline = lastTraffic + timeout
        // Each command is already encoded: it goes out as is.
        switch request {
        case .one(let command, let reply):
            pending.append(Pending(waiting: .one(reply), deadline: deadline))
            context.writeAndFlush(wrapOutboundOut(command.encoded), promise: nil)
        case .many(let commands, let replies):
            pending.append(Pending(waiting: .many(replies, expected: commands.count), deadline: deadline))
            write(commands, context: context)
        case .subscription(let command, let confirmations, let confirmed):
            pending.append(Pending(waiting: .subscription(confirmed, remaining: confirmations), deadline: deadline))
            context.writeAndFlush(wrapOutboundOut(command.encoded), promise: nil)
        }
    }

    private func write(_ commands: [RESPCommand], context: ChannelHandlerContext) {
        // One buffer for the whole pipeline: copying a few bytes is cheaper than a pending write
        // (and an iovec) per command.
        var buffer = context.channel.allocator.buffer(capacity: commands.reduce(0) { $0 + $1.encoded.readableBytes })
        for command in commands { buffer.writeImmutableBuffer(command.encoded) }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The unread bytes are worked on as a local value (not the stored property), so decoding
        // a read full of replies does not pay for an exclusivity check on every access.
        var bytes = unwrapInboundIn(data)
        lastTraffic = .now()
        var buffer: ByteBuffer
        if var earlier = received.take(), earlier.readableBytes > 0 {
            earlier.writeBuffer(&bytes)
            buffer = earlier
        } else {
            buffer = bytes
        }
        do {
            while let reply = try nextReply(from: &buffer) {
                guard deliver(reply) else {
                    failAll(RedisError(.unexpectedReply, "reply with no command waiting"))
                    context.close(promise: nil)
                    return
                }
            }
        } catch {
            // The byte stream cannot be trusted any more: every waiting caller fails now, and
            // nothing more is accepted, even while a TLS close is still in progress.
            failAll(RedisError(.unexpectedReply, "\(error)"))
            context.close(promise: nil)
            return
        }
        if buffer.readableBytes > 0 {
            if buffer.readerIndex > 64 * 1024 { buffer.discardReadBytes() }
            received = buffer
        }
    }

    /// The next whole reply in `buffer`, or `nil` until more bytes arrive. A reply that is
    /// complete is decoded straight away; one that is not is then followed by the resumable
    /// scanner, and decoded once, when its last byte has arrived.
    private func nextReply(from buffer: inout ByteBuffer) throws -> RESPValue? {
        guard buffer.readableBytes > 0 else { return nil }
        if !awaitingFrame {
            if let reply = try RESPDecoder.parse(&buffer, depth: 0, limits: limits) { return reply }
            awaitingFrame = true
        }
        guard let length = try scanner.frameLength(in: buffer) else { return nil }
        awaitingFrame = false
        guard var frame = buffer.readSlice(length: length), let reply = try RESPDecoder.parse(&frame, depth: 0, limits: limits) else {
            throw RESPDecodingError(reason: "frame and decoder disagree")
        }
        return reply
    }

    /// Hands a reply to the caller waiting for it; `false` if nobody was.
    private func deliver(_ reply: RESPValue) -> Bool {
        if case .push(let frame) = reply {
            // A subscription's confirmation answers the (P)SUBSCRIBE or (P)UNSUBSCRIBE waiting at
            // the head; anything else (a message) is out-of-band, for the subscriber.
            if Self.isConfirmation(frame), let first = pending.first, case .subscription(let promise, let remaining) = first.waiting {
                if remaining <= 1 {
                    pending.removeFirst()
                    promise.succeed(())
                } else {
                    pending[pending.startIndex].waiting = .subscription(promise, remaining: remaining - 1)
                }
            } else {
                onPush?(frame)
            }
            return true
        }
        guard let first = pending.first else { return false }
        switch first.waiting {
        case .subscription(let promise, _):
            // A subscription command is answered by pushes; a plain reply here is its error.
            pending.removeFirst()
            if case .error(let message) = reply {
                promise.fail(RedisError(.server, message))
            } else {
                promise.fail(RedisError(.unexpectedReply, "a subscription command got a plain reply"))
            }
        case .one(let promise):
            pending.removeFirst()
            promise.succeed(reply)
        case .many(let promise, let expected):
            if gathered.isEmpty { gathered.reserveCapacity(expected) }
            if case .error(let message) = reply {
                gathered.append(.failure(RedisError(.server, message)))
            } else {
                gathered.append(.success(reply))
            }
            if gathered.count == expected {
                pending.removeFirst()
                promise.succeed(gathered)
                gathered = []
            }
        case .keepAlive:
            pending.removeFirst()
        }
        return true
    }

    private static func isConfirmation(_ frame: [RESPValue]) -> Bool {
        switch frame.first?.string?.lowercased() {
        case "subscribe", "unsubscribe", "psubscribe", "punsubscribe": true
        default: false
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError(.connectionClosed, "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        failAll(RedisError(.connectionClosed, "connection closed by the server or the network"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RedisError) {
        closed = true
        while let next = pending.popFirst() {
            switch next.waiting {
            case .one(let promise): promise.fail(error)
            case .many(let promise, _): promise.fail(error)
            case .subscription(let promise, _): promise.fail(error)
            case .keepAlive: break
            }
        }
    }
}
