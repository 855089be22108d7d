"""taskmill.example.toml documents every configuration key at its default, and
a typo in a key is answered with the nearest known key (issue 17).

- As it stands the file parses and gives the sidecar exactly the settings it
  has with no ``--config`` at all.
- With every commented-out setting (``# key = value``, ``# [table]``) turned
  on, it still parses, and between them the active and commented lines name
  every key the schema knows, so a key added to config.py without a line here
  fails this test.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from taskmill import config
from taskmill.cli import build_options, build_parser
from taskmill.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "taskmill.example.toml"
COMMENTED_SETTING = re.compile(r"^# (\[[^\]]+\](?: +#.*)?|[a-z_]+ = .*)$", re.MULTILINE)


def sidecar_options(tmp_path: Path, *flags: str) -> Any:
    args = build_parser().parse_args(["--db", str(tmp_path / "t.db"), *flags])
    return build_options(args, create_dirs=False)


def test_the_example_is_the_defaults(tmp_path: Path) -> None:
    with_example = sidecar_options(tmp_path, "--config", str(EXAMPLE))
    without = sidecar_options(tmp_path)
    assert with_example.config == without.config
    assert with_example.domains == [] and without.domains == []
    cfg = load_config(EXAMPLE)
    assert cfg.aging is None and cfg.groups == {} and cfg.rate_limits == {}
    assert cfg.app_modules == [] and cfg.app_paths == []


def uncommented() -> str:
    return COMMENTED_SETTING.sub(lambda m: m.group(1), EXAMPLE.read_text())


NAMED_TABLES = ("groups", "rate_limits", "group_rate_limits", "domains", "domains.*.types")
#: Sub-schemas documented once for all the places they appear.
SHARED = {
    "rate_limits.*.": "rate.",
    "group_rate_limits.*.": "rate.",
    "domains.*.default_retry.": "retry.",
    "domains.*.types.*.retry.": "retry.",
}


def keys(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every key, with named tables (groups, domains...) as ``*``."""
    for name, value in table.items():
        path = f"{prefix}.{'*' if prefix in NAMED_TABLES else name}".lstrip(".")
        yield path
        for where, short in SHARED.items():
            if path.startswith(where):
                yield short + path.removeprefix(where)
        if isinstance(value, Mapping):
            yield from keys(value, path)


def test_every_key_of_the_schema_is_in_the_example() -> None:
    text = uncommented()
    parse_config(tomllib.loads(text))  # every example value and key is valid
    documented = set(keys(tomllib.loads(text)))
    schema: dict[str, Mapping[str, object]] = {
        "app": config._APP,
        "scheduler": config._SCHEDULER,
        "scheduler.aging": config._AGING,
        "retention": config._RETENTION,
        "groups.*": config._GROUP,
        "rate": config._RATE,
        "domains.*": config._DOMAIN,
        "domains.*.types.*": config._TYPE,
        "retry": dict.fromkeys(config._RETRY_KEYS),
        "domains.*.types.*.expected_io": dict.fromkeys(config._IO_KEYS),
    }
    expected = set(config._TOP) | {f"{t}.{k}" for t, ks in schema.items() for k in ks}
    assert expected - documented == set(), "keys missing from taskmill.example.toml"
    # The other way round, a key the schema does not know, parse_config refuses above.


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[scheduler]\nmax_concurency = 3",
            "unknown key scheduler.max_concurency (did you mean 'max_concurrency'?)",
        ),
        ("[schedular]\n", "unknown key schedular (did you mean 'scheduler'?)"),
        ("[scheduler.agin]\n", "unknown key scheduler.agin (did you mean 'aging'?)"),
        ("[retention]\nmax_cont = 5", "unknown key retention.max_cont (did you mean 'max_count'?)"),
        (
            "[domains.a.types.b]\nretry = { max_retry = 2 }",
            "unknown key domains.a.types.b.retry.max_retry (did you mean 'max_retries'?)",
        ),
        (
            "[domains.a.types.b]\nexpected_io = { disk_reads = 2 }",
            "unknown key domains.a.types.b.expected_io.disk_reads (did you mean 'disk_read'?)",
        ),
        (
            "[domains.a.types.b]\nprio = 2",
            "unknown key domains.a.types.b.prio (did you mean 'priority'?)",
        ),
        ("[app]\nmodule = ['x:y']", "unknown key app.module (did you mean 'modules'?)"),
        ("[app]\nmodules = ['x']", "app.modules: 'x' is not MODULE:ATTR"),
        ("[scheduler]\nzzz = 1", "unknown key scheduler.zzz"),
    ],
)
def test_unknown_keys_name_the_nearest_known_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(toml))
    assert str(caught.value) == message


def test_app_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "taskmill.toml"
    path.write_text('[app]\nmodules = ["thumbs.tasks:domain"]\npaths = ["../src", "/abs"]\n')
    cfg = load_config(path)
    assert cfg.app_modules == ["thumbs.tasks:domain"]
    assert cfg.app_paths == [str(tmp_path / "conf" / "../src"), "/abs"]
