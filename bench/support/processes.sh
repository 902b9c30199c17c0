# Process groups for bench scripts. Sourced after scripts/lib.sh, with $work set (the logs go there).
# Every process started here runs in a session of its own; stopping one stops its whole group.
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
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "null"; else printf "%.*f", d, a / b }'; }
