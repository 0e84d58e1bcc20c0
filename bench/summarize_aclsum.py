"""Summarization on ACLSum: lead-k vs SmolLM2 (zero-shot, LoRA SFT) vs a warm-started MiniLM2MiniLM.

Issue 24, item 4 and benchmark 4. Data: ACLSum (Takeshita et al. 2024, MIT; ``pip install
--no-deps aclsum``), aspect-based summaries of ACL papers: 100 train and 50 validation papers
(the test split is not read). The setup, one of the dataset's aspects:

* **source**: the paper's abstract (the package's sentence split, joined with spaces), cut to
  its first ``--max-source-words`` (256) words; the median abstract has about 150 words;
* **target**: the human-written *approach* summary (one sentence, about 23 words).

Rows, every one scored on the 50 validation papers with lmforge's own
:func:`lmforge.evaluation.generation.generation_metrics` (rouge-score, Porter stemming, mean
F-measure x 100, sentence-level ROUGE-L):

* ``lead_k``: the first k sentences of the source; k in 1..5 picked on the train split for the
  best ROUGE-2 (the train scores of every k are kept);
* ``smollm2_zero_shot``: SmolLM2-135M-Instruct untuned, one user turn
  ``Summarize the approach of this paper in one sentence: <abstract>``, lmforge's chat decoding
  (:func:`lmforge.finetuning.sft.task.generate_replies`: chat template, greedy,
  ``--max-new-tokens``, cut at the end-of-turn marker, fp32, batches of 8);
* ``smollm2_lora``: ``lmforge finetune task.name=sft peft.method=lora`` on the 100 train
  papers as prompt / response rows with the same prompt; lmforge carves its seeded 10 %
  validation out of *train* and keeps the best epoch on that loss, so the validation papers are
  only scored, never used to choose anything; decoded as the zero-shot row;
* ``minilm2minilm``: ``lmforge finetune task.name=seq2seq`` (full fine-tuning) from an
  ``EncoderDecoderModel`` built once with ``from_encoder_decoder_pretrained`` from the builtin
  ``all-minilm-l6-v2`` on both sides (Rothe et al. 2020; cross-attention and the LM head's
  transform start random), source = the abstract, decoded greedily with
  :func:`lmforge.finetuning.seq2seq.data.generate_texts`.

Hyperparameters were fixed before looking at validation, and sized for a CPU shared with many
other jobs: LoRA 1 epoch, batch 4, lr 3e-4 (rank 8, lmforge's default targets); the
encoder-decoder 6 epochs, batch 8, lr 1e-4; lmforge's defaults otherwise (bf16 autocast where
the CPU has bf16 units, linear decay after 10 % warmup). Wall times are measured with 1 thread on
a 2-core machine shared with other jobs, so they are inflated.

Stages (``--stages lead,zero_shot,lora,encdec``) may run as separate processes; each writes its
row under ``runs/summarize_aclsum/`` and every invocation merges what is there into
``bench/results/summarize_aclsum.json``.

Usage: python bench/summarize_aclsum.py [--stages lead,zero_shot,lora,encdec]
       [--max-new-tokens 64] [--lora-epochs 1] [--encdec-epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
ASPECT = "approach"
INSTRUCTION = f"Summarize the {ASPECT} of this paper in one sentence: "
CAUSAL = "smollm2-135m-instruct"
ENCODER = "all-minilm-l6-v2"
BATCH_SIZE = 8
NUM_EXAMPLES = 3  # predictions copied into the results file per row
MAX_LEAD = 5


def aclsum_dir() -> Path:
    """The dataset folder of the installed ``aclsum`` package (read as files: its import pulls
    in ``sienna``, which is not installed here)."""
    import importlib.util

    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("aclsum is not installed; pip install --no-deps aclsum")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset"


def load_split(split: str, max_words: int) -> list[dict[str, Any]]:
    """Papers of ``split`` as {id, sentences (cut to max_words), source, target}."""
    rows = []
    with (aclsum_dir() / f"{split}.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            paper = json.loads(line)
            sentences, words = [], 0
            for sentence in paper["sentences"]["abstract"]:
                if words >= max_words:
                    break
                tokens = sentence.split()[:max_words - words]
                sentences.append(" ".join(tokens))
                words += len(tokens)
            rows.append({"id": paper["id"], "sentences": sentences,
                         "source": " ".join(sentences), "target": paper["summary"][ASPECT]})
    return rows


def rouge(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """ROUGE-1/2/L (lmforge's scorer, the same for every row), rounded."""
    from lmforge.evaluation.generation import generation_metrics

    m = generation_metrics(predictions, references)
    return {"rouge1": round(m["rouge1"], 2), "rouge2": round(m["rouge2"], 2),
            "rougeL": round(m["rougeL"], 2), "gen_len_words": round(m["gen_len"], 1),
            "empty_outputs": sum(1 for p in predictions if not p.strip())}


def write_row(name: str, predictions: list[str], val: list[dict[str, Any]], work: Path,
              extra: dict[str, Any]) -> dict[str, Any]:
    """Score one system on validation, save its predictions, return its row."""
    out = {"name": name, **rouge(predictions, [r["target"] for r in val]), **extra,
           "examples": [{"id": r["id"], "reference": r["target"], "prediction": p}
                        for r, p in zip(val[:NUM_EXAMPLES], predictions, strict=False)]}
    with (work / f"predictions-{name}.jsonl").open("w", encoding="utf-8") as fh:
        for r, p in zip(val, predictions, strict=True):
            fh.write(json.dumps({"id": r["id"], "reference": r["target"], "prediction": p},
                                ensure_ascii=False) + "\n")
    (work / f"row-{name}.json").write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
    print(f"{name}: R1 {out['rouge1']:.2f}  R2 {out['rouge2']:.2f}  RL {out['rougeL']:.2f}",
          flush=True)
    return out


def stage_lead(train: list[dict[str, Any]], val: list[dict[str, Any]], work: Path) -> None:
    """Lead-k with k chosen on train by ROUGE-2."""
    start = time.perf_counter()
    on_train = {k: rouge([" ".join(r["sentences"][:k]) for r in train],
                         [r["target"] for r in train]) for k in range(1, MAX_LEAD + 1)}
    k = max(on_train, key=lambda j: on_train[j]["rouge2"])
    predictions = [" ".join(r["sentences"][:k]) for r in val]
    write_row("lead_k", predictions, val, work, {
        "k": k, "k_chosen_on": "train, best ROUGE-2 over k = 1..5",
        "train_rouge2_by_k": {str(j): s["rouge2"] for j, s in on_train.items()},
        "wall_s": round(time.perf_counter() - start, 1)})


def chats(rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """One single-turn conversation per paper."""
    return [[{"role": "user", "content": INSTRUCTION + r["source"]}] for r in rows]


def decode_causal(model: Any, tokenizer: Any, rows: list[dict[str, Any]],
                  max_new_tokens: int) -> tuple[list[str], float]:
    """lmforge's greedy chat decoding; (replies, wall seconds)."""
    from lmforge.finetuning.sft.task import generate_replies

    start = time.perf_counter()
    replies = generate_replies(model, tokenizer, chats(rows), max_new_tokens=max_new_tokens,
                               batch_size=BATCH_SIZE)
    return replies, round(time.perf_counter() - start, 1)


def stage_zero_shot(args: argparse.Namespace, val: list[dict[str, Any]], work: Path) -> None:
    """The untuned chat model with the tuning prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.build import resolve_checkpoint

    torch.set_num_threads(args.threads)
    folder = resolve_checkpoint(CAUSAL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    replies, wall = decode_causal(model, tokenizer, val, args.max_new_tokens)
    write_row("smollm2_zero_shot", replies, val, work,
              {"model": CAUSAL, "decode_wall_s": wall})


def finetune(command: list[str]) -> float:
    """Run ``lmforge finetune ...`` from this venv; its wall seconds."""
    start = time.perf_counter()
    exe = Path(sys.executable).parent / "lmforge"
    subprocess.run([str(exe), *command[1:]], check=True, cwd=ROOT)
    return round(time.perf_counter() - start, 1)


def held_out(run: Path) -> dict[str, Any]:
    """Loss / perplexity on lmforge's carved-out train validation, before and after."""
    out: dict[str, Any] = {}
    for when, sub in (("before", "eval-validation-before"), ("after", "eval-validation")):
        summary = run / sub / "summary.json"
        if summary.is_file():
            head = json.loads(summary.read_text())["headline"]
            out[f"train_heldout_perplexity_{when}"] = round(float(head["perplexity"]), 3)
    return out


def write_data(folder: Path, rows: list[dict[str, Any]], causal: bool) -> None:
    """``train.jsonl`` only: lmforge carves its validation out of it (no val papers)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            record = ({"prompt": INSTRUCTION + r["source"], "response": r["target"]} if causal
                      else {"source": r["source"], "target": r["target"]})
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def common_args(args: argparse.Namespace, data: Path, run: Path,
                batch_size: int = BATCH_SIZE) -> list[str]:
    """Options both routes share (no before-tuning evaluation: the CPU time goes to training;
    the untuned model's score is its own row)."""
    return [f"data.path={data}", f"data.max_length={args.max_source_tokens}",
            "task.baseline_eval=false",
            f"train.batch_size={batch_size}", f"train.num_threads={args.threads}",
            f"task.max_new_tokens={args.max_new_tokens}", f"output_dir={run}"]


def relative(command: list[str]) -> str:
    return shlex.join(command).replace(str(ROOT) + "/", "")


def stage_lora(args: argparse.Namespace, train: list[dict[str, Any]],
               val: list[dict[str, Any]], work: Path) -> None:
    """LoRA SFT of SmolLM2 with ``lmforge finetune``, then its validation row."""
    import torch

    from lmforge.predictor import load_predictor

    data, run = work / "data-sft", work / "lora-run"
    write_data(data, train, causal=True)
    command = ["lmforge", "finetune", "task.name=sft", f"model.pretrained={CAUSAL}",
               "peft.method=lora", f"train.epochs={args.lora_epochs}", f"train.lr={args.lora_lr}",
               *common_args(args, data, run, args.lora_batch_size)]
    train_wall = finetune(command)
    torch.set_num_threads(args.threads)
    predictor = load_predictor(str(run), precision="fp32")
    replies, wall = decode_causal(predictor.model, predictor.tokenizer, val,
                                  args.max_new_tokens)
    write_row("smollm2_lora", replies, val, work, {
        "model": f"{CAUSAL} + LoRA (r 8, lmforge defaults)", "train_papers": len(train),
        "finetune_wall_s": train_wall, "decode_wall_s": wall,
        "finetune_command": relative(command), **held_out(run)})


def build_encoder_decoder(folder: Path) -> dict[str, Any]:
    """MiniLM-L6 encoder + MiniLM-L6 decoder (with new cross-attention), saved once."""
    from transformers import AutoTokenizer, EncoderDecoderModel

    from lmforge.models.build import resolve_checkpoint

    source = resolve_checkpoint(ENCODER)
    if not (folder / "config.json").is_file():
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(source, source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        # BERT tokenizers have no bos / eos: [CLS] starts the decoder, [SEP] ends a target
        # (the recipe of the EncoderDecoderModel docs).
        tokenizer.add_special_tokens({"bos_token": "[CLS]", "eos_token": "[SEP]"})
        for config in (model.config, model.generation_config):
            config.decoder_start_token_id = tokenizer.cls_token_id
            config.bos_token_id = tokenizer.cls_token_id
            config.eos_token_id = tokenizer.sep_token_id
            config.pad_token_id = tokenizer.pad_token_id
        model.config.vocab_size = model.config.decoder.vocab_size
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    return {"parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "warm_start": ENCODER}


def stage_encdec(args: argparse.Namespace, train: list[dict[str, Any]],
                 val: list[dict[str, Any]], work: Path) -> None:
    """Seq2seq fine-tuning of the warm-started encoder-decoder, then its validation row."""
    import torch

    from lmforge.finetuning.generative import GenerationSettings
    from lmforge.finetuning.seq2seq.data import generate_texts
    from lmforge.predictor import load_predictor

    torch.set_num_threads(args.threads)
    folder = work / "minilm2minilm"
    info = build_encoder_decoder(folder)
    data, run = work / "data-seq2seq", work / "encdec-run"
    write_data(data, train, causal=False)
    command = ["lmforge", "finetune", "task.name=seq2seq", f"model.pretrained={folder}",
               f"train.epochs={args.encdec_epochs}", f"train.lr={args.encdec_lr}",
               f"task.max_target_length={args.max_target_tokens}",
               *common_args(args, data, run)]
    train_wall = finetune(command)
    torch.set_num_threads(args.threads)
    predictor = load_predictor(str(run), precision="fp32")
    start = time.perf_counter()
    outputs = generate_texts(predictor.model, predictor.tokenizer, [r["source"] for r in val],
                             GenerationSettings(max_new_tokens=args.max_new_tokens),
                             batch_size=BATCH_SIZE, max_source_length=args.max_source_tokens)
    wall = round(time.perf_counter() - start, 1)
    write_row("minilm2minilm", outputs, val, work, {
        "model": f"{ENCODER} x2 (EncoderDecoderModel, full fine-tuning)", **info,
        "train_papers": len(train), "finetune_wall_s": train_wall, "decode_wall_s": wall,
        "finetune_command": relative(command).replace(str(work), "runs/summarize_aclsum"),
        **held_out(run)})


def merge(args: argparse.Namespace, work: Path, commands: list[str],
          val: list[dict[str, Any]]) -> Path:
    """Collect the rows under ``work`` into the results file; derive the goal check."""
    from machine import machine_info

    out = ROOT / "bench" / "results" / "summarize_aclsum.json"
    old = json.loads(out.read_text()) if out.is_file() else {}
    rows = {}
    for path in sorted(work.glob("row-*.json")):
        r = json.loads(path.read_text())
        predictions = work / f"predictions-{r['name']}.jsonl"
        if predictions.is_file():
            # A model that ignores its source writes one summary for every paper.
            r["distinct_predictions"] = len({json.loads(line)["prediction"] for line in
                                             predictions.read_text().splitlines()})
        rows[r["name"]] = r
    result: dict[str, Any] = {
        "benchmark": "ACLSum approach summaries: lead-k vs SmolLM2 zero-shot / LoRA vs "
                     "MiniLM2MiniLM seq2seq",
        "data": "aclsum (pip, MIT): 100 train papers to tune, 50 validation papers scored",
        "source": f"abstract, first {args.max_source_words} words",
        "target": f"{ASPECT} summary", "instruction": INSTRUCTION,
        "val_papers": len(val),
        "val_reference_words_mean": round(sum(len(r["target"].split()) for r in val)
                                          / len(val), 1),
        "scorer": "lmforge.evaluation.generation.generation_metrics (rouge-score, stemmed, "
                  "F-measure x 100)",
        "decoding": f"greedy, max_new_tokens {args.max_new_tokens}, fp32, batch {BATCH_SIZE}",
        # Epochs, learning rates and train batch sizes are each route's own: see its row's
        # finetune_command.
        "hyperparameters": {"decode_batch_size": BATCH_SIZE, "max_source_tokens":
                            args.max_source_tokens, "max_target_tokens": args.max_target_tokens,
                            "selection": "best epoch on lmforge's seeded 10% of train"},
        "threads": args.threads, "rows": rows,
        "commands": sorted(set(old.get("commands", [])) | set(commands)),
        "machine": machine_info(),
        "note": "wall times measured with 1 thread on a 2-core machine shared with other jobs "
                "(inflated)",
    }
    if "lead_k" in rows:
        lead = rows["lead_k"]["rouge2"]
        result["derived"] = {f"{name}_rouge2_minus_lead": round(r["rouge2"] - lead, 2)
                             for name, r in rows.items() if name != "lead_k"}
        result["derived"]["goal"] = "a tuned route above lead-k on ROUGE-2"
        result["derived"]["goal_met_by"] = sorted(
            name for name, r in rows.items()
            if name in ("smollm2_lora", "minilm2minilm") and r["rouge2"] > lead)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default="lead,zero_shot,lora,encdec")
    parser.add_argument("--max-source-words", type=int, default=256)
    parser.add_argument("--max-source-tokens", type=int, default=448)
    parser.add_argument("--max-target-tokens", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lora-epochs", type=float, default=1)
    parser.add_argument("--lora-lr", type=float, default=3e-4)
    parser.add_argument("--lora-batch-size", type=int, default=4)
    parser.add_argument("--encdec-epochs", type=float, default=6)
    parser.add_argument("--encdec-lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=None, help="default: runs/summarize_aclsum")
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    work = Path(args.work or ROOT / "runs" / "summarize_aclsum")
    work.mkdir(parents=True, exist_ok=True)
    train = load_split("train", args.max_source_words)
    val = load_split("val", args.max_source_words)
    if "lead" in stages:
        stage_lead(train, val, work)
    if "zero_shot" in stages:
        stage_zero_shot(args, val, work)
    if "lora" in stages:
        stage_lora(args, train, val, work)
    if "encdec" in stages:
        stage_encdec(args, train, val, work)
    command = "python bench/summarize_aclsum.py " + shlex.join(sys.argv[1:])
    print(f"wrote {merge(args, work, [command.strip()], val)}")


if __name__ == "__main__":
    main()
