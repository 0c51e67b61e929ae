"""The HTML report in a real headless browser (Debian's chromium): no console errors, every image renders.

Skipped where /usr/bin/chromium is absent (`.ci/run` installs it with apt when it can).
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium); the browser test needs it"
    ),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]

# Injected first into the <head> of a copy of the page under test (the report itself has no
# script): record console errors, script errors and failed resource loads; after load, record every
# image that did not decode; --dump-dom carries the result out of the browser.
PROBE = """<script>
window.__errors = [];
for (const level of ["error", "warn"]) {
  const orig = console[level].bind(console);
  console[level] = (...args) => { window.__errors.push(level + ": " + args.join(" ")); orig(...args); };
}
window.addEventListener("error", e => {
  window.__errors.push("error event: " + (e.message || (e.target && (e.target.src || e.target.href)) || "?"));
}, true);
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({n: imgs.length, bad: bad, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def load_in_chromium(page: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """Open ``page`` headless; return the probe's image report and the console errors chromium logged."""
    probed = tmp_path / f"probed-{page.name}"
    text = page.read_text()
    head = text.index("<head>") + len("<head>")
    probed.write_text(text[:head] + PROBE + text[head:])
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the probe did not run: " + proc.stdout[-500:]
    probe = json.loads(html.unescape(m.group(1)))
    # The page under test has no script of its own, so any console line chromium logs is a problem
    # (its log lines do not carry the console level).
    console = probe["errors"] + [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Failed to load resource" in line]
    return probe, console


def test_report_loads_without_console_errors_and_every_image_renders(planted, tmp_path):
    leaky = planted.membership("mia.leaky", separation=3.0)
    leaky.extra["slices"] = [{"name": "class 0", "metrics": {"auc": 0.9}}]
    reps = [
        planted.report([leaky, planted.reconstruction("inversion.fake")], label="none", utility={"test_accuracy": 0.9}),
        planted.report(
            [planted.membership("mia.leaky", separation=0.5, seed=1)], label="dp", privacy={"epsilon": 2.0}, utility={"test_accuracy": 0.7}
        ),
    ]
    from audit_sdk.report import render_html

    page = render_html(reps, tmp_path / "report.html")
    probe, console = load_in_chromium(page, tmp_path)
    assert probe["n"] >= 5 and probe["bad"] == [], probe
    assert console == [], console


def test_the_probe_catches_a_broken_image_and_a_console_error(tmp_path):
    # Negative control: the checks above must be able to fail.
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img alt="broken" src="data:image/png;base64,AAAA"><script>console.error("boom")</script></body></html>'
    )
    probe, console = load_in_chromium(page, tmp_path)
    assert probe["bad"] == ["broken"]
    assert any("boom" in line for line in console), console


def test_single_model_report_renders(tmp_path, planted):
    # The one-model page `audit-sdk audit` writes (AuditReport.to_html) renders too.
    rep = planted.report([planted.membership("mia.loss-threshold", separation=1.0)])
    page = rep.to_html(tmp_path / "single.html")
    probe, console = load_in_chromium(page, tmp_path)
    assert probe["n"] >= 1 and probe["bad"] == [] and console == []


# Opens every <details>, then lists each table that sticks out of its container or of the window,
# and whether the page itself scrolls sideways.
LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const over = [];
  document.querySelectorAll("table").forEach((t, i) => {
    const box = t.getBoundingClientRect(), parent = t.parentElement.getBoundingClientRect();
    if (box.right > parent.right + 1 || box.right > window.innerWidth + 1 || t.scrollWidth > t.clientWidth + 1) {
      over.push(i + ": " + (t.rows[0] ? t.rows[0].innerText.slice(0, 60) : "?") + " (" + Math.round(box.width) + " px)");
    }
  });
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({over: over, page: document.documentElement.scrollWidth, window: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


def layout_in_chromium(page: Path, tmp_path: Path, width: int) -> dict:
    probed = tmp_path / f"layout-{width}-{page.name}"
    text = page.read_text()
    head = text.index("<head>") + len("<head>")
    probed.write_text(text[:head] + LAYOUT_PROBE + text[head:])
    proc = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--window-size={width},2000",
            f"--user-data-dir={tmp_path / f'profile-{width}'}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="layout">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the layout probe did not run: " + proc.stdout[-500:]
    return json.loads(html.unescape(m.group(1)))


def _wide_reports(planted):
    """Three models with every column the headline table can have, long labels and slices."""
    reps = []
    for i, (label, eps) in enumerate([("none", None), ("dp-sgd eps=8 with a long label", 7.9997), ("suppress", None)]):
        res = planted.membership(f"mia.attack-number-{i}", separation=1.0 + i, seed=i)
        res.extra["slices"] = [
            {"name": f"class {k}", "metrics": {"auc": 0.5 + k / 20, "advantage": 0.1, "tpr_at_fpr": {"0.01": 0.02}}} for k in range(10)
        ]
        reps.append(
            planted.report(
                [res, planted.membership("mia.second-attack", separation=0.5, seed=10 + i), planted.reconstruction("inversion.decoder")],
                label=label,
                privacy={"defense.dp-sgd": {"epsilon": eps, "delta": 1e-5, "accountant": "acct.rdp", "noise_multiplier": 1.1}}
                if eps
                else None,
                utility={"train_accuracy": 0.99, "test_accuracy": 0.8 - i / 10, "population_accuracy": 0.79},
            )
        )
    return reps


@pytest.mark.parametrize("width", [800, 1400])
def test_no_table_overflows_its_container(planted, tmp_path, width):
    from audit_sdk.report import render_html

    page = render_html(_wide_reports(planted), tmp_path / "wide.html")
    layout = layout_in_chromium(page, tmp_path, width)
    assert layout["over"] == [], layout
    assert layout["page"] <= layout["window"], layout


def test_the_layout_probe_catches_an_overflowing_table(tmp_path):
    # Negative control: a table wider than the window must be reported.
    page = tmp_path / "over.html"
    cells = "".join(f"<td>column-{i}-with-a-long-unbreakable-value</td>" for i in range(12))
    page.write_text(
        f'<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><div><table><tr>{cells}</tr></table></div></body></html>'
    )
    layout = layout_in_chromium(page, tmp_path, 800)
    assert len(layout["over"]) == 1, layout
