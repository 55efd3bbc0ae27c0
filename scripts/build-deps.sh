# Sourced by scripts/run.sh and scripts/test.sh: `log`, `as_root`, and `ensure_build_deps`, which
# installs with apt-get (as root, or with sudo) what building and running Switchboard needs on a
# fresh Debian machine beyond the Rust toolchain and a C compiler: cmake and clang (whisper.cpp,
# the embedded speech recognition, is built from source; bindgen needs libclang) and espeak-ng
# (the embedded voices' phonemes and every language's voice, run as a program).

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v clang >/dev/null 2>&1 || missing+=(clang)
  ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
  command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages) to build and run Switchboard"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
