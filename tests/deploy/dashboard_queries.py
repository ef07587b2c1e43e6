"""Read the Grafana dashboard's panel queries and expand its template variables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deploy_support import DEPLOY_DIR

DASHBOARD_PATH = DEPLOY_DIR / "grafana" / "dashboards" / "dynamic-rlhf.json"

# What Grafana substitutes when "All" is selected (allValue) and a fixed rate window.
VARIABLE_VALUES = {
    "$__rate_interval": "15s",
    "$model_id": ".*",
    "$instance": ".*",
}


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL target of a dashboard panel."""

    panel_title: str
    panel_type: str
    ref_id: str
    expr: str

    def expanded(self, values: dict[str, str] | None = None) -> str:
        """Return the expression with every dashboard variable replaced by a concrete value."""
        text = self.expr
        for name, value in (values or VARIABLE_VALUES).items():
            text = text.replace("${" + name[1:] + "}", value).replace(name, value)
        return text


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every panel that is not a row, including panels nested in collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel["title"], panel["type"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
