"""AuditReport: HTML page (self-contained, every section), verdicts on planted leakage, run_audit with a config, isolation."""

from __future__ import annotations

import base64
import html
import re
import threading
import types
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

import audit_sdk
from audit_sdk import Attack, AttackResult, get_registry, hookimpl
from audit_sdk.errors import InvalidParameterError
from audit_sdk.report import generic_table, render_html, verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_html_is_self_contained_with_every_section(planted, tmp_path):
    leaky = planted.membership("mia.leaky", separation=3.0)
    leaky.extra["slices"] = [
        {"name": "class 0", "n": 40, "metrics": {"auc": 0.91, "tpr_at_fpr": {"0.01": 0.3}}},
        {"name": "class 1", "n": 38, "metrics": {"auc": 0.7}},
    ]
    rep = planted.report([leaky, planted.reconstruction("inversion.fake")], privacy={"defense.dp-sgd": {"epsilon": 8.0, "delta": 1e-5}})
    rep.sections.append({"title": "Plugin section", "html": "<p id='plugin-p'>from a plugin</p>"})
    rep.config = {"seed": 0, "attacks": [{"name": "mia.leaky"}]}
    page = rep.to_html(tmp_path / "r.html").read_text()
    # no network: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page
    imgs = _images(page)
    assert len(imgs) >= 3 and all(i.startswith(PNG_MAGIC) for i in imgs)  # ROC, epsilon bars, reconstruction grid
    assert page.index('id="verdict"') < page.index('id="summary"')  # verdict on top
    for needle in (
        'alt="ROC curve of mia.leaky"',
        "Per-slice results",
        "metrics.auc",
        "0.9100",
        "Reconstructions",
        "SSIM",
        "<p id='plugin-p'>from a plugin</p>",
        "8.0000",
        "numpy",
        "Config and versions",
        "&#34;seed&#34;: 0",
    ):
        assert needle in page, needle


def test_html_escapes_untrusted_text(planted, tmp_path):
    rep = planted.report([planted.membership("mia.leaky")], label="<img src=x onerror=alert(1)>")
    page = render_html([rep], tmp_path / "r.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_verdict_levels_on_planted_leakage(planted):
    assert verdict(planted.report([planted.membership(separation=4.0)]))["level"] == "high"
    assert verdict(planted.report([planted.membership(separation=0.0, n=300, seed=3)]))["level"] == "none"
    mid = verdict(planted.report([planted.membership(separation=0.6, n=300, seed=2)]))
    assert mid["level"] == "measurable", mid
    # a measured lower bound above the accountant's epsilon means the DP guarantee does not hold
    v = verdict(planted.report([planted.membership(separation=4.0)], privacy={"epsilon": 0.1}))
    assert v["level"] == "violated" and "accountant claims epsilon = 0.1" in v["reasons"][0]
    assert v["empirical_epsilon"] > 0.1 and v["theoretical_epsilon"] == 0.1


def test_theoretical_epsilon_is_the_tightest_reported(planted):
    rep = planted.report(
        [planted.membership()], privacy={"defense.dp-sgd": {"epsilon": 3.0, "accountants": {"acct.rdp": {"epsilon": 2.5}}}}
    )
    assert rep.theoretical_epsilon() == 2.5
    assert planted.report([planted.membership()]).theoretical_epsilon() is None


def test_generic_table_shapes():
    assert generic_table([{"a": 1, "b": {"c": 0.5}}, {"a": 2}]) == {"columns": ["a", "b.c"], "rows": [["1", "0.5000"], ["2", "–"]]}
    t = generic_table({"class 0": {"auc": 0.7}, "class 1": {"auc": 0.6, "n": 3}})
    assert t["columns"] == ["slice", "auc", "n"] and t["rows"][1] == ["class 1", "0.6000", "3"]
    assert generic_table({"k": 1})["rows"] == [["k", "1"]]
    assert generic_table("not a table") is None


def test_privacy_utility_curves_for_several_models(planted, tmp_path):
    reps = [
        planted.report(
            [planted.membership("mia.a", separation=s, seed=i)],
            label=lab,
            privacy={"epsilon": e} if e else None,
            utility={"test_accuracy": acc},
        )
        for i, (lab, s, e, acc) in enumerate([("none", 3.0, None, 0.9), ("dp eps=8", 1.0, 8.0, 0.8), ("dp eps=1", 0.2, 1.0, 0.6)])
    ]
    page = render_html(reps, tmp_path / "c.html").read_text()
    assert "Privacy-utility" in page and "Test accuracy vs attack AUC" in page and "Theoretical epsilon vs empirical lower bound" in page
    # verdict levels have words no model label uses: "none" (a model) is never the level's name
    assert (
        "Most leaky: model \u201cnone\u201d, high leakage. Least leaky: model \u201cdp eps=1\u201d, no leakage detected."
        in html.unescape(page)
    )
    assert len(_images(page)) == 1 + 1 + 3  # one ROC (three curves), epsilon bars, three trade-off plots


def test_template_ships_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    assert resources.files("audit_sdk.report").joinpath("templates", "report.html.j2").is_file()
    cfg = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "audit_sdk.report" in cfg["tool"]["setuptools"]["packages"]
    assert "templates/*" in cfg["tool"]["setuptools"]["package-data"]["audit_sdk.report"]
    deps = " ".join(cfg["project"]["dependencies"])
    assert "matplotlib" in deps and "jinja2" in deps


# ----------------------------------------------------------------- run_audit
class Seeded(Attack):
    name = "mia.test-report-seeded"
    summary = "Scores from the attack's rng plus a planted shift (test double)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        shift: float = 0.0

    def run(self, target, data, *, rng=None, context=None):
        x, y, truth = data.combined()
        p = target.predict_proba(x[:4])  # touches the target
        assert p.shape[0] == 4
        scores = audit_sdk.as_generator(rng).normal(size=len(y)) + self.params.shift * truth
        return AttackResult(attack=self.name, params=self.params.model_dump(), scores=scores, truth=truth)


class Sections:
    @hookimpl
    def report_sections(self, report):
        return [{"title": "From the hook", "html": f"<p>{len(report.results)} results</p>", "data": {"n": len(report.results)}}]


@pytest.fixture
def reg(pm):
    pm.register(types.SimpleNamespace(register_attacks=hookimpl(lambda: [Seeded])), name="test-report-seeded")
    pm.register(Sections(), name="test-report-sections")
    return get_registry(pm)


@pytest.fixture(scope="module")
def small():
    from sklearn.linear_model import LogisticRegression

    data = audit_sdk.make_audit_data(audit_sdk.load_digits_data(), n_members=100, n_non_members=100, n_population=100, rng=0)[0]
    clf = LogisticRegression(max_iter=200).fit(data.members.x.reshape(100, -1), data.members.y)
    flat = audit_sdk.AuditData(
        (data.members.x.reshape(100, -1), data.members.y),
        (data.non_members.x.reshape(100, -1), data.non_members.y),
        (data.population.x.reshape(100, -1), data.population.y),
    )
    return clf, flat


def test_run_audit_with_config_privacy_and_hook_sections(reg, small, tmp_path):
    clf, data = small
    cfg = {"attacks": [{"name": "mia.test-report-seeded", "params": {"shift": 2.0}}, "mia.loss-threshold"], "seed": 7}
    rep = audit_sdk.run_audit(clf, data, config=cfg, registry=reg, privacy={"epsilon": 4.0, "delta": 1e-5})
    assert [r.attack for r in rep.results] == ["mia.test-report-seeded", "mia.loss-threshold"]
    assert rep.results[0].params == {"shift": 2.0} and rep.seed == 7 and rep.config["seed"] == 7
    again = audit_sdk.run_audit(clf, data, config=cfg, registry=reg)
    np.testing.assert_array_equal(rep.results[0].scores, again.results[0].scores)  # the config's seed is used
    d = rep.to_dict()
    assert d["schema_version"] == 1 and d["privacy"]["epsilon"] == 4.0 and d["config"]["attacks"][0]["params"] == {"shift": 2.0}
    assert set(d["timings"]) >= {"load_target", "mia.test-report-seeded", "mia.loss-threshold", "total"}
    assert d["sections"] == [{"title": "From the hook", "data": {"n": 2}}] and "numpy" in d["versions"]
    page = rep.to_html(tmp_path / "r.html").read_text()
    assert "<p>2 results</p>" in page and "4.0000" in page
    with pytest.raises(InvalidParameterError, match=r"attacks\[0\]\.params\.shfit"):
        audit_sdk.run_audit(clf, data, config={"attacks": [{"name": "mia.test-report-seeded", "params": {"shfit": 1}}]}, registry=reg)


def test_two_audits_in_one_process_do_not_interfere(reg, small):
    clf, data = small
    a_spec = dict(attacks=[("mia.test-report-seeded", {"shift": 1.0})], rng=1, registry=reg)
    b_spec = dict(attacks=[("mia.test-report-seeded", {"shift": 0.0}), "mia.loss-threshold"], rng=2, registry=reg)
    a_alone = audit_sdk.run_audit(clf, data, **a_spec)
    b_alone = audit_sdk.run_audit(clf, data, **b_spec)
    out: dict[str, list] = {"a": [], "b": []}

    def work(key, spec):
        for _ in range(3):
            out[key].append(audit_sdk.run_audit(clf, data, **spec))

    threads = [threading.Thread(target=work, args=("a", a_spec)), threading.Thread(target=work, args=("b", b_spec))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rep in out["a"]:
        assert len(rep.results) == 1
        np.testing.assert_array_equal(rep.results[0].scores, a_alone.results[0].scores)
    for rep in out["b"]:
        assert [r.attack for r in rep.results] == ["mia.test-report-seeded", "mia.loss-threshold"]
        np.testing.assert_array_equal(rep.results[0].scores, b_alone.results[0].scores)
        assert rep.results[1].metrics["auc"] == b_alone.results[1].metrics["auc"]
    assert a_alone.results[0].metrics["auc"] != b_alone.results[0].metrics["auc"]


def test_training_time_defense_refused_on_a_trained_model(reg, small, pm):
    from audit_sdk import Defense

    class Masking(Defense):
        name = "defense.test-report-masking"
        summary = "Parameter-point test double."
        points = ("parameters",)

    pm.register(types.SimpleNamespace(register_defenses=hookimpl(lambda: [Masking])), name="test-report-masking")
    reg2 = get_registry(pm)
    clf, data = small
    with pytest.raises(InvalidParameterError, match="cannot defend an already-trained model"):
        audit_sdk.run_audit(clf, data, attacks=["mia.loss-threshold"], registry=reg2, defenses=["defense.test-report-masking"])


def test_privacy_accepts_a_train_result(reg, small):
    clf, data = small
    train_result = types.SimpleNamespace(
        defenses={"defense.dp-sgd": {"epsilon": 2.0, "delta": 1e-5}, "defense.other": {}}, notes=["shuffled"]
    )
    rep = audit_sdk.run_audit(clf, data, attacks=["mia.loss-threshold"], registry=reg, privacy=train_result)
    assert rep.privacy == {"defense.dp-sgd": {"epsilon": 2.0, "delta": 1e-5}, "notes": ["shuffled"]}
    assert rep.theoretical_epsilon() == 2.0


def test_progress_goes_to_stderr_and_stdout_stays_clean(reg, small, capsys):
    clf, data = small
    rep = audit_sdk.run_audit(
        clf, data, attacks=["mia.loss-threshold", ("mia.test-report-seeded", {})], registry=reg, progress=True, label="m"
    )
    assert len(rep.results) == 2 and rep.label == "m"
    assert capsys.readouterr().out == ""


def test_output_defenses_from_the_config_wrap_the_target(pm, small):
    from audit_sdk import Defense, Target

    class Coarse(Target):
        def __init__(self, inner):
            self.inner, self.input_shape, self.n_classes, self.capabilities = inner, inner.input_shape, inner.n_classes, inner.capabilities
            self.outputs_logits = False

        def _predict_raw(self, x):
            return np.round(self.inner.predict_proba(x), 1)

    class Round1(Defense):
        name = "defense.test-report-round"
        summary = "Rounds served probabilities to one decimal (test double)."
        points = ("output",)

        def wrap_target(self, target):
            return Coarse(target)

    pm.register(types.SimpleNamespace(register_defenses=hookimpl(lambda: [Round1])), name="test-report-round")
    reg = get_registry(pm)
    clf, data = small
    plain = audit_sdk.run_audit(clf, data, attacks=["mia.loss-threshold"], registry=reg)
    rounded = audit_sdk.run_audit(
        clf, data, config={"attacks": ["mia.loss-threshold"], "defenses": ["defense.test-report-round"]}, registry=reg
    )
    assert rounded.target["defenses"] == ["defense.test-report-round"] and "defenses" not in plain.target
    assert len(np.unique(rounded.results[0].scores)) < len(np.unique(plain.results[0].scores))


def test_verdict_accounts_for_a_recipe_audit_and_names_what_it_leaves_out(planted):
    from audit_sdk.report import LEVEL_WORDS, claimed_epsilon, verdict

    recipe = planted.membership("audit.dp", separation=10.0, seed=3)
    recipe.extra["claimed_epsilon"] = None  # the recipe claims no DP
    assert recipe.metrics["epsilon_lower_bound"] >= 1.0
    quiet = planted.membership("mia.quiet", separation=0.0)
    rep = planted.report([quiet, recipe, planted.reconstruction("inversion.fake")], label="suppress")
    assert verdict(planted.report([quiet], label="suppress"))["level"] == "none"
    v = verdict(rep)
    # the served model's members look safe, but the recipe's DP audit proves epsilon >= 1: not a green "none"
    assert v["level"] == "measurable" and v["level_words"] == LEVEL_WORDS["measurable"] != "none"
    assert any("training recipe" in r and "claims no DP" in r for r in v["reasons"])
    assert v["left_out"] and v["left_out"][0].startswith("inversion.fake: reconstruction quality")
    # one claimed epsilon per model, the tightest, with its accountant named
    dp = planted.report([quiet], privacy={"defense.dp-sgd": {"epsilon": 7.9997, "accountant": "acct.rdp"}, "acct.pld": {"epsilon": 7.39}})
    assert claimed_epsilon(dp) == (7.39, "acct.pld") and claimed_epsilon(planted.report([quiet], privacy={"epsilon": 3.0})) == (
        3.0,
        "unnamed accountant",
    )
    assert claimed_epsilon(planted.report([quiet])) == (None, None)
