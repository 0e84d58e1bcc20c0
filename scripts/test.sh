#!/usr/bin/env bash
# Run the offline test suite (creates .venv on first use). Extra args go to pytest.
#
# Without args the suite runs twice: once as is (train.precision=auto picks bf16 where the CPU
# has bf16 units, fp32 elsewhere), then the tiny-model training tests again with auto forced to
# the other precision (LMFORGE_AUTO_PRECISION), so both the bf16 and the fp32 paths run on
# every machine, whatever its CPU. The second pass covers the directories whose tests train
# through the engine's precision switch directly; continual and prompting runs go through the
# same switch (make_accelerator), so repeating them would only add time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
other=$(.venv/bin/python -c "from lmforge.engine.precision import cpu_supports_bf16
print('fp32' if cpu_supports_bf16() else 'bf16')")
echo "second pass: the training tests with train.precision=auto forced to $other"
LMFORGE_AUTO_PRECISION=$other exec .venv/bin/python -m pytest -m "not slow" \
  tests/test_api.py tests/engine tests/finetuning tests/peft tests/pretraining
