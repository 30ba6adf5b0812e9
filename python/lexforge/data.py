"""Book data preparation: raw books to deduplicated, split pair datasets with hard negatives.

The pipeline (Rust, ``lexforge_data``): stage A per book — standardize (Unicode NFKC,
Project Gutenberg boilerplate removal) → sentences → chunks → sentence embeddings, MinHash
signatures and the book's centroid; stage B over all books — cross-book dedup (exact + MinHash
LSH) → topics (k-means) → splits by book → neighbour books (blocked top-K over centroids) →
pairs.

>>> standardize("\\ufeffOne\\r\\ntwo  three")
'One\\ntwo three'
>>> split_sentences('Mr. Bennet came. "Oh!" said she. It rained.')
['Mr. Bennet came.', '"Oh!" said she.', 'It rained.']

Stage A (the heavy part: the encoder runs there) can run in shards on any worker pool, then
stage B merges them without an encoder, in memory that grows with the books, not the chunks::

    import dask.distributed, lexforge.data as ld
    with dask.distributed.LocalCluster(n_workers=2) as cluster, cluster.get_client() as client:
        shards = client.gather(client.map(
            lambda i: ld.prepare_shard("books/", f"shards/{i}", index=i, count=4, seed=1),
            range(4)))
    ld.merge_shards(shards, "dataset/", seed=1)

or with Ray: ``ray.get([ray.remote(ld.prepare_shard).remote(...) for i in range(4)])``. The
merged dataset is identical to ``prepare("books/", "dataset/", seed=1)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from lexforge import _native
from lexforge._defaults import DEFAULTS
from lexforge._jobs import Progress, from_fields, run_job
from lexforge._params import apply_params, flat_places
from lexforge.encoder import SentenceEncoder

__all__ = [
    "Chunk",
    "PrepareSummary",
    "chunk",
    "default_config",
    "load_dataset",
    "merge_shards",
    "prepare",
    "prepare_shard",
    "read_shard",
    "sentence_spans",
    "split_path",
    "split_sentences",
    "standardize",
]

PathLike = Union[str, "os.PathLike[str]"]
Event = dict[str, Any]


def default_config() -> dict[str, Any]:
    """The default parameters as the nested dict the pipeline reads (``PrepareConfig``)."""
    config: dict[str, Any] = json.loads(_native.data_default_config())
    return config


def _config(params: dict[str, Any], config: Mapping[str, Any] | None) -> str:
    return json.dumps(apply_params(params, flat_places(default_config()), config or {}))


def standardize(
    text: str,
    *,
    normalization: str = "nfkc",
    strip_boilerplate: bool = True,
    clean_whitespace: bool = True,
) -> str:
    """Clean a book's text: BOM and CRLF, Project Gutenberg header/footer/licence removal,
    Unicode normalization (``"nfkc"``, ``"nfc"`` or ``"none"``), whitespace cleanup."""
    config = {
        "normalization": normalization,
        "strip_boilerplate": strip_boilerplate,
        "clean_whitespace": clean_whitespace,
    }
    out, _report = _native.data_standardize(text, json.dumps(config))
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` string indices of each sentence of ``text`` (rule-based English
    splitter: abbreviations, initials, decimals, ellipses, quotes and dialogue)."""
    return _native.data_sentence_spans(text)


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[s:e] for s, e in _native.data_sentence_spans(text)]


@dataclass(frozen=True)
class Chunk:
    """A window of consecutive sentences of one book."""

    book: str
    """The book id."""
    index: int
    """Position among the book's windows (stable across filtering and sampling)."""
    start: int
    """First character in the standardized text (a Python string index)."""
    end: int
    """One past the last character: ``text == standardized[start:end]``."""
    text: str
    """The chunk's text."""


def chunk(
    text: str,
    *,
    book: str = "book",
    chunk_size: int = 5,
    overlap: int = 1,
    min_chars: int = 200,
    english_filter: bool = True,
    max_chunks_per_book: int | None = 200,
    seed: int = 0,
) -> list[Chunk]:
    """Chunks of an already standardized ``text``: windows of ``chunk_size`` sentences that
    advance by ``chunk_size - overlap``, at least ``min_chars`` long, English-looking, at most
    ``max_chunks_per_book`` (a seeded sample, kept in text order)."""
    config = {
        "chunk_size": chunk_size,
        "overlap": overlap,
        "min_chars": min_chars,
        "english_filter": english_filter,
        "max_chunks_per_book": max_chunks_per_book,
    }
    rows = json.loads(_native.data_chunk(text, book, json.dumps(config), seed))
    return [from_fields(Chunk, r) for r in rows]


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare` or :func:`merge_shards` wrote."""

    path: Path
    """The dataset directory (``train``, ``validation`` and ``test`` pair files, ``.jsonl`` or
    ``.parquet``; ``chunks.jsonl``, ``books.jsonl``, ``report.json``, ``manifest.json``)."""
    books: dict[str, int]
    """Books per split."""
    pairs: dict[str, dict[str, int]]
    """Per split: ``positive``, ``hard``, ``random``, ``hard_fallbacks``, ``same_topic``."""
    chunks: int
    """Chunks used."""
    dedup: dict[str, Any]
    """What deduplication removed (counts and examples)."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Books left out, with the reason."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""

    def split_path(self, split: str) -> Path:
        """The pair file of ``split`` (``"train"``, ``"validation"`` or ``"test"``):
        ``{split}.parquet`` when the dataset was prepared with ``format="parquet"``, else
        ``{split}.jsonl``."""
        return split_path(self.path, split)


#: The pair splits of a prepared dataset, in ``datasets``' names.
SPLITS = ("train", "validation", "test")


def split_path(dataset_dir: PathLike, split: str) -> Path:
    """The pair file of ``split`` in a prepared dataset directory (``.parquet`` or
    ``.jsonl``, whichever it holds). Raises :class:`FileNotFoundError` naming both when
    neither is there."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    base = Path(dataset_dir)
    for ext in ("parquet", "jsonl"):
        path = base / f"{split}.{ext}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {split}.parquet or {split}.jsonl in {base}")


def load_dataset(dataset_dir: PathLike) -> Any:
    """A prepared dataset's pairs as a ``datasets.DatasetDict`` with ``train``,
    ``validation`` and ``test`` splits (columns ``text1``, ``text2``, ``label``, ``book1``,
    ``book2``, ``pair_type``, ``neg_type``, ``topic1``, ``topic2``, ``same_topic``, ``chunk1``,
    ``chunk2``), read from the local files only: Parquet as written, JSON Lines with the same
    typed features. Needs the ``datasets`` extra (``pip install "lexforge[datasets]"``)::

        pairs = load_dataset("runs/dataset")
        pairs["train"].to_pandas().groupby("pair_type").size()
    """
    try:
        import datasets  # type: ignore[import-untyped]
    except ImportError as e:
        raise ImportError(
            'load_dataset needs Hugging Face datasets: pip install "lexforge[datasets]"'
        ) from e
    files = {split: os.fspath(split_path(dataset_dir, split)) for split in SPLITS}
    kinds = {Path(f).suffix for f in files.values()}
    if len(kinds) != 1:
        raise ValueError(f"{dataset_dir}: the splits mix pair formats ({sorted(kinds)})")
    features = datasets.Features(
        {
            "text1": datasets.Value("string"),
            "text2": datasets.Value("string"),
            "label": datasets.Value("uint8"),
            "book1": datasets.Value("string"),
            "book2": datasets.Value("string"),
            "pair_type": datasets.Value("string"),
            "neg_type": datasets.Value("string"),
            "topic1": datasets.Value("uint32"),
            "topic2": datasets.Value("uint32"),
            "same_topic": datasets.Value("bool"),
            "chunk1": datasets.Value("uint32"),
            "chunk2": datasets.Value("uint32"),
        }
    )
    builder = "parquet" if kinds == {".parquet"} else "json"
    return datasets.load_dataset(builder, data_files=files, features=features)


def _run(
    fn: Callable[[Callable[[Event], None] | None], tuple[str, bool]],
    progress: bool,
    callback: Callable[[Event], None] | None,
) -> PrepareSummary:
    return run_job(
        fn,
        progress=Progress(unit="chunk", desc="prepare", before_start=("book", "chunk"))
        if progress
        else False,
        callback=callback,
        interrupted=lambda _: "interrupted",
        result=lambda d: from_fields(PrepareSummary, d),
    )


def _encoder_arg(encoder: SentenceEncoder | PathLike | None) -> Any:
    if encoder is None:
        from lexforge.encoder import minilm_path

        return os.fspath(minilm_path())
    if isinstance(encoder, SentenceEncoder):
        return encoder._native
    return os.fspath(encoder)


def prepare(
    books_dir: PathLike,
    out_dir: PathLike,
    *,
    encoder: SentenceEncoder | PathLike | None = None,
    device: str = DEFAULTS["device"],
    metadata: PathLike | None = None,
    decoding: str = "strict",
    max_seq_length: int | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
    **params: Any,
) -> PrepareSummary:
    """Prepare a pair dataset from a directory of ``{author}/{title}.txt`` books.

    ``encoder`` is a :class:`~lexforge.SentenceEncoder`, a model directory, or ``None`` for the
    installed all-MiniLM-L6-v2. ``metadata`` is a CSV (``path`` or ``id`` column, plus
    ``author``, ``title``, ...). ``decoding`` (``"strict"``, ``"latin1"``, ``"lossy"``) says
    how non-UTF-8 files are read; strict skips and reports them. Parameters come from
    ``config`` (the nested dict of :func:`default_config`) and keyword arguments such as
    ``seed``, ``chunk_size``, ``overlap``, ``min_chars``, ``max_chunks_per_book``,
    ``num_chunks_for_embed``, ``top_k``, ``exclude_same_author``, ``topics_k``,
    ``pairs_per_book``, ``positive_fraction``, ``hard_negative_fraction``,
    ``validation_fraction``, ``test_fraction``, ``jaccard_threshold``, and ``format``
    (``"jsonl"``, the default, or ``"parquet"`` for typed pair files that pandas, polars and
    :func:`load_dataset` read). Unknown names raise
    ``TypeError``. Ctrl-C stops the run cleanly (nothing is left behind) and raises
    :class:`~lexforge.Interrupted`.
    """
    cfg = _config(params, config)
    enc = _encoder_arg(encoder)
    return _run(
        lambda cb: _native.data_prepare(
            os.fspath(books_dir),
            os.fspath(out_dir),
            cfg,
            enc,
            device=device,
            metadata=None if metadata is None else os.fspath(metadata),
            decoding=decoding,
            max_seq_length=max_seq_length,
            callback=cb,
        ),
        progress,
        callback,
    )


def prepare_shard(
    books_dir: PathLike,
    out_dir: PathLike,
    *,
    index: int,
    count: int,
    encoder: SentenceEncoder | PathLike | None = None,
    device: str = DEFAULTS["device"],
    metadata: PathLike | None = None,
    decoding: str = "strict",
    max_seq_length: int | None = None,
    config: Mapping[str, Any] | None = None,
    callback: Callable[[Event], None] | None = None,
    **params: Any,
) -> str:
    """Stage A on shard ``index`` of ``count`` (the files at positions ``index``,
    ``index + count``, ... of the sorted list): standardize and chunk them, embed every chunk
    with ``encoder`` (as in :func:`prepare`), compute MinHash signatures and each book's
    centroid, and write the shard directory ``out_dir``. Returns its path. Safe to call from
    worker processes (Dask, Ray, multiprocessing): give each worker its own shard."""
    cfg = _config(params, config)
    enc = _encoder_arg(encoder)
    return run_job(
        lambda cb: _native.data_prepare_shard(
            os.fspath(books_dir),
            os.fspath(out_dir),
            index,
            count,
            cfg,
            enc,
            device=device,
            metadata=None if metadata is None else os.fspath(metadata),
            decoding=decoding,
            max_seq_length=max_seq_length,
            callback=cb,
        ),
        progress=False,
        callback=callback,
        interrupted=lambda _: "interrupted",
        result=lambda d: str(d["path"]),
    )


def read_shard(
    shard_dir: PathLike, *, config: Mapping[str, Any] | None = None, **params: Any
) -> dict[str, Any]:
    """Verify a shard directory as :func:`merge_shards` would (every checksum, the layout,
    the stage-A parameters) and say what it holds: ``path``, ``part`` (``index``, ``count``),
    ``model_id``, ``dim``, ``books``, ``chunks``, ``skipped``."""
    info: dict[str, Any] = json.loads(
        _native.data_read_shard(os.fspath(shard_dir), _config(params, config))
    )
    return info


def merge_shards(
    shard_dirs: Sequence[PathLike],
    out_dir: PathLike,
    *,
    device: str = DEFAULTS["device"],
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
    **params: Any,
) -> PrepareSummary:
    """Stage B: verify the complete set of shards (checksums, same stage-A parameters and
    encoder, every part once, no book twice), then dedup, cluster topics, mine neighbours over
    the book centroids, pair and write the dataset, as :func:`prepare` does. Never loads an
    encoder: the shards carry the vectors."""
    cfg = _config(params, config)
    dirs = [os.fspath(d) for d in shard_dirs]
    return _run(
        lambda cb: _native.data_merge_shards(
            dirs,
            os.fspath(out_dir),
            cfg,
            device=device,
            callback=cb,
        ),
        progress,
        callback,
    )
