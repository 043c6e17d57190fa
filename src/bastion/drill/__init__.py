"""Drills: take a deployment away from a live gateway and measure what clients see."""

from bastion.drill.report import report, to_html
from bastion.drill.runner import Drill, DrillOptions, TargetReport

__all__ = ["Drill", "DrillOptions", "TargetReport", "report", "to_html"]
