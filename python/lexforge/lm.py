"""Language models: train GPT-2 or a char-LSTM on text files, resume, evaluate, generate, score.

Training runs in Rust on a worker thread; this thread shows progress (a tqdm bar, the notebook
widget in Jupyter) and turns Ctrl-C or a notebook interrupt into a clean stop: the run finishes
its current step, writes a checkpoint and raises :class:`~lexforge.Interrupted` (a
``KeyboardInterrupt``) carrying the run with ``status == "cancelled"``; :meth:`TrainReport.resume`
continues it exactly.

>>> run = train({"corpus": {"paths": books},
...              "tokenizer": {"train": {"method": "bpe", "vocab_size": 2000}},
...              "model": {"type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2},
...              "train": {"max_steps": 200}}, "runs/demo")  # doctest: +SKIP
>>> lm = run.load_model()  # doctest: +SKIP
>>> lm.generate("It was", max_new_tokens=20, seed=1)[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from lexforge import _native
from lexforge._defaults import DEFAULTS, default
from lexforge._jobs import from_fields, train_job
from lexforge.config import LmRunConfig

__all__ = [
    "TextEvaluation",
    "Generation",
    "LanguageModel",
    "ScoredToken",
    "TextScore",
    "TrainReport",
    "evaluate",
    "load_config",
    "resume",
    "train",
]

PathLike = Union[str, "os.PathLike[str]"]
Event = dict[str, Any]
FinishReason = Literal["eos", "stop_sequence", "max_tokens", "context_full"]


def load_config(path: PathLike) -> dict[str, Any]:
    """Read a run config file as ``lexforge lm train`` does (TOML, or JSON for ``.json``) and
    return it as a dict with every default filled in; :class:`~lexforge.config.LmRunConfig` is the
    same as an object. Raises :class:`~lexforge.InvalidInputError` naming the file and field
    when it does not parse."""
    return LmRunConfig.load(path).to_dict()


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class TrainReport:
    """A training run directory and how its last invocation ended (``lm::TrainReport``)."""

    run_dir: Path
    """The run directory."""
    status: Literal["completed", "cancelled", "failed", "running"]
    """``completed``, or ``cancelled`` after Ctrl-C / an interrupt (resume it)."""
    stop: Literal["max_steps", "early_stopped", "cancelled"]
    """Why training ended."""
    steps: int
    """Optimizer steps done."""
    metrics: dict[str, float] = field(default_factory=dict)
    """``eval/metrics.json``: ``val_loss``, ``val_perplexity``, ``val_bits_per_token``,
    ``val_bits_per_char``, ``unigram_entropy``, ... (empty when cancelled)."""

    def events(self) -> list[Event]:
        """Every event of the run (``events.jsonl``), across resumes."""
        out = []
        with open(self.run_dir / "events.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
        return out

    def samples(self) -> list[dict[str, Any]]:
        """The seeded samples of ``eval/samples.jsonl``."""
        path = self.run_dir / "eval" / "samples.jsonl"
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def load_model(
        self, device: str = DEFAULTS["device"], precision: str | None = None
    ) -> LanguageModel:
        """The trained model (best validation weights) with its tokenizer."""
        return LanguageModel.load(self.run_dir, device=device, precision=precision)

    def resume(
        self,
        max_steps: int | None = None,
        *,
        device: str = DEFAULTS["device"],
        precision: str | None = None,
        progress: bool = True,
        callback: Callable[[Event], None] | None = None,
    ) -> TrainReport:
        """Continue this run from its latest checkpoint (see :func:`resume`)."""
        return resume(
            self.run_dir,
            max_steps,
            device=device,
            precision=precision,
            progress=progress,
            callback=callback,
        )


def train(
    config: Mapping[str, Any] | PathLike,
    run_dir: PathLike,
    *,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
) -> TrainReport:
    """Train a language model as ``config`` describes into the new directory ``run_dir`` and
    return the finished run. An existing ``run_dir`` is refused: :func:`resume` continues it.

    ``config`` is a :class:`~lexforge.config.LmRunConfig`, a dict with the schema of ``lexforge
    lm train``'s TOML (``seed``, ``replicas``, ``context``, ``corpus``, ``tokenizer``,
    ``model``, ``train``, ``samples``; see ``docs/lm.md``) or the path of such a TOML (or
    ``.json``) file. Unknown keys raise :class:`~lexforge.InvalidInputError`, naming the key.
    ``device`` (``"cpu"``, ``"cuda:0"``, ...) and ``precision`` (``"f32"``, ``"f16"``,
    ``"bf16"``; default the device's) are where it computes, as for every pipeline.

    ``progress`` shows a tqdm bar; ``callback`` receives every event as a dict
    (``{"type": "progress", "step": 10, "metrics": {"loss": ...}}``). Ctrl-C (or a notebook
    interrupt) stops the run after the current step with a checkpoint and raises
    :class:`~lexforge.Interrupted` (a ``KeyboardInterrupt``) whose ``result`` is the run with
    ``status == "cancelled"``; :func:`resume` continues it.
    """
    if isinstance(config, (str, os.PathLike)):
        config = load_config(config)
    return train_job(
        _native.lm_train,
        (json.dumps(_jsonable(config)), os.fspath(run_dir)),
        pipeline="lm",
        report=TrainReport,
        device=device,
        precision=precision,
        progress=progress,
        callback=callback,
    )


def resume(
    run_dir: PathLike,
    max_steps: int | None = None,
    *,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
) -> TrainReport:
    """Continue an interrupted, cancelled or failed run from its latest checkpoint.

    The result is bit for bit what an uninterrupted run would have produced (on the same CPU
    build). ``max_steps`` raises the run's total step budget.
    """
    return train_job(
        _native.lm_resume,
        (os.fspath(run_dir), max_steps),
        pipeline="lm",
        report=TrainReport,
        device=device,
        precision=precision,
        progress=progress,
        callback=callback,
    )


def evaluate(
    run_dir: PathLike, device: str = DEFAULTS["device"], precision: str | None = None
) -> dict[str, float]:
    """Recompute a finished run's validation metrics from its files (``val_loss``,
    ``val_perplexity``, ``val_bits_per_token``, ``val_bits_per_char``, ...)."""
    metrics: dict[str, float] = json.loads(
        _native.lm_evaluate(os.fspath(run_dir), device, precision)
    )
    return metrics


@dataclass(frozen=True)
class Generation:
    """One generated continuation."""

    text: str
    """The continuation (prompt excluded, cut before a stop sequence, EOS excluded)."""
    token_ids: list[int]
    """The generated ids (EOS included when it ended the sequence)."""
    tokens_generated: int
    """How many tokens were generated."""
    finish: FinishReason
    """``eos``, ``stop_sequence``, ``max_tokens`` or ``context_full``."""


@dataclass(frozen=True)
class ScoredToken:
    """One token of a scored text."""

    token: str
    id: int
    start: int
    """Byte offset of the token in the text (start)."""
    end: int
    """Byte offset (end, exclusive)."""
    surprisal_bits: float
    """``-log2 p(token | text before it)``."""
    top_k: list[tuple[str, int, float]]
    """The most likely tokens at this position: ``(token, id, probability)``."""


@dataclass(frozen=True)
class TextScore:
    """Loss, perplexity and per-token surprisal of a text."""

    loss: float
    """Mean cross-entropy in nats per scored token."""
    perplexity: float
    bits_per_char: float
    tokens: list[ScoredToken]


@dataclass(frozen=True)
class TextEvaluation:
    """Loss over a set of texts."""

    loss: float
    perplexity: float
    bits_per_token: float
    bits_per_char: float
    """Comparable across tokenizers (char vs BPE)."""
    tokens: int
    chars: int


class LanguageModel:
    """A trained GPT-2 or char-LSTM with its tokenizer.

    Load a run directory (or an HF GPT-2 directory with a ``tokenizer.json``) with
    :meth:`load`. Calls release the GIL.
    """

    __slots__ = ("_info", "_native")

    def __init__(self, native: _native.LanguageModel) -> None:
        self._native = native
        self._info: dict[str, Any] = json.loads(native.info_json())

    @classmethod
    def load(
        cls, path: PathLike, device: str = DEFAULTS["device"], precision: str | None = None
    ) -> LanguageModel:
        """Load ``path`` on ``device`` (``cpu``, ``flex``, ``ndarray``, ``cuda:0``, ``wgpu``),
        computing in ``precision`` (default the device's).

        A run's files are verified against its manifest first (a damaged file raises
        :class:`~lexforge.ArtifactError`); a tokenizer whose vocabulary does not match the model
        raises :class:`~lexforge.InvalidInputError`.
        """
        return cls(_native.LanguageModel.load(os.fspath(path), device, precision))

    @property
    def model_type(self) -> str:
        """``gpt2`` or ``char_lstm``."""
        return str(self._info["backend"])

    @property
    def device(self) -> str:
        """The device it computes on (``Cpu``, ``Cuda(0)``, ...)."""
        return str(self._info["device"])

    @property
    def path(self) -> Path:
        """The directory it was loaded from."""
        return Path(self._info["dir"])

    @property
    def vocab_size(self) -> int:
        return int(self._info["vocab_size"])

    @property
    def context(self) -> int | None:
        """Longest sequence the model takes (``None``: unbounded, the LSTM)."""
        c = self._info["context"]
        return None if c is None else int(c)

    @property
    def num_params(self) -> int:
        return int(self._info["num_params"])

    @property
    def config(self) -> dict[str, Any]:
        """The network's ``config.json``."""
        config: dict[str, Any] = self._info["config"]
        return config

    def __repr__(self) -> str:
        c = self.config
        if self.model_type == "gpt2":
            dims = f"n_layer={c.get('n_layer')}, n_head={c.get('n_head')}, n_embd={c.get('n_embd')}"
        else:
            dims = f"n_layers={c.get('n_layers')}, d_hidden={c.get('d_hidden')}"
        return (
            f"LanguageModel(model_type={self.model_type!r}, {dims}, "
            f"vocab_size={self.vocab_size}, context={self.context}, "
            f"num_params={self.num_params}, device={self.device!r}, path={str(self.path)!r})"
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self._native.encode(text)

    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int = default("lm.generate", "max_new_tokens"),
        *,
        temperature: float = default("lm.generate", "temperature"),
        top_k: int | None = None,
        top_p: float | None = None,
        stop_on_eos: bool = True,
        stop_sequences: Sequence[str] = (),
        seed: int = default("lm.generate", "seed"),
        num_return_sequences: int = default("lm.generate", "num_return_sequences"),
    ) -> list[Generation]:
        """Continue ``prompt`` (``temperature=0`` is greedy).

        Stop sequences are matched on the decoded text, also when split across tokens. The
        same ``seed`` gives the same outputs; the ``num_return_sequences`` (1-10) sequences
        are generated in one batch. A prompt that fills the context raises
        :class:`~lexforge.InvalidInputError`.
        """
        out = json.loads(
            self._native.generate(
                prompt,
                max_new_tokens,
                temperature,
                top_k,
                top_p,
                stop_on_eos,
                list(stop_sequences),
                seed,
                num_return_sequences,
            )
        )
        return [from_fields(Generation, g) for g in out]

    def score(self, text: str, top_k: int = default("lm.score", "top_k")) -> TextScore:
        """Score ``text``: loss, perplexity, bits per character and per-token surprisal, each
        token with its byte offsets and the ``top_k`` predictions at its position."""
        s = json.loads(self._native.score(text, top_k))
        tokens = [
            from_fields(ScoredToken, {**t, "top_k": [tuple(x) for x in t["top_k"]]})
            for t in s["tokens"]
        ]
        return from_fields(TextScore, {**s, "tokens": tokens})

    def evaluate(self, texts: Iterable[str] | PathLike) -> TextEvaluation:
        """Loss over ``texts`` (strings, or one path of a text file)."""
        if isinstance(texts, (os.PathLike,)) or (isinstance(texts, str) and os.path.isfile(texts)):
            with open(texts, encoding="utf-8") as f:
                items = [f.read()]
        elif isinstance(texts, str):
            items = [texts]
        else:
            items = list(texts)
        return from_fields(TextEvaluation, json.loads(self._native.evaluate(items)))
