"""Batch makers: dynamic padding plus MLM masking with explicit randomness.

Every random draw takes the ``generator`` passed to ``__call__`` (never the global torch RNG),
so the training engine can seed one generator per step and a resumed run reproduces the
exact masks of the original run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lmforge.errors import ConfigError

# Padding value per list-valued column; others pad with 0.
_PAD_VALUES = {"labels": -100, "word_start": 1}


def pad_batch(
    examples: Sequence[Mapping[str, Any]],
    pad_token_id: int,
    pad_to_multiple_of: int | None = 8,
) -> dict[str, torch.Tensor]:
    """Pad list-valued fields to the longest example (rounded up) and stack scalars.

    Args:
        examples: Rows with ``input_ids`` and optionally ``token_type_ids``, ``word_start``,
            ``labels`` (lists) and scalar fields such as ``next_sentence_label``.
        pad_token_id: Id used to pad ``input_ids``.
        pad_to_multiple_of: Round the padded length up to a multiple of this (tensor cores
            like multiples of 8); None or 1 for no rounding.

    Returns:
        ``input_ids`` and ``attention_mask`` of shape (B, L), other list fields (B, L), scalar
        fields (B,); all ``torch.long``.
    """
    if not examples:
        raise ValueError("pad_batch needs at least one example")
    lengths = [len(ex["input_ids"]) for ex in examples]
    width = max(lengths)
    if pad_to_multiple_of and pad_to_multiple_of > 1:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch: dict[str, torch.Tensor] = {}
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        # Rows may hold lists, or tensors/arrays when the dataset has a torch/numpy format.
        first = values[0]
        if isinstance(first, list | tuple) or getattr(first, "ndim", 0) >= 1:
            pad = pad_token_id if key == "input_ids" else _PAD_VALUES.get(key, 0)
            out = torch.full((len(values), width), pad, dtype=torch.long)  # (B, L)
            for i, v in enumerate(values):
                out[i, : len(v)] = torch.as_tensor(v, dtype=torch.long)
            batch[key] = out
        else:
            batch[key] = torch.as_tensor(values, dtype=torch.long)  # (B,)
    mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, L)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    batch["attention_mask"] = mask
    return batch


def pad_id_of(tokenizer: Any) -> int:
    """The id used for padding: the pad token, else eos (GPT-style tokenizers have no pad)."""
    for name in ("pad", "eos"):
        value = getattr(tokenizer, f"{name}_token_id", None)
        if value is not None:
            return int(value)
    raise ConfigError("the tokenizer has neither a pad nor an eos token; add a pad token")


class ColumnCollator:
    """Keep the model's columns of each example and pad them (``labels`` with -100).

    Other columns (ids, offsets, word maps) stay in the dataset for post-processing.
    Subclasses name their columns in ``columns``.

    Args:
        tokenizer: Supplies the pad id (pad token, else eos).
        pad_to_multiple_of: Round the padded length up to a multiple of this.
    """

    columns: tuple[str, ...] = ("input_ids", "token_type_ids", "labels")

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = 8) -> None:
        self.pad_token_id = pad_id_of(tokenizer)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(
        self, examples: Sequence[Mapping[str, Any]], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Return (B, L) padded token fields and ``attention_mask``; scalars stacked (B,)."""
        del generator  # no randomness in plain padding
        rows = [{k: ex[k] for k in self.columns if k in ex} for ex in examples]
        return pad_batch(rows, self.pad_token_id, self.pad_to_multiple_of)


class MlmCollator:
    """Pad and apply BERT masking (Devlin et al., 2019) with an explicit generator.

    Args:
        tokenizer: Supplies ``mask_token_id``, ``pad_token_id``, special ids and vocab size.
        mlm_probability: Chance that a token (or, with whole-word masking, a word) is chosen.
        whole_word_mask: Choose whole words via the examples' ``word_start`` flags.
        mask_replace_prob: Share of chosen tokens replaced by ``[MASK]``.
        random_replace_prob: Share of chosen tokens replaced by a random non-special token;
            the rest stay unchanged.
        pad_to_multiple_of: See :func:`pad_batch`.
        seed: Seeds a private generator used only when ``__call__`` gets none.
    """

    def __init__(
        self,
        tokenizer: Any,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        pad_to_multiple_of: int | None = 8,
        seed: int = 0,
    ) -> None:
        if not 0.0 < mlm_probability < 1.0:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if mask_replace_prob < 0 or random_replace_prob < 0:
            raise ConfigError("mask_replace_prob and random_replace_prob must be >= 0")
        if mask_replace_prob + random_replace_prob > 1.0:
            raise ConfigError(
                "mask_replace_prob + random_replace_prob must be <= 1, got "
                f"{mask_replace_prob + random_replace_prob}"
            )
        if tokenizer.mask_token_id is None:
            raise ConfigError("MLM needs a tokenizer with a mask token; add [MASK] to it")
        self.mlm_probability = mlm_probability
        self.whole_word_mask = whole_word_mask
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.pad_to_multiple_of = pad_to_multiple_of
        self.mask_token_id = int(tokenizer.mask_token_id)
        self.pad_token_id = pad_id_of(tokenizer)
        special = {int(i) for i in tokenizer.all_special_ids} | {self.pad_token_id}
        self.special_ids = torch.tensor(sorted(special), dtype=torch.long)
        # Random replacements come from the ordinary vocabulary only.
        vocab = len(tokenizer)
        self.random_ids = torch.tensor(
            [i for i in range(vocab) if i not in special], dtype=torch.long
        )
        self._default_generator = torch.Generator().manual_seed(seed)

    def __call__(
        self, examples: Sequence[Mapping[str, Any]], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad ``examples`` and mask them.

        Returns:
            ``input_ids``, ``attention_mask``, ``labels`` (original id where chosen, -100
            elsewhere), all (B, L); plus ``token_type_ids`` (B, L) and
            ``next_sentence_label`` (B,) when the examples have them.
        """
        gen = generator if generator is not None else self._default_generator
        batch = pad_batch(examples, self.pad_token_id, self.pad_to_multiple_of)
        input_ids = batch["input_ids"]  # (B, L)
        word_start = batch.pop("word_start", None)
        batch.pop("labels", None)
        special = torch.isin(input_ids, self.special_ids) | (batch["attention_mask"] == 0)
        valid = ~special  # (B, L) positions that may be masked

        if self.whole_word_mask:
            chosen = self._choose_words(valid, special, word_start, gen)
        else:
            chosen = (torch.rand(input_ids.shape, generator=gen) < self.mlm_probability) & valid
        chosen = self._at_least_one(chosen, valid, special, word_start, gen)

        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        # One uniform draw per token splits chosen tokens 80/10/10 (by default).
        r = torch.rand(input_ids.shape, generator=gen)  # (B, L)
        to_mask = chosen & (r < self.mask_replace_prob)
        to_random = (
            chosen
            & (r >= self.mask_replace_prob)
            & (r < self.mask_replace_prob + self.random_replace_prob)
        )
        pick = torch.randint(len(self.random_ids), input_ids.shape, generator=gen)  # (B, L)
        masked = input_ids.clone()
        masked[to_mask] = self.mask_token_id
        masked[to_random] = self.random_ids[pick[to_random]]
        batch["input_ids"] = masked
        batch["labels"] = labels
        return batch

    def _word_index(self, special: torch.Tensor, word_start: torch.Tensor | None) -> torch.Tensor:
        """Word number of each token within its row, (B, L), starting at 1."""
        starts = torch.ones_like(special) if word_start is None else word_start.bool()
        # Specials and the token after a special always open a word, so a word never spans
        # [CLS]/[SEP]/padding even if the data's flags say otherwise.
        after_special = torch.zeros_like(special)
        after_special[:, 1:] = special[:, :-1]
        starts = starts | special | after_special
        return torch.cumsum(starts.long(), dim=1)  # (B, L), values in 1..L

    def _choose_words(
        self,
        valid: torch.Tensor,
        special: torch.Tensor,
        word_start: torch.Tensor | None,
        gen: torch.Generator,
    ) -> torch.Tensor:
        word_idx = self._word_index(special, word_start)  # (B, L)
        bsz, length = valid.shape
        # One Bernoulli draw per word slot (at most L words per row, index 0 unused).
        word_chosen = torch.rand((bsz, length + 1), generator=gen) < self.mlm_probability
        return torch.gather(word_chosen, 1, word_idx) & valid  # (B, L)

    def _at_least_one(
        self,
        chosen: torch.Tensor,
        valid: torch.Tensor,
        special: torch.Tensor,
        word_start: torch.Tensor | None,
        gen: torch.Generator,
    ) -> torch.Tensor:
        """If nothing was chosen, choose one valid position (its whole word under wwm)."""
        if chosen.any() or not valid.any():
            return chosen
        flat = valid.flatten().nonzero().squeeze(1)  # (N,) valid flat positions
        pos = int(flat[torch.randint(len(flat), (1,), generator=gen)])
        row, col = divmod(pos, valid.shape[1])
        chosen = chosen.clone()
        if self.whole_word_mask:
            word_idx = self._word_index(special, word_start)
            chosen[row] = (word_idx[row] == word_idx[row, col]) & valid[row]
        else:
            chosen[row, col] = True
        return chosen


class ClmCollator(ColumnCollator):
    """Pad for causal LM; ``labels`` are the input ids with padding set to -100.

    The model shifts labels internally, so no shift happens here. Without a pad token the
    EOS id pads; the attention mask (not the id) decides which labels are ignored, so real
    EOS tokens keep their labels.

    Args:
        tokenizer: Supplies ``pad_token_id`` (or ``eos_token_id``).
        pad_to_multiple_of: See :func:`pad_batch`.
    """

    columns = ("input_ids",)

    def __call__(
        self, examples: Sequence[Mapping[str, Any]], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad ``examples``; ``generator`` is accepted for a uniform interface and unused.

        Returns:
            ``input_ids``, ``attention_mask``, ``labels``, each (B, L).
        """
        batch = super().__call__(examples)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch
