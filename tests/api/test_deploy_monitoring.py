"""The fleet monitoring shipped in ``deploy/``: the alerting rules pass ``promtool check rules``
and their unit tests (``promtool test rules``, each alert firing and not firing on sample
series), and every ``kkt_`` metric the rules and the Grafana dashboard use is one the adapter
exports at ``/metrics``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kkt_adapter.status import FN_CRITICAL_DAYS, FN_EXPIRY_CRITICAL_DAYS, FN_EXPIRY_WARN_DAYS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "kkt-adapter.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "kkt-adapter.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "kkt-adapter-fleet.json"
METRIC = re.compile(r"\bkkt_[a-z_]+\b")
QUOTED = re.compile(r'"[^"]*"')  # label values, such as code="kkt_journal_gap", are no metrics

# Every alert the adapter computes (status.alerts).
ADAPTER_ALERTS = {
    "storage_unavailable", "disk_low", "buffer_full", "buffer_90", "buffer_80",
    "fn_offline_limit", "fn_expiry", "shift_over_24h", "dlq_not_empty", "erp_heartbeat_lost",
    "kkt_journal_gap", "kkt_journal_contradiction", "kkt_journal_unchecked",
}  # fmt: skip


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is required: Debian's package prometheus (.ci/run installs it)"
    return subprocess.run(
        [path, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )


def test_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_fire_and_stay_quiet_on_sample_series() -> None:
    tested = promtool("test", "rules", RULES_TEST.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_one_rule_per_adapter_alert_with_its_code_and_what_to_do() -> None:
    named = {rule["alert"] for rule in rules()}
    assert named >= ADAPTER_ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["runbook"].startswith("docs/operations.md#"), rule["alert"]
    operations = (DEPLOY.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    for code in ADAPTER_ALERTS:
        assert f"`{code}`" in operations, code


def test_rule_thresholds_are_the_adapters() -> None:
    exprs = {(r["alert"], r["labels"]["severity"]): r["expr"] for r in rules()}
    assert f">= {FN_CRITICAL_DAYS} * 86400" in exprs[("fn_offline_limit", "critical")]
    assert f"< {FN_EXPIRY_CRITICAL_DAYS} * 86400" in exprs[("fn_expiry", "critical")]
    assert f"< {FN_EXPIRY_WARN_DAYS} * 86400" in exprs[("fn_expiry", "warning")]


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` in the dashboard: panels' targets, rows, annotations."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict):
                yield value.get("query", "")
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


async def test_every_metric_used_is_exported(api: httpx.AsyncClient) -> None:
    answer = await api.get("/metrics")
    exported = set()
    for family in text_string_to_metric_families(answer.text):
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {
        source: set(METRIC.findall(QUOTED.sub("", " ".join(exprs))))
        for source, exprs in (
            ("rules", [rule["expr"] for rule in rules()]),
            ("dashboard", list(dashboard_exprs(dashboard))),
        )
    }
    assert len(used["rules"]) >= 10 and len(used["dashboard"]) >= 10
    for source, names in used.items():
        assert names <= exported, f"{source} uses metrics /metrics lacks: {names - exported}"


def test_dashboard_has_a_row_per_terminal_and_fleet_totals() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    panels = dashboard["panels"]
    assert any(p.get("repeat") == "instance" and p["type"] == "row" for p in panels)
    assert any(p["type"] == "table" for p in panels)
    assert any(p["type"] == "stat" and p["targets"][0]["expr"].startswith("sum(") for p in panels)
