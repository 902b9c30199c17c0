import Foundation
import HummingbirdTesting
import NIOCore
import TernAPI
import TernQueue
import TernRedis
import TernStore
import TernTestSupport

/// An API on the test services with a queue of its own.
func testAPI(
    _ store: Store, _ redis: RedisClient, configuration: API.Configuration = .init(), queueName: String = "api"
) -> (api: API, queue: RedisJobQueue, events: JobEvents) {
    let queue = RedisJobQueue(name: QueueName(TestServices.uniqueName(queueName)), client: redis)
    let events = JobEvents(queue: queue)
    let api = API(configuration: configuration, store: store, redis: redis, queue: queue, events: events, logger: TestServices.logger)
    return (api, queue, events)
}

/// A response's body as a JSON object (empty if it is not one).
func object(_ response: TestResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]) ?? [:]
}
