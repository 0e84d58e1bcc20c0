"""Training progress display: a tqdm bar on a terminal, a line every ~10% in logs.

A redrawing bar written to a file (CI logs, ``nohup``, SLURM output) becomes thousands of
carriage-return fragments, so when stderr is not a terminal we print a short plain line at each
10% of the run instead. ``LMFORGE_PROGRESS=1`` forces the bar, ``LMFORGE_PROGRESS=0`` silences
both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

from tqdm import tqdm

PROGRESS_ENV = "LMFORGE_PROGRESS"


class ProgressBar:
    """Show step progress with loss, tokens/s and ETA.

    Example:
        >>> bar = ProgressBar(total_steps=1000, initial=resume_step, desc="pretrain")
        >>> bar.update(1, loss=2.31, tokens_per_s=51_000.0)
        >>> bar.close()
    """

    def __init__(
        self,
        total_steps: int,
        initial: int = 0,
        desc: str = "train",
        enabled: bool = True,
        *,
        stream: IO[str] | None = None,
        report_every_fraction: float = 0.1,
    ) -> None:
        """Create the bar (or the line reporter when the stream is not a terminal).

        Args:
            total_steps: The step count at which training ends.
            initial: The step training starts from (non-zero when resuming).
            desc: Label shown before the bar / at the start of each line.
            enabled: False on non-main distributed ranks so only one process prints.
            stream: Where to write; defaults to ``sys.stderr``.
            report_every_fraction: Line-mode reporting interval as a fraction of the run.
        """
        self.total_steps = max(int(total_steps), 0)
        self.step = int(initial)
        self.desc = desc
        self._stream = stream if stream is not None else sys.stderr
        self._start_step = self.step
        self._start_time = time.monotonic()
        self._loss: float | None = None
        self._tokens_per_s: float | None = None
        self._bar: tqdm | None = None
        self._line_mode = False
        self._closed = False

        setting = os.environ.get(PROGRESS_ENV, "").strip()
        self.enabled = bool(enabled) and setting != "0"
        if not self.enabled:
            return
        is_tty = bool(getattr(self._stream, "isatty", lambda: False)())
        if is_tty or setting == "1":
            self._bar = tqdm(
                total=self.total_steps,
                initial=self.step,
                desc=desc,
                file=self._stream,
                unit="step",
                dynamic_ncols=True,
                # Rate (and so ETA) comes from steps run here, never the skipped resume steps;
                # light smoothing because step time varies with eval/checkpoint pauses.
                smoothing=0.05,
            )
        else:
            self._line_mode = True
            self._interval = max(1, round(self.total_steps * report_every_fraction))
            # Next multiple of the interval, so a resumed run reports at the same 10% marks.
            self._next_report = (self.step // self._interval + 1) * self._interval

    def update(
        self,
        step_increment: int = 1,
        loss: float | None = None,
        tokens_per_s: float | None = None,
    ) -> None:
        """Advance by ``step_increment`` steps and refresh the displayed loss and throughput.

        Args:
            step_increment: Optimizer steps completed since the last call.
            loss: The latest (or smoothed) training loss.
            tokens_per_s: The current training throughput.
        """
        self.step += step_increment
        if loss is not None:
            self._loss = float(loss)
        if tokens_per_s is not None:
            self._tokens_per_s = float(tokens_per_s)
        if not self.enabled or self._closed:
            return
        if self._bar is not None:
            postfix = {}
            if self._loss is not None:
                postfix["loss"] = f"{self._loss:.4f}"
            if self._tokens_per_s is not None:
                postfix["tok/s"] = _human(self._tokens_per_s)
            # refresh=False: update() below redraws, rate-limited by tqdm's mininterval.
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(step_increment)
        elif self.step >= self._next_report or self.step >= self.total_steps:
            self._print_line()
            while self._next_report <= self.step:
                self._next_report += self._interval

    def write(self, message: str) -> None:
        """Print a message without breaking the bar (e.g. an eval result).

        Args:
            message: The text to print.
        """
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            print(message, file=self._stream, flush=True)

    def close(self) -> None:
        """Close the bar; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _print_line(self) -> None:
        elapsed = time.monotonic() - self._start_time
        done = self.step - self._start_step
        percent = 100.0 * self.step / self.total_steps if self.total_steps else 100.0
        parts = [f"{self.desc}: step {self.step}/{self.total_steps} ({percent:.0f}%)"]
        if self._loss is not None:
            parts.append(f"loss {self._loss:.4f}")
        if self._tokens_per_s is not None:
            parts.append(f"tok/s {_human(self._tokens_per_s)}")
        parts.append(f"elapsed {tqdm.format_interval(elapsed)}")
        if done > 0 and self.step < self.total_steps:
            eta = elapsed / done * (self.total_steps - self.step)
            parts.append(f"eta {tqdm.format_interval(eta)}")
        print(" | ".join(parts), file=self._stream, flush=True)


def _human(value: float) -> str:
    # 51234.5 -> "51.2k": throughput changes in the third digit, the rest is noise.
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return f"{value:.0f}"
