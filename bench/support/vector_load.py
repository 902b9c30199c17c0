"""The client side of bench/vector: prints one JSON line per phase.

  vector_load.py search --api URL --key KEY --psql "psql args..." --user UUID --queries N --rounds R
      POST /v1/search (hybrid, with the query's vector) against the same statement run by
      psql (PREPAREd from `tern search-sql`: a call of the search_chunks function, planned for
      each call's values), alternating blocks of queries; both timed by this client, end to end.
  vector_load.py recall --psql "psql args..." --user UUID --queries N
      The statement's top 10 with the indexes against a sequential scan's (the exact answer),
      for the vector and the hybrid ranking, under the user's filter.
  vector_load.py ingest --api URL --key KEY --documents N --sections S
      Uploads N generated Markdown documents and waits until all are ingested; chunks a second.
"""
import argparse
import json
import random
import shlex
import socket
import subprocess
import time
import urllib.parse

import requests

WORDS = [f"word{i}" for i in range(300)]


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(values) - 1)
    return values[f] + (values[c] - values[f]) * (k - f)


def query(generator):
    vector = [generator.uniform(-1, 1) for _ in range(384)]
    text = " ".join(generator.choice(WORDS) for _ in range(2))
    return vector, text


class Psql:
    """One psql session: statements in, rows and timings out."""

    def __init__(self, arguments, sql):
        self.process = subprocess.Popen(shlex.split(arguments) + ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.run("SET plan_cache_mode = force_custom_plan")
        self.run("PREPARE search(uuid, uuid[], vector, bool, text, bool, int, int) AS " + sql)
        self.run("\\timing on", timed=False)

    def run(self, statement, timed=True):
        """Runs a statement; returns its rows' first fields."""
        self.process.stdin.write(statement + (";" if not statement.startswith("\\") else "") + "\n")
        if not timed:
            return []
        marker = f"done-{random.random()}"
        if not statement.startswith("\\"):
            self.process.stdin.write(f"\\echo {marker}\n")
        rows = []
        while True:
            line = self.process.stdout.readline()
            if line == "":
                raise RuntimeError("psql ended")
            line = line.rstrip("\n")
            if line == marker:
                return rows
            if line and not line.startswith("Time: "):
                rows.append(line.split("|", 1)[0])

    def search(self, user, vector, text, mode, limit=10):
        literal = "[" + ",".join(f"{v:.6f}" for v in vector) + "]"
        use_vector = "true" if mode != "text" else "false"
        use_text = "true" if mode != "vector" else "false"
        quoted = text.replace("'", "''")
        return self.run(f"EXECUTE search('{user}', NULL, '{literal}', {use_vector}, '{quoted}', {use_text}, 40, {limit})")

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


class OneWriteHTTP:
    """HTTP/1.1 on one kept-alive connection, each request sent in one write as psql sends its
    query (http.client writes a body over 2,920 bytes apart from the headers, and the server
    then waits for the second write), the answer read by its Content-Length."""

    def __init__(self, url):
        address = urllib.parse.urlsplit(url)
        self.host = f"{address.hostname}:{address.port}"
        self.socket = socket.create_connection((address.hostname, address.port), timeout=60)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.socket.makefile("rb")

    def post(self, path, body, headers):
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self.socket.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status = int(self.reader.readline().split()[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, self.reader.read(length)


def search_phase(args):
    sql = subprocess.run(args.tern.split() + ["search-sql"], capture_output=True, text=True, check=True).stdout
    psql = Psql(args.psql, sql)
    # One kept-alive connection, as psql keeps one session: the lightest HTTP client there is.
    connection = OneWriteHTTP(args.api)
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    generator = random.Random(1)
    times = {"tern": [], "psql": []}
    errors = 0

    def tern(vector, text):
        nonlocal errors
        body = json.dumps({"query": text, "embedding": vector, "mode": "hybrid", "top_k": 10}).encode()
        start = time.perf_counter()
        status, data = connection.post("/v1/search", body, headers)
        elapsed = time.perf_counter() - start
        if status != 200 or not json.loads(data)["data"]:
            errors += 1
        return elapsed

    def direct(vector, text):
        start = time.perf_counter()
        psql.search(args.user, vector, text, "hybrid")
        return time.perf_counter() - start

    for _ in range(5):  # warm both
        vector, text = query(generator)
        tern(vector, text)
        direct(vector, text)
    for round_ in range(args.rounds):
        order = [("tern", tern), ("psql", direct)] if round_ % 2 == 0 else [("psql", direct), ("tern", tern)]
        batch = [query(generator) for _ in range(args.queries)]
        for name, call in order:
            for vector, text in batch:
                times[name].append(call(vector, text) * 1000)
    psql.close()
    result = {"queries": len(times["tern"]), "errors": errors}
    for name in times:
        result[f"{name}_p50_ms"] = round(percentile(times[name], 50), 3)
        result[f"{name}_p99_ms"] = round(percentile(times[name], 99), 3)
    result["added_p50_ms"] = round(result["tern_p50_ms"] - result["psql_p50_ms"], 3)
    # Each query ran on both sides (in blocks, alternating which goes first): the median of its
    # two times' difference leaves out how much the queries themselves differ.
    result["added_paired_p50_ms"] = round(percentile([t - p for t, p in zip(times["tern"], times["psql"])], 50), 3)
    print(json.dumps(result))


def recall_phase(args):
    sql = subprocess.run(args.tern.split() + ["search-sql"], capture_output=True, text=True, check=True).stdout
    indexed, exact = Psql(args.psql, sql), Psql(args.psql, sql)
    exact.run("SET enable_indexscan = off")
    exact.run("SET enable_bitmapscan = off")
    generator = random.Random(2)
    result = {"queries": args.queries}
    for mode in ("vector", "hybrid"):
        found = expected = 0
        for _ in range(args.queries):
            vector, text = query(generator)
            truth = exact.search(args.user, vector, text, mode)
            got = indexed.search(args.user, vector, text, mode)
            found += len(set(truth) & set(got))
            expected += len(truth)
        result[f"recall_at_10_{mode}"] = round(found / expected, 4) if expected else None
    indexed.close()
    exact.close()
    print(json.dumps(result))


def document(generator, sections):
    parts = [f"# Generated handbook {generator.randrange(10**9)}"]
    for section in range(sections):
        parts.append(f"## Section {section}")
        for _ in range(3):
            parts.append(" ".join(" ".join(generator.choice(WORDS) for _ in range(12)) + "." for _ in range(5)))
    return "\n\n".join(parts)


def ingest_phase(args):
    session = requests.Session()
    headers = {"Authorization": f"Bearer {args.key}"}
    generator = random.Random(3)
    start = time.perf_counter()
    ids = []
    for _ in range(args.documents):
        response = session.post(args.api + "/v1/documents", headers=headers, timeout=60,
                                json={"content": document(generator, args.sections), "format": "markdown"})
        response.raise_for_status()
        ids.append(response.json()["id"])
    pending = set(ids)
    chunks = 0
    failed = 0
    while pending:
        for id in list(pending):
            item = session.get(f"{args.api}/v1/documents/{id}", headers=headers, timeout=60).json()
            if item["status"] != "processing":
                pending.discard(id)
                chunks += item["chunks"]
                failed += item["status"] == "failed"
        if pending:
            time.sleep(0.2)
        if time.perf_counter() - start > args.timeout:
            break
    wall = time.perf_counter() - start
    print(json.dumps({"documents": len(ids), "failed": failed, "unfinished": len(pending), "chunks": chunks,
                      "wall_s": round(wall, 2), "chunks_per_s": round(chunks / wall, 1)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["search", "recall", "ingest"])
    parser.add_argument("--api")
    parser.add_argument("--key")
    parser.add_argument("--psql")
    parser.add_argument("--tern", default="tern")
    parser.add_argument("--user")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--documents", type=int, default=8)
    parser.add_argument("--sections", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=1800)
    arguments = parser.parse_args()
    {"search": search_phase, "recall": recall_phase, "ingest": ingest_phase}[arguments.phase](arguments)
