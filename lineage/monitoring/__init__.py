"""Monitoring (issue 5): the live event stream, alert rules, stored alerts and webhook delivery."""

from __future__ import annotations

from lineage.monitoring.rules import AlertRules, RulesError, default_rules_file, load_rules
from lineage.monitoring.service import MonitoringService

__all__ = ["AlertRules", "MonitoringService", "RulesError", "default_rules_file", "load_rules"]
