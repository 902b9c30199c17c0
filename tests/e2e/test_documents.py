"""Documents through the real stack (`tern up`: the local all-MiniLM-L6-v2 embedding model):
an uploaded Markdown document is ingested through the queue with progress events, found by
hybrid search, isolated per user, idempotent by content, and gone when deleted."""
import json
import uuid

import requests

from conftest import MODEL, wait_until

GUIDE = """# Harbour handbook

## Opening hours

The harbour office opens at seven and closes at six, every day of the week.

## Moorings

Visiting boats moor at the north pontoon. The harbour master, Ingrid Vasquez-{marker}, assigns berths.
Each berth has fresh water and shore power.

## Fuel

The fuel dock sells diesel only; petrol is at the marina across the bay.
"""


def new_user(stack):
    """A fresh account with an API key of its own."""
    session = requests.Session()
    response = session.post(stack.base_url + "/v1/auth/signup", timeout=30,
                            json={"email": f"docs-{uuid.uuid4().hex[:8]}@example.com", "password": "a long enough password"})
    assert response.status_code == 201, response.text
    csrf = response.json()["csrf_token"]
    key = session.post(stack.base_url + "/v1/keys", headers={"X-CSRF-Token": csrf}, json={"name": "docs"}, timeout=30).json()["key"]
    return {"Authorization": f"Bearer {key}"}


def events_of(stack, headers, job_id):
    """The job's events (type, data) until it ends, read as Server-Sent Events."""
    events, kind = [], None
    with requests.get(f"{stack.base_url}/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: "):])))
                if kind in ("completed", "error", "cancelled"):
                    break
    return events


def upload(stack, headers, content, expect=202):
    response = requests.post(stack.base_url + "/v1/documents", headers=headers, timeout=60,
                             json={"content": content, "format": "markdown", "source": "handbook.md"})
    assert response.status_code == expect, response.text
    return response.json()


def search(stack, headers, query, **options):
    response = requests.post(stack.base_url + "/v1/search", headers=headers, json={"query": query, **options}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_markdown_document_is_ingested_with_progress_and_found_by_search(stack):
    headers = new_user(stack)
    marker = uuid.uuid4().hex[:6]
    document = upload(stack, headers, GUIDE.format(marker=marker))
    assert document["status"] == "processing" and document["title"] == "Harbour handbook"
    events = events_of(stack, headers, document["job_id"])
    progress = [data for kind, data in events if kind == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] and events[-1][0] == "completed", events
    ready = requests.get(f"{stack.base_url}/v1/documents/{document['id']}", headers=headers, timeout=30).json()
    assert ready["status"] == "ready" and ready["chunks"] == int(progress[-1]["total"])
    # The same content again is the same document.
    assert upload(stack, headers, GUIDE.format(marker=marker), expect=200)["id"] == document["id"]

    for mode in ("hybrid", "vector", "text"):
        hits = search(stack, headers, "Who assigns berths to visiting boats?" if mode != "text" else "berths harbour master", mode=mode)
        assert hits and hits[0]["document_id"] == document["id"], (mode, hits)
        assert "Ingrid Vasquez" in hits[0]["text"] and hits[0]["heading"] == "Harbour handbook > Moorings", (mode, hits[0])

    assert requests.delete(f"{stack.base_url}/v1/documents/{document['id']}", headers=headers, timeout=30).status_code == 200
    assert requests.get(f"{stack.base_url}/v1/documents/{document['id']}", headers=headers, timeout=30).status_code == 404
    assert all(hit["document_id"] != document["id"] for hit in search(stack, headers, "Who assigns berths?"))


def test_two_users_with_the_same_text_each_find_only_their_own(stack):
    marker = uuid.uuid4().hex[:6]
    users = [new_user(stack) for _ in range(2)]
    documents = [upload(stack, headers, GUIDE.format(marker=marker)) for headers in users]
    assert documents[0]["id"] != documents[1]["id"]
    for headers, document in zip(users, documents):
        wait_until(lambda: requests.get(f"{stack.base_url}/v1/documents/{document['id']}", headers=headers, timeout=30).json()["status"] == "ready",
                   timeout=300, message="the document to be ingested")
    for headers, document, other in ((users[0], documents[0], documents[1]), (users[1], documents[1], documents[0])):
        hits = search(stack, headers, f"Vasquez-{marker} berths", top_k=50)
        assert hits and {hit["document_id"] for hit in hits} == {document["id"]}
        # Naming the other user's document finds nothing, and reading it is a 404.
        assert search(stack, headers, "berths", documents=[other["id"]]) == []
        assert requests.get(f"{stack.base_url}/v1/documents/{other['id']}", headers=headers, timeout=30).status_code == 404
        listed = requests.get(f"{stack.base_url}/v1/documents", headers=headers, timeout=30).json()["data"]
        assert [item["id"] for item in listed] == [document["id"]]


def ingested(stack, headers, content):
    document = upload(stack, headers, content)
    wait_until(lambda: requests.get(f"{stack.base_url}/v1/documents/{document['id']}", headers=headers, timeout=30).json()["status"] == "ready",
               timeout=300, message="the document to be ingested")
    return document


def test_a_chat_with_documents_answers_with_citations_of_the_right_chunk(stack):
    """Through the OpenAI SDK with the real local models: the question about a fact only the
    document holds is answered from it, and the citations point at the chunk that holds it."""
    from openai import OpenAI
    headers = new_user(stack)
    marker = uuid.uuid4().hex[:6]
    document = ingested(stack, headers, GUIDE.format(marker=marker))
    sdk = OpenAI(base_url=stack.base_url + "/v1", api_key=headers["Authorization"].split(" ", 1)[1], max_retries=0, timeout=300)
    question = [{"role": "user", "content": "Who is the harbour master that assigns berths to visiting boats?"}]

    answer = sdk.chat.completions.create(model=MODEL, messages=question, max_tokens=48, temperature=0, extra_body={"documents": "all"})
    citations = answer.model_extra["citations"]
    assert citations and citations[0]["document_id"] == document["id"], citations
    assert citations[0]["heading"] == "Harbour handbook > Moorings" and f"Vasquez-{marker}" in citations[0]["snippet"], citations[0]
    assert answer.choices[0].message.content

    # Streamed: the last chunk carries them.
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=question, max_tokens=16, temperature=0, stream=True,
                                              extra_body={"documents": [document["id"]]}))
    final = [chunk.model_extra.get("citations") for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert final and final[0][0]["chunk_id"] == citations[0]["chunk_id"], final


def test_a_chat_with_documents_only_ever_cites_the_callers_own(stack):
    marker = uuid.uuid4().hex[:6]
    users = [new_user(stack) for _ in range(2)]
    documents = [ingested(stack, headers, GUIDE.format(marker=marker)) for headers in users]
    for headers, document in zip(users, documents):
        response = requests.post(stack.base_url + "/v1/chat/completions", headers=headers, timeout=300, json={
            "model": MODEL, "max_tokens": 8, "documents": "all",
            "messages": [{"role": "user", "content": f"Who is harbour master Vasquez-{marker}?"}]})
        assert response.status_code == 200, response.text
        citations = response.json()["citations"]
        assert citations and {c["document_id"] for c in citations} == {document["id"]}, citations


def minimal_pdf(lines):
    """A one-page PDF showing `lines` in Helvetica."""
    text = "\n".join(f"BT /F1 12 Tf 72 {720 - i * 16} Td ({line}) Tj ET" for i, line in enumerate(lines))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(text)} >>\nstream\n{text}\nendstream", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    document, offsets = "%PDF-1.4\n", []
    for index, body in enumerate(objects):
        offsets.append(len(document))
        document += f"{index + 1} 0 obj\n{body}\nendobj\n"
    xref = len(document)
    document += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(f"{offset:010d} 00000 n \n" for offset in offsets)
    document += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return document.encode()


def test_a_pdf_is_ingested_and_found(stack):
    import base64
    headers = new_user(stack)
    marker = uuid.uuid4().hex[:6]
    pdf = minimal_pdf(["Harbour notice.", f"The lighthouse lamp {marker} is serviced every Tuesday."])
    response = requests.post(stack.base_url + "/v1/documents", headers=headers, timeout=60,
                             json={"content": base64.b64encode(pdf).decode(), "format": "pdf", "source": "notice.pdf"})
    assert response.status_code == 202, response.text
    document = response.json()
    assert document["title"] == "notice.pdf" and document["format"] == "pdf"
    wait_until(lambda: requests.get(f"{stack.base_url}/v1/documents/{document['id']}", headers=headers, timeout=30).json()["status"] == "ready",
               timeout=300, message="the PDF to be ingested")
    hits = search(stack, headers, f"lighthouse {marker}", mode="text")
    assert hits and hits[0]["document_id"] == document["id"] and "serviced every Tuesday" in hits[0]["text"]
    # Not a PDF: refused at once.
    bad = requests.post(stack.base_url + "/v1/documents", headers=headers, timeout=60,
                        json={"content": base64.b64encode(b"plain text").decode(), "format": "pdf"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "content"
