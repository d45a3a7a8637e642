# Starts the worker detached from Terraform: setsid puts it in its own
# session, so neither Terraform exiting nor terraform-exec killing
# Terraform's process group on cancellation takes the worker with it.
set -eu
mkdir -p "$STATE_DIR" "$(dirname "$LOG_FILE")"
if [ -s "$PID_FILE" ]; then
  old=$(cat "$PID_FILE")
  if kill -0 "$old" 2>/dev/null && ps -o args= -p "$old" | grep -qF -- "--node-id $NODE_ID "; then
    echo "worker for node $NODE_ID already running as pid $old"
    exit 0
  fi
fi
[ -x "$WORKER" ] || { echo "worker binary $WORKER is missing or not executable" >&2; exit 1; }
set -- --task-queue "$TASK_QUEUE" --node-id "$NODE_ID" --address "$TEMPORAL_ADDRESS" \
  --namespace "$NAMESPACE" --state-dir "$STATE_DIR"
if [ -n "$METRICS_ADDR" ]; then
  set -- "$@" --metrics-addr "$METRICS_ADDR"
fi
if [ -n "${STORE:-}" ]; then
  set -- "$@" --store "$STORE"
fi
if [ -n "$EXTRA_ARGS" ]; then
  while IFS= read -r arg; do
    set -- "$@" "$arg"
  done <<ARGS
$EXTRA_ARGS
ARGS
fi
# The background child is not a process-group leader (no job control in a
# non-interactive shell), so setsid does not fork and $! is the worker's pid.
# All three standard streams are redirected, or Terraform would wait for the
# worker to close them.
setsid nohup "$WORKER" "$@" >>"$LOG_FILE" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PID_FILE.tmp"
mv "$PID_FILE.tmp" "$PID_FILE"
# A worker that dies at once (bad flags, unreachable binary) fails the apply
# instead of leaving a node that never polls.
sleep 1
if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o stat= -p "$pid" | cut -c1)" = Z ]; then
  rm -f "$PID_FILE"
  echo "worker for node $NODE_ID exited at once; last lines of $LOG_FILE:" >&2
  tail -n 20 "$LOG_FILE" >&2
  exit 1
fi
echo "worker for node $NODE_ID started as pid $pid"
