import TernAI

/// A request body, read by hand from its JSON (`JSONReader`) with `JSONObject`'s accessors:
/// JSONDecoder's generic decoding cost more than the rest of a search or a chat request (a
/// search's body is mostly its 384 numbers), read cold as a request at a time is.
/// `API.decodeBody` reads them. An initializer may also throw an `APIError` of its own.
protocol JSONBody {
    init(json: JSONObject) throws
}
