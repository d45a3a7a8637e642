// Package extstep runs a pipeline step's `run:` command under Gauntlet's
// external-step contract. It knows nothing of Temporal: the host passes an
// Env (steps.Env satisfies it) whose Progress becomes a heartbeat.
//
// The contract, in short (CONTRACT.md has the full text and the tables):
//
// Process. `shell` runs as /bin/sh -c SCRIPT, `argv` directly (a bare
// argv[0] is looked up in the command's own PATH). The working directory is
// `workdir`, relative to the step directory, which is the default. The
// command gets its own process group and /dev/null as stdin; stdout and
// stderr are merged.
//
// Environment. The worker's environment minus GAUNTLET_* and minus any
// variable whose upper-cased name contains SECRET, TOKEN, PASSWORD, PASSWD,
// KEY, CREDENTIAL, AUTH, PRIVATE or COOKIE; then the step's declared `env`
// (which may hold secrets, and may not use the GAUNTLET_ prefix); then
// GAUNTLET_RUN_ID, GAUNTLET_PIPELINE, GAUNTLET_STEP_ID, GAUNTLET_ATTEMPT,
// GAUNTLET_OUTPUT_DIR (fresh per attempt), GAUNTLET_CHECKPOINT_DIR
// (restored from the artifact store before each attempt, on any worker),
// GAUNTLET_INPUTS (a JSON file of every `with` input) and
// GAUNTLET_INPUT_<KEY> for each string, number or boolean input, the key in
// UPPER_SNAKE (see EnvKey). An input that is an artifact pointer is
// materialised from the store: GAUNTLET_INPUT_<KEY> is its local path and
// GAUNTLET_INPUT_<KEY>_REF the pointer.
//
// Directives. A line `::progress k=v ...` updates the progress reported in
// heartbeats (at most once per second, always the latest values); a line
// `::output k=v ...` sets string outputs; a line `::checkpoint [label]`
// publishes the checkpoint directory to the store (Input.Checkpoint names
// its ref), as the command's end does too. Values may be double-quoted.
// Every line goes to <step dir>/logs/attempt-N.log, capped in size; the last
// 50 lines are quoted in a failure.
//
// Outputs. After exit 0, $GAUNTLET_OUTPUT_DIR/outputs.json (a JSON object,
// optional) is merged over the `::output` values; each entry of
// $GAUNTLET_OUTPUT_DIR/artifacts/<key> is published to the store and output
// <key> is its pointer; output_dir and log are always set by Gauntlet, as
// pointers too.
//
// Exit status. 0 succeeds; 2, 64, 65 and 78 fail permanently as BadInput,
// 126 and 127 as CommandNotFound; any other status fails as CommandFailed
// and death by a signal as CommandKilled, both retryable.
//
// Ending. On cancellation the whole group gets SIGTERM and, after a grace
// period (10s by default), SIGKILL. Whatever the command leaves running in
// its group when it exits is ended the same way: a step is over when its
// command is.
package extstep
