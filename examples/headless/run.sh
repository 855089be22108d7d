#!/usr/bin/env bash
# Drive the taskmill sidecar over stdio from bash, with no other tools:
# start it as a coprocess, read its ready line, subscribe to events, submit a
# demo task, print its progress, wait for its `completed` event, print the
# result, then close the sidecar's stdin (its cue to shut down) and wait.
#
#   examples/headless/run.sh                        # runs: python3 -m taskmill
#   TASKMILL_SIDECAR=build/out/onedir/taskmill-sidecar-x86_64-unknown-linux-gnu/taskmill-sidecar-x86_64-unknown-linux-gnu \
#       examples/headless/run.sh                    # a frozen binary instead
#
# One JSON-RPC message per line each way (docs/protocol.md). Parsing JSON with
# bash regexes only works because the sidecar writes compact JSON with a
# stable key order; a real script should use jq.
set -euo pipefail

read -r -a sidecar <<<"${TASKMILL_SIDECAR:-python3 -m taskmill}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

coproc SC { exec "${sidecar[@]}" --stdio --demo --db "$tmp/tasks.db" --no-resource-monitoring; }
pid=$SC_PID
to_sidecar=${SC[1]}
from_sidecar=${SC[0]}

send() { printf '%s\n' "$1" >&"$to_sidecar"; }
recv() { # the next line into $line, or fail after 20 s
  IFS= read -r -t 20 line <&"$from_sidecar" || { echo "run.sh: no reply from the sidecar" >&2; exit 1; }
}

recv
[[ $line == *'"method":"sidecar.ready"'* ]] || { echo "run.sh: expected the ready line, got: $line" >&2; exit 1; }
[[ $line =~ \"pid\":([0-9]+) ]] && echo "sidecar ready (pid ${BASH_REMATCH[1]})"

send '{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":{"filter":{"kinds":["progress","completed","failed","dead_lettered"],"progress_interval_ms":0}}}'
send '{"jsonrpc":"2.0","id":2,"method":"task.submit","params":{"task_type":"demo::sleep","payload":{"ms":400,"steps":4,"result":{"greeting":"hello from bash"}}}}'

task_id=""
while recv; do
  if [[ $line =~ ^\{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":\{\"outcome\":\"([a-z]+)\",\"id\":([0-9]+)\} ]]; then
    task_id=${BASH_REMATCH[2]}
    echo "submitted task $task_id (${BASH_REMATCH[1]})"
  elif [[ $line == *'"error":'* ]]; then
    echo "run.sh: the sidecar answered an error: $line" >&2; exit 1
  elif [[ -n $task_id && $line == *"\"task_id\":$task_id,"* ]]; then
    if [[ $line =~ \"kind\":\"progress\".*\"percent\":([0-9.]+) ]]; then
      echo "progress ${BASH_REMATCH[1]}"
    elif [[ $line =~ \"kind\":\"completed\".*\"result\":(.*)\}\}$ ]]; then
      echo "result: ${BASH_REMATCH[1]}"
      break
    elif [[ $line =~ \"kind\":\"(failed|dead_lettered)\" ]]; then
      echo "run.sh: task $task_id ${BASH_REMATCH[1]}: $line" >&2; exit 1
    fi
  fi
done

exec {to_sidecar}>&- # stdin EOF: the sidecar drains and exits
code=0
wait "$pid" || code=$?
echo "sidecar exited with code $code"
exit "$code"
