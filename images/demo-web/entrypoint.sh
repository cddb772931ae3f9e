#!/bin/sh
# shoal/demo-web: answers every request with this task's hostname, like the
# "friendlyhello" app of Docker's getting-started guide. The image runs this script; the
# process runtime runs it too (agent/src/runtime/demo.rs includes this file).
WWW="${WWW:-/www}"
mkdir -p "$WWW"
HOST="$(hostname)"
printf 'Hello from %s\n' "$HOST" > "$WWW/index.html"
if command -v httpd >/dev/null 2>&1; then set -- httpd; else set -- busybox httpd; fi
# httpd as PID 1 would ignore SIGTERM: keep the shell in front to stop promptly.
"$@" -f -p "${PORT:-80}" -h "$WWW" &
pid=$!
trap 'kill "$pid" 2>/dev/null' TERM INT
wait "$pid"
