"""`resolve_plan`: decide every layer's scheme from the default scheme, user overrides and the model's shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ArError, LayerConfigError, SchemeError, field_error
from ..presets import gguf_scheme, parse_scheme
from ..scheme import QuantScheme
from .patterns import key_regex, no_match_error, parse_ignore, substring_regex
from .shapes import KEEP_16BIT, shape_fallback
from .types import LayerInfo, LayerPlan, Plan
from .values import entry_scheme

UserHit = tuple[QuantScheme, bool, str | None]  # scheme, fixed_by_user, pattern (None for an exact-name key)


def resolve_plan(layers: list[LayerInfo], scheme: QuantScheme | str | Mapping[str, Any] = "W4A16",
                 layer_config: Mapping[str, Any] | None = None, ignore_layers: str | list[str] | None = None,
                 quant_lm_head: bool = False, tied_embeddings: bool = False, lm_head_name: str | None = None,
                 format: str | None = None, strict: bool = True,
                 rule_schemes: Mapping[str, QuantScheme] | None = None) -> Plan:
    """Resolve the scheme of every layer in `layers` (model order) and explain each choice.

    Precedence, highest first:
    1. ignore_layers entries (substring match, see `patterns.substring_regex`) keep a layer 16-bit ("ignore").
    2. layer_config entries ("user"). A key equal to a layer name applies to that layer; any other key is a
       substring or, when it uses regex syntax, a regex searched in every name (`patterns.key_regex`). Pattern
       hits overwrite exact-name entries for the same layer, and later patterns overwrite earlier ones. Patterns
       are kept in `Plan.regex_config`.
    3. MoE routers (is_router, names ending in 'shared_expert_gate', or '.gate' in a model with experts) stay
       16-bit ("predefined"); only an exact-name layer_config key overrides this.
    3b. `rule_schemes` (layer name -> scheme; a format's own per-tensor rules, e.g. a GGUF mix's llama.cpp upgrades
       of attn_v / ffn_down from `FORMATS['gguf'].layer_rules`) replace the default scheme of the layers they name,
       lm_head included; source stays "default".
    4. Embeddings are quantized only for GGUF; lm_head (`lm_head_name`, else the last non-embedding layer outside
       the blocks) only with quant_lm_head=True, a layer_config hit, or GGUF (which defaults it to q6_k, or to the
       base type for q8_0; a head tied to the embeddings stays 16-bit here unless quant_lm_head=True: the GGUF file
       stores the pair once, as token_embd in the output type). Quantizing lm_head with tied embeddings is refused
       outside GGUF. Other layers outside the blocks stay 16-bit; layers inside get the default scheme.
    5. Shape rules (`shapes.shape_fallback`) replace what a layer cannot hold; each change is listed in
       `Plan.fallbacks` and source becomes "fallback". Members of a fused_group follow a member forced to 16-bit.
    A scheme that none of the layers asking for it can hold as asked (all fell back) raises LayerConfigError, as do (with strict=True)
    patterns matching no layer; with strict=False those patterns are listed in `Plan.unmatched`.
    """
    layers = _check_layers(layers)
    default = _default_scheme(scheme)
    if format is not None and not isinstance(format, str):
        raise field_error(LayerConfigError, "format", format, "None or a format name such as 'auto_round', 'gguf'")
    gguf = format.lower().startswith("gguf") if format else default.gguf is not None
    names = [layer.name for layer in layers]
    plan = Plan(default=default, entries={}, format=format, lm_head=_find_lm_head(layers, lm_head_name))
    user = _match_user(layer_config, default, names, strict, plan)
    ignored = _match_ignore(ignore_layers, names, strict, plan)
    routers = _routers(layers)
    if plan.lm_head not in ignored:
        _check_lm_head(plan.lm_head, quant_lm_head, user, tied_embeddings, gguf, strict)
    rules = dict(rule_schemes or {})
    requested = {layer.name: _with_rule(_requested(layer, plan, default, user, ignored, routers, quant_lm_head,
                                                   tied_embeddings, gguf, strict), rules.get(layer.name), default)
                 for layer in layers}
    _apply_shapes(layers, requested, gguf, plan)
    _follow_fused(layers, plan)
    plan.fallbacks = [(n, e.reason) for n, e in plan.entries.items() if e.source == "fallback"]
    _check_usable(requested, plan, strict)
    return plan


def _check_layers(layers) -> list[LayerInfo]:
    if not isinstance(layers, (list, tuple)) or not all(isinstance(x, LayerInfo) for x in layers):
        raise field_error(LayerConfigError, "layers", type(layers).__name__, "a list of LayerInfo")
    seen = set()
    for x in layers:
        if x.name in seen:
            raise field_error(LayerConfigError, "layers", x.name, "unique layer names (this one repeats)")
        seen.add(x.name)
        for dim in ("in_features", "out_features"):
            v = getattr(x, dim)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise field_error(LayerConfigError, f"{x.name}.{dim}", v, "a positive int")
    return list(layers)


def _default_scheme(scheme) -> QuantScheme:
    try:
        return parse_scheme(scheme)
    except ArError:
        raise
    except (TypeError, ValueError, AttributeError) as e:
        raise field_error(SchemeError, "scheme", scheme, f"a preset name, dict of fields or QuantScheme ({e})") \
            from None


def _find_lm_head(layers: list[LayerInfo], lm_head_name: str | None) -> str | None:
    if lm_head_name is not None:
        if lm_head_name not in {x.name for x in layers}:
            raise field_error(LayerConfigError, "lm_head_name", lm_head_name, "the name of one of the layers")
        return lm_head_name
    outside = [x.name for x in layers if not x.in_block and x.kind != "embedding"]
    return outside[-1] if outside else None


def _match_user(layer_config, default: QuantScheme, names: list[str], strict: bool,
                plan: Plan) -> dict[str, UserHit]:
    if layer_config is None:
        return {}
    if not isinstance(layer_config, Mapping):
        raise field_error(LayerConfigError, "layer_config", layer_config, "a dict of layer name/pattern -> scheme")
    exact: dict[str, UserHit] = {}
    by_pattern: dict[str, UserHit] = {}
    name_set = set(names)
    for key, value in layer_config.items():
        if not isinstance(key, str) or not key:
            raise field_error(LayerConfigError, "layer_config key", key, "a non-empty layer name or pattern")
        s, fixed = entry_scheme(key, value, default)
        if key in name_set:
            exact[key] = (s, fixed, None)
            continue
        rx = key_regex(key)
        hits = [n for n in names if rx.search(n)]
        if not hits:
            if strict:
                raise no_match_error("layer_config", key, names)
            plan.unmatched.append(key)
        plan.regex_config[key] = s
        by_pattern.update({n: (s, fixed, key) for n in hits})
    return {**exact, **by_pattern}


def _match_ignore(ignore_layers, names: list[str], strict: bool, plan: Plan) -> dict[str, str]:
    ignored: dict[str, str] = {}
    for entry in parse_ignore(ignore_layers):
        rx = substring_regex(entry)
        hits = [n for n in names if rx.search(n)]
        if not hits:
            if strict:
                raise no_match_error("ignore_layers", entry, names)
            plan.unmatched.append(entry)
        plan.regex_config[entry] = KEEP_16BIT
        ignored.update({n: entry for n in hits if n not in ignored})
    return ignored


def _routers(layers: list[LayerInfo]) -> set[str]:
    moe = any(x.kind == "expert" or x.is_router or ".experts." in x.name for x in layers)
    return {x.name for x in layers
            if x.is_router or x.name.endswith("shared_expert_gate") or (moe and x.name.endswith(".gate"))}


def _check_lm_head(lm_head: str | None, quant_lm_head: bool, user: dict[str, UserHit], tied: bool, gguf: bool,
                   strict: bool) -> None:
    """Refuse an lm_head quantization request that cannot be honoured (no lm_head, or tied embeddings off GGUF)."""
    asked = quant_lm_head or (lm_head in user and user[lm_head][0].is_quantized)
    if not asked or gguf:
        return
    if lm_head is None:
        if strict:
            raise LayerConfigError("quant_lm_head=True but no layer outside the blocks can be the lm_head; "
                                   "pass lm_head_name or mark the layer with in_block=False")
        return
    if tied:
        raise LayerConfigError(f"quantizing {lm_head!r} (quant_lm_head=True or a layer_config entry) is refused: "
                               "its weight is tied to the input embeddings, which stay 16-bit outside GGUF. "
                               "Drop the request, untie the embeddings, or export to format='gguf'.")


def _requested(layer: LayerInfo, plan: Plan, default: QuantScheme, user: dict[str, UserHit],
               ignored: dict[str, str], routers: set[str], quant_lm_head: bool, tied: bool, gguf: bool,
               strict: bool) -> LayerPlan:
    """The scheme `layer` asks for before shape rules, with its source and reason."""
    n = layer.name
    if n in ignored:
        return LayerPlan(KEEP_16BIT, "ignore", f"ignore_layers entry {ignored[n]!r}", True, ignored[n])
    hit = user.get(n)
    if hit is not None and n in routers and hit[2] is not None:
        hit = None
    if hit is not None and layer.kind == "embedding" and not gguf and hit[0].is_quantized:
        if strict and hit[2] is None:
            raise field_error(LayerConfigError, "layer_config key", n, "embeddings are quantized only for GGUF")
        hit = None
    if hit is not None:
        s, fixed, pattern = hit
        return LayerPlan(s, "user", f"layer_config[{pattern or n!r}]", fixed, pattern)
    if n in routers:
        return LayerPlan(KEEP_16BIT, "predefined", "MoE router kept 16-bit")
    if layer.kind == "embedding":
        if not gguf:
            return LayerPlan(KEEP_16BIT, "default", "embeddings are quantized only for GGUF")
        if tied:
            return LayerPlan(_gguf_output(default), "default", "GGUF tied embeddings use the output type")
        return LayerPlan(default, "default", "GGUF embeddings use the base type")
    if n == plan.lm_head:
        if gguf and tied and not quant_lm_head:
            return LayerPlan(KEEP_16BIT, "default", "tied to the input embeddings: GGUF stores them once, as "
                             "token_embd in the output tensor type (llama.cpp), not as a tuned lm_head")
        if gguf:
            return LayerPlan(_gguf_output(default), "default", "GGUF output tensor type")
        if quant_lm_head:
            return LayerPlan(default, "default", "quant_lm_head=True")
        return LayerPlan(KEEP_16BIT, "default", "lm_head stays 16-bit unless quant_lm_head=True")
    if not layer.in_block:
        return LayerPlan(KEEP_16BIT, "default", "outside the quantized blocks")
    return LayerPlan(default, "default", "default scheme")


def _with_rule(want: LayerPlan, rule: QuantScheme | None, default: QuantScheme) -> LayerPlan:
    """`want` with its built-in default replaced by the format's per-tensor rule for this layer, if any."""
    if rule is None or want.source != "default" or not want.scheme.is_quantized or rule == want.scheme:
        return want
    return LayerPlan(rule, "default", f"per-tensor rule of {_describe(default)}: {_describe(rule)}")


def _gguf_output(default: QuantScheme) -> QuantScheme:
    """llama.cpp's output-tensor type: q6_k, unless the base is q8_0 or not a GGUF type."""
    if default.gguf is None or default.gguf == "q8_0":
        return default
    return gguf_scheme("q6_k")


def _apply_shapes(layers: list[LayerInfo], requested: dict[str, LayerPlan], gguf: bool, plan: Plan) -> None:
    for layer in layers:
        want = requested[layer.name]
        fb = shape_fallback(layer, want.scheme, gguf)
        if fb is None:
            plan.entries[layer.name] = want
            continue
        s, why = fb
        reason = f"{why} (asked {_describe(want.scheme)} via {want.source}: {want.reason})"
        plan.entries[layer.name] = LayerPlan(s, "fallback", reason, True, want.pattern)


def _follow_fused(layers: list[LayerInfo], plan: Plan) -> None:
    """A fused group (q/k/v, gate/up) is served as one matrix: if a member fell back to 16-bit, so do the rest."""
    groups: dict[str, list[str]] = {}
    for x in layers:
        if x.fused_group is not None:
            groups.setdefault(x.fused_group, []).append(x.name)
    for members in groups.values():
        forced = [m for m in members
                  if plan.entries[m].source == "fallback" and not plan.entries[m].scheme.is_quantized]
        if not forced:
            continue
        for m in members:
            e = plan.entries[m]
            if e.scheme.is_quantized:
                reason = f"fused with {forced[0]}, which stays 16-bit"
                plan.entries[m] = LayerPlan(KEEP_16BIT, "fallback", reason, True, e.pattern)


def _check_usable(requested: dict[str, LayerPlan], plan: Plan, strict: bool) -> None:
    """Refuse a default scheme (or, when strict, a layer_config entry) that no layer asking for it can hold as asked:
    when every such layer fell back (to 16-bit, or to one group per channel for a group_size wider than it; GGUF
    fallback types are llama.cpp's own rules and count as held)."""
    asks: dict[tuple[str, str | None], list[str]] = {}
    for n, want in requested.items():
        if want.source == "default" and want.scheme == plan.default and want.scheme.is_quantized:
            asks.setdefault(("default", None), []).append(n)
        elif want.source == "user" and want.scheme.is_quantized and strict:
            asks.setdefault(("user", want.pattern or n), []).append(n)
    for (source, key), members in asks.items():
        if any(_held(plan.entries[m]) for m in members):
            continue
        what = "the default scheme" if source == "default" else f"layer_config[{key!r}]"
        raise LayerConfigError(
            f"{what} ({_describe(requested[members[0]].scheme)}) fits none of the {len(members)} layer(s) it applies "
            f"to, e.g. {members[0]}: {plan.entries[members[0]].reason}. Choose a group_size or data type their "
            "shapes can hold, or keep those layers 16-bit with ignore_layers.")


def _held(entry: LayerPlan) -> bool:
    """The layer holds what was asked: no fallback, or a GGUF fallback type (part of llama.cpp's mix rules)."""
    return entry.source != "fallback" or (entry.scheme.is_quantized and entry.scheme.gguf is not None)


def _describe(s: QuantScheme) -> str:
    if s.gguf:
        return f"gguf:{s.gguf}"
    act = f"A{s.act_bits}" if s.quantizes_activations else "A16"
    return f"{s.data_type} W{s.bits}{act} group_size={s.group_size}" if s.is_quantized else "16-bit"
