import NIOConcurrencyHelpers

/// One deployment's circuit, in this process: closed while calls succeed; open for
/// `openDuration` after `threshold` failures in a row (calls skip the deployment); then half
/// open, letting one call through as a probe: its success closes the circuit, its failure
/// opens it again.
public final class CircuitBreaker: Sendable {
    enum State: Equatable {
        case closed(failures: Int)
        case open(until: ContinuousClock.Instant)
        case halfOpen(probing: Bool)
    }

    public let threshold: Int
    public let openDuration: Duration
    private let state = NIOLockedValueBox(State.closed(failures: 0))

    public init(threshold: Int = 5, openDuration: Duration = .seconds(30)) {
        self.threshold = max(1, threshold)
        self.openDuration = openDuration
    }

    /// Whether a call may go to the deployment now; `true` obliges the caller to report how it
    /// ended (`succeeded`, `failed` or `abandoned`).
    public func acquire(now: ContinuousClock.Instant = .now) -> Bool {
        state.withLockedValue { state in
            switch state {
            case .closed: return true
            case .open(let until) where now < until: return false
            case .open, .halfOpen(probing: false):
                state = .halfOpen(probing: true)
                return true
            case .halfOpen(probing: true): return false
            }
        }
    }

    public func succeeded() { state.withLockedValue { $0 = .closed(failures: 0) } }

    public func failed(now: ContinuousClock.Instant = .now) {
        state.withLockedValue { state in
            switch state {
            case .closed(let failures) where failures + 1 < threshold: state = .closed(failures: failures + 1)
            case .closed, .halfOpen: state = .open(until: now + openDuration)
            case .open: break
            }
        }
    }

    /// The call ended without telling whether the deployment works (it was cancelled).
    public func abandoned() {
        state.withLockedValue { state in
            if state == .halfOpen(probing: true) { state = .halfOpen(probing: false) }
        }
    }

    /// Whether calls skip the deployment now.
    public var isOpen: Bool {
        state.withLockedValue { state in
            if case .open(let until) = state { return ContinuousClock.now < until }
            return false
        }
    }
}
