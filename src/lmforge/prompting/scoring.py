"""Label scores from a language model: cloze scoring (masked LMs) and continuation
log-likelihood (causal LMs).

Masked LM (PET, Schick & Schütze 2021; LM-BFF, Gao et al. 2021): with template T and
verbalizer v, ``s(y | x) = log p([MASK] = v(y) | T(x))``. A label word of n tokens gets n
[MASK] tokens in the slot, all predicted in one forward pass, and its score is the mean
(``length_normalize``) or the sum of the n token log-probs. This is PET's multi-mask idea
(Schick & Schütze 2021, "It's Not Just Size That Matters") without its one-token-at-a-time
decoding: a single pass per distinct word length keeps it cheap, and the mean keeps long
words from being penalised for their length.

Causal LM: ``s(y | x) = sum_t log p(v(y)_t | prompt, v(y)_<t)``, the word's log-likelihood
(divided by the word length with ``length_normalize``, which favours words whose later tokens
are predictable). The prompt is run once with ``use_cache`` and every label word is
scored from its KV cache: single-token words need no second pass at all, longer words one
batched pass over ``batch x words`` short continuations. When all prompts share a long
token prefix (the chat header and one seeded set of in-context demonstrations), that prefix
is run once and its KV cache reused by every batch, so a 500-token demonstration block costs
one forward pass instead of one per input.

A label with several words scores ``log mean_w exp(s_w)`` (the mean of the word
probabilities), and p(y | x) is the softmax of the label scores over the labels.

Inputs are encoded piece by piece (demonstrations, template literals, the input text, the
slot) so the slot position is exact and only the input text is cut to ``max_length``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import ConfigError
from lmforge.models.build import resolve_checkpoint
from lmforge.prompting.templates import Template

log = logging.getLogger(__name__)

TEXT = "\x00TEXT"  # marker of the input-text slot in a part list
SLOT = "\x00SLOT"  # marker of the answer slot
MAX_PROMPT_LENGTH = 2048  # max_length=None: the model's context, at most this many tokens


def prompt_max_length(max_length: int | None, model: Any) -> int:
    """``max_length``, or for None the model's context length (``max_position_embeddings``)
    capped at :data:`MAX_PROMPT_LENGTH`: room for in-context demonstrations (eight SST-2
    demonstrations take about 265 SmolLM2 tokens) without cutting inputs past what the
    position embeddings allow."""
    if max_length is not None:
        return max_length
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(int(positions), MAX_PROMPT_LENGTH) if positions else MAX_PROMPT_LENGTH


# ----------------------------------------------------------------------------- model loading
def lm_kind(model_cfg: Any, lm: str = "auto") -> str:
    """``mlm`` or ``causal``: ``lm`` unless auto, then mlm when the architecture has an MLM
    head in transformers (read from the config only, before any weights load)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if lm != "auto":
        return lm
    if not model_cfg.pretrained:
        raise ConfigError("prompt needs a pretrained model: set model.pretrained=FOLDER or a "
                          "builtin such as smollm2-135m-instruct")
    folder = resolve_checkpoint(model_cfg.pretrained)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load model.pretrained={model_cfg.pretrained!r} ({first}); "
                          "use a folder with config.json and weights, or a .gguf file") from None
    return "mlm" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "causal"


def load_lm(model_cfg: Any, lm: str = "auto") -> tuple[Any, Any, str]:
    """Load the scoring model and its tokenizer.

    Args:
        model_cfg: A :class:`~lmforge.settings.ModelConfig` (``pretrained`` is required; a
            builtin name such as ``smollm2-135m-instruct`` resolves to its GGUF file).
        lm: ``mlm``, ``causal`` or ``auto`` (masked LM when the architecture has one).

    Returns:
        (model in eval mode, tokenizer, ``"mlm"`` or ``"causal"``).
    """
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    if not model_cfg.pretrained:
        raise ConfigError("prompt needs a pretrained model: set model.pretrained=FOLDER or a "
                          "builtin such as smollm2-135m-instruct")
    folder = resolve_checkpoint(model_cfg.pretrained)  # a .gguf file: its converted folder
    tok_folder = resolve_checkpoint(model_cfg.tokenizer) if model_cfg.tokenizer else folder
    trust = model_cfg.trust_remote_code
    try:
        kind = lm_kind(model_cfg, lm)
        auto = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
        model, info = auto.from_pretrained(folder, trust_remote_code=trust,
                                           attn_implementation=model_cfg.attn_implementation,
                                           output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(tok_folder, trust_remote_code=trust)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load model.pretrained={model_cfg.pretrained!r} ({first}); "
                          "use a folder with config.json and weights, or a .gguf file") from None
    if any(k.startswith(("cls.", "lm_head")) for k in info.get("missing_keys", [])):
        log.warning("%s has no trained %s head: zero-shot scores from a new head are "
                    "meaningless (fine for mode=fewshot, which trains it)",
                    model_cfg.pretrained, kind)
    if kind == "mlm" and tokenizer.mask_token_id is None:
        raise ConfigError(f"the tokenizer of {model_cfg.pretrained!r} has no mask token; use "
                          "lm=causal or a masked LM")
    model.eval()
    return model, tokenizer, kind


# ----------------------------------------------------------------------------- encoding
@dataclass
class Encoder:
    """Encodes prompts piece by piece with a cache of literal pieces (demos repeat a lot)."""

    tokenizer: Any
    max_length: int

    def __post_init__(self) -> None:
        self._cache: dict[str, list[int]] = {}
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a")["input_ids"]
        at = next((i for i in range(len(full)) if full[i:i + len(plain)] == plain), 0)
        self.head, self.tail = full[:at], full[at + len(plain):]  # e.g. [CLS] / [SEP], BOS

    def ids(self, text: str) -> list[int]:
        """Token ids of a literal piece (no special tokens), cached."""
        if text not in self._cache:
            self._cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"] \
                if text else []
        return self._cache[text]

    def encode(self, parts: Sequence[str], text: str, slot: Sequence[int] = (),
               specials: bool = True) -> tuple[list[int], int]:
        """``head + parts + tail`` where TEXT is the input (cut to fit) and SLOT is ``slot``.

        Returns:
            (token ids, index of the first slot token, or of the end when there is no SLOT).
        """
        head, tail = (self.head, self.tail) if specials else ([], [])
        fixed = sum(len(self.ids(s)) for s in parts if s != TEXT and s != SLOT)
        budget = self.max_length - len(head) - len(tail) - len(slot) - fixed
        if budget < 0:
            raise ConfigError(f"max_length={self.max_length} is too short for the template and "
                              "demonstrations; raise max_length or lower shots")
        text_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:budget] \
            if text else []
        out, start = list(head), -1
        for s in parts:
            if s == TEXT:
                out.extend(text_ids)
            elif s == SLOT:
                start = len(out)
                out.extend(slot)
            else:
                out.extend(self.ids(s))
        if start < 0:
            start = len(out)
        out.extend(tail)
        return out, start


def template_parts(template: Template, context: str = "", causal: bool = False) -> list[str]:
    """Split a template into literal pieces and the TEXT / SLOT markers.

    Whitespace right before the slot moves into the label word (``" great"``), as BPE
    vocabularies mark a word's leading space in the word's own token. For a causal LM the
    parts end at the slot (the label is the continuation; text after the slot is dropped).
    """
    pattern = template.pattern if template.has_mask else template.pattern + " {mask}"
    before, after = pattern.split("{mask}", 1)
    if causal and "{text}" not in before:
        raise ConfigError(f"template {template.name!r} puts {{mask}} before {{text}}; move the "
                          "slot after the text (causal LMs read left to right)")
    parts: list[str] = [context] if context else []
    for piece, marker in ((before.rstrip(), SLOT), (after, None)):
        chunks = piece.split("{text}")
        for i, chunk in enumerate(chunks):
            if i:
                parts.append(TEXT)
            if chunk:
                parts.append(chunk)
        if marker is not None:
            parts.append(marker)
        if causal:
            break
    return parts


def label_token_ids(encoder: Encoder, template: Template, labels: Sequence[str],
                    space: bool | None = None) -> list[list[list[int]]]:
    """Token ids of every word of every label: ``[label][word] -> ids``."""
    before = template.pattern.split("{mask}", 1)[0] if template.has_mask else " "
    lead = " " if (space if space is not None else before[-1:].isspace()) else ""
    out = []
    for y in labels:
        words = []
        for w in template.verbalizer[y]:
            ids = encoder.ids(lead + w)
            if not ids:
                raise ConfigError(f"label word {w!r} of template {template.name!r} is empty "
                                  "after tokenization; choose another word")
            words.append(ids)
        out.append(words)
    return out


def aggregate_words(word_scores: np.ndarray, words: list[list[list[int]]]) -> np.ndarray:
    """(N, W) word scores -> (N, C) label scores, log of the mean word probability."""
    out, k = [], 0
    for label_words in words:
        n = len(label_words)
        chunk = torch.from_numpy(word_scores[:, k:k + n])
        out.append((torch.logsumexp(chunk, dim=1) - np.log(n)).numpy())
        k += n
    return np.stack(out, axis=1)


def _pad(rows: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def _pad_id(tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0


# ----------------------------------------------------------------------------- masked LM
@torch.no_grad()
def cloze_scores(model: Any, encoder: Encoder, template: Template, labels: Sequence[str],
                 texts: Sequence[str], contexts: Sequence[str] | None = None, *,
                 batch_size: int = 16, length_normalize: bool = True) -> np.ndarray:
    """Label scores ``log p([MASK] = v(y) | T(x))`` of a masked LM.

    Args:
        model: A ``*ForMaskedLM`` model.
        encoder: The prompt encoder (tokenizer + max_length).
        template: Template with a ``{mask}`` slot.
        labels: Label names in output order.
        texts: Inputs x.
        contexts: Optional text before each prompt (in-context demonstrations).
        batch_size: Prompts per forward pass.
        length_normalize: Mean (True) or sum of the token log-probs of a multi-token word.

    Returns:
        (N, C) label scores (log-space; softmax over C gives p(y | x)).
    """
    words = label_token_ids(encoder, template, labels)
    flat = [w for label_words in words for w in label_words]
    mask_id, pad_id = encoder.tokenizer.mask_token_id, _pad_id(encoder.tokenizer)
    scores = np.zeros((len(texts), len(flat)), dtype=np.float64)
    contexts = contexts or [""] * len(texts)
    for m in sorted({len(w) for w in flat}):
        cols = [j for j, w in enumerate(flat) if len(w) == m]
        targets = torch.tensor([flat[j] for j in cols])  # (W_m, m)
        for start in range(0, len(texts), batch_size):
            rows, starts = [], []
            for x, ctx in zip(texts[start:start + batch_size], contexts[start:start + batch_size],
                              strict=True):
                ids, at = encoder.encode(template_parts(template, ctx), x, [mask_id] * m)
                rows.append(ids)
                starts.append(at)
            ids, attn = _pad(rows, pad_id)
            logits = model(input_ids=ids, attention_mask=attn).logits.float()  # (B, T, V)
            pos = torch.tensor(starts)[:, None] + torch.arange(m)[None, :]  # (B, m)
            logp = F.log_softmax(logits[torch.arange(len(rows))[:, None], pos], -1)  # (B, m, V)
            # token t of word w sits at slot position t: logp[b, t, targets[w, t]]
            picked = logp[:, torch.arange(m)[None, :], targets]  # (B, W_m, m)
            word = picked.mean(-1) if length_normalize else picked.sum(-1)
            scores[start:start + len(rows), cols] = word.double().numpy()
    return aggregate_words(scores, words)


# ----------------------------------------------------------------------------- causal LM
def causal_prompts(encoder: Encoder, template: Template, texts: Sequence[str],
                   contexts: Sequence[str] | None = None, chat: bool = False,
                   system_prompt: str | None = None) -> list[list[int]]:
    """Token ids of the prompt before the label word for each input."""
    contexts = contexts or [""] * len(texts)
    wrap_head = wrap_tail = ""
    if chat:
        tok = encoder.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ConfigError("chat_template=true but the tokenizer has no chat template; set "
                              "chat_template=false")
        sentinel = "\u2063LMFORGE\u2063"
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": sentinel}]
        wrapped = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        wrap_head, wrap_tail = wrapped.split(sentinel, 1)
    out = []
    for x, ctx in zip(texts, contexts, strict=True):
        parts = template_parts(template, ctx, causal=True)
        if chat:
            parts = [wrap_head, *parts, wrap_tail]
        ids, _ = encoder.encode(parts, x, specials=not chat)
        if encoder.tail and not chat:  # e.g. a trailing EOS: the label must follow the prompt
            ids = ids[:len(ids) - len(encoder.tail)]
        out.append(ids)
    return out


@torch.no_grad()
def continuation_logprobs(model: Any, prompts: Sequence[list[int]], words: Sequence[list[int]],
                          pad_id: int, batch_size: int = 16,
                          min_shared_prefix: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Sum of log p(word tokens | prompt) for every (prompt, word), with the prompt's KV cache.

    Prompts are left-padded (so the last position predicts the first word token for every
    row) with explicit position ids, run once; the cache is repeated per word and the word
    tokens but the last are run in one more pass when some word has more than one token.
    A token prefix common to all prompts (at least ``min_shared_prefix`` tokens) is run
    once and its cache shared.

    Returns:
        (N, W) summed log-probs and (W,) word lengths.
    """
    lengths = np.array([len(w) for w in words])
    out = np.zeros((len(prompts), len(words)), dtype=np.float64)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding
    first = torch.tensor([w[0] for w in words])
    longest = int(lengths.max())
    n_words = len(words)
    shared = common_prefix_length(prompts) if len(prompts) > 1 else 0
    prefix_cache = None
    if shared < min_shared_prefix:
        shared = 0
    else:  # (1, P) prefix run once; every batch continues from a copy of its cache
        prefix_cache = _returned_cache(model(input_ids=torch.tensor([prompts[0][:shared]]),
                                             use_cache=True))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, attn = _pad([prompts[i][shared:] for i in idx], pad_id, left=True)  # (B, T)
        extra: dict[str, Any] = {}
        if prefix_cache is not None:
            # prefix | left padding | suffix: the padding holes are masked out, and the
            # positions continue from the prefix, so every row sees its own full prompt
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(idx))
            extra["cache"] = cache
            attn = torch.cat([torch.ones((len(idx), shared), dtype=attn.dtype), attn], 1)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        res = model(input_ids=ids, attention_mask=attn, position_ids=pos,
                    use_cache=longest > 1, logits_to_keep=1, **extra)
        logp0 = F.log_softmax(res.logits[:, -1].float(), -1)  # (B, V)
        total = logp0[:, first]  # (B, W)
        if longest > 1:
            b = len(idx)
            cache = _returned_cache(res)
            cache.batch_repeat_interleave(n_words)  # (B*W, ...): row b*W + w
            cont = [w[:-1] + [pad_id] * (longest - len(w)) for w in words]  # (W, L-1)
            cont_ids = torch.tensor(cont).repeat(b, 1)  # (B*W, L-1)
            cont_mask = torch.tensor([[1] * (len(w) - 1) + [0] * (longest - len(w))
                                      for w in words]).repeat(b, 1)
            full_mask = torch.cat([attn.repeat_interleave(n_words, 0), cont_mask], 1)
            cont_pos = attn.sum(-1, keepdim=True).repeat_interleave(n_words, 0) + \
                torch.arange(longest - 1)[None, :]
            res2 = model(input_ids=cont_ids, attention_mask=full_mask, position_ids=cont_pos,
                         cache=cache, use_cache=False)
            logp = F.log_softmax(res2.logits.float(), -1)  # (B*W, L-1, V)
            targets = torch.tensor([w[1:] + [0] * (longest - len(w)) for w in words])
            targets = targets.repeat(b, 1)  # (B*W, L-1)
            picked = logp.gather(-1, targets[..., None])[..., 0] * cont_mask[:, :]
            total = total + picked.sum(-1).view(b, n_words)
        out[idx] = total.double().numpy()
    return out, lengths


def _returned_cache(output: Any) -> Any:
    """The KV cache a forward pass returned (``cache`` in transformers 5, else
    ``past_key_values``)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def common_prefix_length(prompts: Sequence[list[int]]) -> int:
    """Tokens shared by the start of every prompt, leaving each at least one of its own."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


@torch.no_grad()
def naive_continuation_logprobs(model: Any, prompts: Sequence[list[int]],
                                words: Sequence[list[int]]) -> np.ndarray:
    """Reference for :func:`continuation_logprobs`: one unpadded full sequence per pair."""
    out = np.zeros((len(prompts), len(words)), dtype=np.float64)
    for i, p in enumerate(prompts):
        for j, w in enumerate(words):
            ids = torch.tensor([p + w])
            logp = F.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            out[i, j] = sum(float(logp[len(p) - 1 + t, tok]) for t, tok in enumerate(w))
    return out


def causal_scores(model: Any, encoder: Encoder, template: Template, labels: Sequence[str],
                  texts: Sequence[str], contexts: Sequence[str] | None = None, *,
                  batch_size: int = 16, length_normalize: bool = False, chat: bool = False,
                  system_prompt: str | None = None) -> np.ndarray:
    """Label scores ``log p(v(y) | prompt(x))`` of a causal LM (see the module docstring).

    Args:
        model: A ``*ForCausalLM`` model.
        encoder: The prompt encoder.
        template: The template (text after ``{mask}`` is ignored).
        labels: Label names in output order.
        texts: Inputs x.
        contexts: Optional demonstrations before each prompt.
        batch_size: Prompts per forward pass.
        length_normalize: Divide a word's log-likelihood by its token count.
        chat: Wrap the prompt in the tokenizer's chat template (the label is the reply).
        system_prompt: Optional system message for ``chat``.

    Returns:
        (N, C) label scores in log-space.
    """
    prompts = causal_prompts(encoder, template, texts, contexts, chat, system_prompt)
    words = label_token_ids(encoder, template, labels, space=False if chat else None)
    flat = [w for label_words in words for w in label_words]
    summed, lengths = continuation_logprobs(model, prompts, flat,
                                            _pad_id(encoder.tokenizer), batch_size)
    if length_normalize:
        summed = summed / lengths[None, :]
    return aggregate_words(summed, words)


def label_probs(scores: np.ndarray) -> np.ndarray:
    """Softmax over labels of (N, C) log-space scores."""
    return torch.softmax(torch.from_numpy(scores), dim=-1).numpy()
