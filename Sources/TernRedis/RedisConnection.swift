import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One connection to a Redis server. Commands are pipelined: any number of callers may send at
/// once, and replies are matched to them in order (RESP is first-in, first-out).
public final class RedisConnection: Sendable {
    let channel: any Channel
    let logger: Logger
    /// 3 when the handshake switched to RESP3 (maps, sets, push frames), else 2.
    public let protocolVersion: Int

    init(channel: any Channel, protocolVersion: Int, logger: Logger) {
        self.channel = channel
        self.protocolVersion = protocolVersion
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
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try channel.pipeline.syncOperations.addHandler(RedisCommandHandler(onPush: onPush))
                    }
                }
                .connect(host: configuration.host, port: configuration.port)
                .get()
        } catch {
            throw RedisError(.connectFailed, "\(configuration.host):\(configuration.port): \(error)")
        }
        do {
            let protocolVersion = try await handshake(channel: channel, configuration: configuration)
            return RedisConnection(channel: channel, protocolVersion: protocolVersion, logger: logger)
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    /// HELLO 3 (with AUTH and SETNAME) when the configuration asks for RESP3 and the server knows
    /// it; otherwise RESP2 with AUTH and CLIENT SETNAME. Then SELECT. Returns the protocol spoken.
    private static func handshake(channel: any Channel, configuration: RedisConfiguration) async throws -> Int {
        let bare = RedisConnection(channel: channel, protocolVersion: 2, logger: Logger(label: "tern.redis.handshake"))
        var auth: [any RESPArgument] = []
        if let password = configuration.password { auth = [configuration.username ?? "default", password] }
        var protocolVersion = 2
        if configuration.protocolVersion == 3 {
            var hello: [any RESPArgument] = [3]
            if !auth.isEmpty { hello += ["AUTH"] + auth }
            if let name = configuration.clientName { hello += ["SETNAME", name] }
            do {
                _ = try await bare.send(RESPCommand("HELLO", hello))
                protocolVersion = 3
            } catch let error as RedisError where error.code == .server && (error.message.hasPrefix("NOPROTO") || error.message.contains("unknown command")) {
                // A server before Redis 6: speak RESP2.
            }
        }
        if protocolVersion == 2 {
            if !auth.isEmpty { _ = try await bare.send(RESPCommand("AUTH", auth)) }
            if let name = configuration.clientName { _ = try await bare.send(RESPCommand("CLIENT", "SETNAME", name)) }
        }
        if configuration.database != 0 { _ = try await bare.send(RESPCommand("SELECT", configuration.database)) }
        return protocolVersion
    }

    /// Whether the connection can still carry commands.
    public var isActive: Bool { channel.isActive }

    /// Sends one command and returns its reply; an error reply throws `RedisError.server`.
    public func send(_ command: RESPCommand) async throws -> RESPValue {
        try await pipeline([command])[0].get()
    }

    /// Sends several commands with one flush and returns each reply (error replies included).
    public func pipeline(_ commands: [RESPCommand]) async throws -> [Result<RESPValue, RedisError>] {
        guard !commands.isEmpty else { return [] }
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        // If the channel closed before the handler saw the request, the write itself fails:
        // fail the caller too (a promise completes once; the later completion is ignored).
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            promise.fail(RedisError(.connectionClosed, "could not send: \(error)"))
        }
        channel.writeAndFlush(RedisRequest(commands: commands, promise: promise), promise: written)
        // A cancelled caller stops waiting at once. The commands were sent and cannot be taken
        // back; their replies still arrive in order and complete the (already failed) promise,
        // which ignores them, so the connection stays in step for everyone else.
        let replies = try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(CancellationError())
        }
        return replies.map { reply in
            if case .error(let message) = reply { return .failure(RedisError(.server, message)) }
            return .success(reply)
        }
    }

    /// Sends commands whose answers come as push frames, not replies (SUBSCRIBE and UNSUBSCRIBE
    /// on a RESP3 connection). Returns once they are written.
    public func sendWithoutReply(_ commands: [RESPCommand]) async throws {
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        promise.succeed([])  // nothing will be waited for
        try await channel.writeAndFlush(RedisRequest(commands: commands, promise: promise, expectsReplies: false)).get()
    }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Closes the connection; pending commands fail with `connectionClosed`.
    public func close() {
        channel.close(promise: nil)
    }
}

/// Commands on their way to the channel, with the promise their replies complete.
struct RedisRequest: Sendable {
    let commands: [RESPCommand]
    let promise: EventLoopPromise<[RESPValue]>
    var expectsReplies = true
}

/// Writes commands and hands replies back in order. Runs on the channel's event loop only.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        let promise: EventLoopPromise<[RESPValue]>
        let expected: Int
        var replies: [RESPValue]
    }

    private var pending = CircularBuffer<Pending>()
    private var closed = false
    private let onPush: (@Sendable ([RESPValue]) -> Void)?

    init(onPush: (@Sendable ([RESPValue]) -> Void)? = nil) { self.onPush = onPush }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        guard !closed else {
            request.promise.fail(RedisError(.connectionClosed, "connection is closed"))
            promise?.fail(RedisError(.connectionClosed, "connection is closed"))
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64 * request.commands.count)
        for command in request.commands { command.encode(into: &buffer) }
        if request.expectsReplies {
            pending.append(Pending(promise: request.promise, expected: request.commands.count, replies: []))
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        if case .push(let frame) = reply {  // out-of-band: pub/sub, not a reply to a caller
            onPush?(frame)
            return
        }
        guard !pending.isEmpty else {
            context.fireErrorCaught(RedisError(.unexpectedReply, "reply with no command waiting"))
            context.close(promise: nil)
            return
        }
        pending[pending.startIndex].replies.append(reply)
        if pending[pending.startIndex].replies.count == pending[pending.startIndex].expected {
            let done = pending.removeFirst()
            done.promise.succeed(done.replies)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError(.connectionClosed, "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "connection closed by the server or the network"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RedisError) {
        closed = true
        while let next = pending.popFirst() { next.promise.fail(error) }
    }
}
