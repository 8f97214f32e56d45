"""The model catalog: per route and model, what a request may ask for and what it costs.

The catalog is data (``catalog.json`` beside this module). A deployment extends or
overrides it without code: ``CATALOG_FILE`` names a JSON file and ``CATALOG_JSON``
holds JSON text; both are merged over the built-in file, model by model.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidRequest
from .models import CreateVideoRequest, Orientation, Route
from .settings import Settings

BUILTIN = Path(__file__).with_name("catalog.json")
# The catalog models are built (pydantic schemas) when the catalog is first loaded, not at
# import: functions that never resolve a request (status, callbacks) do not pay for them.


class ImageRules(BaseModel):
    """What an input image must be for one model (``"image": null``: no image-to-video)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    formats: list[Literal["jpeg", "png", "webp"]] = ["jpeg", "png", "webp"]
    max_bytes: int = 10 * 1024 * 1024
    must_match_size: bool = False


class Price(BaseModel):
    """USD per call, or per second of video (one rate, or a rate per size); neither: unknown."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    per_call: float | None = None
    per_second: dict[str, float] | float | None = None


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    seconds: list[int]
    default_seconds: int
    sizes: list[str] | None = None
    default_size: str | None = None
    orientations: list[Orientation] | None = None
    default_orientation: Orientation | None = None
    provider_models: dict[str, str] | None = None
    max_prompt_chars: int = 10000
    expected_generation_seconds: int = 180
    image: ImageRules | None = Field(default_factory=ImageRules)
    price: Price = Field(default_factory=Price)


class RouteSpec(BaseModel):
    model_config = ConfigDict(defer_build=True)

    default_model: str
    models: dict[str, ModelSpec]


class Catalog(BaseModel):
    model_config = ConfigDict(defer_build=True)

    routes: dict[Route, RouteSpec]


class ResolvedSpec(BaseModel):
    """A request checked against the catalog, with every default filled in."""

    model_config = ConfigDict(defer_build=True)

    route: Route
    model: str
    provider_model: str
    seconds: int
    size: str | None
    orientation: Orientation | None
    spec: ModelSpec
    cost_usd: float | None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "price":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@lru_cache(maxsize=8)
def _load(file_override: str, json_override: str) -> Catalog:
    data = json.loads(BUILTIN.read_text())
    if file_override:
        data = _merge(data, json.loads(Path(file_override).read_text()))
    if json_override:
        data = _merge(data, json.loads(json_override))
    data.pop("_comment", None)
    return Catalog.model_validate(data)


def load_catalog(settings: Settings) -> Catalog:
    """The built-in catalog with the deployment's overrides merged in."""
    return _load(settings.catalog_file, settings.catalog_json)


def _bad(field: str, message: str, allowed: list[Any] | None = None, **extra: Any) -> InvalidRequest:
    details: dict[str, Any] = {"field": field, **extra}
    if allowed is not None:
        details["allowed"] = allowed
    return InvalidRequest(message, **details)


def resolve(request: CreateVideoRequest, settings: Settings) -> ResolvedSpec:
    """Check a request against the catalog; raise :class:`InvalidRequest` naming allowed values."""
    catalog = load_catalog(settings)
    route: Route = request.route or settings.default_route
    route_spec = catalog.routes.get(route)
    if route_spec is None:
        raise _bad("route", f"route {route!r} is not configured", sorted(catalog.routes))
    default_model = {
        "task": settings.default_task_model,
        "official": settings.default_official_model,
        "legacy": settings.default_legacy_model,
    }[route] or route_spec.default_model
    model = request.model or default_model
    spec = route_spec.models.get(model)
    if spec is None:
        raise _bad("model", f"model {model!r} is not available on route {route!r}", sorted(route_spec.models), route=route)
    where = {"route": route, "model": model}

    if len(request.prompt) > spec.max_prompt_chars:
        raise _bad(
            "prompt", f"prompt is longer than {spec.max_prompt_chars} characters", None, max_chars=spec.max_prompt_chars, **where
        )

    seconds = request.seconds if request.seconds is not None else spec.default_seconds
    if seconds not in spec.seconds:
        raise _bad("seconds", f"seconds must be one of {spec.seconds} for {model} on route {route}", spec.seconds, **where)

    size: str | None = None
    orientation: Orientation | None = None
    if spec.sizes:
        if request.size is not None:
            size = request.size
        elif request.orientation is not None:
            size = _size_for_orientation(spec.sizes, request.orientation)
        else:
            size = spec.default_size or spec.sizes[0]
        if size not in spec.sizes:
            raise _bad("size", f"size must be one of {spec.sizes} for {model} on route {route}", spec.sizes, **where)
        orientation = _orientation_of(size)
        if request.orientation is not None and request.orientation != orientation:
            raise _bad(
                "orientation",
                f"size {size} is {orientation}, but orientation {request.orientation!r} was asked for",
                [orientation],
                **where,
            )
    else:
        allowed = spec.orientations or []
        if request.size is not None:
            # This model takes an orientation (aspect ratio), not a pixel size.
            raise _bad(
                "size",
                f"{model} on route {route} takes no size; give orientation, one of {allowed}",
                None,
                allowed_orientations=list(allowed),
                **where,
            )
        orientation = request.orientation or spec.default_orientation
        if orientation not in allowed:
            raise _bad(
                "orientation", f"orientation must be one of {allowed} for {model} on route {route}", list(allowed), **where
            )

    return ResolvedSpec(
        route=route,
        model=model,
        provider_model=provider_model_for(spec, model, orientation, seconds),
        seconds=seconds,
        size=size,
        orientation=orientation,
        spec=spec,
        cost_usd=estimate_cost(spec, seconds, size),
    )


def provider_model_for(spec: ModelSpec, model: str, orientation: Orientation | None, seconds: int | None) -> str:
    """The model name the provider expects: ``provider_models`` keyed ``"landscape:15"``,
    then ``"landscape"``; the catalog's own name when neither is listed."""
    names = spec.provider_models or {}
    for key in (f"{orientation}:{seconds}", f"{orientation}"):
        if key in names:
            return names[key]
    return model


def model_spec(settings: Settings, route: Route, model: str) -> ModelSpec:
    """The catalog entry of ``model`` on ``route`` (jobs already recorded name valid ones)."""
    spec = load_catalog(settings).routes[route].models.get(model)
    if spec is None:
        raise InvalidRequest(f"model {model!r} is no longer in the catalog for route {route!r}", field="model")
    return spec


def _size_for_orientation(sizes: list[str], orientation: Orientation) -> str:
    for size in sizes:
        if _orientation_of(size) == orientation:
            return size
    raise _bad("orientation", f"no size with orientation {orientation!r}", sizes)


def _orientation_of(size: str) -> Orientation:
    width, height = (int(v) for v in size.split("x"))
    return "landscape" if width > height else "portrait"


def estimate_cost(spec: ModelSpec, seconds: int, size: str | None) -> float | None:
    """Catalog price of one job: per call, or per second (optionally by size); None if unknown."""
    price = spec.price
    if price.per_second is not None:
        if isinstance(price.per_second, dict):
            rate = price.per_second.get(size or "")
            if rate is None:
                return None
        else:
            rate = price.per_second
        return round(float(rate) * seconds, 4)
    if price.per_call is not None:
        return round(float(price.per_call), 4)
    return None


# The provider's own model names are routing details, not part of what a client may ask for.
_INTERNAL_MODEL_FIELDS: Any = {"routes": {"__all__": {"models": {"__all__": {"provider_models"}}}}}


def public_catalog(settings: Settings) -> dict[str, Any]:
    """``GET /models``: the catalog a request is checked against, with this deployment's defaults."""
    catalog = load_catalog(settings).model_dump(mode="json", exclude=_INTERNAL_MODEL_FIELDS)
    defaults = {
        "task": settings.default_task_model,
        "official": settings.default_official_model,
        "legacy": settings.default_legacy_model,
    }
    for route, spec in catalog["routes"].items():
        spec["default_model"] = defaults.get(route) or spec["default_model"]
    return {"default_route": settings.default_route, **catalog}
