# Stops the worker: SIGTERM lets it finish or hand back its current task,
# SIGKILL follows after STOP_TIMEOUT seconds. Succeeds when the process is
# already gone, so destroying twice, or after a crash, is fine.
set -eu
if [ -n "${STARTED_ON:-}" ] && [ "$(hostname)" != "$STARTED_ON" ]; then
  echo "node $NODE_ID's worker runs on $STARTED_ON, not on $(hostname), which cannot stop it: destroy it from a worker on $STARTED_ON, or start local nodes through a launcher" >&2
  exit 1
fi
[ -f "$PID_FILE" ] || { echo "no pid file $PID_FILE: nothing to stop"; exit 0; }
pid=$(cat "$PID_FILE")
# An exited child of a parent that does not reap stays a zombie; it holds no
# resources and counts as stopped.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != Z ]
}
# Pids are reused: only signal a process that is still this node's worker.
ours() {
  ps -o args= -p "$1" | grep -qF -- "--node-id $NODE_ID "
}
case "$pid" in
'' | *[!0-9]*) echo "pid file $PID_FILE holds no pid; removing it" ;;
*)
  if alive "$pid" && ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    waited=0
    while alive "$pid" && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if alive "$pid"; then
      echo "worker $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      waited=0
      while alive "$pid" && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
      done
      if alive "$pid"; then
        echo "worker $pid survived SIGKILL for 10s; keeping $PID_FILE" >&2
        exit 1
      fi
    fi
    echo "worker for node $NODE_ID (pid $pid) stopped"
  else
    echo "worker for node $NODE_ID (pid $pid) already gone"
  fi
  ;;
esac
rm -f "$PID_FILE"
