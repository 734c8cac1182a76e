"""``twin layer``: the twin's layers, and declaring one in a running twin (no restart, no code):
add a layer from a spec file, change one (new attributes, enum values, states, words), show a
layer's spec as TOML and its schema history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import app, app_engine, domain_errors, err, load_settings, out, staff

layer_app = typer.Typer(help="The layers (图层): list, show, add or change one in the running "
                             "twin.", no_args_is_help=True)
app.add_typer(layer_app, name="layer")

SpecArgument = Annotated[Path, typer.Argument(
    help="A layer spec: a TOML file like those in layers/ (format in twin/layerspec.py), e.g. "
         "one `twin import FILE --new-layer NAME` proposed.", exists=True, dir_okay=False)]


def _read(path: Path) -> dict[str, object]:
    from twin.layerspec import read_spec_data

    return read_spec_data(path)


@layer_app.command("add")
def add(spec: SpecArgument) -> None:
    """Add the layer SPEC declares: served, editable, on the tablets' forms and the map at once,
    by every running server. Its schema history starts here."""
    from twin.features.layers import declare_layer

    settings = load_settings()
    with domain_errors():
        done = declare_layer(app_engine(settings), staff(), _read(spec))
    out.print(f"layer {done.layer} added (version {done.version}); import into it with "
              f"`twin import FILE {done.layer}`")


@layer_app.command("change")
def change(spec: SpecArgument) -> None:
    """Change a layer to SPEC: new attributes (with a default, or nullable), enum values,
    states, tags, titles, style. Logged as its next version; a change its features might not
    fit (a removal, a type or range changed) is refused and nothing changes."""
    from twin.features.layers import declare_layer
    from twin.store.layerspecs import newest_specs

    settings = load_settings()
    declared = _read(spec)
    with domain_errors():
        engine = app_engine(settings)
        with engine.connect() as conn:
            current = newest_specs(conn).get(str(declared.get("name")))
        base = current["version"] if current else 0
        done = declare_layer(engine, staff(), declared, base)
    if not done.changes:
        out.print(f"layer {done.layer}: nothing changed (version {done.version})")
        return
    out.print(f"layer {done.layer} is at version {done.version}:")
    for line in done.changes:
        out.print(f"  - {line}")


@layer_app.command("list")
def list_layers() -> None:
    """Every layer: its geometry, group, spec version, and who declared it when."""
    from twin.registry import all_layers
    from twin.store.layerspecs import newest_specs

    settings = load_settings()
    with domain_errors(), app_engine(settings).connect() as conn:
        newest = newest_specs(conn)
    table = Table("layer 图层", "title 名称", "geometry 几何", "group 组", "version 版本",
                  "declared 定义", "by 操作人", "at 时间", title="图层 Layers")
    for name, layer in all_layers().items():
        row = newest.get(name, {})
        table.add_row(name, layer.title, layer.geometry_type, layer.group,
                      str(row.get("version", "")), str(row.get("source", "")),
                      str(row.get("changed_by", "")),
                      f"{row['changed_at']:%Y-%m-%d %H:%M}" if row else "")
    Console(width=max(out.width, 120)).print(table)


@layer_app.command("show")
def show(name: Annotated[str, typer.Argument(help="The layer's name (twin layer list).")],
         versions: Annotated[bool, typer.Option(help="Its schema history instead: every "
                                                "version, who, when, what changed.")] = False,
         ) -> None:
    """A layer's spec as the twin serves it, as TOML (save it as layers/NAME.toml to keep a
    change made at run time in the code too)."""
    import tomli_w

    from twin.features.layers import layer_versions
    from twin.registry import spec_of

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        spec = spec_of(name)
        if not versions:
            out.print(tomli_w.dumps(spec), end="", markup=False, highlight=False)
            return
        with engine.connect() as conn:
            rows = layer_versions(conn, name)
    table = Table("version 版本", "declared 定义", "by 操作人", "at 时间", "what changed 变更",
                  title=f"{name}: 模式历史 schema history")
    for r in rows:
        table.add_row(str(r["version"]), r["source"], r["changed_by"], r["changed_at"][:16],
                      r["summary"])
    Console(width=max(out.width, 120)).print(table)
    if not rows:
        err.print(f"layer {name} is not recorded yet: run `twin db migrate`")
