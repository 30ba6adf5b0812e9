# Type stubs of the native extension module (checked by mypy.stubtest in CI).

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "BURN_VERSION",
    "api_defaults",
    "devices",
    "resolve_device",
    "configure_device",
    "verify_run_dir",
    "write_run_dir",
    "config_normalize",
    "config_to_toml",
    "config_from_toml",
    "flush_logs",
    "close_logs",
    "set_num_threads",
    "get_num_threads",
    "Tokenizer",
    "LanguageModel",
    "SentenceEncoder",
    "find_minilm",
    "lm_train",
    "lm_resume",
    "lm_evaluate",
    "data_standardize",
    "data_sentence_spans",
    "data_chunk",
    "data_prepare",
    "data_prepare_shard",
    "data_read_shard",
    "data_merge_shards",
    "data_default_config",
    "Library",
    "Matcher",
    "matcher_train",
    "matcher_resume",
    "matcher_pipeline",
    "matcher_default_config",
    "matcher_default_pipeline_config",
    "SemanticEncoder",
    "semantic_book_corpora",
    "semantic_generated_corpora",
    "semantic_load_corpora",
    "semantic_save_corpora",
    "semantic_default_config",
    "semantic_default_generator_config",
    "semantic_train",
    "semantic_resume",
    "semantic_pipeline",
    "semantic_quantizer_preset",
    "semantic_default_pipeline_config",
    "semantic_train_generator",
    "semantic_default_guided_config",
    "semantic_build_guided",
]

__version__: str
BURN_VERSION: str

def api_defaults() -> str: ...
def devices() -> list[dict[str, Any]]: ...
def resolve_device(spec: str) -> str: ...
def configure_device(spec: str, precision: str) -> str: ...
def verify_run_dir(run_dir: str | os.PathLike[str]) -> str: ...
def config_normalize(kind: str, json: str) -> str: ...
def config_to_toml(kind: str, json: str) -> str: ...
def config_from_toml(kind: str, text: str) -> str: ...
def flush_logs(timeout_s: float = 1.0) -> bool: ...
def close_logs() -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def write_run_dir(
    root: str | os.PathLike[str],
    run_id: str,
    kind: str,
    files: list[tuple[str, bytes]],
    config_json: str | None = None,
) -> Path: ...

@final
class Tokenizer:
    @staticmethod
    def train(
        paths: list[str],
        texts: list[str] | None,
        method: str,
        vocab_size: int,
        min_frequency: int | None,
        normalization: str | None,
        lowercase: bool | None,
        special_tokens: list[str] | None,
        byte_fallback: bool | None,
        holdout: float,
        seed: int,
        threads: int | None,
        progress: bool,
        callback: Callable[[dict[str, Any]], object] | None,
    ) -> Tokenizer: ...
    @staticmethod
    def load(path: str) -> Tokenizer: ...
    def save(self, path: str) -> Path: ...
    def encode(self, text: str, add_special_tokens: bool) -> list[int]: ...
    def encode_with_offsets(
        self, text: str, add_special_tokens: bool
    ) -> tuple[list[int], list[tuple[int, int]]]: ...
    def encode_batch(
        self, texts: list[str], add_special_tokens: bool, as_numpy: bool
    ) -> list[list[int]] | list[npt.NDArray[np.uint32]]: ...
    def encode_batch_flat(
        self, texts: list[str], add_special_tokens: bool
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool) -> str: ...
    def decode_batch(self, ids: list[list[int]], skip_special_tokens: bool) -> list[str]: ...
    def evaluate_json(self, texts: list[str]) -> str: ...
    def info_json(self) -> str: ...
    def to_json(self) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def method(self) -> str | None: ...
    def token_to_id(self, token: str) -> int | None: ...
    def id_to_token(self, id: int) -> str | None: ...

def lm_train(
    config_json: str,
    run_dir: str | os.PathLike[str],
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[str, bool]: ...
def lm_resume(
    run_dir: str | os.PathLike[str],
    max_steps: int | None = None,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[str, bool]: ...
def lm_evaluate(
    run_dir: str | os.PathLike[str], device: str = "cpu", precision: str | None = None
) -> str: ...

@final
class LanguageModel:
    @staticmethod
    def load(
        path: str | os.PathLike[str], device: str = "cpu", precision: str | None = None
    ) -> LanguageModel: ...
    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        stop_on_eos: bool,
        stop_sequences: list[str],
        seed: int,
        num_return_sequences: int,
    ) -> str: ...
    def score(self, text: str, top_k: int) -> str: ...
    def evaluate(self, texts: list[str]) -> str: ...
    def info_json(self) -> str: ...
    def encode(self, text: str) -> list[int]: ...

@final
class SentenceEncoder:
    @staticmethod
    def load(
        path: str | os.PathLike[str],
        device: str = "cpu",
        pooling: str | None = None,
        truncate_dim: int | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> SentenceEncoder: ...
    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        progress: Callable[[int, int], object] | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def cache_stats(self) -> tuple[int, int] | None: ...
    def tokenize(self, texts: list[str]) -> list[list[int]]: ...
    def info_json(self) -> str: ...

def find_minilm() -> Path | None: ...
def data_standardize(text: str, config_json: str = "{}") -> tuple[str, str]: ...
def data_sentence_spans(text: str) -> list[tuple[int, int]]: ...
def data_chunk(text: str, book: str, config_json: str, seed: int) -> str: ...
def data_prepare(
    books_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config_json: str,
    encoder: SentenceEncoder | str | os.PathLike[str],
    device: str = "cpu",
    metadata: str | os.PathLike[str] | None = None,
    decoding: str = "strict",
    max_seq_length: int | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def data_prepare_shard(
    books_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    index: int,
    count: int,
    config_json: str,
    encoder: SentenceEncoder | str | os.PathLike[str],
    device: str = "cpu",
    metadata: str | os.PathLike[str] | None = None,
    decoding: str = "strict",
    max_seq_length: int | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def data_read_shard(shard_dir: str | os.PathLike[str], config_json: str) -> str: ...
def data_merge_shards(
    shard_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config_json: str,
    device: str = "cpu",
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def data_default_config() -> str: ...

@final
class Library:
    @property
    def books(self) -> list[str]: ...
    @property
    def model_id(self) -> str: ...
    def __len__(self) -> int: ...

@final
class Matcher:
    @staticmethod
    def load(
        path: str | os.PathLike[str], device: str = "cpu", precision: str | None = None
    ) -> Matcher: ...
    def score_many(self, pairs: list[tuple[str, str]], batch_size: int) -> str: ...
    def style_similarity(self, text1: str, text2: str) -> float: ...
    def truncated(self, text: str) -> bool: ...
    def embed(self, texts: list[str], batch_size: int) -> npt.NDArray[np.float32]: ...
    def library(self, books: list[tuple[str, list[str]]], batch_size: int) -> Library: ...
    def library_of_dataset(
        self, dataset_dir: str | os.PathLike[str], split: str | None, batch_size: int
    ) -> Library: ...
    def search(
        self,
        passage: str,
        library: Library,
        k: int,
        rerank: bool | None,
        prefilter: int,
        passages_per_book: int,
    ) -> str: ...
    def evaluate(self, dataset_dir: str | os.PathLike[str], split: str, batch_size: int) -> str: ...
    def calibrate(
        self,
        dataset_dir: str | os.PathLike[str],
        split: str,
        metric: str,
        batch_size: int,
    ) -> str: ...
    def info_json(self) -> str: ...

def matcher_train(
    dataset_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config_json: str,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def matcher_resume(
    run_dir: str | os.PathLike[str],
    max_steps: int | None = None,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def matcher_pipeline(
    books_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config_json: str,
    metadata: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def matcher_default_pipeline_config() -> str: ...
def matcher_default_config() -> str: ...
def semantic_book_corpora(
    books_dir: str | os.PathLike[str],
    metadata: str | os.PathLike[str],
    words_per_corpus: int,
    config_json: str,
    wordfreq: str | os.PathLike[str] | None = None,
    corpus_frequencies: bool = False,
) -> str: ...
def semantic_generated_corpora(
    generator: Callable[[dict[str, Any], int], list[str]],
    name: str,
    plan_json: str,
    words_per_corpus: int,
) -> str: ...
def semantic_load_corpora(path: str | os.PathLike[str]) -> str: ...
def semantic_save_corpora(corpora_json: str, path: str | os.PathLike[str]) -> None: ...
def semantic_default_config() -> str: ...
def semantic_default_generator_config() -> str: ...
def semantic_train(
    corpora_json: str,
    run_dir: str | os.PathLike[str],
    config_json: str,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def semantic_resume(
    run_dir: str | os.PathLike[str],
    max_steps: int | None = None,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def semantic_quantizer_preset(name: str) -> str: ...
def semantic_default_pipeline_config() -> str: ...
def semantic_pipeline(
    books_dir: str | os.PathLike[str],
    metadata: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config_json: str,
    generator: str | None = None,
    base_lm: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def semantic_train_generator(
    encoder_dir: str | os.PathLike[str],
    base_lm: str | os.PathLike[str],
    config_json: str,
    device: str = "cpu",
    precision: str | None = None,
    callback: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[str, bool]: ...
def semantic_default_guided_config() -> str: ...
def semantic_build_guided(
    encoder_dir: str | os.PathLike[str],
    config_json: str,
    device: str = "cpu",
    wordfreq: str | os.PathLike[str] | None = None,
    corpus_frequencies: bool = False,
) -> str: ...

@final
class SemanticEncoder:
    @staticmethod
    def load(
        path: str | os.PathLike[str],
        device: str = "cpu",
        embedding_model: str | os.PathLike[str] | None = None,
    ) -> SemanticEncoder: ...
    def encode_words(self, words: list[str]) -> list[int]: ...
    def encode_text(self, text: str) -> list[int]: ...
    def encode_vector(self, vector: npt.NDArray[np.float32]) -> list[int]: ...
    def decode(self, id: list[int]) -> npt.NDArray[np.float32]: ...
    def similar(self, id: list[int], k: int) -> str: ...
    def similar_words(self, words: list[str], k: int) -> str: ...
    def labels(self, id: list[int]) -> str: ...
    def collisions(self) -> str: ...
    def ids_json(self) -> str: ...
    def corpora_json(self) -> str: ...
    def generate_words(self, id: list[int], n: int, seed: int) -> list[str]: ...
    def info_json(self) -> str: ...
