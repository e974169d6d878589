"""Issue 24's check against the real Label Studio: the query stage's tasks go in through its API,
the predictions come back out as its JSON and JSON-MIN exports, and activeseg's ingest reads them.

Label Studio is not one of the project's packages (its pins clash with the lock's: it brings
label-studio-sdk 2.1.2 and opencv-python-headless 4.12), so it lives in a virtual environment of
its own, outside the project, and this script runs its executable:

    python3.11 -m venv /tmp/ls-venv
    nice -n 19 /tmp/ls-venv/bin/pip install label-studio==1.23.2
    nice -n 19 .venv/bin/python bench/label_studio_check.py /tmp/ls-venv/bin/label-studio

What it does, each step recorded in bench/results/label_studio_check.json:

1. a tiny project (tests/conftest.py's make_project: 24 synthetic 48 px images, 1 epoch) runs
   `dvc repro query`, which writes data/query/export/label_studio/{tasks.json,config.xml};
2. `label-studio start` on 127.0.0.1 with a temporary data dir, a user and legacy API token made
   from the command line (--username, --password, --user-token, --enable-legacy-api-token), and
   LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true, LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<project>;
3. through its API: a project with config.xml, a local-files storage on data/query/export (which
   local-files URLs need to be served), the import of tasks.json; then checks that every task
   arrived with its data (activeseg_rank, activeseg_score) and its prediction, that an image URL
   is served, then runs the Data Manager's "predictions to annotations" action (what an annotator
   who accepts every prediction leaves) and exports JSON and JSON_MIN;
4. each export goes into a copy of the project's data/raw/annotations, and `stages/ingest.py`
   runs there: every task's image must come back labelled and queried, its mask equal to the
   mask of the Labelme file the query wrote beside it (the same outlines).

--keep keeps the temporary folder (project, copies, Label Studio's data dir) and says where;
--project <folder> uses a project whose `dvc repro query` already ran (it is only read) instead.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from fresh_clone import REPO, machine, revision, utc_now

RESULT = REPO / "bench" / "results" / "label_studio_check.json"
USER, PASSWORD, TOKEN = "bench@activeseg.invalid", "bench-password-1", "activeseg0bench0token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Api:
    """Label Studio's REST API with the legacy token (and a cookie jar for the session login that
    the local-files view, a plain Django view, needs)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body=None, token: bool = True, raw: bool = False):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Token {TOKEN}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=120) as response:
                payload = response.read()
                return (response.status, payload) if raw else json.loads(payload or b"null")
        except urllib.error.HTTPError as error:
            if raw:
                return error.code, error.read()
            raise RuntimeError(f"{method} {path}: HTTP {error.code}: {error.read()[:500]!r}") from None


def start_label_studio(executable: Path, data_dir: Path, document_root: Path, port: int, log: Path):
    env = {**os.environ,
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
           # --data-dir alone still leaves empty folders in ~/.local/share/label-studio
           "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "XDG_DATA_HOME": str(data_dir / "xdg"),
           # nothing leaves the machine: no version check, analytics or error reports
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    command = ["nice", "-n", "19", str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data_dir), "--username", USER, "--password", PASSWORD,
               "--user-token", TOKEN, "--enable-legacy-api-token"]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True), command


def wait_until_up(api: Api, server: subprocess.Popen, log: Path, seconds: int = 600) -> float:
    started = time.time()
    while time.time() - started < seconds:
        if server.poll() is not None:
            raise RuntimeError(f"label-studio exited {server.returncode}: {log.read_text()[-2000:]}")
        try:
            status, _ = api.call("GET", "/api/version", token=False, raw=True)
            if status == 200:
                return time.time() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(2)
    raise RuntimeError(f"label-studio did not answer in {seconds} s: {log.read_text()[-2000:]}")


def login(api: Api) -> None:
    """A browser's session login (the local-files view checks request.user, not the token)."""
    api.call("GET", "/user/login/", token=False, raw=True)
    jar = next(handler.cookiejar for handler in api.opener.handlers if hasattr(handler, "cookiejar"))
    cookies = {cookie.name: cookie.value for cookie in jar}
    form = urllib.parse.urlencode({"email": USER, "password": PASSWORD,
                                   "csrfmiddlewaretoken": cookies.get("csrftoken", "")}).encode()
    request = urllib.request.Request(api.base + "/user/login/", data=form, method="POST")
    request.add_header("Referer", api.base + "/user/login/")
    request.add_header("X-CSRFToken", cookies.get("csrftoken", ""))
    api.opener.open(request, timeout=60).read()


def make_tiny_project(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_project, project_env  # the tests' tiny project, not a second recipe

    project = make_project(folder / "project")
    repro = subprocess.run(["nice", "-n", "19", "dvc", "repro", "query"], cwd=project, env=project_env(project),
                           capture_output=True, text=True)
    if repro.returncode != 0:
        raise RuntimeError(f"dvc repro query exited {repro.returncode}: {repro.stderr[-2000:]}")
    return project


def ingest_export(project: Path, folder: Path, name: str, export: list) -> dict:
    """The export in a copy's data/raw/annotations, ingested there; the masks checked against
    the Labelme files of the same query."""
    sys.path.insert(0, str(REPO / "tests"))
    import cv2
    import numpy as np
    import pandas as pd
    from conftest import project_env

    from activeseg import labelme

    copy = folder / f"copy-{name}"
    shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns("tmp", "mlartifacts", "mlflow.db"))
    (copy / "data" / "raw" / "annotations").mkdir(parents=True, exist_ok=True)
    (copy / "data" / "raw" / "annotations" / f"label-studio-{name}.json").write_text(json.dumps(export))
    shutil.rmtree(copy / "data" / "ingested", ignore_errors=True)
    run = subprocess.run(["nice", "-n", "19", sys.executable, "stages/ingest.py", "--out", "data/ingested"],
                         cwd=copy, env=project_env(copy), capture_output=True, text=True)
    if run.returncode != 0:
        return {"ingest_exit": run.returncode, "stderr": run.stderr[-1500:]}
    manifest = pd.read_csv(copy / "data" / "ingested" / "manifest.csv").set_index("id")
    ids = sorted(path.stem for path in (project / "data" / "query" / "export").glob("*.json"))
    checked = {}
    for image_id in ids:
        mask = cv2.imread(str(copy / "data" / "ingested" / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        height, width = mask.shape[:2]
        expected = labelme.rasterize(labelme.load(project / "data" / "query" / "export" / f"{image_id}.json"),
                                     height, width)[0]
        checked[image_id] = {"labeled": bool(manifest.loc[image_id, "labeled"]),
                             "queried": bool(manifest.loc[image_id, "queried"]),
                             "mask_equals_labelme_file": bool(np.array_equal(mask, expected)),
                             # the synthetic image's own truth, which the export must have replaced
                             "differs_from_unannotated_ingest": not np.array_equal(mask, cv2.imread(
                                 str(project / "data" / "ingested" / "masks" / f"{image_id}.png"),
                                 cv2.IMREAD_UNCHANGED)),
                             "foreground_pixels": int((mask > 0).sum())}
    return {"ingest_exit": 0, "images": checked,
            "passed": bool(checked) and all(item["labeled"] and item["queried"] and item["mask_equals_labelme_file"]
                                            and item["differs_from_unannotated_ingest"] for item in checked.values())}


def check(executable: Path, folder: Path, project: Path | None) -> dict:
    record: dict = {"steps": {}}
    steps = record["steps"]
    # from its venv's metadata: `label-studio --version` sets up a database in the home folder
    version = subprocess.run([str(executable.parent / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('label-studio'))"],
                             capture_output=True, text=True, check=True)
    record["label_studio_version"] = version.stdout.strip()

    if project is None:
        started = time.time()
        project = make_tiny_project(folder)
        steps["tiny_repro_query_seconds"] = round(time.time() - started, 1)
    record["project"] = "tiny (make_project, dvc repro query)" if project.is_relative_to(folder) else str(project)
    studio = project / "data" / "query" / "export" / "label_studio"
    tasks = json.loads((studio / "tasks.json").read_text())
    steps["tasks_written"] = len(tasks)

    port = free_port()
    api = Api(f"http://127.0.0.1:{port}")
    log = folder / "label-studio.log"
    server, command = start_label_studio(executable, folder / "ls-data", project, port, log)
    record["command"] = " ".join(command)
    try:
        steps["start_seconds"] = round(wait_until_up(api, server, log), 1)
        steps["version_api"] = api.call("GET", "/api/version").get("release")
        created = api.call("POST", "/api/projects", {"title": "activeseg check",
                                                     "label_config": (studio / "config.xml").read_text()})
        pk = created["id"]
        steps["project_created_with_config_xml"] = True
        storage = api.call("POST", "/api/storages/localfiles", {
            "project": pk, "title": "query export", "path": str(project / "data" / "query" / "export"),
            "use_blob_urls": True, "regex_filter": r".*\.png$"})
        steps["local_files_storage"] = storage.get("id") is not None
        imported = api.call("POST", f"/api/projects/{pk}/import", tasks)
        steps["import"] = {key: imported.get(key) for key in ("task_count", "prediction_count", "annotation_count")}

        listed = api.call("GET", f"/api/tasks?project={pk}&page_size=1000&fields=all")
        arrived = listed["tasks"] if isinstance(listed, dict) else listed
        by_id = {task["data"].get("activeseg_id"): task for task in arrived}
        predictions = {image_id: api.call("GET", f"/api/predictions?task={task['id']}")
                       for image_id, task in by_id.items()}
        sent = {task["data"]["activeseg_id"]: task for task in tasks}
        steps["tasks_arrived"] = {
            "count": len(arrived), "same_ids": sorted(by_id) == sorted(sent),
            "rank_and_score_kept": all(by_id[i]["data"].get("activeseg_rank") == sent[i]["data"]["activeseg_rank"]
                                       and by_id[i]["data"].get("activeseg_score") == sent[i]["data"]["activeseg_score"]
                                       for i in sent if i in by_id),
            "one_prediction_each_with_its_regions": all(
                len(predictions[i]) == 1 and predictions[i][0]["result"] == sent[i]["predictions"][0]["result"]
                and predictions[i][0]["model_version"] == sent[i]["predictions"][0]["model_version"]
                for i in sent if i in predictions)}

        login(api)
        some = next(iter(sent.values()))["data"]["image"]
        status, body = api.call("GET", some, token=False, raw=True)
        steps["image_served"] = {"url": some, "http_status": status, "png": body[:8] == b"\x89PNG\r\n\x1a\n"}

        action = api.call("POST", f"/api/dm/actions?id=predictions_to_annotations&project={pk}",
                          {"selectedItems": {"all": True, "excluded": []}})
        steps["predictions_to_annotations"] = action.get("detail")

        exports = {}
        for export_type in ("JSON", "JSON_MIN"):
            exports[export_type] = api.call("GET", f"/api/projects/{pk}/export?exportType={export_type}")
            (folder / f"export-{export_type}.json").write_text(json.dumps(exports[export_type]))
        steps["exported_tasks"] = {name: len(value) for name, value in exports.items()}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    for export_type, export in exports.items():
        steps[f"ingest_{export_type}"] = ingest_export(project, folder, export_type.lower(), export)
    record["passed"] = bool(
        steps["tasks_arrived"]["count"] == len(tasks) and steps["tasks_arrived"]["same_ids"]
        and steps["tasks_arrived"]["rank_and_score_kept"] and steps["tasks_arrived"]["one_prediction_each_with_its_regions"]
        and steps["image_served"]["http_status"] == 200 and steps["image_served"]["png"]
        and all(steps[f"ingest_{name}"].get("passed") for name in exports))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("label_studio", type=Path, help="the label-studio executable of its own venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--project", type=Path, help="a project whose `dvc repro query` already ran (read only), "
                        "instead of a new tiny one")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="activeseg-ls-check-"))
    record = {"date": utc_now(), "machine": machine(), "revision": revision(REPO)}
    try:
        record.update(check(args.label_studio.resolve(), folder, args.project and args.project.resolve()))
    except Exception as error:  # recorded as it is: this check says what failed
        record.update({"passed": False, "error": f"{type(error).__name__}: {error}"[:3000]})
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    if args.keep:
        print(f"kept: {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if record["passed"] else 1)


if __name__ == "__main__":
    main()
