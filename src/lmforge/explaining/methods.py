"""Attribution methods, one table: :data:`METHODS`.

Every method returns one score per feature token (positive: the token raises the target
score). Gradient methods use Captum on the word-embedding layer, LIME and SHAP use their
libraries with the model calls batched through :class:`~lmforge.explaining.scoring.Scorer`;
all methods see the same features (the non-special tokens) and the same perturbation.

===========  ==================================  ========================  ================
method       what it computes                     model calls / example     needs
===========  ==================================  ========================  ================
ig           Integrated Gradients (Sundararajan   n_steps forward+backward  torch backend
             et al. 2017), Captum                  (batched across steps
             LayerIntegratedGradients              and examples)
gradxinput   gradient x embedding (Captum          1 forward+backward        torch backend
             LayerGradientXActivation)
rollout      attention rollout (Abnar & Zuidema    1 forward                 torch backend
             2020), target-agnostic
occlusion    leave-one-out: p(x) - p(x without     F + 1
             token i)
lime         LIME (Ribeiro et al. 2016),           lime_samples
             lime.lime_text, weighted linear
             surrogate over token presence
shap         Partition SHAP (shap.Explainer with   <= shap_evals
             a token-hierarchy masker)
random       uniform random scores (the            0
             faithfulness baseline)
===========  ==================================  ========================  ================

All methods apply to classification (single and pair), token classification (one entity)
and extractive QA (the predicted span); for NER and QA, perturbations replace tokens with the
baseline token instead of deleting them, so that the explained positions do not move.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmforge.config import check_choice
from lmforge.errors import ConfigError
from lmforge.explaining.adapters import Example
from lmforge.explaining.scoring import Scorer, pad_rows, perturb


@dataclass
class Options:
    """Budgets and settings shared by the methods (see ``ExplainJob`` for the docs)."""

    n_steps: int = 32
    internal_batch_size: int = 64
    baseline: str = "pad"
    lime_samples: int = 1000
    shap_evals: int = 500
    batch_size: int = 64
    seed: int = 0


@dataclass
class Context:
    """What a method works with."""

    model: Any
    tokenizer: Any
    adapter: Any
    scorer: Scorer
    options: Options

    @property
    def fill_id(self) -> int:
        """Baseline token id: [PAD] or [MASK] (``options.baseline``)."""
        tok = self.tokenizer
        if self.options.baseline == "mask" and tok.mask_token_id is not None:
            return int(tok.mask_token_id)
        return int(tok.pad_token_id if tok.pad_token_id is not None else 0)

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id."""
        return int(self.tokenizer.pad_token_id or 0)


def _require_import(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"this method needs {package}; install it (pip install {package}) "
                          "or pick another method") from None


def _forward(ctx: Context) -> Callable[..., torch.Tensor]:
    """Captum forward: (ids, mask, types, target) -> (B,) target scores."""

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        ctx.scorer.counter.passes += 1
        ctx.scorer.counter.sequences += int(input_ids.shape[0])
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = ctx.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return ctx.adapter.score(out, target)

    return forward


def _chunks(examples: list[Example], size: int) -> Iterator[list[int]]:
    """Indices of examples in groups of ``size``, similar lengths together."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    for start in range(0, len(order), size):
        yield order[start:start + size]


def _gradient(ctx: Context, examples: list[Example], kind: str) -> list[np.ndarray]:
    captum_attr = _require_import("captum.attr", "captum")
    layer = ctx.model.get_input_embeddings()
    forward = _forward(ctx)
    opts = ctx.options
    # IG runs n_steps copies of each example; internal_batch_size bounds one pass (memory),
    # and several short examples share a pass when it has room (Captum splits by step).
    per_chunk = max(1, opts.internal_batch_size // opts.n_steps) if kind == "ig" \
        else opts.batch_size
    out: list[np.ndarray] = [np.zeros(0)] * len(examples)
    for chunk in _chunks(examples, per_chunk):
        rows = [(examples[i].ids, examples[i].type_ids, examples[i].target) for i in chunk]
        batch = pad_rows(rows, ctx.pad_id, ctx.scorer.device)
        args = (batch["attention_mask"], batch.get("token_type_ids"), batch["target"])
        ids = batch["input_ids"]
        with torch.enable_grad():
            if kind == "ig":
                base = ids.clone()
                for j, i in enumerate(chunk):  # [CLS] / [SEP] stay, features -> baseline
                    base[j, torch.as_tensor(examples[i].features)] = ctx.fill_id
                attr = captum_attr.LayerIntegratedGradients(forward, layer).attribute(
                    ids, baselines=base, additional_forward_args=args, n_steps=opts.n_steps,
                    internal_batch_size=max(opts.internal_batch_size, len(chunk)))
            else:
                attr = captum_attr.LayerGradientXActivation(forward, layer).attribute(
                    ids, additional_forward_args=args)
        token_scores = attr.detach().float().sum(-1).cpu().numpy()  # (B, L): sum over hidden
        for j, i in enumerate(chunk):
            out[i] = token_scores[j, examples[i].features]
    return out


def integrated_gradients(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """IG on the word embeddings, from the [PAD]/[MASK] baseline to the input."""
    return _gradient(ctx, examples, "ig")


def gradient_x_input(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """Gradient of the target score times the word embedding, summed over dimensions."""
    return _gradient(ctx, examples, "gradxinput")


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Attention weights need the eager kernel (sdpa does not return them)."""
    before = getattr(model.config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(before)


@torch.no_grad()
def attention_rollout(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """Abnar & Zuidema (2020): R = prod_l (0.5 mean_h A_l + 0.5 I), rows renormalized; a
    token's score is R[readout, token] (readout: [CLS], the entity or the span ends)."""
    out: list[np.ndarray] = [np.zeros(0)] * len(examples)
    with _eager_attention(ctx.model):
        for chunk in _chunks(examples, ctx.options.batch_size):
            rows = [(examples[i].ids, examples[i].type_ids, examples[i].target) for i in chunk]
            batch = pad_rows(rows, ctx.pad_id, ctx.scorer.device)
            batch.pop("target")
            ctx.scorer.counter.passes += 1
            ctx.scorer.counter.sequences += len(chunk)
            attentions = ctx.model(**batch, output_attentions=True).attentions
            if not attentions or attentions[0] is None:
                raise ConfigError("this model returns no attention weights; use another "
                                  "method than rollout")
            eye = torch.eye(batch["input_ids"].shape[1], device=batch["input_ids"].device)
            rollout = None
            for att in attentions:  # (B, H, L, L) per layer
                a = 0.5 * att.float().mean(1) + 0.5 * eye  # residual connection
                a = a / a.sum(-1, keepdim=True)
                rollout = a if rollout is None else a @ rollout
            assert rollout is not None
            for j, i in enumerate(chunk):
                reads = ctx.adapter.readout_positions(examples[i])
                flow = rollout[j, reads].mean(0)  # (L,)
                out[i] = flow[torch.as_tensor(examples[i].features)].cpu().numpy()
    return out


def occlusion(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """Leave-one-out: score(x) - score(x without token i), all variants in shared batches."""
    mode = ctx.adapter.perturbation
    rows, spans = [], []
    for ex in examples:
        n = len(ex.features)
        start = len(rows)
        rows.append(perturb(ex, np.ones(n, dtype=bool), mode, ctx.fill_id))
        for i in range(n):
            keep = np.ones(n, dtype=bool)
            keep[i] = False
            rows.append(perturb(ex, keep, mode, ctx.fill_id))
        spans.append((start, n))
    scores = ctx.scorer.score(rows)
    return [scores[s] - scores[s + 1:s + 1 + n] for s, n in spans]


def lime(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """LIME's text explainer over the feature tokens; perturbed inputs scored in batches.

    LIME sees the input as the words ``"0 1 2 ..."`` (one per feature token, ``bow=False``),
    so its samples map back to exact token positions and the model never re-tokenizes text.
    """
    lime_text = _require_import("lime.lime_text", "lime")
    mode = ctx.adapter.perturbation
    out = []
    for k, ex in enumerate(examples):
        n = len(ex.features)
        explainer = lime_text.LimeTextExplainer(bow=False, split_expression=r"\s+",
                                                feature_selection="none",
                                                random_state=ctx.options.seed + k)

        def classify(strings: list[str], ex: Example = ex) -> np.ndarray:
            keeps = [np.asarray([t.isdigit() for t in s.split(" ")], dtype=bool)
                     for s in strings]
            rows = [perturb(ex, keep, mode, ctx.fill_id) for keep in keeps]
            return ctx.scorer.score(rows)[:, None]  # (S, 1): one "class", the target

        exp = explainer.explain_instance(" ".join(str(i) for i in range(n)), classify,
                                         labels=(0,), num_features=n,
                                         num_samples=ctx.options.lime_samples)
        scores = np.zeros(n)
        indexed = exp.domain_mapper.indexed_string
        for feature, weight in exp.as_map()[0]:
            scores[int(indexed.word(feature))] = weight
        out.append(scores)
    return out


def _token_tree(ex: Example) -> np.ndarray:
    """SHAP partition tree over the feature tokens (shap's text hierarchy: sub-words, then
    words, punctuation and phrases), scipy linkage format."""
    from shap.maskers._text import partition_tree

    names = []
    for word in ex.words:
        for j, i in enumerate(word.indices):
            piece = ex.tokens[i].lstrip("#").lstrip("\u0120\u2581") or ex.tokens[i]
            names.append((i, ("##" if j else "") + piece))
    names.sort()
    if len(names) == 1:
        return np.zeros((0, 4))
    tree = partition_tree([n for _, n in names], [])
    tree[:, 2] = tree[:, 3] / tree[:, 3].max()  # cluster size as height, as shap's Text does
    return tree


def shap_partition(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """Owen values of the Partition explainer over the token hierarchy, ``shap_evals`` calls."""
    shap = _require_import("shap", "shap")
    mode = ctx.adapter.perturbation

    class TokenMasker(shap.maskers.Masker):
        """Masks feature positions; the model function turns masks into token ids."""

        def __init__(self, n: int, tree: np.ndarray) -> None:
            self.shape = (1, n)
            self.clustering = tree
            self.fixed_background = False

        def __call__(self, mask: Any, x: Any) -> tuple[np.ndarray]:
            mask = self._standardize_mask(mask, x)
            return (np.asarray(mask, dtype=np.float64).reshape(1, -1),)

    out = []
    for ex in examples:
        n = len(ex.features)
        if n == 1:  # a single token: its Shapley value is f(x) - f(empty)
            full, empty = ctx.scorer.score([perturb(ex, np.ones(1, bool), mode, ctx.fill_id),
                                            perturb(ex, np.zeros(1, bool), mode, ctx.fill_id)])
            out.append(np.asarray([full - empty]))
            continue

        def model(masks: np.ndarray, ex: Example = ex) -> np.ndarray:
            return ctx.scorer.score([perturb(ex, m > 0.5, mode, ctx.fill_id) for m in masks])

        explainer = shap.explainers.Partition(model, TokenMasker(n, _token_tree(ex)))
        values = explainer(np.arange(n, dtype=np.float64).reshape(1, -1),
                           max_evals=max(ctx.options.shap_evals, 2 * n + 1),
                           batch_size=ctx.options.batch_size, silent=True).values
        out.append(np.asarray(values).reshape(-1)[:n])
    return out


def random_scores(ctx: Context, examples: list[Example]) -> list[np.ndarray]:
    """Uniform random scores (seeded): the baseline every method must beat."""
    rng = np.random.default_rng(ctx.options.seed)
    return [rng.random(len(ex.features)) for ex in examples]


@dataclass(frozen=True)
class Method:
    """A method's function, whether it needs gradients or attention (the PyTorch backend), and
    the option that sets its budget."""

    fn: Callable[[Context, list[Example]], list[np.ndarray]]
    summary: str
    needs_torch: bool = False
    budget: str | None = None


METHODS: dict[str, Method] = {
    "ig": Method(integrated_gradients, "Integrated Gradients (Captum)", needs_torch=True,
                 budget="n_steps"),
    "gradxinput": Method(gradient_x_input, "Gradient x Input (Captum)", needs_torch=True),
    "rollout": Method(attention_rollout, "attention rollout", needs_torch=True),
    "occlusion": Method(occlusion, "leave-one-out occlusion"),
    "lime": Method(lime, "LIME (lime.lime_text)", budget="lime_samples"),
    "shap": Method(shap_partition, "Partition SHAP (shap)", budget="shap_evals"),
    "random": Method(random_scores, "random scores (baseline)"),
}
DEFAULT_METHODS = ["ig", "gradxinput", "rollout", "occlusion", "lime", "shap"]


def check_methods(methods: list[str], backend: str = "torch") -> None:
    """One-line errors for unknown methods and methods the backend cannot run.

    Every method applies to every task that can be explained: the task's adapter
    (``Task.explain_adapter()``) turns its model into what the methods score.
    """
    if not methods:
        raise ConfigError(f"give at least one method; choose from {list(METHODS)}")
    for name in methods:
        check_choice("methods", name, list(METHODS))
        method = METHODS[name]
        if method.needs_torch and backend != "torch":
            raise ConfigError(f"method {name!r} needs gradients or attention weights, which "
                              f"the {backend} backend does not give; load the PyTorch run or "
                              "use occlusion, lime or shap")
