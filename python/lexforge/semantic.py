"""Semantic IDs: labelled word corpora → a 4-tuple ID ``(style, complexity, era, variation)``.

Build corpora from books with a catalogue (or from any callable, e.g. an LLM client), train a
semantic encoder (FSQ, residual FSQ or residual VQ on all-MiniLM-L6-v2 corpus vectors), then
encode words, decode IDs, find similar corpora and generate words for an ID::

    from lexforge import semantic
    corpora = semantic.build_corpora("books", "books.csv", words_per_corpus=50)
    report = semantic.train(corpora, "runs/semantic", quantizer="fsq")
    # or all of it from books: semantic.pipeline("books", "books.csv", "runs/semantic-ids")
    enc = semantic.SemanticEncoder.load("runs/semantic")
    sid = enc.encode(["anchor", "harbour", "sailor", "tide"])
    enc.similar(sid, k=5)
    semantic.build_guided_generator("runs/semantic")  # or train_generator(dir, base_lm): LoRA
    enc = semantic.SemanticEncoder.load("runs/semantic")
    enc.generate_words(sid, n=10, seed=1)
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import numpy.typing as npt

from lexforge import _native
from lexforge._defaults import DEFAULTS, default
from lexforge._jobs import from_fields, run_job, train_job
from lexforge._params import apply_params, flat_places
from lexforge.config import as_dict
from lexforge.encoder import minilm_path

__all__ = [
    "Corpora",
    "PipelineReport",
    "SemanticEncoder",
    "SimilarCorpus",
    "TrainReport",
    "WordCorpus",
    "build_corpora",
    "build_guided_generator",
    "default_config",
    "default_pipeline_config",
    "pipeline",
    "resume",
    "train",
    "train_generator",
    "wordfreq_path",
]

PathLike = Union[str, "os.PathLike[str]"]
Event = dict[str, Any]
SemanticId = tuple[int, ...]

#: wordfreq's English table inside its package.
_WORDFREQ_TABLE = Path("data") / "large_en.msgpack.gz"


def wordfreq_path() -> Path | None:
    """wordfreq's English table (``large_en.msgpack.gz``), found without downloading or
    running anything: ``$LEXFORGE_WORDFREQ``, else the ``wordfreq`` package of this
    interpreter (``importlib``). ``None`` when neither has it. The Python API passes it to
    the library as a path wherever ``frequencies="wordfreq"``."""
    env = os.environ.get("LEXFORGE_WORDFREQ")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("wordfreq")
    if spec is None or spec.origin is None:
        return None
    table = Path(spec.origin).parent / _WORDFREQ_TABLE
    return table if table.is_file() else None


def _frequencies(frequencies: str | PathLike) -> tuple[str | None, bool]:
    """``frequencies`` as the native ``(wordfreq, corpus_frequencies)`` arguments."""
    if frequencies == "corpus":
        return None, True
    if frequencies == "wordfreq":
        table = wordfreq_path()
        if table is None:
            raise FileNotFoundError(
                "wordfreq is not installed (pip install wordfreq, set LEXFORGE_WORDFREQ, "
                "pass frequencies=PATH, or frequencies='corpus')"
            )
        return os.fspath(table), False
    return os.fspath(frequencies), False


@dataclass(frozen=True)
class WordCorpus:
    """One labelled word corpus."""

    id: str
    """Unique id (``style.era.complexity.variation`` for built ones)."""
    style: str
    """Style label (from the books' genre)."""
    complexity: str
    """Complexity level (from word frequency and length)."""
    era: str
    """Era label."""
    variation: int
    """Which distinct sample of its (style, complexity, era) it is."""
    words: list[str]
    """The words, best first."""
    source: dict[str, str] = field(default_factory=dict)
    """Where the words came from (generator, books)."""


class Corpora(Sequence[WordCorpus]):
    """A validated set of corpora with the settings that built it (the corpora JSON)."""

    def __init__(self, text: str) -> None:
        self._json = text
        raw = json.loads(text)
        self.generator: str = raw["generator"]
        """The generator's name."""
        self.skipped: list[tuple[str, str]] = [tuple(s) for s in raw.get("skipped", [])]
        """Corpora that could not be filled, with why."""
        self._items = [
            WordCorpus(
                c["id"],
                c["labels"]["style"],
                c["labels"]["complexity"],
                c["labels"]["era"],
                int(c["labels"]["variation"]),
                list(c["words"]),
                dict(c.get("source", {})),
            )
            for c in raw["corpora"]
        ]

    @classmethod
    def load(cls, path: PathLike) -> Corpora:
        """Reads and validates a corpora file."""
        return cls(_native.semantic_load_corpora(os.fspath(path)))

    def save(self, path: PathLike) -> None:
        """Writes the corpora file atomically."""
        _native.semantic_save_corpora(self._json, os.fspath(path))

    def to_json(self) -> str:
        """The corpora JSON (what :meth:`save` writes)."""
        return self._json

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: Any) -> Any:
        return self._items[i]

    def __iter__(self) -> Iterator[WordCorpus]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Corpora({len(self)} corpora from {self.generator!r}, {len(self.skipped)} skipped)"


def build_corpora(
    books_dir: PathLike | None = None,
    metadata: PathLike | None = None,
    *,
    words_per_corpus: int = default("semantic.corpora", "words_per_corpus"),
    variations: int | None = None,
    frequencies: str | PathLike = "wordfreq",
    generator: Callable[[dict[str, Any], int], list[str]] | None = None,
    plan: Sequence[Mapping[str, Any]] | None = None,
    name: str = "python",
    out: PathLike | None = None,
    **config: Any,
) -> Corpora:
    """Labelled word corpora.

    From books (``books_dir`` laid out as ``{author}/{title}.txt``, ``metadata`` a CSV with
    ``genre`` and ``era`` columns): characteristic words of each (style, era) group by
    log-odds, bucketed by complexity (``frequencies``: ``"wordfreq"`` for the installed
    wordfreq table, ``"corpus"`` for the books' own counts, or a path to a wordfreq table).
    ``config`` sets other ``BookWordsConfig`` fields (``min_z``, ``cuts``, ``levels``, ...).

    Or from ``generator``, a callable ``(labels, n) -> words`` asked once per entry of
    ``plan`` (dicts with ``style``, ``complexity``, ``era``, ``variation``): the labels are
    yours, the callable only supplies words.

    Saved to ``out`` when given.
    """
    if generator is not None:
        if plan is None:
            raise TypeError("a generator needs a plan: a list of label dicts")
        text = _native.semantic_generated_corpora(
            generator, name, json.dumps([dict(p) for p in plan]), words_per_corpus
        )
    else:
        if books_dir is None or metadata is None:
            raise TypeError("give books_dir and metadata, or a generator and a plan")
        cfg = dict(config)
        if variations is not None:
            cfg["variations"] = variations
        wordfreq, corpus = _frequencies(frequencies)
        text = _native.semantic_book_corpora(
            os.fspath(books_dir),
            os.fspath(metadata),
            words_per_corpus,
            json.dumps(cfg),
            wordfreq=wordfreq,
            corpus_frequencies=corpus,
        )
    corpora = Corpora(text)
    if out is not None:
        corpora.save(out)
    return corpora


def default_config() -> dict[str, Any]:
    """The default training configuration (``SemanticTrainConfig``) as a nested dict."""
    config: dict[str, Any] = json.loads(_native.semantic_default_config())
    return config


@dataclass(frozen=True)
class TrainReport:
    """What :func:`train` measured (also in ``eval/metrics.json``)."""

    run_dir: Path
    """The encoder directory."""
    stop: str
    """``"max_steps"``, ``"early_stopped"`` or ``"cancelled"``."""
    steps: int
    """Optimizer steps run."""
    quantizer: str
    """``fsq``, ``residual_fsq`` or ``residual_vq``."""
    corpora: dict[str, int]
    """Training and held-out corpora."""
    levels: list[dict[str, Any]]
    """Per component: ``codebook_size``, ``used``, ``usage``, ``perplexity``, ``dead``."""
    collisions: dict[str, Any]
    """``ids``, ``unique``, ``collisions`` (groups of corpus ids), ``prefix_occupancy``."""
    heads: dict[str, dict[str, Any]]
    """Per labelled component: held-out and train accuracy from the ID, majority baseline."""
    reconstruction_cosine: dict[str, float]
    """Mean cosine of decode(encode(x)) to x, train and held out."""
    train_seconds: float
    """Wall time of the training loop."""


def _drive(
    call: Callable[[Callable[[Event], None] | None], tuple[str, bool]],
    progress: bool,
    callback: Callable[[Event], None] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = run_job(
        call,
        progress=progress,
        callback=callback,
        interrupted=lambda _: (
            "interrupted: the run stopped with a checkpoint; train again to resume"
        ),
        result=lambda d: d,
    )
    return out


def train(
    corpora: Corpora | PathLike,
    run_dir: PathLike,
    *,
    quantizer: str = "fsq",
    embedding_model: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
    **params: Any,
) -> TrainReport:
    """Train a semantic encoder on ``corpora`` (a :class:`Corpora` or a corpora file) into the
    new directory ``run_dir`` and evaluate it (``eval/metrics.json``). An existing ``run_dir``
    is refused: :func:`resume` continues a stopped run.

    ``quantizer``: ``"fsq"``, ``"residual_fsq"`` or ``"residual_vq"`` (the presets of
    ``QuantizerConfig::preset``; a ``config["quantizer"]`` dict overrides). ``embedding_model``:
    a sentence-encoder directory (default: the installed all-MiniLM-L6-v2). Keyword parameters:
    ``max_steps``, ``batch_size``, ``lr``, ``seed``, ``views``, ``entropy``, ``diversity``,
    ``supervised``, ``info_nce``, ... (the fields of :class:`~lexforge.config.SemanticTrainConfig`
    by their last name). Unknown names raise ``TypeError``.
    """
    base = dict(as_dict(config)) if config is not None else default_config()
    if config is None or "quantizer" not in config:
        base["quantizer"] = json.loads(_native.semantic_quantizer_preset(quantizer))
    if embedding_model is not None:
        base["embedding_model"] = os.fspath(embedding_model)
    elif not base.get("embedding_model"):
        base["embedding_model"] = os.fspath(minilm_path())
    cfg = json.dumps(apply_params(params, flat_places(default_config()), base))
    if not isinstance(corpora, Corpora):
        corpora = Corpora.load(corpora)
    return train_job(
        _native.semantic_train,
        (corpora.to_json(), os.fspath(run_dir), cfg),
        pipeline="semantic",
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
    """Continue an encoder training from its last checkpoint (a stopped one: killed,
    interrupted, failed; or a finished one with a higher ``max_steps``), with the config and
    corpora the run recorded."""
    return train_job(
        _native.semantic_resume,
        (os.fspath(run_dir), max_steps),
        pipeline="semantic",
        report=TrainReport,
        device=device,
        precision=precision,
        progress=progress,
        callback=callback,
    )


def default_pipeline_config() -> dict[str, Any]:
    """The default configuration of :func:`pipeline` as a nested dict (``words_per_corpus``,
    ``word_generator``, ``corpora``, ``semantic``, ``guided``, ``generator``, ``base_lm``)."""
    config: dict[str, Any] = json.loads(_native.semantic_default_pipeline_config())
    return config


@dataclass(frozen=True)
class PipelineReport:
    """What :func:`pipeline` did."""

    run_dir: Path
    """The pipeline's directory (``corpora.json``, ``encoder/``, ``encoder/generator/``)."""
    corpora: int
    """Corpora built."""
    skipped: list[Any]
    """Corpora the books could not fill, with the reason."""
    frequencies: str
    """Where the word frequencies came from."""
    encoder: dict[str, Any]
    """The encoder's training report (the fields of :class:`TrainReport`)."""
    generator: dict[str, Any] | None = None
    """The word generator's report (``kind``: ``guided`` or ``lora``), when one was built."""


def pipeline(
    books_dir: PathLike,
    metadata: PathLike,
    run_dir: PathLike,
    *,
    generator: str | None = None,
    base_lm: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
) -> PipelineReport:
    """Books with a catalogue → corpora → semantic encoder → word generator in one call, as
    ``lexforge semantic pipeline``: ``run_dir/corpora.json``, ``run_dir/encoder`` and its
    ``generator/``. Calling it again reuses the stages that completed and resumes a stopped one.

    ``generator``: ``"guided"`` (the config's default), ``"lora"`` (on ``base_lm``, or on a
    small GPT-2 the language-model pipeline trains first) or ``"none"``. ``config``: the nested
    dict of :func:`default_pipeline_config`.
    """
    full = dict(as_dict(config)) if config is not None else default_pipeline_config()
    semantic = dict(full.get("semantic") or default_config())
    if not semantic.get("embedding_model"):
        semantic["embedding_model"] = os.fspath(minilm_path())
    full["semantic"] = semantic
    if not full.get("wordfreq"):
        table = wordfreq_path()
        full["wordfreq"] = None if table is None else os.fspath(table)
    cfg = json.dumps(full)
    books, meta, out = os.fspath(books_dir), os.fspath(metadata), os.fspath(run_dir)
    base = os.fspath(base_lm) if base_lm is not None else None
    return run_job(
        lambda cb: _native.semantic_pipeline(
            books,
            meta,
            out,
            cfg,
            generator=generator,
            base_lm=base,
            device=device,
            precision=precision,
            callback=cb,
        ),
        progress=progress,
        callback=callback,
        interrupted=lambda r: (
            "interrupted: the pipeline stopped with a checkpoint; call it again to continue"
        ),
        result=lambda d: from_fields(PipelineReport, d),
    )


def build_guided_generator(
    encoder_dir: PathLike,
    *,
    frequencies: str | PathLike = "wordfreq",
    device: str = DEFAULTS["device"],
    config: Mapping[str, Any] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Build the default word generator of an encoder (``encoder_dir/generator``): the
    frequency table's most frequent real words (``frequencies``: ``"wordfreq"`` for the
    installed wordfreq table, a path to one, or ``"corpus"`` for the corpora's own words),
    embedded once with the encoder's embedding model. Words for an ID are then drawn from the
    ID's complexity band so that their mean embedding lands on ``decode(id)``. Keyword
    parameters: ``vocabulary``, ``pool``, ``temperature``, ``greedy_tail``,
    ``complexity_band``. Returns the report (vocabulary size, frequency source, Zipf bands,
    embedding seconds)."""
    base = (
        dict(config) if config is not None else json.loads(_native.semantic_default_guided_config())
    )
    defaults = json.loads(_native.semantic_default_guided_config())
    cfg = json.dumps(apply_params(params, flat_places(defaults), base))
    wordfreq, corpus = _frequencies(frequencies)
    out: dict[str, Any] = json.loads(
        _native.semantic_build_guided(
            os.fspath(encoder_dir),
            cfg,
            device=device,
            wordfreq=wordfreq,
            corpus_frequencies=corpus,
        )
    )
    return out


def train_generator(
    encoder_dir: PathLike,
    base_lm: PathLike,
    *,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Fine-tune LoRA adapters of the GPT-2 at ``base_lm`` (a ``lexforge lm train`` run or an
    HF GPT-2 directory with a tokenizer) to generate each known ID's words; saved in
    ``encoder_dir/generator`` apart from the base. Keyword parameters: ``rank``, ``alpha``,
    ``max_steps``, ``batch_size``, ``lr``, ``seed``, ``sequences_per_corpus``,
    ``words_per_sequence``. Returns the report (steps, sequences, val_loss)."""
    base = (
        dict(config)
        if config is not None
        else json.loads(_native.semantic_default_generator_config())
    )
    defaults = json.loads(_native.semantic_default_generator_config())
    cfg = json.dumps(apply_params(params, flat_places(defaults), base))
    enc, lm = os.fspath(encoder_dir), os.fspath(base_lm)
    return _drive(
        lambda cb: _native.semantic_train_generator(
            enc, lm, cfg, device=device, precision=precision, callback=cb
        ),
        progress,
        callback,
    )


@dataclass(frozen=True)
class SimilarCorpus:
    """A known corpus close to a query."""

    corpus: str
    """Its id."""
    id: SemanticId
    """Its ID."""
    score: float
    """Cosine between the query's vector and the corpus's decoded vector."""
    shared_prefix: int
    """Leading ID components it shares with the query."""


class SemanticEncoder:
    """A trained semantic encoder: words ↔ IDs ↔ vectors, similar corpora, words from IDs."""

    def __init__(self, native: _native.SemanticEncoder) -> None:
        self._native = native
        self._info: dict[str, Any] = json.loads(native.info_json())

    @classmethod
    def load(
        cls,
        path: PathLike,
        device: str = DEFAULTS["device"],
        embedding_model: PathLike | None = None,
    ) -> SemanticEncoder:
        """Load an encoder directory (checksums verified). The embedding model recorded at
        training is opened; ``embedding_model`` gives another directory of the same model (a
        different model is refused)."""
        model = None if embedding_model is None else os.fspath(embedding_model)
        return cls(_native.SemanticEncoder.load(os.fspath(path), device, model))

    @property
    def codebook_sizes(self) -> list[int]:
        """Codes per ID component."""
        return list(self._info["codebook_sizes"])

    @property
    def embedding_model(self) -> str:
        """The embedding model's id it was trained on."""
        return str(self._info["embedding_model"])

    @property
    def ids(self) -> dict[str, SemanticId]:
        """Corpus id → ID of the corpora it was trained on."""
        return {k: tuple(v) for k, v in json.loads(self._native.ids_json()).items()}

    @property
    def corpora(self) -> Corpora:
        """The corpora it was trained on."""
        return Corpora(self._native.corpora_json())

    def encode(self, words: str | Sequence[str] | npt.ArrayLike) -> SemanticId:
        """The ID of words (a list), a text (a string) or a corpus vector (a float array)."""
        if isinstance(words, str):
            return tuple(self._native.encode_text(words))
        if isinstance(words, np.ndarray):
            return tuple(self._native.encode_vector(np.ascontiguousarray(words, np.float32)))
        return tuple(self._native.encode_words([str(w) for w in words]))  # type: ignore[union-attr]

    def decode(self, id: Sequence[int]) -> npt.NDArray[np.float32]:
        """The normalized embedding-space vector of an ID (codebook lookup + decoder)."""
        return self._native.decode([int(x) for x in id])

    def similar(
        self,
        query: Sequence[int] | Sequence[str],
        k: int = default("semantic.similar", "k"),
    ) -> list[SimilarCorpus]:
        """The ``k`` known corpora closest to an ID or to words."""
        words = [x for x in query if isinstance(x, str)]
        if words and len(words) == len(query):
            text = self._native.similar_words(words, k)
        else:
            text = self._native.similar([int(x) for x in query if not isinstance(x, str)], k)
        return [
            SimilarCorpus(h["corpus"], tuple(h["id"]), h["score"], h["shared_prefix"])
            for h in json.loads(text)
        ]

    def labels(self, id: Sequence[int]) -> dict[str, str]:
        """Style, complexity and era read back from an ID by the supervised heads."""
        out: dict[str, str] = json.loads(self._native.labels([int(x) for x in id]))
        return out

    def collisions(self) -> dict[str, Any]:
        """Exact collisions and per-level prefix occupancy of the known IDs."""
        out: dict[str, Any] = json.loads(self._native.collisions())
        return out

    def generate_words(
        self,
        id: Sequence[int],
        n: int = default("semantic.generate", "n"),
        seed: int = default("semantic.generate", "seed"),
    ) -> list[str]:
        """Up to ``n`` distinct words for an ID from the word generator
        (:func:`build_guided_generator` or :func:`train_generator`); the same seed gives the
        same words."""
        return self._native.generate_words([int(x) for x in id], n, seed)

    def __repr__(self) -> str:
        q = self._info["quantizer"]["type"]
        return (
            f"SemanticEncoder({self._info['path']!r}, quantizer={q}, "
            f"codebooks={self.codebook_sizes}, input_dim={self._info['input_dim']}, "
            f"corpora={self._info['corpora']}, device={self._info['device']})"
        )
