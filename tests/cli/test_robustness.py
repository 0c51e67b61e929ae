"""A matrix of bad inputs per command: each ends with the promised exit code, one line, no traceback.

Exit 2 for anything the user typed or supplied (before any work starts), never 3; no exit 0 with a
wrong answer.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audit_sdk.cli import main


def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _sets(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "x_members": x[:300],
        "y_members": y[:300],
        "x_non_members": x[300:600],
        "y_non_members": y[300:600],
        "x_population": x[600:1000],
        "y_population": y[600:1000],
    }


def _truncate_member(src: Path, dst: Path, member: str) -> Path:
    """Rewrite an npz with one member cut short (a valid zip whose .npy lies about its length)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, data[: len(data) // 2] if info.filename == member + ".npy" else data)
    return dst


def _bomb(dst: Path) -> Path:
    """A small file whose members decompress to far more than the cap the test sets (64 KiB)."""
    x = np.zeros((2000, 64), np.float32)
    np.savez_compressed(dst, x_members=x, y_members=np.zeros(2000, int), x_non_members=x + 1, y_non_members=np.zeros(2000, int))
    return dst


BAD_DATA = {
    # name: (builder(x, y, tmp) -> path, words the one line must contain)
    "missing-keys": (lambda x, y, t: _npz(t / "d.npz", x_members=x[:10], y_members=y[:10]), "missing keys"),
    "string-features": (
        lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_members": np.full((300, 64), "a")}),
        "features have dtype",
    ),
    "nan": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_members": np.where(x[:300] > 0.9, np.nan, x[:300])}), "NaN"),
    "inf": (
        lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_non_members": np.where(x[300:600] > 0.9, np.inf, x[300:600])}),
        "NaN or inf",
    ),
    "float-labels": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "y_members": y[:300] + 0.5}), "non-integer"),
    "negative-label": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "y_non_members": -y[300:600] - 1}), "negative"),
    "member-label-out-of-range": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "y_members": y[:300] + 10}), "10 classes"),
    "population-label-out-of-range": (
        lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "y_population": np.r_[y[600:999], 10]}),
        "population has 1 label",
    ),
    "empty-set": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_non_members": x[:0], "y_non_members": y[:0]}), "empty"),
    "wrong-shape": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_members": x[:300, :32]}), "shapes differ"),
    "label-count": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "y_members": y[:299]}), "labels"),
    "overlap-same-dtype": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_non_members": x[:300]}), "both members and non-members"),
    "overlap-other-dtype": (
        lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_non_members": np.r_[x[300:599], x[:1]].astype(np.float64)}),
        "both members and non-members",
    ),
    "overlap-negative-zero": (
        lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_members": np.r_[np.where(x[300:301] == 0, -0.0, x[300:301]), x[1:300]]}),
        "both members and non-members",
    ),
    "population-overlaps-members": (
        lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "x_population": np.r_[x[600:999], x[:1]]}),
        "population and the members",
    ),
    "population-without-labels": (
        lambda x, y, t: _npz(t / "d.npz", **{k: v for k, v in _sets(x, y).items() if k != "y_population"}),
        "y_population",
    ),
    "not-a-zip": (lambda x, y, t: (t / "d.npz").write_bytes(b"\x00garbage" * 100) and t / "d.npz", "not a readable .npz"),
    "empty-file": (lambda x, y, t: (t / "d.npz").write_bytes(b"") or t / "d.npz", "not a readable .npz"),
    "truncated-member": (
        lambda x, y, t: _truncate_member(_npz(t / "ok.npz", **_sets(x, y)), t / "d.npz", "x_members"),
        "truncated or corrupt",
    ),
    "object-arrays": (
        lambda x, y, t: (np.savez(t / "d.npz", **{**_sets(x, y), "x_members": np.array([{"a": 1}] * 300)}), t / "d.npz")[1],
        "object arrays",
    ),
    "decompression-bomb": (lambda x, y, t: _bomb(t / "d.npz"), "AUDIT_SDK_MAX_DATA_BYTES"),
    "missing-file": (lambda x, y, t: t / "nowhere.npz", "does not exist"),
    "image-labels-2d": (lambda x, y, t: _npz(t / "d.npz", **{**_sets(x, y), "y_members": np.c_[y[:300], y[:300]]}), "1-D"),
}


def _one_line(capsys: Any, code: int, expected: int = 2) -> str:
    out = capsys.readouterr()
    assert code == expected, out.err
    assert "Traceback" not in out.err and "internal error" not in out.err
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("audit-sdk"), out.err
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_audit_bad_data(case, tiny_onnx, tiny_digits, tmp_path, capsys, monkeypatch):
    build, words = BAD_DATA[case]
    x, y = tiny_digits
    path = build(x, y, tmp_path)
    monkeypatch.setenv("AUDIT_SDK_MAX_DATA_BYTES", str(64 * 1024 if case == "decompression-bomb" else 1 << 30))
    out = tmp_path / "out"
    code = main(["audit", str(tiny_onnx), "--data", str(path), "--attacks", "mia.loss-threshold", "--out", str(out)])
    line = _one_line(capsys, code)
    assert words in line, line
    assert not (out / "report.json").exists()  # nothing ran


@pytest.mark.parametrize(
    "case,args,words",
    [
        ("out-is-a-file", ["--out", "{file}"], "is a file"),
        ("out-under-a-file", ["--out", "{file}/sub"], "cannot be created"),
        ("batch-size-0", ["--batch-size", "0"], "--batch-size must be > 0"),
        ("workers-negative", ["--workers", "-1"], "--workers must be >= 0"),
        ("seed-negative", ["--seed", "-3"], "--seed must be >= 0"),
        ("unknown-attack", ["--attacks", "mia.loss-treshold"], "Did you mean"),
        ("bad-param", ["--param", "mia.loss-threshold.calibration=sideways"], "calibration"),
        ("param-syntax", ["--param", "nonsense"], "NAME.KEY=VALUE"),
        ("bad-rule", ["--fail-on", "mia.loss-threshold.auc >> 1"], "rule"),
        ("missing-model", ["--model-path-placeholder"], "does not exist"),
        ("bad-privacy", ["--privacy", "{file}"], "--privacy"),
        ("not-an-int", ["--batch-size", "ten"], "invalid int value"),
    ],
)
def test_audit_bad_options(case, args, words, tiny_onnx, tiny_digits, tmp_path, capsys):
    x, y = tiny_digits
    data = _npz(tmp_path / "d.npz", **_sets(x, y))
    afile = tmp_path / "afile"
    afile.write_text("not json {")
    model = str(tiny_onnx)
    args = [a.replace("{file}", str(afile)) for a in args]
    if args == ["--model-path-placeholder"]:
        model, args = str(tmp_path / "missing.onnx"), []
    base = ["audit", model, "--data", str(data), "--attacks", "mia.loss-threshold", "--out", str(tmp_path / "out")]
    line = _one_line(capsys, main(base + args))
    assert words in line, line


def test_audit_reports_every_problem_at_once(tiny_onnx, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    code = main(
        ["audit", str(tiny_onnx), "--data", str(tmp_path / "none.npz"), "--attacks", "mia.nope", "--batch-size", "0", "--out", str(afile)]
    )
    line = _one_line(capsys, code)
    assert "4 problems" in line and "--batch-size" in line and "does not exist" in line and "mia.nope" in line and "is a file" in line


def test_too_few_samples_warn_instead_of_a_silent_auc(tiny_onnx, tiny_digits, tmp_path, capsys):
    x, y = tiny_digits
    data = _npz(tmp_path / "d.npz", x_members=x[:1], y_members=y[:1], x_non_members=x[300:301], y_non_members=y[300:301])
    code = main(["audit", str(tiny_onnx), "--data", str(data), "--attacks", "mia.loss-threshold", "--out", str(tmp_path / "o"), "-q"])
    out = capsys.readouterr()
    assert code == 0
    assert out.err.count("\n") == 1 and "warning: too few samples to measure" in out.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert any("too few samples" in n for n in report["notes"])


def test_usage_errors_are_one_line(capsys):
    for argv in (["audit", "--bogus"], ["nosuch"], [], ["epsilon", "--steps", "x"], ["config"], ["train", "--epochs"]):
        line = _one_line(capsys, main(argv))
        assert "error" in line and "--help" in line


CONFIGS = {
    "alias-bomb": (
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")),
        ".yaml",
        "expands to more than",
    ),
    "many-aliases": ("a: &a 1\nb: [" + ", ".join(["*a"] * 1000) + "]\n", ".yaml", "aliases"),
    "deep-yaml": ("attacks: " + "[" * 5000 + "]" * 5000 + "\n", ".yaml", "deeper than"),
    "deep-json": ('{"attacks": ' + "[" * 100000 + "]" * 100000 + "}", ".json", "deeper than"),
    "not-utf8": (b"attacks: [mia.loss-threshold]\n# caf\xe9\n", ".yaml", "not UTF-8"),
    "bad-yaml": ("attacks: [unclosed\n", ".yaml", "not valid YAML"),
    "bad-json": ("{", ".json", "not valid JSON"),
    "top-level-list": ("- 1\n- 2\n", ".yaml", "top level must be a mapping"),
    "unknown-attack": ("attacks: [mia.nope]\n", ".yaml", "unknown attack"),
    "huge-value-is-not-echoed": ("seed: '" + "x" * 100000 + "'\n", ".yaml", "seed"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_config_check_bad_files(case, tmp_path, capsys):
    text, suffix, words = CONFIGS[case]
    path = tmp_path / f"c{suffix}"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    line = _one_line(capsys, main(["config", "check", str(path)]))
    assert words in line, line
    assert len(line) < 2000  # the error formatter never prints the (expanded) input


@pytest.mark.parametrize(
    "case,args,words",
    [
        ("negative-label", ["--data", "{neg}"], "negative"),
        ("string-features", ["--data", "{str}"], "features have dtype"),
        ("huge-label", ["--data", "{big}"], "remap"),
        ("lr-negative", ["--lr", "-1"], "--lr must be > 0"),
        ("batch-size-0", ["--batch-size", "0"], "--batch-size must be > 0"),
        ("epochs-0", ["--epochs", "0"], "--epochs must be > 0"),
        ("output-defense", ["--defense", "defense.top-k"], "undefended"),
        ("unknown-defense", ["--defense", "defense.nope"], "unknown defense"),
        ("dp-without-budget", ["--defense", "defense.dp-sgd"], "--target-epsilon or --noise-multiplier"),
        ("unknown-model", ["--model", "resnet"], "--model"),
        ("delta-1", ["--delta", "1", "--target-epsilon", "1"], "--delta"),
        ("out-is-a-file", ["--out", "{file}"], "is a file"),
        ("truncated", ["--data", "{trunc}"], "truncated or corrupt"),
    ],
)
def test_train_bad_input_before_training(case, args, words, tiny_digits, tmp_path, capsys):
    x, y = tiny_digits
    files = {
        "neg": _npz(tmp_path / "neg.npz", x=x[:50], y=np.r_[-1, y[1:50]]),
        "str": _npz(tmp_path / "str.npz", x=np.full((50, 64), "a"), y=y[:50]),
        "big": _npz(tmp_path / "big.npz", x=x[:50], y=np.r_[10**9, y[1:50]]),
        "trunc": _truncate_member(_npz(tmp_path / "ok.npz", x=x[:50], y=y[:50]), tmp_path / "t.npz", "x"),
        "file": tmp_path / "afile",
    }
    files["file"].write_text("")
    args = [a.format(**files) if "{" in a else a for a in args]
    base = ["train", "--data", str(_npz(tmp_path / "ok2.npz", x=x[:50], y=y[:50])), "--model", "mlp"]
    base += ["--defense", "none", "--out", str(tmp_path / "out")]
    line = _one_line(capsys, main(base + args))
    assert words in line, line
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_a_damaged_cached_reference_model_is_retrained(tiny_onnx, tiny_digits, tmp_path, capsys):
    x, y = tiny_digits
    data = _npz(tmp_path / "d.npz", **_sets(x, y))
    argv = ["audit", str(tiny_onnx), "--data", str(data), "--attacks", "mia.lira", "--param", "mia.lira.n_references=2"]
    argv += ["--param", "mia.lira.reference_epochs=1", "--out", str(tmp_path / "o"), "-q", "--no-html"]
    argv += ["--param", "mia.lira.architecture=mlp"]  # named: no surrogate selection, so the cache holds exactly the 2 references
    assert main(argv) == 0
    first = json.loads((tmp_path / "o" / "report.json").read_text())["attacks"][0]
    models = sorted((tmp_path / "o" / "cache" / "mia-reference").glob("*.pt"))
    assert len(models) == 2
    models[0].write_bytes(b"")  # empty, as a full disk or a foreign tool might leave it
    models[1].write_bytes(models[1].read_bytes()[:100])  # truncated
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    again = json.loads((tmp_path / "o" / "report.json").read_text())["attacks"][0]
    assert again["metrics"] == first["metrics"]  # retrained with the same seeds: the same numbers
    notes = json.dumps(again["extra"])
    assert notes.count("could not be loaded") == 2 and "retrained" in notes


@pytest.mark.parametrize("population", [0, 1])
def test_attack_requirements_are_checked_before_any_attack_runs(population, tiny_onnx, tiny_digits, tmp_path, capsys):
    x, y = tiny_digits
    arrays = {k: v for k, v in _sets(x, y).items() if "population" not in k}
    if population:
        arrays |= {"x_population": x[600:601], "y_population": y[600:601]}
    data = _npz(tmp_path / "d.npz", **arrays)
    # offline mode needs a population (online mode trains on halves of the audited points instead)
    argv = ["audit", str(tiny_onnx), "--data", str(data), "--attacks", "mia.loss-threshold,mia.lira,mia.rmia", "--out", str(tmp_path / "o")]
    argv += ["--param", "mia.lira.mode=offline", "--param", "mia.rmia.mode=offline"]
    line = _one_line(capsys, main(argv))
    assert "mia.lira in offline mode trains reference models on population data" in line and "mia.rmia" in line
    assert not (tmp_path / "o" / "report.json").exists()
