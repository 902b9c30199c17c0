"""Ctrl-C on `tern up` leaves no process of the stack behind. Runs last (file name order)."""
import os
import pathlib
import signal
import socket

from conftest import API_PORT, STATE, wait_until


def alive(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


def descendants(pid):
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_every_process(stack):
    run = STATE / "run"
    service_pids = [int((run / "redis.pid").read_text()), int((run / "llama-server.pid").read_text()),
                    int((run / "llama-server-embeddings.pid").read_text()),
                    int((STATE / "data" / "postgres" / "postmaster.pid").read_text().split()[0])]
    stack_pids = descendants(stack.process.pid) + service_pids + [stack.process.pid]
    assert all(alive(pid) for pid in service_pids)
    ports = [API_PORT] + [int(os.environ.get(name, default)) for name, default in
                          (("TERN_REDIS_PORT", "17379"), ("TERN_PG_PORT", "17432"), ("TERN_LLM_PORT", "17081"))]
    assert all(listening(port) for port in ports)

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=180) == 0
    wait_until(lambda: not any(alive(pid) for pid in stack_pids), timeout=60, message="every stack process to exit")
    assert [port for port in ports if listening(port)] == []
    # Every child stopped on SIGTERM, none had to be killed.
    assert "did not stop in time" not in (STATE / "logs" / "tern-up.log").read_text()
