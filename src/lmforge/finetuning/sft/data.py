"""Supervised fine-tuning (SFT) of causal LMs on instructions and dialogue.

Each conversation is rendered with the tokenizer's chat template and tokenized once. The loss
is next-token cross-entropy on the assistant replies only (Ouyang et al., 2022): every other
token, i.e. system and user text and the template's role headers, gets label -100, so the
model learns to answer rather than to imitate the user. The end-of-turn marker after each reply
is trained too, so the model learns when to stop.

Finding the replies. Templates differ, and ``{% generation %}`` blocks (which
``return_assistant_tokens_mask`` needs) are rare, so replies are located by rendering
prefixes. For the assistant message i:

* ``head`` = render(messages[:i], add_generation_prompt=True) ends with the assistant header;
* ``turn`` = render(messages[:i + 1]) ends after the reply and its end-of-turn marker;

so the reply is the characters ``[len(head), len(turn))`` of the full rendering (minus trailing
whitespace, which is template layout the model need not emit). These character spans are mapped
to tokens with the offset mapping of ONE tokenization of the full text. We do not tokenize the
prefixes separately: BPE merges across the prefix boundary, so prefix tokens need not be a
prefix of the full sequence's tokens, and the model must train on exactly the full sequence's
tokens. A token counts as response if it overlaps a span, so a token straddling a boundary
(e.g. ``"\\nHello"``) is kept trainable rather than losing the reply's first characters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from lmforge.data.collators import ColumnCollator
from lmforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAP_BATCH_SIZE = 1000
ROLES = ("system", "user", "assistant")
END_OF_TURN = "<|im_end|>"
"""The end-of-turn marker of :data:`DEFAULT_CHAT_TEMPLATE` (a stop string for generation)."""

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML (OpenAI / Qwen style): ``<|im_start|>role\\ncontent<|im_end|>\\n`` per message."""

_IDS = datasets.List(datasets.Value("int32"))
_FEATURES = datasets.Features(
    {"input_ids": _IDS, "attention_mask": datasets.List(datasets.Value("int8")), "labels": _IDS}
)


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give ``tokenizer`` :data:`DEFAULT_CHAT_TEMPLATE` if it has no chat template.

    The markers stay plain text (several tokens each) so the vocabulary and the model's
    embeddings are unchanged; ``save_pretrained`` then writes the template with the tokenizer.

    Args:
        tokenizer: A transformers tokenizer; modified in place.

    Returns:
        True if the template was set, False if the tokenizer already had one.
    """
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True


def _template(tokenizer: Any) -> str | None:
    """The template to pass explicitly: None to use the tokenizer's own, else the default."""
    return None if getattr(tokenizer, "chat_template", None) else DEFAULT_CHAT_TEMPLATE


def _render(
    tokenizer: Any, messages: list[dict[str, str]], template: str | None, gen: bool
) -> str:
    import jinja2

    try:
        return tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=gen
        )
    except jinja2.TemplateError as err:
        # A syntax error, or the template's own raise_exception (e.g. roles out of order).
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"the chat template does not render a conversation with roles "
            f"{[m['role'] for m in messages]} ({first}); fix the template or the conversation"
        ) from None


def chat_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """Render ``messages`` followed by the assistant header, ready for generation.

    Args:
        tokenizer: The tokenizer (its chat template, or the default one if it has none).
        messages: The conversation so far, as ``{"role", "content"}`` dicts.

    Returns:
        The prompt text; tokenize it with ``add_special_tokens=False`` (the template already
        holds whatever special tokens it wants).
    """
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return _render(tokenizer, clean, _template(tokenizer), gen=True)


def _validate(raw: Any, row: int, split_name: str) -> list[dict[str, str]]:
    """Check one conversation and return it as plain ``{"role", "content"}`` dicts."""
    where = f"row {row} of {split_name}"
    if not isinstance(raw, list | tuple) or not raw:
        raise DataError(f"{where} has no messages; give each row a non-empty list of messages")
    messages: list[dict[str, str]] = []
    for k, message in enumerate(raw):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise DataError(f"{where}, message {k} is not a {{role, content}} dict; fix the data")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise DataError(
                f"{where}, message {k} has role {role!r}; use one of {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise DataError(f"{where}, message {k} has non-text content; make it a string")
        if role == "assistant" and not content.strip():
            raise DataError(f"{where}, message {k} is an empty assistant reply; drop or fill it")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where} has no assistant message; add the reply to train on")
    if messages[0]["role"] == "assistant":
        raise DataError(
            f"{where} starts with an assistant message; put a user or system message first"
        )
    return messages


def response_spans(
    tokenizer: Any, messages: list[dict[str, str]], template: str | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation and find the character span of every assistant reply.

    Args:
        tokenizer: The tokenizer whose chat template renders the conversation.
        messages: A validated conversation (no assistant message first).
        template: A template overriding the tokenizer's (None: the tokenizer's own).

    Returns:
        The full rendering and ``[(start, end), ...]`` character spans, one per assistant
        message, each covering the reply and its end-of-turn marker.

    Raises:
        ConfigError: The template does not render prefixes consistently.
    """
    text = _render(tokenizer, messages, template, gen=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        turn = _render(tokenizer, messages[: i + 1], template, gen=False)
        head = _render(tokenizer, messages[:i], template, gen=True)
        if not turn.startswith(head):
            # Templates that ignore add_generation_prompt may still be prefix-consistent
            # without it; the reply span then also covers the assistant header.
            head = _render(tokenizer, messages[:i], template, gen=False)
        if not (turn.startswith(head) and text.startswith(turn)):
            raise ConfigError(
                "the chat template renders a conversation differently from its prefixes "
                "(e.g. it rewrites earlier turns), so replies cannot be located; "
                "use a prefix-stable template or set train_on_prompt=true"
            )
        end = len(head) + len(turn[len(head) :].rstrip())
        spans.append((len(head), end))
    return text, spans


def _token_mask(offsets: Sequence[Sequence[int]], spans: list[tuple[int, int]]) -> list[bool]:
    """Whether each token (by its character offsets) overlaps one of the sorted spans."""
    mask = [False] * len(offsets)
    k = 0
    for t, (start, end) in enumerate(offsets):
        # Skip spans that end before this token; tokens and spans are both in text order.
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        # Overlap test; a zero-width token inside a span counts (start == end within it).
        mask[t] = end > spans[k][0] or (start == end and start >= spans[k][0])
    return mask


def prepare_sft(
    ds: datasets.Dataset,
    tokenizer: Any,
    *,
    max_length: int = 1024,
    messages_column: str = "messages",
    prompt_column: str = "prompt",
    response_column: str = "response",
    train_on_prompt: bool = False,
    split_name: str = "train",
) -> datasets.Dataset:
    """Render, tokenize and label conversations for SFT; no padding (the collator pads).

    Rows come either as a ``messages`` column (lists of ``{"role", "content"}`` with roles
    system/user/assistant, any number of turns) or as ``prompt``/``response`` columns (one
    user and one assistant message). Tokenizers without a chat template use
    :data:`DEFAULT_CHAT_TEMPLATE` (call :func:`ensure_chat_template` to store it with them).

    Sequences longer than ``max_length`` keep their start (system prompt and first turns) and
    lose their end; rows left with no trainable token are dropped, with a warning that counts
    them.

    Args:
        ds: A raw split.
        tokenizer: A fast tokenizer (its offset mapping locates the replies).
        max_length: Tokens kept per example.
        messages_column: Column with conversations; used when present.
        prompt_column: Prompt column, used when there is no messages column.
        response_column: Response column, used with ``prompt_column``.
        train_on_prompt: Train on every token (labels = input_ids), not only the replies.
        split_name: Used in messages only.

    Returns:
        Dataset with ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside replies).

    Raises:
        DataError: Missing columns, invalid conversations, or nothing left after truncation.
        ConfigError: A slow tokenizer, bad ``max_length`` or an inconsistent template.
    """
    columns = ds.column_names
    if messages_column in columns:
        use_messages = True
    elif prompt_column in columns and response_column in columns:
        use_messages = False
    else:
        raise DataError(
            f"{split_name} needs a {messages_column!r} column or {prompt_column!r} and "
            f"{response_column!r} columns (columns: {', '.join(columns)}); set the column names"
        )
    if len(ds) == 0:
        raise DataError(f"the {split_name} split is empty; check data.path")
    if max_length < 2:
        raise ConfigError(f"max_length must be >= 2, got {max_length}; raise it")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "SFT needs a fast tokenizer (for offset mappings); load it with use_fast=True"
        )
    template = _template(tokenizer)

    def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "labels": []}
        for row, idx in enumerate(indices):
            if use_messages:
                raw = batch[messages_column][row]
            else:
                raw = [
                    {"role": "user", "content": batch[prompt_column][row]},
                    {"role": "assistant", "content": batch[response_column][row]},
                ]
            messages = _validate(raw, idx, split_name)
            text, spans = response_spans(tokenizer, messages, template)
            # The template writes any special tokens itself (as apply_chat_template does).
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"][:max_length]
            if train_on_prompt:
                labels = list(ids)
            else:
                mask = _token_mask(enc["offset_mapping"][:max_length], spans)
                labels = [i if m else -100 for i, m in zip(ids, mask, strict=True)]
            out["input_ids"].append(ids)
            out["attention_mask"].append([1] * len(ids))
            out["labels"].append(labels)
        return out

    encoded = ds.map(
        encode,
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        with_indices=True,
        remove_columns=columns,
        features=_FEATURES,
        desc=f"tokenizing {split_name}",
    )
    # Dropping happens after the map (not inside it) so the count is right even when the map
    # result comes from the datasets cache and ``encode`` never runs.
    kept = encoded.filter(
        lambda labels: [any(v != -100 for v in row) for row in labels],
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        input_columns="labels",
        desc=f"dropping truncated {split_name} replies",
    )
    dropped = len(encoded) - len(kept)
    if len(kept) == 0:
        raise DataError(
            f"every {split_name} example lost all its response tokens to truncation at "
            f"max_length={max_length}; raise max_length"
        )
    if dropped:
        log.warning(
            "dropped %d of %d %s examples whose replies were cut off by max_length=%d",
            dropped,
            len(encoded),
            split_name,
            max_length,
        )
    return kept


class SftCollator(ColumnCollator):
    """Pad SFT examples; labels stay as prepared and are -100 at padding.

    The pad id is the pad token, else eos (GPT-2 has no pad token; the attention mask, not
    the id, marks padding, so real EOS labels are kept). Labels are not shifted; the model
    shifts them.
    """

    columns = ("input_ids", "labels")
