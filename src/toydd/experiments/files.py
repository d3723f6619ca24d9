"""User experiment files (TOML or YAML): the same power as the built-in experiments.

A file::

    name = "my-wd-sweep"                  # optional, default: the file's stem
    description = "..."                   # optional
    preset = "quick"                      # optional: fill unset fields from a preset
    [base]                                # TrainConfig fields shared by every job
    m = 4
    [grid]                                # cartesian product over these lists
    T = [10, 100, 1000, "inf"]
    data_seed = [0, 1, 2, 3]
    weight_decay = [0.0, 0.01, 1.0]
    [params]                              # free-form, stored in the manifest for plots
    vector_plot_T = [10, 1000]

A file may instead build on a registered experiment: ``experiment = "crossover"`` with a ``[base]`` table
changes those fields in every one of its jobs (before they are built, so jobs that refer to each other stay
consistent) and keeps its report (examples/crossover-sum.toml: the crossover in the summed-loss recipe).

``grid`` may also be an array of tables (``[[grid]]`` in TOML, a list in YAML):
the experiment is then the union of the products, which expresses grids that
are not rectangular (e.g. a T range that depends on S). Precedence, lowest
first: TrainConfig defaults (the paper), the preset's base, ``[base]``, the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import typing
from pathlib import Path
from typing import Any

from ..config import TrainConfig, env_setting
from ..errors import ToyddError, one_line
from .base import PRESETS, Experiment, get_preset, unique_jobs

EXPERIMENT_FILE_SUFFIXES = (".toml", ".yaml", ".yml")


def is_experiment_file(name_or_file: str) -> bool:
    return Path(name_or_file).suffix.lower() in EXPERIMENT_FILE_SUFFIXES or Path(name_or_file).is_file()


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TOP_KEYS = ("name", "description", "preset", "experiment", "base", "grid", "params")
_FIELD_TYPES = typing.get_type_hints(TrainConfig)
_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def _read_mapping(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML file into a dict; any failure is a one-line ToyddError."""
    if not path.is_file():
        raise ToyddError(f"experiment file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ToyddError(f"cannot read experiment file {path}: {type(e).__name__}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ToyddError(f"{path}: invalid TOML: {one_line(e)}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_strict_yaml_loader())  # safe_load, but a repeated key is an error
        except yaml.YAMLError as e:
            raise ToyddError(f"{path}: invalid YAML: {one_line(e)}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ToyddError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        return data
    raise ToyddError(f"{path}: unknown experiment file type {path.suffix!r}; use .toml, .yaml or .yml")


def _strict_yaml_loader():
    """yaml.SafeLoader that rejects a key repeated in one mapping (as TOML does) instead of keeping the last."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may be overridden by explicit keys
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:  # unhashable: SafeLoader reports it
                continue
            if dup:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"found duplicate key {key!r}", key_node.start_mark)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def _coerce(name: str, value: Any, where: str) -> Any:
    """Forgive the usual file-format quirks before TrainConfig validates the value.

    YAML 1.1 reads ``1e-3`` as a string and users write ``steps = 5e4``; both
    are unambiguous, so accept them rather than fail on a technicality.
    """
    if isinstance(value, (dict, list)):
        raise ToyddError(f"{where}: {name} must be a single value, got a {type(value).__name__}")
    hint = str(_FIELD_TYPES.get(name, ""))
    if "float" in hint and name != "T":
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ToyddError(f"{where}: {name} must be a number, got {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            # 0 and 0.0 are one job, but hash to different keys: store floats as floats.
            return float(value)
    if "int" in hint and "float" not in hint and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_fields(table: dict[str, Any], where: str) -> None:
    unknown = [k for k in table if k not in _FIELDS]
    if unknown:
        raise ToyddError(f"{where}: unknown config field(s) {', '.join(map(repr, unknown))}; "
                         f"valid fields: {', '.join(_FIELDS)}")


MAX_JOBS = 100_000  # per experiment file; the paper's largest experiment has under 1,000 jobs


def max_jobs() -> int:
    """The job limit of one experiment file: ``MAX_JOBS``, or the ``TOYDD_MAX_JOBS`` environment variable."""
    return env_setting("TOYDD_MAX_JOBS", MAX_JOBS, int, lambda n: n > 0, "a positive integer")


def _count_jobs(tables: list) -> int:
    """Grid points of every table (before removing repeated jobs)."""
    return sum(math.prod(len(v) if isinstance(v, list) else 1 for v in t.values()) for t in tables if isinstance(t, dict))


def _grid_points(grid: Any, path: Path) -> list[dict[str, Any]]:
    """Expand ``grid`` (a table of lists, or a list of such tables) into field assignments."""
    if grid is None:
        return [{}]
    tables = grid if isinstance(grid, list) else [grid]
    if not tables:
        raise ToyddError(f"{path}: grid is an empty list")
    points: list[dict[str, Any]] = []
    limit = max_jobs()
    total = 0
    for i, table in enumerate(tables):
        where = f"{path}: grid" + (f"[{i}]" if isinstance(grid, list) else "")
        if not isinstance(table, dict):
            raise ToyddError(f"{where} must be a table of lists, got {type(table).__name__}")
        _check_fields(table, where)
        axes = []
        for name, values in table.items():
            if not isinstance(values, list):
                values = [values]  # a scalar is a one-point axis
            if not values:
                raise ToyddError(f"{where}: {name} is an empty list")
            axes.append([(name, _coerce(name, v, where)) for v in values])
        total += math.prod(len(a) for a in axes)
        if total > limit:  # count before expanding: a 10^7-point product would take minutes and gigabytes
            raise ToyddError(f"{path}: the grid expands to {_count_jobs(tables):,} jobs, more than the limit of "
                             f"{limit:,} per experiment; split it into several experiment files "
                             f"(or raise the limit with TOYDD_MAX_JOBS)")
        points += [dict(combo) for combo in itertools.product(*axes)]
    return points


def load_experiment_file(path: str | Path, preset: str | None = None, definitions: dict | None = None) -> Experiment:
    """Read a user experiment (TOML or YAML; see the module docstring).

    ``preset`` (or the file's own ``preset`` key, which it overrides) fills the
    fields the file leaves unset; without either, unset fields take the paper's
    defaults. Any problem raises a one-line :class:`ToyddError` naming the file
    and what is wrong.
    """
    path = Path(path)
    data = _read_mapping(path)
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise ToyddError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"valid top-level keys: {', '.join(_TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToyddError(f"{path}: name must be letters, digits, '.', '_' or '-' (it names a file), got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ToyddError(f"{path}: description must be a string")
    file_preset = data.get("preset")
    if file_preset is not None and not isinstance(file_preset, str):
        raise ToyddError(f"{path}: preset must be a string naming a preset ({', '.join(PRESETS)})")
    preset_name = preset if preset is not None else file_preset
    p_base = get_preset(preset_name).base if preset_name is not None else {}
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ToyddError(f"{path}: base must be a table of config fields")
    _check_fields(base, f"{path}: base")
    base = {k: _coerce(k, v, f"{path}: base") for k, v in base.items()}
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ToyddError(f"{path}: params must be a table")
    try:  # params go into the JSON manifest: a YAML date or set would fail there, mid-sweep
        json.dumps(params)
    except (TypeError, ValueError) as e:
        raise ToyddError(f"{path}: params must hold only strings, numbers, booleans, lists and tables "
                         f"({one_line(e)})") from None
    if "experiment" in data:
        return _based_on(path, data, name, description, preset_name, base, params, definitions or {})
    configs = []
    for point in _grid_points(data.get("grid"), path):
        fields = {**p_base, **base, **point}
        try:
            configs.append(TrainConfig.from_dict(fields))
        except ToyddError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ToyddError(f"{path}: {e}" + (f" (at grid point {shown})" if shown else "")) from None
        except TypeError as e:  # a value of a type TrainConfig.validate cannot compare
            raise ToyddError(f"{path}: bad value in config: {one_line(e)}") from None
    return Experiment(name=name, description=description, preset=preset_name, configs=unique_jobs(configs),
                      params=params, source=str(path))


def _based_on(path: Path, data: dict, name: str, description: str, preset_name: str | None, base: dict,
              params: dict, definitions: dict) -> Experiment:
    """A registered experiment's jobs with ``[base]`` fields applied to all of them (``experiment = "crossover"``).

    The fields go into the preset's base before the experiment builds its jobs, so jobs that refer to each other
    (the crossover's chains) refer to the changed jobs. Its report is the registered experiment's
    (``params.based_on``). A grid cannot be combined with it: the experiment decides its own grid.
    """
    which = data["experiment"]
    if not isinstance(which, str) or which not in definitions:
        raise ToyddError(f"{path}: experiment must name a registered experiment "
                         f"({', '.join(sorted(definitions)) or 'none'}), got {which!r}")
    if "grid" in data:
        raise ToyddError(f"{path}: grid cannot be combined with experiment = {which!r} (it builds its own grid); "
                         "use [base] to change fields of every job")
    d = definitions[which]
    if d.kind != "toy" and base:
        raise ToyddError(f"{path}: [base] sets toy-model fields, but {which} trains {d.kind} jobs")
    p = get_preset(preset_name)
    try:
        configs, built = d.build(dataclasses.replace(p, base={**p.base, **base}))
    except ToyddError as e:
        raise ToyddError(f"{path}: {e}") from None
    return Experiment(name=name, description=description or d.description, preset=p.name,
                      configs=unique_jobs(configs), params={**built, **params, "based_on": which},
                      source=str(path), kind=d.kind)

