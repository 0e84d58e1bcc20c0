"""The config of ``lmforge serve``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.settings import PRECISIONS

BACKENDS = ("torch", "onnx")
EXPLAIN_METHODS = ("ig", "gradxinput", "rollout", "occlusion", "lime", "shap")


@dataclass
class ServeJob:
    """``lmforge serve``: an HTTP server (FastAPI + uvicorn) for a fine-tuned run or export.

    Concurrent requests are grouped into one forward pass (dynamic micro-batching) of at most
    ``max_batch_size`` inputs, waiting at most ``max_wait_ms`` for a batch to fill. At most
    ``max_queue`` inputs wait; beyond that, or when its answer is not expected within
    ``latency_budget_ms``, or over ``max_in_flight`` requests, a request gets 503 with
    ``Retry-After``.
    """

    run: str = opt("", "Fine-tuned run directory (or its model/ folder), or an ONNX export "
                       "folder with backend=onnx.")
    host: str = opt("127.0.0.1", "Interface to listen on; loopback by default, set 0.0.0.0 "
                                 "to accept outside connections (then set API keys).")
    port: int = opt(8000, "TCP port.")
    backend: str = opt("torch", "torch (PyTorch) or onnx (ONNX Runtime on an export folder).")
    precision: str = opt("auto", "torch backend: auto (bf16 autocast only where the CPU has "
                                 "native bf16), fp32, bf16 or fp16 (GPU only).")
    max_batch_size: int = opt(32, "Most inputs per forward pass (dynamic batching).")
    max_wait_ms: float = opt(5.0, "Longest wait for a batch to fill after its first input.")
    max_batch_generations: int = opt(32, "Generations (/generate, /v1) decoded together by "
                                         "continuous batching: each step is one forward pass "
                                         "over all of them, a new one joins at the next step. "
                                         "1: one model.generate per request, in turn.")
    max_queue: int = opt(128, "Most inputs waiting for a forward pass (admission control); "
                              "past it, or when the queue would not be served within "
                              "request_timeout_s, new requests get 503 with Retry-After.")
    latency_budget_ms: float | None = opt(1000.0, "Admit a prediction only when its answer "
                                                  "is expected within this many ms (the "
                                                  "queue ahead at measured throughput, "
                                                  "running generations, its own forward "
                                                  "pass); past it -> 503 with Retry-After "
                                                  "before the body is read. None: off.")
    max_in_flight: int = opt(256, "Most prediction requests being served at once (parsed, "
                                  "queued or computed); more -> 503 before the body is read.")
    refusals_per_s: float | None = opt(500.0, "Pace of 503s for overload: each is held (a "
                                              "timer, no CPU) for (refusals held) / this "
                                              "seconds, at most 5, so clients that retry at "
                                              "once cannot keep the server busy refusing. "
                                              "None: sent at once.")
    max_items: int = opt(64, "Most inputs (texts, records, messages) in one request "
                             "(more -> 422).")
    max_input_chars: int = opt(10000, "Most characters in one string (more -> 422).")
    max_input_tokens: int | None = opt(None, "Most tokens in one input (more -> 422; None: "
                                             "off, inputs are truncated as in training).")
    max_body_bytes: int = opt(1_048_576, "Largest request body in bytes (more -> 413).")
    max_new_tokens: int = opt(512, "Cap on max_new_tokens of /generate (more -> 422) and "
                                   "on max_tokens of the /v1 routes (more is cut to it).")
    served_model_name: str | None = opt(None, "The model's name in the OpenAI-compatible "
                                              "/v1 routes (a request naming another -> "
                                              "404); None: the run folder's name.")
    explain_methods: list[str] = opt(["ig", "gradxinput", "rollout", "occlusion", "lime",
                                      "shap"], "Methods POST /explain accepts (classification "
                                               "models; others -> 422).")
    explain_max_budget: int = opt(1000, "Most model evaluations one /explain text may ask for "
                                        "(IG steps, LIME samples, SHAP max_evals; more -> 422).")
    request_timeout_s: float = opt(30.0, "Seconds a request may wait in the queue before a "
                                         "504 (it is then never computed); a started batch "
                                         "is always answered.")
    body_timeout_s: float = opt(10.0, "Seconds a client may take to send its request body "
                                      "(slower -> 408, the connection is closed).")
    keep_alive_s: float = opt(5.0, "Seconds an idle keep-alive connection stays open.")
    drain_timeout_s: float = opt(30.0, "On SIGTERM: seconds admitted requests may take to "
                                       "finish (new ones get 503) before the server exits.")
    api_keys: list[str] = opt([], "Accepted API keys (header X-API-Key or Authorization: "
                                  "Bearer); empty with no file / env var: no auth.")
    api_key_file: str | None = opt(None, "File with one API key per line (keeps keys out of "
                                         "shell history); '#' starts a comment.")
    api_key_env: str = opt("LMFORGE_API_KEYS", "Environment variable holding comma-separated "
                                               "API keys (read when set).")
    workers: int = opt(1, "Server processes sharing the port; each loads its own model copy "
                          "and has its own /metrics (use threads=1 with workers=cores).")
    threads: int | None = opt(None, "torch intra-op threads per worker (None: torch default).")
    log_level: str = opt("info", "uvicorn log level: debug, info, warning, error.")

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, BACKENDS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("log_level", self.log_level, ("debug", "info", "warning", "error"))
        check(0 <= self.port <= 65535, "port must be in [0, 65535]")
        check(self.max_batch_size >= 1, "max_batch_size must be >= 1")
        check(self.max_wait_ms >= 0, "max_wait_ms must be >= 0")
        check(self.max_batch_generations >= 1, "max_batch_generations must be >= 1 (1: off)")
        check(self.max_items >= 1, "max_items must be >= 1")
        check(self.max_input_chars >= 1, "max_input_chars must be >= 1")
        check(self.max_input_tokens is None or self.max_input_tokens >= 1,
              "max_input_tokens must be >= 1 (or None)")
        check(self.max_body_bytes >= 1024, "max_body_bytes must be >= 1024")
        check(self.max_new_tokens >= 1, "max_new_tokens must be >= 1")
        check(self.served_model_name is None or bool(self.served_model_name.strip()),
              "served_model_name must not be blank (None: the run folder's name)")
        for name in self.explain_methods:
            check_choice("explain_methods", name, EXPLAIN_METHODS)
        check(self.explain_max_budget >= 1, "explain_max_budget must be >= 1")
        check(self.request_timeout_s > 0, "request_timeout_s must be > 0")
        check(self.max_queue >= 1, "max_queue must be >= 1")
        check(self.latency_budget_ms is None or self.latency_budget_ms > 0,
              "latency_budget_ms must be > 0 (or None)")
        check(self.max_in_flight >= 1, "max_in_flight must be >= 1")
        check(self.refusals_per_s is None or self.refusals_per_s > 0,
              "refusals_per_s must be > 0 (or None)")
        check(self.body_timeout_s > 0, "body_timeout_s must be > 0")
        check(self.keep_alive_s > 0, "keep_alive_s must be > 0")
        check(self.drain_timeout_s >= 0, "drain_timeout_s must be >= 0")
        check(self.workers >= 1, "workers must be >= 1")
        check(self.threads is None or self.threads >= 1, "threads must be >= 1")
        check(self.backend == "torch" or self.precision != "bf16",
              "precision=bf16 is for backend=torch; an ONNX export has its own precision "
              "(export with quantize=int8 for a smaller model)")
