"""deploy/grafana/conveyor.json: a Grafana dashboard whose every query names a metric, and
labels, that a real app's /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from conveyor import State
from conveyor.api import create_app
from tests.conftest import ROOT, Backend
from tests.integration.test_tracing import run_worker

DASHBOARD = ROOT / "deploy" / "grafana" / "conveyor.json"
METRIC = re.compile(r"\b(conveyor_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_]+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels (rows included) and variables."""
    exprs = [
        t["expr"]
        for p in dashboard["panels"]
        for panel in [p, *p.get("panels", [])]
        for t in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def exposed(text: str) -> dict[str, set[str]]:
    """Series name -> label names, from a scrape (a histogram's ``_bucket`` adds ``le``)."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        labels = {k for s in family.samples for k in s.labels}
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = labels if suffix == "_bucket" else labels - {"le"}
    return names


def test_the_dashboard_is_a_grafana_model_with_queries() -> None:
    dashboard = load(DASHBOARD)
    assert dashboard["uid"] and dashboard["title"] == "Conveyor"
    assert isinstance(dashboard["schemaVersion"], int)
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "queue"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("completed", "fail", "retr", "wait", "run", "queue depth", "workers"):
        assert topic in titles, topic
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])
    assert any("histogram_quantile(" in q for q in queries(dashboard))


def test_every_queried_metric_and_label_is_exposed(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    with TestClient(create_app(app)) as api:  # data for every series: enqueues, a retry,
        ok = api.post("/jobs", json={"type": "flaky", "payload": {"fail_times": 1}}).json()
        bad = api.post("/jobs", json={"type": "permanent", "payload": {}}).json()  # a failure

        def ended() -> bool:
            return all(app.client.wait(j["id"], timeout=30).terminal for j in (ok, bad))

        assert run_worker(app, ended)
        assert app.get(ok["id"]).state is State.COMPLETED
        scrape = api.get("/metrics")
    assert scrape.status_code == 200
    series = exposed(scrape.text)
    for expr in queries(load(DASHBOARD)):
        grouped = {g.strip() for found in GROUPING.findall(expr) for g in found.split(",")}
        for name, selector in METRIC.findall(expr):
            assert name in series, f"{name} (in {expr!r}) is not on /metrics"
            used = set(MATCHER.findall(selector)) | (grouped - {""})
            if series[name]:  # a series with samples: its labels are known
                assert used <= series[name], f"{expr!r}: {used - series[name]} not on {name}"
