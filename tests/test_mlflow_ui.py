"""Runs compared as a person would: two `dvc exp run` variants, then `dvc metrics diff` /
`dvc plots diff` between them, the MLflow store, and the MLflow UI in headless Chromium.

The Chromium test drives the browser over the DevTools protocol (aiohttp's websocket client), waits
for the JavaScript app to render, reads the comparison view and saves a screenshot to
``test-artifacts/mlflow-compare.png`` (README: "Compare your runs"). Without Chromium it skips.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import PLAIN_ARCHITECTURE, REPO_ROOT, copy_project, project_env, run, set_params

# make test: one worker runs them all, on the module's experiments
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow_experiments")]

EXPERIMENTS = {"epochs-1": 1, "epochs-2": 2}
SCREENSHOT = REPO_ROOT / "test-artifacts" / "mlflow-compare.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1400,1500"]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory, finished_project):
    """A tiny project with two experiments run by DVC; returns ``(project, {name: MLflow run})``."""
    from mlflow import MlflowClient

    # the shared finished run, without its MLflow run (these two are all the store holds): the
    # experiments retrain, the data stages are reused
    project = copy_project(finished_project, tmp_path_factory.mktemp("compare") / "project", keep_mlflow_store=False)
    # The best epoch by val Dice is what gets evaluated: with 6 steps an epoch the tiny run's second
    # epoch improves on its first (with one pass of 3 steps it did not, at any rate from 0.0005 to
    # 0.01), so the two experiments' metrics differ (the diff shows them)
    set_params(project, train__steps_per_epoch=6, **PLAIN_ARCHITECTURE)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline"], project)
    for name, epochs in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "--name", name, "-S", f"epochs={epochs}"], project)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("activeseg")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    return project, client, runs


def test_each_experiment_is_one_mlflow_run_with_params_tags_metrics_and_artifacts(experiments):
    project, client, runs = experiments
    assert sorted(runs) == sorted(EXPERIMENTS)  # the DVC experiment name is the run name
    baseline = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    for name, epochs in EXPERIMENTS.items():
        data, run_id = runs[name].data, runs[name].info.run_id
        assert data.params["epochs"] == str(epochs) and data.params["train.backbone"] == "resnet18"
        assert data.tags["dvc_exp_name"] == name and data.tags["dvc_baseline_rev"] == baseline
        assert data.tags["git_revision"] == baseline and len(data.tags["data_version"]) == 12
        assert {"test_dice", "test_mean_dice", "test_trivial_dice", "train_best_val_dice",
                "query_pool_size"} <= set(data.metrics)
        assert len(client.get_metric_history(run_id, "val_dice")) == epochs  # per-epoch curve
        assert data.tags["beats_trivial"] in ("true", "false") and "test_beats_trivial" not in data.metrics
        if epochs == 1:  # one epoch cannot show a rising validation Dice
            assert data.tags["val_dice_improved"] == "false"
        assert "validation_dice" not in data.metrics                           # ... and only once
        evaluation = {item.path for item in client.list_artifacts(run_id, "evaluation")}
        assert {"evaluation/threshold_curve.png", "evaluation/per_image.csv", "evaluation/overlays"} <= evaluation
        assert runs[name].info.artifact_uri.startswith((project / "mlartifacts").as_uri())
    assert runs["epochs-1"].data.tags["data_version"] == runs["epochs-2"].data.tags["data_version"]


def test_dvc_metrics_and_plots_diff_compare_the_two_experiments(experiments, tmp_path):
    project, _, runs = experiments
    diff = json.loads(run(["dvc", "metrics", "diff", "epochs-1", "epochs-2", "--json"], project).stdout)
    dice = diff["metrics/evaluate.json"]["dice"]
    assert dice["old"] == pytest.approx(runs["epochs-1"].data.metrics["test_dice"], abs=1e-5)
    assert dice["new"] == pytest.approx(runs["epochs-2"].data.metrics["test_dice"], abs=1e-5)
    assert diff["metrics/train.json"]["epochs_run"] == {"old": 1, "new": 2, "diff": 1}
    table = run(["dvc", "metrics", "diff", "epochs-1", "epochs-2"], project).stdout
    assert "epochs-1" in table.splitlines()[0] and "epochs-2" in table.splitlines()[0]

    plots = json.loads(run(["dvc", "plots", "diff", "epochs-1", "epochs-2", "--json", "--split",
                            "-o", str(tmp_path / "plots")], project).stdout)["data"]
    curve = plots["test precision and recall vs threshold"][0]
    assert curve["revisions"] == ["epochs-1", "epochs-2"]
    overlays = [key for key in plots if key.endswith("worst1.png")]
    assert {entry["revisions"][0] for key in overlays for entry in plots[key]} == {"epochs-1", "epochs-2"}


# --- the MLflow UI in a browser ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_ui(experiments, tmp_path):
    """`activeseg ui` run as a person runs it, in the project, on a free loopback port; yields
    ``(base URL, the link it printed)``."""
    project = experiments[0]
    port = free_port()
    log_path = tmp_path / "mlflow-ui.log"
    log = log_path.open("w")
    server = subprocess.Popen([sys.executable, "-m", "activeseg.cli", "ui", "--port", str(port)], cwd=project,
                              env=project_env(project), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: server.poll() is not None or http_ok(f"http://127.0.0.1:{port}/health"), 120,
                 "the MLflow UI to answer")
        assert server.poll() is None, log_path.read_text()[-3000:]
        printed = re.search(r"MLflow UI on (\S+)", log_path.read_text())
        assert printed, log_path.read_text()[-3000:]
        yield f"http://127.0.0.1:{port}", printed.group(1)
    finally:
        stop_group(server)
        log.close()


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session`` and its children (uvicorn's workers)."""
    import os
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Browser:
    """Just enough of the Chrome DevTools protocol: navigate, evaluate JavaScript, screenshot."""

    def __init__(self, websocket):
        self.websocket, self.next_id = websocket, 0

    async def send(self, method: str, **params):
        self.next_id += 1
        await self.websocket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:  # events arrive in between; the answer carries our id
            message = await self.websocket.receive_json(timeout=60)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.5)
        text = await self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; the page shows:\n{text}")


# Reads the compare-runs view: run ids of the columns, table rows (params, run details) and the
# metrics, which MLflow draws as two virtualised grids (names, values) of absolutely placed cells.
READ_COMPARISON = r"""(() => {
  const text = el => el.innerText.trim();
  const runIds = [...new Set([...document.querySelectorAll('thead a[href*="/runs/"]')]
                   .map(a => a.getAttribute('href').split('/runs/')[1]))];
  const rows = {};
  for (const tr of document.querySelectorAll('tbody tr')) {
    const head = tr.querySelector('th'), cells = [...tr.querySelectorAll('td')];
    if (head && cells.length) rows[text(head).replace(/:$/, '')] = cells.map(text);
  }
  const metrics = {};
  const names = {};
  for (const a of document.querySelectorAll('.ReactVirtualized__Grid a[title="Plot chart"]'))
    names[a.parentElement.style.top] = text(a);
  for (const grid of document.querySelectorAll('.ReactVirtualized__Grid')) {
    if (grid.querySelector('a[title="Plot chart"]')) continue;
    for (const cell of grid.querySelectorAll('[style*="top"]')) {
      const name = names[cell.style.top];
      if (!name || !cell.style.left) continue;
      (metrics[name] = metrics[name] || []).push([parseFloat(cell.style.left), text(cell)]);
    }
  }
  for (const name in metrics) metrics[name] = metrics[name].sort((a, b) => a[0] - b[0]).map(x => x[1]);
  return {runIds, rows, metrics};
})()"""

CLICK = "(() => {{ const b = document.querySelector('[aria-label=\"{}\"]'); if (b) b.click(); return !!b; }})()"


@contextlib.asynccontextmanager
async def browser_tab(chromium: str, profile: Path):
    """A :class:`Browser` on the one tab of a headless Chromium with the (fresh) ``profile``."""
    import aiohttp

    browser_process = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                        "--remote-debugging-port=0", "about:blank"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it picked here
        port = wait_for(lambda: port_file.is_file() and port_file.read_text().split("\n")[0].strip(), 60,
                        "Chromium's DevTools port")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                page = next(t for t in await response.json() if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as websocket:
                yield Browser(websocket)
    finally:
        stop_group(browser_process)


async def drive_comparison(chromium: str, url: str, profile: Path, screenshot: Path) -> dict:
    async with browser_tab(chromium, profile) as tab:
        await tab.send("Page.navigate", url=url)
        await tab.wait_for("document.querySelectorAll('a[title=\"Plot chart\"]').length > 0 && "
                           "document.body.innerText.includes('Run Name')", 90, "the comparison view")
        # only what differs between the runs, in one screen: fold the default chart (of the
        # first metric, not the Dice) and close the assistant panel
        for label in ("Parameters - Show diff only", "Metrics - Show diff only", "Tags - Show diff only",
                      "collapse Visualizations", "Close"):
            await tab.evaluate(CLICK.format(label))
        await tab.wait_for("!document.body.innerText.includes('train.backbone')", 20, "the diff-only view")
        await asyncio.sleep(1.0)  # let the charts finish their transition
        seen = await tab.evaluate(READ_COMPARISON)
        shot = await tab.send("Page.captureScreenshot", format="png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return seen


async def open_link(chromium: str, url: str, profile: Path, names: list[str]) -> dict:
    """Open ``url`` in a fresh profile, as a person following the link would, and wait until the
    run ``names`` appear; returns the page's final address and text."""
    async with browser_tab(chromium, profile) as tab:
        await tab.send("Page.navigate", url=url)
        await tab.wait_for(" && ".join(f"document.body.innerText.includes({json.dumps(name)})" for name in names),
                           90, f"the runs {names}")
        await asyncio.sleep(1.0)  # a client-side redirect (to the GenAI overview) would come now
        return await tab.evaluate("({url: location.href, text: document.body.innerText})")


@pytest.fixture(scope="module")  # module scope: pytest sets it up before the module-scoped experiments
def chromium() -> str:
    """Debian's Chromium, or a clean skip (before any experiment or server is started)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; CI's .ci/run does)")
    return found


def test_activeseg_ui_link_opens_the_runs_table_in_a_fresh_browser(chromium, experiments, mlflow_ui, tmp_path):
    _, _, runs = experiments
    base, link = mlflow_ui
    experiment_id = runs["epochs-1"].info.experiment_id
    assert link == f"{base}/#/experiments/{experiment_id}/runs"
    page = asyncio.run(open_link(chromium, link, tmp_path / "fresh-profile", list(EXPERIMENTS)))
    # still the runs table (MLflow adds its filters as a query), not the GenAI overview
    assert urlsplit(page["url"]).fragment.split("?")[0] == f"/experiments/{experiment_id}/runs", page["url"]
    assert "Run Name" in page["text"], page["text"][:2000]


def test_mlflow_ui_compares_both_runs_with_their_epochs_and_dice(chromium, experiments, mlflow_ui, tmp_path):
    _, client, runs = experiments
    experiment_id = runs["epochs-1"].info.experiment_id
    ids = [runs[name].info.run_id for name in EXPERIMENTS]
    url = (f"{mlflow_ui[0]}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment_id])}"
           "&workflowType=machine_learning")
    seen = asyncio.run(drive_comparison(chromium, url, tmp_path / "chromium-profile", SCREENSHOT))

    assert sorted(seen["runIds"]) == sorted(ids), seen
    column = {run_id: index for index, run_id in enumerate(seen["runIds"])}
    for name, epochs in EXPERIMENTS.items():
        index = column[runs[name].info.run_id]
        assert seen["rows"]["Run Name"][index] == name
        assert seen["rows"]["epochs"][index] == str(epochs)
        shown_dice = float(seen["metrics"]["test_dice"][index])
        assert shown_dice == pytest.approx(runs[name].data.metrics["test_dice"], abs=6e-4)
    assert "train.backbone" not in seen["rows"]  # diff only: what is equal is hidden
    assert SCREENSHOT.stat().st_size > 20_000 and SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
