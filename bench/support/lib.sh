# What the bench scripts share. Sourced after scripts/lib.sh, from the repository root.
AIOHTTP_VERSION="3.14.5"
python="$TERN_VENV/bin/python"

require_free_ports() {  # port...
  local port
  for port in "$@"; do
    not bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null || die "port $port is in use"
  done
}

# The load clients' HTTP library, in Tern's virtual environment (after scripts/install).
install_aiohttp() {
  "$python" -c 'import aiohttp' 2>/dev/null && return
  log "pip install aiohttp"
  "$TERN_VENV/bin/pip" install -q --disable-pip-version-check "aiohttp==$AIOHTTP_VERSION"
}

# Sets $tern: TERN_BENCH_BIN if given, else a fresh release build.
select_tern_binary() {
  if [ -n "${TERN_BENCH_BIN:-}" ]; then
    tern="$(cd "$(dirname "$TERN_BENCH_BIN")" && pwd)/$(basename "$TERN_BENCH_BIN")"
    [ -x "$tern" ] || die "TERN_BENCH_BIN=$TERN_BENCH_BIN is not an executable"
    log "using $tern (no build)"
  else
    log "building tern (release)"
    swift build -c release --product tern >/dev/null
    tern="$TERN_ROOT/.build/release/tern"
  fi
}

json_field() { "$python" -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

# Prints a new API key, made the way a user makes one: sign up (a session cookie), then POST /v1/keys.
bench_api_key() {  # api-port
  local signup csrf
  signup=$(curl -sf -c "$work/cookies" -H 'Content-Type: application/json' \
    -d "{\"email\":\"bench-$(date +%s)-$RANDOM@tern.local\",\"password\":\"bench-password\"}" \
    "http://127.0.0.1:$1/v1/auth/signup") || die "sign-up failed"
  csrf=$(json_field csrf_token <<<"$signup")
  curl -sf -b "$work/cookies" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "http://127.0.0.1:$1/v1/keys" | json_field key || die "creating an API key failed"
}

# Process groups ($work holds the logs). Every process started here runs in a session of its
# own; stopping one stops its whole group.
groups=()
start() {  # name command... (its output goes to $work/name.log); sets $last_pid
  local name="$1"; shift
  setsid "$@" >>"$work/$name.log" 2>&1 </dev/null &
  last_pid=$!
  groups+=("$last_pid")
}
stop_group() {  # pid: SIGTERM to its group, SIGKILL after 15 s
  local pid="$1" kept=() g
  if pid_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait_for 15 not pid_alive "$pid" || kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for g in "${groups[@]}"; do [ "$g" = "$pid" ] || kept+=("$g"); done
  groups=("${kept[@]+"${kept[@]}"}")
}
stop_all_groups() {
  local g
  for g in "${groups[@]+"${groups[@]}"}"; do stop_group "$g"; done
}
# TERN_THREADS as the setup notes print it (runTasksOnEventLoops decides the default).
tern_threads() { echo "${TERN_THREADS:-default: one per core, one on two cores or fewer}"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "null"; else printf "%.*f", d, a / b }'; }
