"""The pipeline's dashboards, written once (stack/dashboards/*.json, the format VictoriaMetrics' own UI
reads with -vmui.customDashboardsPath) and turned into Grafana dashboards for Compose.

    python -m k2.stack.dashboard_sync      # rewrite stack/grafana/dashboards/ from stack/dashboards/

tests/unit/test_dashboards.py fails when the two drift apart.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "dashboards"
GRAFANA = HERE / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "k2-metrics"}  # stack/grafana/provisioning/datasources/k2.yml
GRID = 24  # Grafana's columns; vmui's rows are 12 wide
PANEL_HEIGHT = 8


def load() -> dict[str, dict[str, Any]]:
    """Each source dashboard by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(SOURCE.glob("*.json"))}


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of a dashboard."""
    return [(panel["title"], expr) for row in dashboard["rows"] for panel in row["panels"] for expr in panel["expr"]]


def grafana(name: str, dashboard: dict[str, Any]) -> dict[str, Any]:
    """The same rows and panels as a Grafana dashboard (one time-series panel per vmui panel)."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in dashboard["rows"]:
        panels.append({"type": "row", "title": row["title"], "collapsed": False, "id": len(panels) + 1,
                       "gridPos": {"x": 0, "y": y, "w": GRID, "h": 1}, "panels": []})  # fmt: skip
        y, x = y + 1, 0
        for panel in row["panels"]:
            width = panel.get("width", 12) * GRID // 12
            if x + width > GRID:
                y, x = y + PANEL_HEIGHT, 0
            aliases = panel.get("alias", [])
            targets = [
                {
                    "refId": chr(ord("A") + index),
                    "datasource": DATASOURCE,
                    "expr": expr,
                    "legendFormat": aliases[index] if index < len(aliases) else "",
                }
                for index, expr in enumerate(panel["expr"])
            ]
            panels.append(
                {
                    "type": "timeseries",
                    "id": len(panels) + 1,
                    "title": panel["title"],
                    "datasource": DATASOURCE,
                    "gridPos": {"x": x, "y": y, "w": width, "h": PANEL_HEIGHT},
                    "fieldConfig": {"defaults": {"unit": panel.get("unit") or "short"}, "overrides": []},
                    "options": {"legend": {"showLegend": bool(panel.get("showLegend")), "displayMode": "list"}},
                    "targets": targets,
                }
            )
            x += width
        y += PANEL_HEIGHT
    return {
        "uid": "k2-" + re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-"),
        "title": dashboard["title"],
        "tags": ["k2"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    """The Grafana files as they should be on disk."""
    return {name: json.dumps(grafana(name, dashboard), indent=2) + "\n" for name, dashboard in load().items()}


def main() -> int:
    GRAFANA.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (GRAFANA / name).write_text(text)
        print(f"wrote {GRAFANA / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
