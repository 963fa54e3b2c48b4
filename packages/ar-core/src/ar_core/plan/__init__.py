"""Layer-configuration plans: which scheme every layer gets, and why (see `resolve_plan`)."""

from .resolve import resolve_plan
from .types import LayerInfo, LayerPlan, Plan

__all__ = ["LayerInfo", "LayerPlan", "Plan", "resolve_plan"]
