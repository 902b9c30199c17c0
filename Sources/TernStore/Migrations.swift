/// The schema, as ordered migrations. A migration is never edited once released: add a new one.
/// Each entry is a list of statements (the extended query protocol runs one at a time).
enum Migrations {
    static let all: [(version: Int, name: String, statements: [String])] = [
        (1, "initial schema", [
            "CREATE EXTENSION IF NOT EXISTS vector",
            """
            CREATE TABLE users (
                id uuid PRIMARY KEY,
                email text NOT NULL UNIQUE,
                password_hash text,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE api_keys (
                id uuid PRIMARY KEY,
                user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                name text NOT NULL,
                prefix text NOT NULL,
                key_hash bytea NOT NULL UNIQUE,
                created_at timestamptz NOT NULL DEFAULT now(),
                last_used_at timestamptz,
                revoked_at timestamptz
            )
            """,
            "CREATE INDEX api_keys_user ON api_keys (user_id)",
            """
            CREATE TABLE conversations (
                id uuid PRIMARY KEY,
                user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                title text NOT NULL DEFAULT '',
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            "CREATE INDEX conversations_user_recent ON conversations (user_id, updated_at DESC)",
            """
            CREATE TABLE jobs (
                id uuid PRIMARY KEY,
                user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                conversation_id uuid REFERENCES conversations (id) ON DELETE SET NULL,
                kind text NOT NULL,
                model text NOT NULL,
                status text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'active', 'completed', 'failed', 'cancelled')),
                attempts int NOT NULL DEFAULT 0,
                error text,
                created_at timestamptz NOT NULL DEFAULT now(),
                started_at timestamptz,
                finished_at timestamptz
            )
            """,
            "CREATE INDEX jobs_user_recent ON jobs (user_id, created_at DESC)",
            """
            CREATE TABLE messages (
                id bigserial PRIMARY KEY,
                conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
                role text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
                content text NOT NULL,
                job_id uuid REFERENCES jobs (id) ON DELETE SET NULL,
                model text,
                prompt_tokens int,
                completion_tokens int,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            "CREATE INDEX messages_conversation ON messages (conversation_id, id)",
            "CREATE UNIQUE INDEX messages_one_answer_per_job ON messages (job_id) WHERE role = 'assistant'",
            """
            CREATE TABLE documents (
                id uuid PRIMARY KEY,
                user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                title text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE chunks (
                id bigserial PRIMARY KEY,
                document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
                position int NOT NULL,
                content text NOT NULL,
                embedding vector(384)
            )
            """,
            "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops)",
        ]),
        // Usage belongs to the job, not to the conversation: deleting a chat keeps the bill.
        (2, "token usage on jobs", [
            "ALTER TABLE jobs ADD COLUMN prompt_tokens int, ADD COLUMN completion_tokens int",
            """
            UPDATE jobs SET prompt_tokens = m.prompt_tokens, completion_tokens = m.completion_tokens
            FROM messages m WHERE m.job_id = jobs.id AND m.role = 'assistant'
            """,
            "CREATE INDEX jobs_user_finished ON jobs (user_id, finished_at) WHERE status = 'completed'",
        ]),
        // Usage by key as well as by user, model and day.
        (3, "the API key of each job", [
            "ALTER TABLE jobs ADD COLUMN api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL",
            "CREATE INDEX jobs_key_finished ON jobs (api_key_id, finished_at) WHERE api_key_id IS NOT NULL",
            // Usage counts jobs cancelled after some output too.
            "CREATE INDEX jobs_user_billed ON jobs (user_id, finished_at) WHERE status IN ('completed', 'cancelled')",
        ]),
        // Documents as uploaded, ingested into chunks with embeddings and a full-text vector.
        (4, "documents and their chunks for retrieval", [
            """
            ALTER TABLE documents
                ADD COLUMN source text NOT NULL DEFAULT '',
                ADD COLUMN format text NOT NULL DEFAULT 'text' CHECK (format IN ('text', 'markdown', 'html')),
                ADD COLUMN content text NOT NULL DEFAULT '',
                ADD COLUMN content_hash bytea NOT NULL DEFAULT '',
                ADD COLUMN status text NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'failed')),
                ADD COLUMN chunk_count int NOT NULL DEFAULT 0,
                ADD COLUMN error text,
                ADD COLUMN job_id uuid,
                ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()
            """,
            "CREATE UNIQUE INDEX documents_user_content ON documents (user_id, content_hash)",
            "CREATE INDEX documents_user_recent ON documents (user_id, created_at DESC, id)",
            """
            ALTER TABLE chunks
                ADD COLUMN heading text NOT NULL DEFAULT '',
                ADD COLUMN tokens int NOT NULL DEFAULT 0,
                ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', heading || ' ' || content)) STORED
            """,
            "CREATE INDEX chunks_search ON chunks USING gin (search)",
            "CREATE UNIQUE INDEX chunks_document_position ON chunks (document_id, position)",
            // Filtered vector searches scan the HNSW index on until they have enough rows that
            // pass the filter (pgvector 0.8), so a filter does not cost recall. A database the
            // role does not own keeps pgvector's default (then set it for the role yourself).
            """
            DO $$ BEGIN
                EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order', current_database());
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'hnsw.iterative_scan not set: the role does not own the database';
            END $$
            """,
        ]),
        // An answer given from documents keeps its sources.
        (5, "citations of answers", [
            "ALTER TABLE messages ADD COLUMN citations jsonb",
        ]),
        // PDF uploads: their bytes as base64 in `content`, made text by the worker (pdftotext).
        (6, "PDF documents", [
            """
            ALTER TABLE documents DROP CONSTRAINT documents_format_check,
                ADD CONSTRAINT documents_format_check CHECK (format IN ('text', 'markdown', 'html', 'pdf'))
            """,
        ]),
        // Search as a function: parsed once per connection, planned for each call (Store.searchFunction).
        (7, "search function", [Store.searchFunction]),
        // A conversation's answer still being written (Store.thread), and its jobs when the
        // conversation is deleted (ON DELETE SET NULL), found without reading every job.
        (8, "jobs by conversation", [
            "CREATE INDEX jobs_conversation ON jobs (conversation_id, created_at DESC) WHERE conversation_id IS NOT NULL",
        ]),
    ]
}
