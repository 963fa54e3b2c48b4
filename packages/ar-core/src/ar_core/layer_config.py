"""Public entry point of layer-configuration resolution: `resolve_plan` over plain `LayerInfo` records.

The implementation lives in `ar_core.plan` (patterns, values, shapes, resolve); this module is the stable import path.
"""

from .plan import LayerInfo, LayerPlan, Plan, resolve_plan

__all__ = ["LayerInfo", "LayerPlan", "Plan", "resolve_plan"]
