import Foundation
import Logging
import PostgresNIO
import Testing
@testable import TernStore
import TernTestSupport

/// A statement the server is slow to answer (a lock wait, a server that hangs) gives its caller
/// `unavailable` at the store's deadline, while it runs to its end in the background.
@Suite struct StoreDeadlineTests {
    @Test func aStatementAlreadySentGivesUpAtTheDeadline() async throws {
        try await TestServices.withStore { store in
            let impatient = Store(client: store.client, deadline: .seconds(1))
            let logger = Logger(label: "test")
            try await impatient.database.query("SELECT 1", logger: logger)  // a connection is ready
            let start = ContinuousClock.now
            let error = await #expect(throws: StoreError.self) {
                try await impatient.database.query("SELECT pg_sleep(30)", logger: logger)
            }
            #expect(error?.code == .unavailable)
            // The statement takes 30 s; its caller had its answer long before.
            #expect(ContinuousClock.now - start < .seconds(20))
        }
    }
}
