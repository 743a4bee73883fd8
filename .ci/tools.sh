# Sourced by the CI scripts: Node 22 (from the npm package node@22 when the machine's Node is older) and the
# pinned npm tools, installed once into .ci/.tools (ignored by git).
# shellcheck shell=bash
CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$CI_DIR/.tools"
# shellcheck source=conformance.env
. "$CI_DIR/conformance.env"
MCPB_VERSION=2.1.2
OIDC_PROVIDER_VERSION=9.13.3  # the real OpenID Connect provider the sign-in tests start (tests/support/oidc.py)

node_major() { node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }

ensure_node_tools() {
    mkdir -p "$TOOLS"
    local packages=("@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" "@anthropic-ai/mcpb@$MCPB_VERSION"
                    "oidc-provider@$OIDC_PROVIDER_VERSION")
    if [ "$(node_major || echo 0)" -lt 22 ]; then
        packages+=("$NODE_PACKAGE")
    fi
    if [ ! -f "$TOOLS/.installed-$CONFORMANCE_VERSION-$MCPB_VERSION-$OIDC_PROVIDER_VERSION" ]; then
        npm install --prefix "$TOOLS" --silent --no-audit --no-fund "${packages[@]}" >/dev/null
        touch "$TOOLS/.installed-$CONFORMANCE_VERSION-$MCPB_VERSION-$OIDC_PROVIDER_VERSION"
    fi
    export PATH="$TOOLS/node_modules/.bin:$PATH"
    echo "node $(node --version), conformance $CONFORMANCE_VERSION, mcpb $MCPB_VERSION, oidc-provider $OIDC_PROVIDER_VERSION"
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
