# Sourced by the CI scripts: Node 22 (from the npm package node@22 when the machine's Node is older) and the
# pinned npm tools, installed once into .ci/.tools (ignored by git).
# shellcheck shell=bash
CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$CI_DIR/.tools"
# shellcheck source=conformance.env
. "$CI_DIR/conformance.env"
MCPB_VERSION=2.1.2
OIDC_PROVIDER_VERSION=9.13.3  # the real OpenID Connect provider the sign-in tests start (tests/support/oidc.py)
INSPECTOR_VERSION=2.12.0  # the MCP Inspector the README pins (it needs Node 22.19 or newer)

# True when the machine's Node is at least version $1 (the Inspector needs 22.19).
node_at_least() { [ "$(printf '%s\n' "$1" "$(node --version 2>/dev/null | tr -d v)" | sort -V | head -n1)" = "$1" ]; }

ensure_node_tools() {
    mkdir -p "$TOOLS"
    local packages=("@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" "@anthropic-ai/mcpb@$MCPB_VERSION"
                    "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" "oidc-provider@$OIDC_PROVIDER_VERSION")
    if ! node_at_least 22.19.0; then
        packages+=("$NODE_PACKAGE")
    fi
    local stamp="$TOOLS/.installed-$CONFORMANCE_VERSION-$MCPB_VERSION-$INSPECTOR_VERSION-$OIDC_PROVIDER_VERSION"
    if [ ! -f "$stamp" ]; then
        npm install --prefix "$TOOLS" --silent --no-audit --no-fund "${packages[@]}" >/dev/null
        touch "$stamp"
    fi
    export PATH="$TOOLS/node_modules/.bin:$PATH"
    echo "node $(node --version), conformance $CONFORMANCE_VERSION, mcpb $MCPB_VERSION, inspector $INSPECTOR_VERSION," \
        "oidc-provider $OIDC_PROVIDER_VERSION"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Start `vps-snapshots-mcp ARGS...` over HTTP on a free port; wait until it answers; print its pid and port.
start_http_server() {
    local port; port="$(free_port)"
    "$@" --transport http --host 127.0.0.1 --port "$port" --log-level WARNING >"$TOOLS/server-$port.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            echo "$pid $port"; return 0
        fi
        sleep 0.1
    done
    cat "$TOOLS/server-$port.log" >&2
    return 1
}
