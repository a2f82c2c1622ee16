"""`pytest-distill merge`: the results.json files of a run's CI shards (--distill-shard K/N)
as one run: results.json, report.html, summary.md, the table, the gates and their exit
status, the comparison and routes, decided by core/decide.py exactly as an unsharded run.

Shards that are not parts of one run are refused with one line: a different split, a
missing or duplicate shard, or a different definition (paths, -k/-m, models, the distill
options that change what is evaluated or decided, the plugin version).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from pytest_distill.core.compare import DEFAULT_ALPHA
from pytest_distill.core.cost import Cost, VolumeReport, cost_notes, tie_key, volume_models, volume_report
from pytest_distill.core.decide import PytestOutcome, decide, without_regression_limit
from pytest_distill.core.errors import ConfigError
from pytest_distill.core.gates import EXIT_OK, EXIT_TESTS_FAILED, Gate
from pytest_distill.core.matrix import build_matrix
from pytest_distill.core.records import Record
from pytest_distill.core.result import BaselineRun, RunInfo, RunResult, SuiteGate
from pytest_distill.core.routing import plan_routing
from pytest_distill.core.sampling import SuiteSample
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.models.registry import ModelEntry, eval_concurrency
from pytest_distill.plugin.options import parse_traffic_mix
from pytest_distill.report import terminal
from pytest_distill.report.replicas_view import replica_lines
from pytest_distill.report.results_file import FILE_NAME, read_results, records_of
from pytest_distill.report.write import append_step_summary, write_reports

EXIT_NO_TESTS = 5  # pytest.ExitCode.NO_TESTS_COLLECTED: an empty shard
EXIT_USAGE = 4  # pytest.ExitCode.USAGE_ERROR: shards that can't be merged

# definition["options"] names -> how the refusal calls them
_OPTION_NAMES = {
    "distill_models": "models",
    "distill_limit": "--limit",
    "distill_sample": "--sample",
    "distill_sample_seed": "--sample-seed",
    "distill_repeat": "--repeat",
    "distill_judge": "--judge",
    "distill_models_file": "models file",
}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "merge",
        help="combine the results.json of a run's --distill-shard K/N jobs",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "shards", nargs="+", metavar="SHARD", help="a shard's results.json, or the --distill-report folder holding it"
    )
    parser.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="DIR",
        help="write the merged results.json, report.html and summary.md into DIR",
    )
    parser.add_argument(
        "--baseline",
        metavar="FILE",
        help="the baseline the shards were run with (default: their --distill-baseline path, "
        "read from the current folder)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        paths = [shard_file(Path(p)) for p in args.shards]
        documents = [read_results(p, "pytest-distill merge:") for p in paths]
        result = merge(
            documents,
            [str(p) for p in paths],
            baseline_file=args.baseline,
            argv=["merge", *args.shards, "--out", args.out],
        )
        written = write_reports(Path(args.out), result)
    except ConfigError as exc:
        print(f"pytest-distill merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"pytest-distill merge: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    append_step_summary(result)
    print(f" pytest-distill: {len(paths)} shards merged ".center(88, "="))
    for line in terminal.render(result) + replica_lines(result.replicas):
        print(line)
    for path in written:
        print(f"distill report: {path}")
    return result.run.exit_status


def shard_file(path: Path) -> Path:
    return path / FILE_NAME if path.is_dir() else path


def check_shards(documents: list[dict[str, Any]], names: list[str]) -> None:
    """One run's shards, each once: else a ConfigError with one line."""
    shards = []
    for document, name in zip(documents, names, strict=True):
        shard = document["run"].get("shard")
        if not shard:
            raise ConfigError(f"{name} is not a shard: it was written without --distill-shard")
        shards.append((int(shard["index"]), int(shard["total"]), name))
    totals = sorted({total for _, total, _ in shards})
    if len(totals) > 1:
        raise ConfigError("shards of different splits: " + ", ".join(f"{n} is {i}/{t}" for i, t, n in shards))
    total = totals[0]
    seen: dict[int, str] = {}
    for index, _, name in shards:
        if index in seen:
            raise ConfigError(f"shard {index}/{total} given twice: {seen[index]} and {name}")
        seen[index] = name
    missing = [f"{i}/{total}" for i in range(1, total + 1) if i not in seen]
    if missing:
        raise ConfigError(
            f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing "
            f"(given: {', '.join(f'{i}/{total}' for i in sorted(seen))})"
        )
    first, first_name = documents[0]["run"].get("definition") or {}, names[0]
    for document, name in zip(documents[1:], names[1:], strict=True):
        other = document["run"].get("definition") or {}
        difference = _difference(first, other)
        if difference:
            raise ConfigError(
                f"{first_name} and {name} are not shards of one run: different {difference[0]} "
                f"({difference[1]!r} vs {difference[2]!r})"
            )


def _difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    labels = {
        "paths": "suites (paths given to pytest)",
        "keyword": "-k",
        "markexpr": "-m",
        "plugin_version": "plugin versions",
    }
    for key in ("paths", "keyword", "markexpr", "plugin_version"):
        if a.get(key) != b.get(key):
            return labels[key], a.get(key), b.get(key)
    options_a, options_b = a.get("options") or {}, b.get("options") or {}
    for key in sorted(set(options_a) | set(options_b)):
        if options_a.get(key) != options_b.get(key):
            label = _OPTION_NAMES.get(key, "--" + key.replace("_", "-"))
            return label, options_a.get(key), options_b.get(key)
    return None


def merge(
    documents: list[dict[str, Any]], names: list[str], baseline_file: str | None = None, argv: list[str] | None = None
) -> RunResult:
    """The shards as one run, decided as one run. Raises ConfigError with one line."""
    check_shards(documents, names)
    order = sorted(range(len(documents)), key=lambda i: int(documents[i]["run"]["shard"]["index"]))
    documents, names = [documents[i] for i in order], [names[i] for i in order]
    records: list[Record] = []
    owner: dict[tuple[str, str, str, int], str] = {}
    for document, name in zip(documents, names, strict=True):
        for record in records_of(document):
            key = (record.suite, record.model, record.example_id, record.repetition)
            if key in owner:
                raise ConfigError(
                    f"{record.suite} [{record.model}] example {record.example_id} is in both "
                    f"{owner[key]} and {name}: not shards of one split"
                )
            owner[key] = name
            records.append(record)
    first = documents[0]
    models = {name: entry for document in documents for name, entry in document["models"].items()}
    entries = {name: _entry(entry) for name, entry in models.items()}
    gates = _suite_gates(documents)

    def gate_for(suite_path: str, in_baseline: bool) -> Gate:
        gate = gates.get(suite_path, Gate())
        return gate if in_baseline else without_regression_limit(gate)

    baseline_path = first["run"].get("baseline")
    baseline = None
    if baseline_path is not None or baseline_file is not None:
        baseline = read_results(Path(baseline_file or baseline_path), "pytest-distill merge --baseline")
    decision = decide(
        records,
        entries,
        gate_for,
        _pytest_outcome(documents, records),
        float(first["run"]["route_tolerance_pp"]),
        baseline_records=records_of(baseline) if baseline is not None else None,
        concurrency=eval_concurrency(entries),
    )
    costs = dict(decision.costs)
    costs.update(_benched_costs(documents, entries))
    serving = _serving(documents)
    runs = [d["run"] for d in documents]
    base = first["run"]
    info = RunInfo(
        args=("pytest-distill", *(argv or ["merge", *names])),
        rootdir=base["rootdir"],
        models=tuple(base["models"]),
        limit=base["limit"],
        sample=base.get("sample"),
        sample_seed=base.get("sample_seed"),
        repeat=base["repeat"],
        constrain=base["constrain"],
        min_pass_rate=base["min_pass_rate"],
        max_regression=base["max_regression"],
        route_tolerance_pp=base["route_tolerance_pp"],
        alpha=decision.comparisons[0].alpha if decision.comparisons else DEFAULT_ALPHA,
        baseline=baseline_path if baseline_file is None else baseline_file,
        workers=max(int(r["workers"]) for r in runs),
        exit_status=decision.exit_status,
        duration_s=max(float(r["duration_s"] or 0.0) for r in runs),
        definition=base.get("definition"),
        shard=None,
        merged_from=tuple(names),
    )
    suites: dict[str, SuiteGate] = {}
    for document in documents:
        for suite, value in document["suites"].items():
            suites.setdefault(suite, SuiteGate(value["path"], Gate(**value["gate"])))
    deltas = decision.deltas
    # the matrix and routing table exactly as plugin/finish.py builds them, on the merged figures
    per_million = {k: c.per_million for k, c in costs.items()}
    tie_keys = {name: tie_key(entry, name) for name, entry in entries.items()}
    matrix = build_matrix(decision.summaries, records, decision.comparisons, per_million, entries, info.models)
    routing = plan_routing(
        decision.summaries, decision.comparisons, per_million, entries, tie_keys, dict(_traffic_mix(base))
    )
    return RunResult(
        run=info,
        records=tuple(records),
        summaries=decision.summaries,
        costs=costs,
        gates=decision.gates,
        suites=dict(sorted(suites.items())),
        comparisons=decision.comparisons,
        baseline=None
        if baseline is None
        else BaselineRun(path=str(info.baseline), created_at=baseline.get("created_at"), deltas=deltas),
        models=models,
        cost_notes=tuple(cost_notes(entries.values(), sum(r.cached for r in records))),
        samples=_samples(documents),
        matrix=matrix,
        routing=routing,
        priced_with={k: m for k, m in serving.items() if m.source != "this run"},
        volume=_volume(first, records, entries, serving),
        replicas=_replicas(documents),
    )


def _serving(documents: list[dict[str, Any]]) -> dict[str, ServingMeasurement]:
    """model -> the serving measurement that priced it in the shards (their `bench` or
    `priced_with`), first found: the same file or cache entry in every shard."""
    found: dict[str, ServingMeasurement] = {}
    for document in documents:
        for data in [*(document.get("bench") or []), *(document.get("priced_with") or [])]:
            found.setdefault(data["model"], ServingMeasurement.from_dict(data))
    return found


def _volume(
    first: Mapping[str, Any],
    records: list[Record],
    entries: Mapping[str, ModelEntry],
    serving: Mapping[str, ServingMeasurement],
) -> VolumeReport | None:
    """The cost-at-volume table over all the shards' answers, at the traffic levels and peak
    factor the shards were run with (the same options in every shard)."""
    volume = first.get("volume")
    if volume is None:
        return None
    return volume_report(
        volume_models(records, entries, serving), volume["traffic_per_day"], float(volume["peak_factor"])
    )


def _replicas(documents: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], ...]]:
    """model -> one line per replica over all the shards: requests and errors add up, the mean
    latency is weighted by requests. p50 and p95 are None: a percentile of percentiles is not a
    percentile, and the shards keep no raw timings (they are timings, which a merge does not claim)."""
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for document in documents:
        for model, rows in (document.get("replicas") or {}).items():
            for row in rows:
                into = merged.setdefault(model, {}).setdefault(
                    row["url"],
                    {"url": row["url"], "devices": row.get("devices"), "requests": 0, "errors": 0, "_s": 0.0},
                )
                requests = int(row.get("requests") or 0)
                into["requests"] += requests
                into["errors"] += int(row.get("errors") or 0)
                into["_s"] += float(row.get("latency_mean_s") or 0.0) * requests
                into["devices"] = into["devices"] or row.get("devices")
    return {
        model: tuple(
            {
                "url": row["url"],
                "devices": row["devices"],
                "requests": row["requests"],
                "errors": row["errors"],
                "latency_p50_s": None,
                "latency_p95_s": None,
                "latency_mean_s": row["_s"] / row["requests"] if row["requests"] else None,
            }
            for row in by_url.values()
        )
        for model, by_url in merged.items()
    }


def _samples(documents: list[dict[str, Any]]) -> dict[str, SuiteSample]:
    """suite -> what its sampled rows stand for (the same in every shard: sampled before the split)."""
    samples: dict[str, SuiteSample] = {}
    for document in documents:
        for suite, value in document["suites"].items():
            if value.get("sample"):
                samples.setdefault(suite, SuiteSample(**value["sample"]))
    return samples


def _traffic_mix(run: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The shards' --distill-traffic-mix, from the run definition they all share."""
    mix = ((run.get("definition") or {}).get("options") or {}).get("distill_traffic_mix")
    return list(parse_traffic_mix(mix)) if mix else []


def _entry(public: Mapping[str, Any]) -> ModelEntry:
    """A results.json model entry (secrets masked) back as an entry: prices and GPU $/hour are what
    costs and the tie rule read."""
    known = {f.name for f in fields(ModelEntry)}
    return ModelEntry(**{k: v for k, v in public.items() if k in known})


def _suite_gates(documents: list[dict[str, Any]]) -> dict[str, Gate]:
    """suite folder -> its gate as the shards computed it (the same in every shard: same options)."""
    gates: dict[str, Gate] = {}
    for document in documents:
        for value in document["suites"].values():
            gates.setdefault(value["path"], Gate(**value["gate"]))
    return gates


def _pytest_outcome(documents: list[dict[str, Any]], records: list[Record]) -> PytestOutcome:
    """What pytest would have concluded over all the items, before gates."""
    shards = [d["run"]["shard"] for d in documents]
    failed = sum(int(s["tests_failed"]) for s in shards)
    stopped = any(s["stopped_early"] for s in shards)
    unusual = [
        s["pytest_exit_status"]
        for s in shards
        if s["pytest_exit_status"] not in (EXIT_OK, EXIT_TESTS_FAILED, EXIT_NO_TESTS)
    ]
    if unusual:
        status = unusual[0]  # interrupted, internal or usage error: never turned into a pass
    elif failed:
        status = EXIT_TESTS_FAILED
    elif all(s["pytest_exit_status"] == EXIT_NO_TESTS for s in shards):
        status = EXIT_NO_TESTS
    else:
        status = EXIT_OK
    return PytestOutcome(status, failed, stopped)


def _benched_costs(documents: list[dict[str, Any]], entries: Mapping[str, ModelEntry]) -> dict[tuple[str, str], Cost]:
    """A self-hosted cost from a saved --distill-bench rate is kept when every shard used the same
    one; otherwise the merged run's measured rate stands (a timing)."""
    seen: dict[tuple[str, str], set[tuple[Any, str]]] = {}
    for document in documents:
        for s in document["summaries"]:
            entry = entries.get(s["model"])
            if entry is not None and entry.self_hosted:
                seen.setdefault((s["suite"], s["model"]), set()).add((s["cost"]["per_request"], s["cost"]["basis"]))
    return {
        key: Cost(*next(iter(found)))
        for key, found in seen.items()
        if len(found) == 1 and "--distill-bench" in next(iter(found))[1]
    }
