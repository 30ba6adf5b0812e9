"""The foundation from Python: version, devices, the exception hierarchy, run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import lexforge


def test_version_matches_the_crate() -> None:
    assert lexforge.__version__ == "0.1.0"
    assert lexforge.BURN_VERSION.startswith("0.22.")


def test_import_raises_no_warning() -> None:
    code = "import warnings; warnings.simplefilter('error'); import lexforge; print('ok')"
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"
    assert out.stderr == ""


def test_devices_reports_a_usable_cpu_backend() -> None:
    devs = lexforge.devices()
    names = [d["name"] for d in devs]
    assert names == ["flex", "ndarray", "wgpu", "cuda"]
    flex = devs[0]
    assert flex["compiled"] and flex["usable"] and flex["auto"], flex
    assert "f32" in flex["precisions"]
    for d in devs:
        if not d["compiled"]:
            assert not d["usable"]
            assert d["precisions"] == []
            assert f"`{d['feature']}`" in d["detail"]


def test_resolve_device() -> None:
    assert lexforge.resolve_device("CPU") == "cpu"
    assert lexforge.resolve_device("auto") == "auto"
    with pytest.raises(lexforge.InvalidInputError, match="cuda:N") as info:
        lexforge.resolve_device("gpu")
    assert isinstance(info.value, ValueError)
    with pytest.raises(lexforge.DeviceError, match="not compiled"):
        lexforge.resolve_device("cuda:1")


def test_exception_hierarchy() -> None:
    for cls in (
        lexforge.InvalidInputError,
        lexforge.DeviceError,
        lexforge.ArtifactError,
        lexforge.LexforgeIOError,
        lexforge.LexforgeNotFoundError,
        lexforge.CancelledError,
    ):
        assert issubclass(cls, lexforge.LexforgeError)
    assert issubclass(lexforge.LexforgeNotFoundError, FileNotFoundError)
    assert issubclass(lexforge.LexforgeIOError, OSError)
    assert issubclass(lexforge.InvalidInputError, ValueError)


def test_run_dir_round_trip(tmp_path: Path) -> None:
    files = {"model.safetensors": b"\x00" * 100, "eval/metrics.json": b'{"loss": 1.0}'}
    path = lexforge.write_run_dir(tmp_path, "r1", "test", files, config={"seed": 3})
    assert path == os.fspath(tmp_path / "r1")
    manifest = lexforge.verify_run_dir(path)
    assert manifest["status"] == "completed"
    assert manifest["config"] == {"seed": 3}
    assert manifest["artifacts"]["model.safetensors"]["bytes"] == 100
    assert set(manifest["artifacts"]) == set(files)


def test_damaged_run_dir_is_an_artifact_error(tmp_path: Path) -> None:
    path = Path(lexforge.write_run_dir(tmp_path, "r1", "test", {"w.bin": b"abcdef"}))
    (path / "w.bin").write_bytes(b"abc")
    with pytest.raises(lexforge.ArtifactError, match="truncated"):
        lexforge.verify_run_dir(path)
    (path / "w.bin").write_bytes(b"abcdeF")
    with pytest.raises(lexforge.ArtifactError, match="checksum"):
        lexforge.verify_run_dir(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(lexforge.ArtifactError, match="schema version 999"):
        lexforge.verify_run_dir(path)


def test_missing_run_dir_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        lexforge.verify_run_dir(tmp_path / "nope")
    assert isinstance(info.value, lexforge.LexforgeNotFoundError)
    assert "nope" in str(info.value)


@pytest.mark.parametrize("run_id", ["..", "../x", "a/b", ".hidden", ""])
def test_escaping_run_ids_are_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(lexforge.InvalidInputError, match="run id"):
        lexforge.write_run_dir(tmp_path / "root", run_id, "test", {})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["../escape", "/abs", "eval/../../x", "a\\b"])
def test_escaping_artifact_names_are_refused_and_leave_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(lexforge.InvalidInputError, match="artifact path"):
        lexforge.write_run_dir(tmp_path, "r1", "test", {"ok.txt": b"1", name: b"2"})
    # The staged directory was removed: nothing partial is left behind.
    assert list(tmp_path.iterdir()) == []


def test_no_warnings_in_normal_use(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lexforge.devices()
        lexforge.write_run_dir(tmp_path, "r", "t", {"a": b"1"})


_PRECISION_CHILD = """
import json, sys
import numpy as np
import lexforge
from lexforge import SentenceEncoder
texts = ["It was the best of times.", "Call me Ishmael.", "The rain in Spain."]
precision = sys.argv[1]
if precision != "late":
    print(json.dumps({"precision": lexforge.configure_device("cpu", precision)}))
enc = SentenceEncoder.load(lexforge.encoder.minilm_path())
vectors = np.asarray(enc.encode(texts), dtype=np.float32)
if precision == "late":
    try:
        lexforge.configure_device("cpu", "bf16")
        print(json.dumps({"late": "accepted"}))
    except lexforge.DeviceError as e:
        print(json.dumps({"late": "DeviceError", "message": str(e)}))
np.save(sys.argv[2], vectors)
"""


@pytest.mark.parametrize("precision", ["f32", "bf16", "f16"])
def test_configure_device_precision_changes_what_the_encoder_computes_in(
    tmp_path: Path, precision: str
) -> None:
    # A device's precision is fixed per process: each precision runs in a fresh interpreter.
    out = tmp_path / f"{precision}.npy"
    ref = tmp_path / "ref.npy"
    for p, path in ((precision, out), ("f32", ref)):
        run = subprocess.run(
            [sys.executable, "-c", _PRECISION_CHILD, p, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(run.stdout.splitlines()[0]) == {"precision": p}
    got, want = np.load(out), np.load(ref)
    cosine = (got * want).sum(axis=1)
    if precision == "f32":
        np.testing.assert_array_equal(got, want)
    else:
        # Reduced precision changes the numbers a little, not the meaning.
        assert got.tolist() != want.tolist()
        assert cosine.min() > 0.999, cosine


def test_configure_device_rejects_unknown_and_late_precisions(tmp_path: Path) -> None:
    with pytest.raises(lexforge.InvalidInputError, match="f8"):
        lexforge.configure_device("cpu", "f8")
    run = subprocess.run(
        [sys.executable, "-c", _PRECISION_CHILD, "late", str(tmp_path / "v.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    late = json.loads(run.stdout.splitlines()[0])
    assert late["late"] == "DeviceError", late
