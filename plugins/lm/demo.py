"""``audit-sdk demo --lm``: a tiny GPT on standard-library docstrings, with canaries, with and without DP-SGD.

Everything is embedded (no download): the text is the docstrings of standard-library modules cut
into 64-character chunks; members are the chunks the model trains on, non-members and the
population are other chunks of the same text. Canaries of the form ``"my secret code is
DDDDDD"`` (|R| = 10^6) are inserted into the training text, each repeated; control canaries of the
same format are never inserted and show the exposure of a secret the model did not see.

For each model (non-private, DP-SGD at epsilon 8): train (``LMTrainer``), export to ONNX, audit
the ONNX file with every language-model attack, measure each canary's exposure, and write one
HTML report (plus report.json per model) into the output directory.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from audit_sdk import hookimpl

__all__ = ["run_lm_demo"]

#: attacks the demo runs, with options that keep it to about a minute on two cores
DEMO_ATTACKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mia.lm-loss", {}),
    ("mia.lm-zlib", {}),
    ("mia.min-k", {}),
    ("mia.min-k-plus-plus", {}),
    ("mia.lm-reference", {"epochs": 8, "n_layers": 1}),
    ("mia.lm-quantile", {}),
    ("mia.lm-blind", {}),
)


def _exposure_section(label: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    body = "".join(
        f"<tr><td><code>{html.escape(r['canary'])}</code></td><td>{'inserted x' + str(r['repeats']) if r['repeats'] else 'control (never inserted)'}</td>"
        f"<td>{r['exposure']:.2f}</td><td>{r['method']}</td></tr>"
        for r in rows
    )
    R = rows[0]["space_size"] if rows else 0
    note = (
        f"Exposure = log2|R| - log2 rank of the canary's log-perplexity among all {R:,} secrets of its format "
        f"(max {np.log2(max(R, 1)):.1f} bits; a secret the model never saw scores about 1-2). Skew-normal fit to sampled candidates "
        "(Carlini et al. 2019)."
    )
    return {
        "title": f"Canary exposure: {label}",
        "html": f"<p>{html.escape(note)}</p><table><tr><th>canary</th><th>in training</th><th>exposure (bits)</th><th>method</th></tr>{body}</table>",
        "data": {"canary_exposure": rows},
    }


def run_lm_demo(
    out: str | Path = "audit-sdk-out/demo-lm",
    *,
    seed: int = 0,
    epochs: int | None = None,
    no_defenses: bool = False,
    quiet: bool = False,
    n_members: int = 300,
    d_model: int = 64,
    n_layers: int = 2,
) -> dict[str, Any]:
    """Run the LM demo and return ``{"reports": [...], "exposure": {label: rows}, "html": path}``."""
    from audit_sdk.adapters.torch.lm import LMTrainer, TinyGPT, export_lm_onnx
    from audit_sdk.data import save_npz
    from audit_sdk.registry import get_registry
    from audit_sdk.report import render_html
    from audit_sdk.run import load_target, run_audit
    from audit_sdk.sequence import SequenceTarget

    from .canary import CanarySpec, exposure, insert_canaries
    from .text import encode_texts, stdlib_corpus, text_audit_data

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    t0 = time.perf_counter()
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    reg = get_registry()
    length, repeats = 64, 10
    chunks = stdlib_corpus(length=length, seed=seed)
    n = n_members
    data = text_audit_data(members=chunks[:n], non_members=chunks[n : 2 * n], population=chunks[2 * n : 3 * n])
    save_npz(data, out / "text.npz")
    spec = CanarySpec()
    secrets = spec.sample(6, rng=seed)
    inserted, controls = secrets[:3], secrets[3:]
    train_ids = encode_texts(insert_canaries(chunks[:n], inserted, repeats=repeats, rng=seed), max_length=length)
    say(f"text: {n} member / {n} non-member / {n} population chunks of {length} characters of standard-library docstrings")
    say(f"canaries: {len(inserted)} inserted x{repeats} (|R| = {spec.space_size:,}), {len(controls)} controls never inserted")
    runs: list[tuple[str, list[Any], dict[str, Any]]] = [("non-private", [], {"lr": 3e-3, "batch_size": 16})]
    if not no_defenses:
        dp = reg.create("defense", "defense.dp-sgd", {"target_epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0})
        runs.append(("dp-sgd eps=8", [dp], {"lr": 1e-2, "batch_size": 32}))
    reports, exposures = [], {}
    for label, defenses, train in runs:
        model = TinyGPT(vocab_size=256, d_model=d_model, n_layers=n_layers, n_heads=4, max_len=length)
        t = time.perf_counter()
        res = LMTrainer({"epochs": epochs or 20, "seed": seed, "device": "cpu", **train}, defenses=defenses).fit(model, train_ids)
        say(f"{label}: trained {res.steps} steps in {time.perf_counter() - t:.1f}s (final loss {res.history[-1]['loss']:.3f})")
        path = export_lm_onnx(res.model, out / "models" / f"{label.split()[0]}.onnx")
        rep = run_audit(str(path), data, attacks=list(DEMO_ATTACKS), rng=seed, registry=reg, privacy=res if defenses else None, label=label)
        target = load_target(str(path), registry=reg)
        assert isinstance(target, SequenceTarget)  # claimed by the LM adapter: the graph is a causal LM
        rows = exposure(target, inserted + controls, spec, rng=seed)
        for r, c in zip(rows, inserted + controls):
            r["repeats"] = repeats if c in inserted else 0
        exposures[label] = rows
        rep.sections.append(_exposure_section(label, rows))
        rep.to_json(out / label.split()[0] / "report.json")
        reports.append(rep)
        mean_in = float(np.mean([r["exposure"] for r in rows if r["repeats"]]))
        say(
            f"{label}: best AUC {max(r.metrics['auc'] for r in rep.results if r.attack != 'mia.lm-blind'):.3f}, mean exposure of inserted canaries {mean_in:.1f} bits"
        )
    page = render_html(reports, out / "report.html", title="audit-sdk demo: a tiny GPT on standard-library docstrings")
    (out / "exposure.json").write_text(json.dumps(exposures, indent=2))
    if not quiet:
        for rep in reports:
            print(f"\n{rep.label}\n{rep.summary()}")
        print(f"\n({time.perf_counter() - t0:.1f}s in all)")
    return {"reports": reports, "exposure": exposures, "html": page}


@hookimpl
def run_demo(kind: str, options: dict[str, Any]) -> int | None:
    if kind != "lm":
        return None
    import torch

    torch.set_num_threads(int(options.get("threads") or 1))
    res = run_lm_demo(
        options.get("out") or "audit-sdk-out/demo-lm",
        seed=int(options.get("seed") or 0),
        epochs=options.get("epochs"),
        no_defenses=bool(options.get("no_defenses")),
        quiet=bool(options.get("quiet")),
    )
    print(f"report: {Path(res['html']).resolve()}")
    return 0
