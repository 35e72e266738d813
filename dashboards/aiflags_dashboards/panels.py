"""Thin helpers over Grafana's foundation SDK so every aiflags panel is built
the same way: one Prometheus data source variable, a title, a description, a
unit and at least one query, laid out on a 24-column grid."""

import json
import string

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import prometheus as prom_models
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataTransformerConfig,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "aiflags"


class Query:
    """One target: a PromQL expression and how Grafana should show it."""

    def __init__(self, expr, legend="", instant=False):
        self.expr = expr
        self.legend = legend
        self.instant = instant

    def build(self, ref_id):
        q = prometheus.Dataquery().expr(self.expr).ref_id(ref_id).datasource(DATASOURCE)
        if self.legend:
            q = q.legend_format(self.legend)
        if self.instant:
            q = q.instant().format(prom_models.PromQueryFormat.TABLE)
        else:
            q = q.range()
        return q


def _common(panel, title, description, unit, queries, width, height):
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
    )
    for ref_id, query in zip(string.ascii_uppercase, queries):
        panel = panel.with_target(query.build(ref_id))
    return panel


def graph(title, description, unit, queries, width=12, height=8, stacked=False):
    """A time series panel with a table legend that shows last and max."""
    panel = timeseries.Panel().fill_opacity(10).line_width(1).legend(
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return _common(panel, title, description, unit, queries, width, height)


def single(title, description, unit, queries, width=6, height=4, show_name=False):
    """A stat panel showing the last value (or, with `show_name`, the series'
    name: for a query whose one series' label is the answer)."""
    panel = stat.Panel().graph_mode(common.BigValueGraphMode.AREA).reduce_options(
        common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    )
    if show_name:
        panel = panel.text_mode(common.BigValueTextMode.NAME).graph_mode(common.BigValueGraphMode.NONE)
    return _common(panel, title, description, unit, queries, width, height)


def grid(title, description, unit, queries, renames, width=24, height=8):
    """A table of instant queries merged on their labels; `renames` maps
    Grafana's value columns ("Value #A") and labels to headers."""
    panel = (
        table.Panel()
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": renames},
            )
        )
    )
    return _common(panel, title, description, unit, queries, width, height)


def datasource_variable():
    return dash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name, label, query, multi, all_value=None):
    """A variable filled from label values. With `multi`, "All" matches
    `all_value` (a regex) rather than Grafana's joined list of values."""
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
    )
    if multi:
        variable = variable.include_all(True).all_value(all_value)
    return variable


def dashboard(uid, title, description, variables, rows):
    """`rows` is a list of (row title, [panel builders])."""
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone(common.TimeZoneBrowser)
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("aiflags")
            .type("dashboards")
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        board = board.with_variable(variable)
    panel_id = 1
    for row_title, panels in rows:
        board = board.with_row(dash.Row(row_title).id(panel_id))
        panel_id += 1
        for panel in panels:
            board = board.with_panel(panel.id(panel_id))
            panel_id += 1
    return _tidy(json.loads(json.dumps(board.build(), cls=JSONEncoder)))


# Fields the SDK writes on every variable that only interval variables have.
_INTERVAL_ONLY = ("auto", "auto_min", "auto_count")


def _tidy(model):
    for variable in model["templating"]["list"]:
        if variable["type"] != "interval":
            for key in _INTERVAL_ONLY:
                variable.pop(key, None)
    return model
