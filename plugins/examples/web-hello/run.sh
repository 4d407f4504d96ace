#!/bin/sh
# web-hello: serves a one-line page on the port p2prc handed out. Runs inside the container, as its user.
# Given: P2PRC_PORT_1 (the container's side of a published port), P2PRC_PORT_1_EXTERNAL (the node's side),
# P2PRC_PLUGIN_DIR (this folder, copied in) and GREETING (an option).
set -eu
www="$P2PRC_PLUGIN_DIR/www"
mkdir -p "$www"
printf '%s\n' "$GREETING" > "$www/index.html"
if command -v busybox >/dev/null 2>&1; then
  # busybox httpd puts itself in the background, its output going nowhere, so the script goes on at once
  busybox httpd -p "$P2PRC_PORT_1" -h "$www" </dev/null >/dev/null 2>&1
elif command -v python3 >/dev/null 2>&1; then
  nohup python3 -m http.server "$P2PRC_PORT_1" --directory "$www" </dev/null >/dev/null 2>&1 &
else
  echo "web-hello: this container has neither busybox httpd nor python3" >&2
  exit 3
fi
# ready when it answers (where there is a wget to ask with)
i=0
command -v wget >/dev/null 2>&1 || i=-1
[ "$i" -lt 0 ] || until wget -q -O /dev/null "http://127.0.0.1:$P2PRC_PORT_1/" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -ge 50 ]; then
    echo "web-hello: the server did not answer on port $P2PRC_PORT_1" >&2
    exit 4
  fi
  sleep 0.1
done
echo "web-hello: serving on container port $P2PRC_PORT_1 (node port $P2PRC_PORT_1_EXTERNAL)"
