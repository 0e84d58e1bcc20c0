"""ONNX Runtime behind the ``transformers`` model interface the fine-tuning tasks call.

An export folder (``lmforge export`` writes ``OUT/onnx`` and ``OUT/onnx-int8``) holds::

    model.onnx            inputs input_ids, attention_mask[, token_type_ids]   (batch, sequence)
                          outputs logits, or start_logits + end_logits (QA)
    config.json           the transformers config (id2label / label2id)
    tokenizer files
    lmforge_task.json     the task settings, as in a run's model/ folder

:class:`OnnxTaskModel` wraps an ``onnxruntime.InferenceSession`` so that ``task.predict`` and
``task.report`` run on it unchanged: ``forward(**batch)`` returns a ``ModelOutput`` with
torch tensors. :func:`load_onnx_model` is also the ONNX backend of ``lmforge serve``; keep its
signature stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.finetuning.saved import TASK_FILE, read_settings
from lmforge.finetuning.task import Task
from lmforge.models.build import load_tokenizer

ONNX_FILE = "model.onnx"


def find_onnx_folder(path: str | Path) -> Path | None:
    """The folder holding ``model.onnx`` for ``path``, or None when it is not an ONNX export.

    ``path`` may be the ONNX folder itself or the root of an ``lmforge export`` output (then
    its fp32 ``onnx/`` folder is used).
    """
    p = Path(path).expanduser()
    for folder in (p, p / "onnx"):
        if (folder / ONNX_FILE).is_file():
            return folder
    return None


class OnnxTaskModel(nn.Module):
    """An ONNX Runtime session that looks like a ``transformers`` task model.

    Args:
        path: The ``model.onnx`` file.
        task: The task object (its ``onnx_outputs`` and output class: ``.logits`` or
            start/end logits).
        num_threads: ONNX Runtime intra-op threads (None: ``torch.get_num_threads()``, so
            both backends use the same CPU share).
        providers: ONNX Runtime execution providers (default: CPU only, deterministic).
        config: The ``transformers`` config, kept as ``.config`` for code reading id2label.
    """

    def __init__(self, path: str | Path, task: Task, num_threads: int | None = None,
                 providers: Sequence[str] | None = None, config: Any = None) -> None:
        super().__init__()
        import onnxruntime as ort

        if not task.onnx_outputs:
            raise ConfigError(f"a {task.name} model has no ONNX graph (it generates token by "
                              "token); serve the run with backend=torch")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        # One graph at a time: parallelism comes from intra-op threads, not concurrent nodes.
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        self.path = str(path)
        self.task = task
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = list(task.onnx_outputs)
        self._output_class = task.onnx_output_class()
        # Task code places batches with next(model.parameters()).device; an empty CPU
        # parameter answers that (ONNX Runtime reads numpy arrays from host memory).
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    @property
    def device(self) -> torch.device:
        """Always CPU: inputs are handed to ONNX Runtime as host numpy arrays."""
        return torch.device("cpu")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> Any:
        """Run the session on a padded batch (B, L); extra keys (labels, ...) are ignored.

        Returns:
            A ``SequenceClassifierOutput`` / ``TokenClassifierOutput`` with ``.logits``
            ((B, C) or (B, L, C)), or a ``QuestionAnsweringModelOutput`` with
            ``.start_logits`` / ``.end_logits`` (B, L); float32 CPU tensors.
        """
        given = {"input_ids": input_ids,
                 "attention_mask": attention_mask if attention_mask is not None
                 else torch.ones_like(input_ids),
                 "token_type_ids": token_type_ids if token_type_ids is not None
                 else torch.zeros_like(input_ids)}
        feeds = {}
        for name in self.input_names:
            if name not in given:
                raise ConfigError(f"{self.path} expects input {name!r}, which lmforge does "
                                  "not make; re-export the run with lmforge export")
            feeds[name] = given[name].detach().cpu().numpy().astype(np.int64, copy=False)
        outputs = self.session.run(self.output_names, feeds)
        return self._output_class(**{name: torch.from_numpy(np.asarray(value))
                                     for name, value in zip(self.output_names, outputs,
                                                            strict=True)})


def load_onnx_model(folder: str | Path, num_threads: int | None = None,
                    providers: Sequence[str] | None = None) -> tuple[OnnxTaskModel, Any, Any,
                                                                     Any]:
    """Load an ONNX export folder for ``task.predict`` / ``task.report`` (and the server).

    Args:
        folder: An ``lmforge export`` ONNX folder (``OUT/onnx``, ``OUT/onnx-int8``) or the
            export root ``OUT`` (its fp32 ``onnx/`` folder is used).
        num_threads: ONNX Runtime intra-op threads (None: ``torch.get_num_threads()``).
        providers: ONNX Runtime execution providers (None: CPU).

    Returns:
        ``(model, tokenizer, task, settings)``: the :class:`OnnxTaskModel`, the saved
        tokenizer, the registered task object and its settings from ``lmforge_task.json``.

    Raises:
        ConfigError: The folder has no ``model.onnx`` or no ``lmforge_task.json``, or
            onnxruntime is not installed.
    """
    found = find_onnx_folder(folder)
    if found is None:
        raise ConfigError(f"{folder} has no {ONNX_FILE}; export the run first: lmforge export "
                          "RUN_DIR --output-dir OUT format=onnx")
    saved = read_settings(found)
    if saved is None:
        raise ConfigError(f"{found} has no {TASK_FILE}; export the run with lmforge export")
    task, settings = saved
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX models need onnxruntime: pip install onnxruntime") from None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(found) if (found / "config.json").is_file() else None
    model = OnnxTaskModel(found / ONNX_FILE, task, num_threads, providers, config)
    return model.eval(), load_tokenizer(str(found)), task, settings
