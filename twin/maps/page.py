"""The twin as one Folium (Leaflet) page that makes no request outside itself.

Folium's default page pulls Leaflet, jQuery, Bootstrap and Font Awesome from CDNs; a twin of a
subdistrict must open on an office machine without internet, so every asset comes from
``twin/static/vendor`` (inlined for a standalone file, or served by the API under ``/static``)
and only Leaflet plus its grouped layer control are used.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import folium
from branca.element import CssLink, Element, Figure, JavascriptLink, MacroElement
from folium.template import Template
from folium.utilities import JsCode

from twin.errors import InvalidInput
from twin.layer import Layer
from twin.maps import hotline
from twin.registry import all_layers, get_layer
from twin.settings import Settings

VENDOR_DIR = Path(__file__).parents[1] / "static" / "vendor"

# (name, path under VENDOR_DIR), in load order: Leaflet before the plugin that extends it.
_GLC = "leaflet-groupedlayercontrol/leaflet.groupedlayercontrol.min"
_CSS = (("leaflet_css", "leaflet/leaflet.css"), ("grouped_layer_control_css", f"{_GLC}.css"))
_JS = (("leaflet", "leaflet/leaflet.js"), ("grouped_layer_control", f"{_GLC}.js"))
# The live map's plugins: clusters for dense point layers, the heat map of changes.
_LIVE_CSS = (("cluster_css", "leaflet.markercluster/MarkerCluster.css"),
             ("cluster_default_css", "leaflet.markercluster/MarkerCluster.Default.css"))
_LIVE_JS = (("cluster", "leaflet.markercluster/leaflet.markercluster.js"),
            ("heat", "leaflet.heat/leaflet-heat.js"))

GROUP_TITLES = {"areas": "片区 Areas", "twin": "要素 Features", "base": "底图 Base"}
# The live map: the most features of one layer it loads for the visible box, and how often it
# asks the change feed what changed (milliseconds; an edit shows within this and a load).
LIVE_PAGE_LIMIT = 5_000
LIVE_POLL_MS = 3_000
# Cases (一网统管) on the live map: the states drawn (open, and parked), their colours and
# labels, and how often the page asks for the cases in view again. It asks rather than waits
# for a signal: a case goes overdue by the clock passing, with no event that could signal it.
CASE_STATES = {
    "reported": ("#8e24aa", "上报 reported"),
    "filed": ("#1e88e5", "立案 filed"),
    "dispatched": ("#fb8c00", "已派遣 dispatched"),
    "handled": ("#43a047", "已处置待核查 handled"),
    "parked": ("#6d4c41", "挂账 parked"),
    "closed": ("#78909c", "结案 closed"),
    "not_filed": ("#bdbdbd", "不予立案 not filed"),
    "void": ("#bdbdbd", "作废 void"),
}
CASE_SHOWN = ("reported", "filed", "dispatched", "handled", "parked")
CASE_OVERDUE = "#d50000"
CASE_POLL_MS = 5_000
CASE_PAGES = 5  # pages of 1,000 cases at most for one view

_TIANDITU = ("https://t{s}.tianditu.gov.cn/%s_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
             "&LAYER=%s&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}"
             "&TILECOL={x}&tk=%s")

_AMAP = ("https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8"
         "&x={x}&y={y}&z={z}")

_ASSET_REF = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']*)", re.I)

_PAGE_CSS = """
.leaflet-container { background: #f4f3ef; }
.leaflet-container, .twin-box, .twin-popup {
  font-family: "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei",
               system-ui, sans-serif;
}
.twin-box { background: rgba(255,255,255,.92); padding: 6px 9px; border-radius: 4px;
            box-shadow: 0 1px 5px rgba(0,0,0,.35); font-size: 12px; line-height: 1.45; }
.twin-legend { max-height: 55vh; overflow-y: auto; }
.twin-legend h1 { font-size: 14px; margin: 0 0 4px; }
.twin-legend ul { list-style: none; margin: 0 0 2px; padding: 0; }
.twin-legend ul ul { margin-left: 20px; }
.twin-swatch { display: inline-block; width: 14px; height: 10px; margin-right: 6px;
               vertical-align: middle; border: 2px solid; box-sizing: border-box; }
.twin-swatch.line { height: 0; border-width: 2px 0 0; }
.twin-swatch.point { width: 10px; border-radius: 50%; margin: 0 8px 0 2px; }
.twin-popup table { border-collapse: collapse; margin-top: 4px; }
.twin-popup th { text-align: left; font-weight: normal; color: #555; padding: 1px 8px 1px 0; }
.twin-popup td { padding: 1px 0; }
.twin-popup .twin-layer { color: #777; }
.twin-history-list { margin: 4px 0 0; padding-left: 18px; max-height: 160px; overflow-y: auto; }
.twin-live form { display: flex; flex-direction: column; gap: 4px; margin-top: 4px; }
.twin-live a { color: #1565c0; }
.twin-kpi select { max-width: 260px; }
.twin-kpi-legend { margin-top: 4px; }
"""

# The live map's cases: a dot coloured by state; an overdue one bigger, ringed in red and
# pulsing; a cluster holding an overdue case ringed too.
_CASE_CSS = """
.twin-case { border-radius: 50%; border: 2px solid #fff; box-sizing: border-box;
             box-shadow: 0 0 2px rgba(0,0,0,.6); }
.twin-case.overdue { border: 3px solid OVERDUE; box-shadow: 0 0 0 2px #fff, 0 0 6px OVERDUE; }
.twin-case.overdue::after { content: ""; position: absolute; inset: -9px; border-radius: 50%;
  border: 2px solid OVERDUE; animation: twin-pulse 1.6s ease-out infinite; }
@keyframes twin-pulse { from { transform: scale(.6); opacity: 1; }
                        to { transform: scale(1.5); opacity: 0; } }
.twin-case-cluster div { background: rgba(30,136,229,.75); color: #fff; font-weight: bold; }
.twin-case-cluster { background: rgba(30,136,229,.3); }
.twin-case-cluster.overdue { background: rgba(213,0,0,.35); box-shadow: 0 0 0 3px OVERDUE; }
.twin-case-cluster.overdue div { background: OVERDUE; }
.twin-case-popup .twin-case-state { display: inline-block; padding: 0 6px; border-radius: 3px;
  color: #fff; margin-right: 6px; }
.twin-case-popup .twin-case-late { color: OVERDUE; font-weight: bold; }
.twin-case-timeline { margin: 4px 0 0; padding-left: 18px; max-height: 200px; overflow-y: auto; }
.twin-case-timeline li { margin-bottom: 3px; }
.twin-case-timeline .twin-case-reason { color: #555; }
.twin-legend .twin-case-swatch { display: inline-block; width: 10px; height: 10px;
  margin: 0 8px 0 2px; border-radius: 50%; vertical-align: middle; }
.twin-legend .twin-case-swatch.overdue { border: 2px solid OVERDUE; width: 12px; height: 12px;
  margin: 0 6px 0 0; box-sizing: border-box; }
""".replace("OVERDUE", CASE_OVERDUE)

# Popups and tooltips are built with textContent: feature properties are user input.
_PAGE_JS = """
function twinText(tag, text) {
  const el = document.createElement(tag);
  el.textContent = text === null || text === undefined ? "" : String(text);
  return el;
}
function twinFeature(name) {
  const spec = TWIN_LAYERS[name];
  const show = (key, value) => {
    if (value === null || value === undefined) return "";
    if (key === spec.state) return spec.states[value] || String(value);
    if (typeof value === "boolean") return value ? "是 yes" : "否 no";
    if (Array.isArray(value)) return value.join(", ");
    return String(value);
  };
  const when = (iso) => {
    const t = new Date(iso);
    return isNaN(t) ? show("", iso) : t.toLocaleString("zh-CN", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      hour12: false});
  };
  return (feature, layer) => {
    const p = feature.properties;
    const state = spec.state ? show(spec.state, p[spec.state]) : "";
    // most points have no name: the layer's title and the id (or code) say which one it is
    const label = p.name || [spec.title, p.code || (feature.id === undefined ? "" :
                                                    `#${feature.id}`)].filter(Boolean).join(" ");
    layer.bindTooltip(() => twinText("div", state ? `${label} · ${state}` : label),
                      {sticky: true});
    layer.bindPopup(() => {
      const div = document.createElement("div");
      div.className = "twin-popup";
      const title = twinText("div", spec.title);
      title.className = "twin-layer";
      div.append(twinText("b", label), title);
      const rows = spec.fields.map(([key, label]) => [label, show(key, p[key])]).concat([
        ["标签 Tags", show("tags", p.tags)],
        ["微网格 Micro-grid", show("micro_grid", p.micro_grid)],
        ["版本 Version", show("version", p.version)],
        ["最后修改 Last change",
         [show("", p.changed_by), (p.changed_at || p.updated) ? when(p.changed_at || p.updated)
                                                               : ""]
           .filter(Boolean).join(" · ")],
      ]);
      const table = document.createElement("table");
      for (const [label, value] of rows) {
        if (value !== "") table.insertRow().append(twinText("th", label), twinText("td", value));
      }
      div.append(table);
      if (window.twinHistory && feature.id !== undefined) {  // the live map: ask the API
        const link = twinText("a", "历史 History");
        link.href = "#";
        link.className = "twin-history";
        link.onclick = async (event) => {
          event.preventDefault();
          const list = document.createElement("ol");
          list.className = "twin-history-list";
          // hidden, not removed: Leaflet takes a click on a node gone from the page for a
          // click on the map, and closes the popup
          link.hidden = true;
          link.after(list);
          for (const v of await window.twinHistory(name, feature.id)) {
            const c = v.change || {};
            list.append(twinText("li", [`v${v.version}`, c.actor, when(v.valid_from),
                                        c.reason, (c.changed || []).join(", ")]
              .filter(Boolean).join(" · ")));
          }
          layer.setPopupContent(div);  // kept as it is now: update() would build it afresh
        };
        div.append(link);
      }
      return div;
    }, {maxWidth: 360});
  };
}
"""


class _Box(MacroElement):
    """A Leaflet control holding HTML built (and escaped) here, so it stacks in a map corner."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function () {
            const box = L.control({position: {{ this.position|tojson }}});
            box.onAdd = function () {
                const div = L.DomUtil.create("div", {{ this.css_class|tojson }});
                div.innerHTML = {{ this.html|tojson }};
                L.DomEvent.disableClickPropagation(div);
                L.DomEvent.disableScrollPropagation(div);
                return div;
            };
            box.addTo({{ this._parent.get_name() }});
        })();
        {% endmacro %}
    """)

    def __init__(self, html: str, position: str, css_class: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "Box"
        self.html = html
        self.position = position
        self.css_class = css_class


class _Call(MacroElement):
    """A line of script run where the map's own script has made the map and its groups."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this.code }}
        {% endmacro %}
    """)

    def __init__(self, code: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "Call"
        self.code = code


class _Groups(MacroElement):
    """The grouped layer control (the vendored plugin), kept in a variable so that the live
    map can add its own overlays to it (folium's GroupedLayerControl keeps none)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.control.groupedLayers(null, {
          {%- for title, layers in this.grouped.items() %}
          {{ title|tojson }}: {
            {%- for name, variable in layers %}
            {{ name|tojson }}: {{ variable }},
            {%- endfor %}
          },
          {%- endfor %}
        }, {collapsed: false}).addTo({{ this._parent.get_name() }});
        {% endmacro %}
    """)

    def __init__(self, grouped: dict[str, list[tuple[str, str]]]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "GroupedLayerControl"
        self.grouped = grouped


def render_map(collections: dict[str, dict[str, Any]], settings: Settings, *, title: str,
               standalone: bool = True, asset_url: str = "/static/vendor",
               note: str | None = None) -> str:
    """The whole HTML page showing ``collections`` (layer name -> FeatureCollection).

    ``standalone`` inlines Leaflet so the file works opened from disk; otherwise scripts and
    styles are referenced under ``asset_url``. ``note`` (e.g. the data source) goes in a corner.
    """
    if settings.basemap == "amap":
        raise InvalidInput("basemap 'amap' (GCJ-02) is drawn by the live map (/map), which "
                           "shifts the features as it draws them; a standalone page takes "
                           "none, osm or tianditu")
    registry = all_layers()
    for name in collections:
        get_layer(name)  # unknown names raise NotFound naming the known layers
    layers = [layer for name, layer in registry.items() if name in collections]
    m, groups = _frame(layers, settings, title, standalone, asset_url, note)
    for layer in layers:
        _geojson(layer, collections[layer.name]).add_to(groups[layer.name])
    bounds = m.get_bounds()
    if None not in bounds[0]:  # there are features
        m.fit_bounds(cast(list[list[float]], bounds), padding=(20, 20), max_zoom=18)
    return _page(m, standalone, asset_url)


def render_live_map(settings: Settings, *, title: str, bounds: list[list[float]] | None,
                    asset_url: str = "/static", note: str | None = None) -> str:
    """The map page the API serves: no feature in it. Its script (``map/live.js``) signs in,
    loads each shown layer for the visible box from the API, and reloads a layer when the
    change feed says it changed. ``bounds`` ([[south, west], [north, east]]) is the first
    view."""
    layers = list(all_layers().values())
    m, groups = _frame(layers, settings, title, False, f"{asset_url}/vendor", note,
                       _case_legend_html() + hotline.legend_html())
    figure = cast(Figure, m.get_root())
    figure.header.add_child(Element(f"<style>{_CASE_CSS}</style>"), name="twin_case_css")
    figure.header.add_child(Element(f"<style>{hotline.ORDER_CSS}</style>"),
                            name="twin_order_css")
    for name, path in _LIVE_CSS:
        figure.header.add_child(CssLink(f"{asset_url}/vendor/{path}"), name=name)
    for name, path in _LIVE_JS:
        figure.header.add_child(JavascriptLink(f"{asset_url}/vendor/{path}"), name=name)
    figure.header.add_child(JavascriptLink(f"{asset_url}/map/live.js"), name="twin_live")
    # no favicon request (a 404 in the console otherwise)
    figure.header.add_child(Element('<link rel="icon" href="data:,">'), name="twin_icon")
    control = next(child for child in m._children.values() if isinstance(child, _Groups))
    config = {"map": m.get_name(), "control": control.get_name(),
              "groups": {name: group.get_name() for name, group in groups.items()},
              "min_zoom": {layer.name: layer.map_min_zoom for layer in layers},
              "cluster": [layer.name for layer in layers if layer.map_cluster],
              "limit": LIVE_PAGE_LIMIT, "poll_ms": LIVE_POLL_MS,
              "gcj02": settings.basemap == "amap", "time_zone": settings.time_zone,
              "cases": {"states": {state: {"colour": colour, "label": label}
                                   for state, (colour, label) in CASE_STATES.items()},
                        "shown": list(CASE_SHOWN), "overdue": CASE_OVERDUE,
                        "poll_ms": CASE_POLL_MS, "pages": CASE_PAGES},
              "orders": hotline.map_config()}
    _Call(f"twinLive({_js_json(config)});").add_to(m)  # after the map and its groups exist
    if bounds is not None:
        m.fit_bounds(bounds, padding=(20, 20), max_zoom=18)
    return _page(m, False, asset_url)


def _frame(layers: list[Layer], settings: Settings, title: str, standalone: bool,
           asset_url: str, note: str | None, more_legend: str = ""
           ) -> tuple[folium.Map, dict[str, folium.FeatureGroup]]:
    """The map with its assets, basemap, an empty group per layer in the grouped layer
    control, the legend (and ``more_legend``, HTML made here) and the credits."""
    m = folium.Map(tiles=None, prefer_canvas=True, control_scale=True, maxZoom=20)
    figure = cast(Figure, m.get_root())
    figure.title = escape(title)
    _add_assets(figure, m, standalone, asset_url)
    _add_basemap(m, settings)

    groups: dict[str, folium.FeatureGroup] = {}
    grouped: dict[str, list[tuple[str, str]]] = {}
    for layer in layers:
        group = folium.FeatureGroup(name=layer.title)
        group.add_to(m)
        groups[layer.name] = group
        grouped.setdefault(GROUP_TITLES.get(layer.group, layer.group), []).append(
            (layer.title, group.get_name()))
    _Groups(grouped).add_to(m)

    _Box(_legend_html(title, layers) + more_legend, "bottomleft",
         "twin-box twin-legend").add_to(m)
    credits = [f"审图号 Map review no.: {settings.map_review_number}"
               if settings.map_review_number else "",
               f"数据来源 Data source: {settings.map_source}" if settings.map_source else "",
               note or ""]
    if any(credits):
        html = "<br>".join(escape(line) for line in credits if line)
        _Box(html, "bottomright", "twin-box").add_to(m)
    return m, groups


def _page(m: folium.Map, standalone: bool, asset_url: str) -> str:
    """The rendered page, refused if any script or style would come from outside the twin."""
    page: str = cast(Figure, m.get_root()).render()
    stray = [ref for ref in _ASSET_REF.findall(page) if not ref.startswith("data:")
             and (standalone or not ref.startswith(f"{asset_url}/"))]
    if stray:
        raise RuntimeError(f"map page would load assets from outside the twin: {stray}")
    return page


def _add_assets(figure: Figure, m: folium.Map, standalone: bool, asset_url: str) -> None:
    """Replace folium's CDN assets with the vendored ones plus the page's own CSS and JS."""
    m.default_js, m.default_css = [], []
    for name, path in _CSS:
        figure.header.add_child(
            Element(f"<style>{(VENDOR_DIR / path).read_text()}</style>") if standalone
            else CssLink(f"{asset_url}/{path}"), name=name)
    for name, path in _JS:
        figure.header.add_child(
            Element(f"<script>{(VENDOR_DIR / path).read_text()}</script>") if standalone
            else JavascriptLink(f"{asset_url}/{path}"), name=name)
    specs = {layer.name: _layer_spec(layer) for layer in all_layers().values()}
    figure.header.add_child(Element(f"<style>{_PAGE_CSS}</style>"), name="twin_css")
    figure.header.add_child(
        Element(f"<script>const TWIN_LAYERS = {_js_json(specs)};{_PAGE_JS}</script>"),
        name="twin_js")


def _add_basemap(m: folium.Map, settings: Settings) -> None:
    """Tiles only when asked for: by default the twin's own areas and streets are the map."""
    if settings.basemap == "osm":
        folium.TileLayer("OpenStreetMap", control=False, max_zoom=19).add_to(m)
    elif settings.basemap == "amap":
        folium.TileLayer(_AMAP, attr="© 高德 AutoNavi", subdomains="1234", max_zoom=18,
                         control=False).add_to(m)
    elif settings.basemap == "tianditu":
        key = quote(settings.tianditu_key or "", safe="")  # the settings require one
        for kind in ("vec", "cva"):  # vector map, then its annotation (place names)
            folium.TileLayer(_TIANDITU % (kind, kind, key), attr="© 天地图 Tianditu",
                             subdomains="01234567", max_zoom=18, control=False).add_to(m)


def _geojson(layer: Layer, collection: dict[str, Any]) -> folium.GeoJson:
    """The layer's features, coloured by state; popups and tooltips come from the page's JS."""
    style = layer.style

    def colour(feature: dict[str, Any]) -> str:
        state = feature["properties"].get(layer.state_field) if layer.state_field else None
        return style.by_state.get(state, style.color) if state is not None else style.color

    def paint(feature: dict[str, Any]) -> dict[str, Any]:
        stroke = colour(feature)
        fill = stroke if style.by_state or style.fill_color is None else style.fill_color
        return {"color": stroke, "weight": style.weight, "fillColor": fill,
                "fillOpacity": style.fill_opacity}

    def highlight(feature: dict[str, Any]) -> dict[str, Any]:
        return {"weight": style.weight + 2}

    marker = (folium.CircleMarker(radius=style.radius)
              if layer.geometry_type == "Point" else None)
    return folium.GeoJson(collection, name=layer.title, style_function=paint,
                          highlight_function=highlight, marker=marker,
                          on_each_feature=JsCode(f"twinFeature({json.dumps(layer.name)})"))


def _layer_spec(layer: Layer) -> dict[str, Any]:
    """What the page's JS needs to label a feature of ``layer`` in its popup and tooltip."""
    style = layer.style
    return {
        "title": layer.title,
        "state": layer.state_field,
        "fields": [[key, layer.field_label(key)] for key in layer.attributes.model_fields],
        "states": {state: layer.state_labels.get(state, state) for state in layer.style.by_state},
        "point": layer.geometry_type == "Point",
        "style": {"color": style.color, "fill": style.fill_color, "weight": style.weight,
                  "radius": style.radius, "opacity": style.fill_opacity,
                  "by_state": style.by_state},
    }


def _legend_html(title: str, layers: list[Layer]) -> str:
    """Title, then each layer's swatch and, for layers coloured by state, each state's."""
    shape = {"Point": "point", "LineString": "line"}

    def swatch(layer: Layer, colour: str, fill: str) -> str:
        kind = shape.get(layer.geometry_type, "area")
        return (f'<span class="twin-swatch {kind}" style="border-color:{escape(colour)};'
                f'background:{escape(fill)}"></span>')

    items = []
    for layer in layers:
        style = layer.style
        fill = style.fill_color or (style.color if layer.geometry_type == "Point" else "none")
        states = "".join(
            f"<li>{swatch(layer, colour, colour)}"
            f"{escape(layer.state_labels.get(state, state))}</li>"
            for state, colour in style.by_state.items())
        items.append(f"<li>{swatch(layer, style.color, fill) if not states else ''}"
                     f"{escape(layer.title)}{f'<ul>{states}</ul>' if states else ''}</li>")
    return f"<h1>{escape(title)}</h1><div>图例 Legend</div><ul>{''.join(items)}</ul>"


def _case_legend_html() -> str:
    """The cases' colours by state, and how an overdue one looks."""
    items = "".join(f'<li><span class="twin-case-swatch" style="background:{escape(colour)}">'
                    f"</span>{escape(label)}</li>"
                    for state, (colour, label) in CASE_STATES.items() if state in CASE_SHOWN)
    late = ('<li><span class="twin-case-swatch overdue"></span>'
            "超期 overdue (红圈 red ring)</li>")
    return f"<ul><li>案件 Cases (一网统管)<ul>{items}{late}</ul></li></ul>"


def _js_json(value: Any) -> str:
    """JSON that cannot end the ``<script>`` element it is written into."""
    return (json.dumps(value, ensure_ascii=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
