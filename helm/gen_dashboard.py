#!/usr/bin/env python3
"""Generates pgtenant/dashboards/pgtenant.json (run from helm/; commit the output)."""
import json

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
RSEL = 'instance=~"$instance", region=~"$region"'

panels = []
y = 0
pid = 0


def row(title):
    global y, pid
    pid += 1
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    y += 1


def ts(title, exprs, unit="short", w=8, x=0, desc="", kind="timeseries", stack=False):
    global pid
    pid += 1
    p = {"type": kind, "title": title, "id": pid, "datasource": DS, "description": desc,
         "gridPos": {"h": 8, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "desc"}},
         "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": e, "legendFormat": l}
                     for i, (e, l) in enumerate(exprs)]}
    if kind == "timeseries" and stack:
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal", "group": "A"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    panels.append(p)


def line(*specs):
    global y
    x = 0
    for s in specs:
        w = s.pop("w", 24 // len(specs))
        ts(x=x, w=w, **s)
        x += w
    y += 8


row("Clients")
line(
    dict(title="Open client connections", exprs=[(f"sum by (instance) (pgtenant_client_connections{{{SEL}}})", "{{instance}}")],
         desc="pgtenant_client_connections"),
    dict(title="Accepted connections /s", exprs=[(f"sum(rate(pgtenant_client_connections_accepted_total{{{SEL}}}[$__rate_interval]))", "accepted")], unit="ops"),
    dict(title="Rejected connections /s by reason", exprs=[(f"sum by (reason) (rate(pgtenant_client_connections_rejected_total{{{SEL}}}[$__rate_interval]))", "{{reason}}")], unit="ops", stack=True,
         desc="Token, region and startup-parameter rejections (SQLSTATE 28000/08006)."),
)
row("Statements and policy")
line(
    dict(title="Decisions /s by verdict", exprs=[(f"sum by (verdict) (rate(pgtenant_statements_total{{{SEL}}}[$__rate_interval]))", "{{verdict}}")], unit="ops", stack=True),
    dict(title="Denied /s by reason", exprs=[(f"sum by (reason) (rate(pgtenant_statements_total{{{SEL}, verdict=\"deny\"}}[$__rate_interval]))", "{{reason}}")], unit="ops", stack=True,
         desc="A rising deny rate after a deploy usually means an unscoped query in the application."),
    dict(title="Policy cache hit ratio", exprs=[(f"sum(rate(pgtenant_policy_cache_requests_total{{{SEL}, result=\"hit\"}}[$__rate_interval])) / sum(rate(pgtenant_policy_cache_requests_total{{{SEL}}}[$__rate_interval]))", "hit ratio")], unit="percentunit"),
)
line(
    dict(title="Proxy overhead (p50 / p99)", exprs=[
        (f"histogram_quantile(0.5, sum by (le) (rate(pgtenant_statement_overhead_seconds_bucket{{{RSEL}}}[$__rate_interval])))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(pgtenant_statement_overhead_seconds_bucket{{{RSEL}}}[$__rate_interval])))", "p99")], unit="s",
         desc="Time pgtenant adds (parse, policy, audit), excluding the backend."),
    dict(title="End-to-end statement latency (p50 / p99) by region", exprs=[
        (f"histogram_quantile(0.5, sum by (le, region) (rate(pgtenant_statement_duration_seconds_bucket{{{RSEL}}}[$__rate_interval])))", "p50 {{region}}"),
        (f"histogram_quantile(0.99, sum by (le, region) (rate(pgtenant_statement_duration_seconds_bucket{{{RSEL}}}[$__rate_interval])))", "p99 {{region}}")], unit="s"),
    dict(title="Statements /s by region", exprs=[(f"sum by (region) (rate(pgtenant_statement_duration_seconds_count{{{RSEL}}}[$__rate_interval]))", "{{region}}")], unit="ops", stack=True),
)
row("Regions and backends")
line(
    dict(title="Region up", exprs=[(f"min by (region) (pgtenant_region_up{{{RSEL}}})", "{{region}}")], kind="stat",
         desc="0: the last dial or readiness probe of the region failed; its tenants get SQLSTATE 08006."),
    dict(title="Backend connections opened /s", exprs=[(f"sum by (region) (rate(pgtenant_backend_connections_total{{{RSEL}}}[$__rate_interval]))", "{{region}}")], unit="ops"),
    dict(title="Backend dial errors /s", exprs=[(f"sum by (region) (rate(pgtenant_backend_dial_errors_total{{{RSEL}}}[$__rate_interval]))", "{{region}}")], unit="ops"),
)
row("Transaction pooling (pool.mode: transaction)")
line(
    dict(title="Pooled backends by state", exprs=[(f"sum by (region) (pgtenant_pool_active_servers{{{RSEL}}})", "{{region}} active"),
                                                   (f"sum by (region) (pgtenant_pool_idle_servers{{{RSEL}}})", "{{region}} idle")], stack=True,
         desc="Backend connections of the transaction-mode pools: held by a client (active) or not (idle); at most pool.size per region, database and read-only flag."),
    dict(title="Clients waiting for a backend", exprs=[(f"sum by (region) (pgtenant_pool_waiting_clients{{{RSEL}}})", "{{region}}"),
                                                       (f"sum by (region) (pgtenant_pool_clients{{{RSEL}}})", "{{region}} clients")],
         desc="Clients waiting for a pooled backend now, against the clients using the pools. Waits longer than pool.max_wait fail with SQLSTATE 53300."),
    dict(title="Longest current wait", exprs=[(f"max by (region) (pgtenant_pool_max_wait_seconds{{{RSEL}}})", "{{region}}")], unit="s",
         desc="How long the longest current wait for a pooled backend has lasted (pool.max_wait bounds it)."),
)
row("Audit trail")
line(
    dict(title="Audit queue depth", exprs=[(f"sum by (instance) (pgtenant_audit_queue_depth{{{SEL}}})", "{{instance}}"),
                                           (f"sum by (instance) (pgtenant_audit_queue_capacity{{{SEL}}})", "capacity {{instance}}")],
         desc="Events accepted but not yet in the regional database. Near capacity, statements slow down (async) or are refused with 57P03 (spool)."),
    dict(title="Audit spool size", exprs=[(f"sum by (instance) (pgtenant_audit_spool_bytes{{{SEL}}})", "{{instance}}")], unit="bytes"),
    dict(title="Audit events /s", exprs=[(f"sum(rate(pgtenant_audit_events_written_total{{{SEL}}}[$__rate_interval]))", "written"),
                                         (f"sum(rate(pgtenant_audit_events_failed_total{{{SEL}}}[$__rate_interval]))", "failed")], unit="ops"),
    dict(title="Spool fdatasync latency (mean)", exprs=[
        (f"sum by (instance) (rate(pgtenant_audit_spool_fsync_seconds_total{{{SEL}}}[$__rate_interval])) / sum by (instance) (rate(pgtenant_audit_spool_fsyncs_total{{{SEL}}}[$__rate_interval]))", "{{instance}}")], unit="s",
         desc="What the spool's disk gives under load; in spool_fsync: group every statement waits for at least one."),
)
line(
    dict(title="Audit write latency (p50 / p99)", exprs=[
        (f"histogram_quantile(0.5, sum by (le, region) (rate(pgtenant_audit_write_duration_seconds_bucket{{{RSEL}}}[$__rate_interval])))", "p50 {{region}}"),
        (f"histogram_quantile(0.99, sum by (le, region) (rate(pgtenant_audit_write_duration_seconds_bucket{{{RSEL}}}[$__rate_interval])))", "p99 {{region}}")], unit="s"),
    dict(title="Audit batch size (mean)", exprs=[
        (f"sum by (region) (rate(pgtenant_audit_batch_size_sum{{{RSEL}}}[$__rate_interval])) / sum by (region) (rate(pgtenant_audit_batch_size_count{{{RSEL}}}[$__rate_interval]))", "{{region}}")]),
    dict(title="Audit write errors /s", exprs=[(f"sum by (region) (rate(pgtenant_audit_write_errors_total{{{RSEL}}}[$__rate_interval]))", "{{region}}")], unit="ops"),
)
line(
    dict(title="Audit chains", exprs=[(f"max by (region) (pgtenant_audit_chains{{{RSEL}}})", "{{region}}")], kind="stat"),
    dict(title="Chain head entries", exprs=[(f"max by (region) (pgtenant_audit_chain_head_entries{{{RSEL}}})", "{{region}}")]),
    dict(title="Seconds since last audit append", exprs=[(f"time() - max by (region) (pgtenant_audit_last_append_timestamp_seconds{{{RSEL}}})", "{{region}}")], unit="s", kind="stat"),
    dict(title="Audit integration lag", exprs=[(f"max by (region) (pgtenant_audit_integration_lag_seconds{{{RSEL}}})", "{{region}}")], unit="s"),
)
row("Process")
line(
    dict(title="Config reloads", exprs=[(f"sum by (result) (increase(pgtenant_config_reloads_total{{{SEL}}}[$__range]))", "{{result}}")], kind="stat"),
    dict(title="Since last good config load", exprs=[(f"time() - max by (instance) (pgtenant_config_last_reload_success_timestamp_seconds{{{SEL}}})", "{{instance}}")], unit="s", kind="stat"),
    dict(title="Build", exprs=[(f"pgtenant_build_info{{{SEL}}}", "{{version}} {{commit}} {{goversion}}")], kind="stat"),
    dict(title="Resident memory", exprs=[(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], unit="bytes"),
)

var = lambda name, q, label: {
    "name": name, "label": label, "type": "query", "datasource": DS, "query": {"query": q, "refId": name},
    "definition": q, "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}

dashboard = {
    "title": "pgtenant",
    "uid": "pgtenant-overview",
    "description": "pgtenant: client connections, policy decisions, latency, region health and the audit trail.",
    "tags": ["pgtenant", "postgresql", "multi-tenancy"],
    "editable": True,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "timezone": "",
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1},
        var("instance", "label_values(pgtenant_build_info, instance)", "Instance"),
        var("region", "label_values(pgtenant_region_up, region)", "Region"),
    ]},
    "panels": panels,
}

with open("pgtenant/dashboards/pgtenant.json", "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
