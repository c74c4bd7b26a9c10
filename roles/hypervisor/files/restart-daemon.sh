#!/bin/sh
# Restart a libvirt daemon that runs without a service manager:
#   restart-daemon.sh NAME TIMEOUT
# Stops the process named in /run/NAME.pid (waiting up to TIMEOUT seconds),
# then starts "NAME --daemon" again and waits until its pid file is back.
set -eu
name=$1
timeout=${2:-30}
pidfile=/run/$name.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le $((timeout * 5)) ] || { echo "$name ($pid) did not stop in ${timeout}s" >&2; exit 1; }
        sleep 0.2
    done
fi
"$name" --daemon
i=0
until [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le $((timeout * 5)) ] || { echo "$name did not start in ${timeout}s" >&2; exit 1; }
    sleep 0.2
done
echo "$name restarted (pid $(cat "$pidfile"))"
