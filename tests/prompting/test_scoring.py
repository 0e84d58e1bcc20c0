"""Cloze scoring (masked LM) and label scoring (causal LM) against hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
)

from lmforge.errors import ConfigError
from lmforge.prompting.scoring import (
    SLOT,
    TEXT,
    Encoder,
    causal_prompts,
    causal_scores,
    cloze_scores,
    common_prefix_length,
    continuation_logprobs,
    label_probs,
    naive_continuation_logprobs,
)
from lmforge.prompting.templates import parse_prompts

TEXTS = ["the movie was very good", "the plot was dull and awful", "nice"]


def _template(words: dict, pattern: str = "{text} . it was {mask} .") -> object:
    return parse_prompts({"labels": words, "templates": [pattern]}).templates[0]


def test_cloze_prediction_follows_a_patched_head(mlm_dir: Path) -> None:
    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    tok = AutoTokenizer.from_pretrained(mlm_dir)
    template = _template({0: ["bad"], 1: ["good"]})
    with torch.no_grad():  # the output bias is tied: favour "good" everywhere by +20 logits
        model.cls.predictions.bias[tok.convert_tokens_to_ids("good")] += 20.0
    probs = label_probs(cloze_scores(model, Encoder(tok, 64), template, ["0", "1"], TEXTS))
    assert probs.shape == (3, 2)
    assert (probs.argmax(1) == 1).all() and probs[:, 1].min() > 0.99


def test_cloze_scores_equal_hand_computation_incl_multi_token_words(mlm_dir: Path) -> None:
    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    tok = AutoTokenizer.from_pretrained(mlm_dir)
    assert tok.tokenize("terrible") == ["terr", "##ible"]  # a two-token label word
    template = _template({0: ["terrible"], 1: ["good", "nice"]})
    enc = Encoder(tok, 64)
    for normalize in (True, False):
        scores = cloze_scores(model, enc, template, ["0", "1"], TEXTS[:2],
                              length_normalize=normalize)
        for i, text in enumerate(TEXTS[:2]):
            def logp(n_masks: int, text: str = text) -> torch.Tensor:
                ids = tok(f"{text} . it was " + "[MASK]" * n_masks + " .",
                          return_tensors="pt")["input_ids"]
                pos = (ids[0] == tok.mask_token_id).nonzero()[:, 0]
                with torch.no_grad():
                    return F.log_softmax(model(input_ids=ids).logits[0, pos], -1)
            two = logp(2)
            terr = [two[0, tok.convert_tokens_to_ids("terr")],
                    two[1, tok.convert_tokens_to_ids("##ible")]]
            expect0 = (sum(terr) / 2 if normalize else sum(terr)).item()
            one = logp(1)[0]
            good, nice = (one[tok.convert_tokens_to_ids(w)].item() for w in ("good", "nice"))
            expect1 = np.log((np.exp(good) + np.exp(nice)) / 2)  # mean of word probabilities
            assert scores[i, 0] == pytest.approx(expect0, abs=1e-5)
            assert scores[i, 1] == pytest.approx(expect1, abs=1e-5)


def test_cloze_truncates_the_text_not_the_slot(mlm_dir: Path) -> None:
    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    tok = AutoTokenizer.from_pretrained(mlm_dir)
    long_text = " ".join(["good"] * 200)
    scores = cloze_scores(model, Encoder(tok, 24), _template({0: ["bad"], 1: ["good"]}),
                          ["0", "1"], [long_text])
    assert np.isfinite(scores).all()
    ids, at = Encoder(tok, 24).encode(["x ", TEXT, " it was", SLOT, " ."], long_text,
                                      [tok.mask_token_id])
    assert len(ids) == 24 and ids[at] == tok.mask_token_id
    assert tok.convert_ids_to_tokens(ids[at - 2:]) == ["it", "was", "[MASK]", ".", "[SEP]"]


def _gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=2,
                                      n_positions=128, bos_token_id=1,
                                      eos_token_id=1)).eval()


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_prefix_cache_path_equals_naive_full_sequence(which: str, llama_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval() if which == "llama" \
        else _gpt2()
    prompts = [[2, 7, 8, 9], [2, 10], [2, 11, 12, 13, 14, 15, 16], [2, 17, 18]]
    words = [[20], [21, 22], [23, 24, 25], [26]]
    for batch_size in (1, 3):
        fast, lengths = continuation_logprobs(model, prompts, words, pad_id=0,
                                              batch_size=batch_size)
        slow = naive_continuation_logprobs(model, prompts, words)
        np.testing.assert_allclose(fast, slow, atol=1e-5)
        assert lengths.tolist() == [1, 2, 3, 1]


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_shared_prefix_cache_equals_naive_full_sequence(which: str, llama_dir: Path) -> None:
    """A common prefix (the demonstrations) is run once; scores must not change."""
    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval() if which == "llama" \
        else _gpt2()
    prefix = [2, 3, 4, 5, 6, 19, 27, 28]
    prompts = [prefix + s for s in ([7, 8, 9], [10], [11, 12, 13, 14, 15], [17, 18])]
    words = [[20], [21, 22], [23, 24, 25]]
    assert common_prefix_length(prompts) == len(prefix)
    assert common_prefix_length([[1, 2], [1, 2, 3]]) == 1  # each prompt keeps a token
    slow = naive_continuation_logprobs(model, prompts, words)
    one_token = [[20], [26]]  # no continuation pass: the suffix pass runs without use_cache
    fast, _ = continuation_logprobs(model, prompts, one_token, pad_id=0, batch_size=3,
                                    min_shared_prefix=4)
    np.testing.assert_allclose(fast, naive_continuation_logprobs(model, prompts, one_token),
                               atol=1e-5)
    for batch_size in (1, 3):
        shared, _ = continuation_logprobs(model, prompts, words, pad_id=0,
                                          batch_size=batch_size, min_shared_prefix=4)
        unshared, _ = continuation_logprobs(model, prompts, words, pad_id=0,
                                            batch_size=batch_size, min_shared_prefix=10**6)
        np.testing.assert_allclose(shared, slow, atol=1e-5)
        np.testing.assert_allclose(unshared, slow, atol=1e-5)


def test_causal_scores_match_direct_log_likelihood(llama_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(llama_dir)
    template = _template({0: ["terrible"], 1: ["good"]})
    enc = Encoder(tok, 64)
    scores = causal_scores(model, enc, template, ["0", "1"], TEXTS, batch_size=2,
                           length_normalize=False)
    for i, text in enumerate(TEXTS):
        # [CLS] text . it was -> the label word, scored token by token on the full sequence
        prompt = tok(f"{text} . it was", add_special_tokens=False)["input_ids"]
        prompt = [tok.cls_token_id, *prompt]
        for j, word in enumerate(("terrible", "good")):
            w = tok(word, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + w])
            with torch.no_grad():
                logp = F.log_softmax(model(input_ids=ids).logits[0], -1)
            expect = sum(logp[len(prompt) - 1 + t, w[t]].item() for t in range(len(w)))
            assert scores[i, j] == pytest.approx(expect, abs=1e-5)
    normalized = causal_scores(model, enc, template, ["0", "1"], TEXTS, length_normalize=True)
    np.testing.assert_allclose(normalized[:, 0], scores[:, 0] / 2, atol=1e-6)


def test_chat_template_wraps_the_prompt(llama_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(llama_dir)
    template = _template({0: ["bad"], 1: ["good"]}, "review : {text} sentiment : {mask}")
    ids = causal_prompts(Encoder(tok, 64), template, ["nice"], ["the movie . "], chat=True,
                         system_prompt="all")[0]
    assert tok.decode(ids) == ("[UNK] : all / [UNK] : the movie . review : nice sentiment : "
                               "/ [UNK] :")
    with pytest.raises(ConfigError, match="before {text}"):
        causal_prompts(Encoder(tok, 64), _template({0: ["a"]}, "{mask} : {text}"), ["x"])
