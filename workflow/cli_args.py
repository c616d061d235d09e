"""What a Snakemake command line makes of the study's config: its config files and --config entries.

The config check (``python -m workflow.config --check``, which ``./pipeline.sh run`` calls before
Snakemake with the same arguments) and the plan (``python -m workflow.plan``) read a study through
this module, so that what they check is what Snakemake runs. It reads the command line as the
installed Snakemake's argument parser does (tests/test_cli_args.py compares the two):

- ``--configfile``/``--configfiles`` take every following argument up to the next flag: so
  ``--configfile A.yaml all`` reads ``all`` as a config file, as Snakemake does;
- a second ``--configfile`` (or ``--config``) flag replaces the first in Snakemake, silently: refused
  here, saying to give every file after one flag;
- a ``.yaml`` argument outside any flag is a target to Snakemake (a file to build), not a config
  file: refused, unless it is a file the pipeline writes (``results/config.yaml``);
- ``--config KEY=VALUE`` entries are parsed as Snakemake parses them (``config_overrides``), and
  the forms that Snakemake misreads (a dotted key, a number inside ``{...}``, which it reads as
  text) are refused, saying to write the setting in a YAML file given last.

Pure: the standard library and yaml only (the Snakefile's import of ``workflow.config`` reaches it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

# The Snakefile's own `configfile:`, which Snakemake reads before any --configfile.
DEFAULT_CONFIG = Path("config/config.yaml")
CONFIGFILE_FLAGS = ("--configfile", "--configfiles")
CONFIG_FLAGS = ("--config", "-C")
REPLACE_FLAG = "--replace-workflow-config"
# YAML files the pipeline writes: a target of that name is a file to build, not a misplaced config file.
PIPELINE_YAML_OUTPUTS = ("results/config.yaml",)
# Snakemake's rule for a --config key (snakemake.cli.parse_config).
CONFIG_KEY = re.compile(r"[a-zA-Z_][\w-]*\w$")
NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
FILE_HINT = "put `{yaml}` in a YAML file and give it last: --configfile STUDY.yaml that.yaml"


class CommandLineError(ValueError):
    """A command line that Snakemake would read otherwise than it looks; the message says how to write it."""


@dataclass(frozen=True)
class ConfigArgs:
    """The config a Snakemake command line gives: its files (after the Snakefile's own) and entries."""

    configfiles: tuple[Path, ...] = ()
    config: tuple[str, ...] = ()  # --config KEY=VALUE entries, as given
    replace_workflow_config: bool = False

    def config_files(self) -> list[Path]:
        """Every config file Snakemake reads, in order: config/config.yaml, then the --configfile files
        (with --replace-workflow-config, Snakemake drops the Snakefile's own)."""
        return [*([] if self.replace_workflow_config else [DEFAULT_CONFIG]), *self.configfiles]

    def overrides(self) -> dict:
        """The --config entries as the dictionary Snakemake merges over the files."""
        return config_overrides(self.config)


def looks_like_flag(arg: str) -> bool:
    """argparse's test: an argument starting with '-' ends a list of values (a negative number, and a
    lone '-', do not)."""
    return arg.startswith("-") and arg != "-" and not NEGATIVE_NUMBER.match(arg)


def flag_and_value(arg: str, flags: tuple[str, ...]) -> tuple[bool, str | None]:
    """Whether ``arg`` is one of ``flags``, and its value when attached (``--flag=V``, or ``-CV`` for a
    short flag)."""
    for flag in flags:
        if arg == flag:
            return True, None
        if flag.startswith("--") and arg.startswith(flag + "="):
            return True, arg[len(flag) + 1 :]
        if not flag.startswith("--") and arg.startswith(flag) and len(arg) > len(flag):
            return True, arg[len(flag) :].removeprefix("=")
    return False, None


def snakemake_config_args(argv: list[str], *, only_config: bool = False) -> ConfigArgs:
    """The config files and --config entries that Snakemake itself takes from ``argv`` (its arguments,
    without the program name); CommandLineError for a form it would silently misread. With
    ``only_config``, any other argument is refused too (for a command that takes Snakemake's config
    flags and none of its others)."""
    files: list[list[str]] = []  # one list per --configfile flag
    entries: list[list[str]] = []  # one list per --config flag
    replace = False
    targets: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            targets += argv[i:]
            break
        is_files, attached = flag_and_value(arg, CONFIGFILE_FLAGS)
        is_entries, attached_entry = flag_and_value(arg, CONFIG_FLAGS)
        if is_files or is_entries:
            values = [attached if is_files else attached_entry]
            if values[0] is None:
                # argparse takes the following arguments up to the next flag (nargs "+" and "*").
                values = []
                while i < len(argv) and not looks_like_flag(argv[i]):
                    values.append(argv[i])
                    i += 1
            (files if is_files else entries).append(values)
            continue
        if arg == REPLACE_FLAG:
            replace = True
            continue
        if only_config:
            raise CommandLineError(
                f"unrecognised argument {arg!r}: besides its own flags, this command takes only Snakemake's "
                f"--configfile FILE... and --config KEY=VALUE..."
            )
        # A value of another flag (`--cores 2`) is not a target; only what follows a value can be.
        previous = argv[i - 2] if i >= 2 else None
        if not looks_like_flag(arg) and (previous is None or not looks_like_flag(previous)):
            targets.append(arg)
    refuse_repeated("--configfile", files, "file", "--configfile A.yaml B.yaml")
    refuse_repeated("--config", entries, "entry", "--config KEY=VALUE ...")
    config_files = [Path(f) for f in (files[0] if files else [])]
    yaml_targets = [t for t in targets if t.endswith((".yaml", ".yml")) and t not in PIPELINE_YAML_OUTPUTS]
    if yaml_targets:
        raise CommandLineError(
            f"{yaml_targets[0]} is a Snakemake target (a file to build) here, not a config file: read config "
            f"files with --configfile {' '.join(str(f) for f in config_files + yaml_targets)}"
        )
    args = ConfigArgs(tuple(config_files), tuple(entries[0] if entries else ()), replace)
    args.overrides()  # refuse a misread entry now, naming it
    return args


# Flags of Snakemake's that a pipeline command line commonly holds: a line of these alone needs no
# look at Snakemake's own parser, whose construction (its plugins) takes seconds (tests check that each
# is Snakemake's).
COMMON_SNAKEMAKE_FLAGS = frozenset(
    """--cores -c --jobs -j --dry-run -n --forceall -F --forcerun -R --force -f --until --configfile
    --configfiles --config -C --profile --workflow-profile --directory -d --keep-going -k --unlock
    --printshellcmds -p --quiet -q --rerun-triggers --report --report-after-run --list-rules
    --summary --detailed-summary --dag --rulegraph --lint --nolock --notemp --touch -t --verbose
    --snakefile -s --replace-workflow-config --executor -e --resources --set-resources
    --default-resources --latency-wait --retries --ignore-incomplete --rerun-incomplete --omit-from
    --allowed-rules --delete-all-output --list-changes --version --help -h""".split()
)


def unknown_snakemake_flags(argv: list[str]) -> list[str]:
    """The flags of ``argv`` that Snakemake does not know (it would refuse them after the check)."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = {arg.split("=", 1)[0] for arg in argv[:end] if looks_like_flag(arg)}
    if all(flag in COMMON_SNAKEMAKE_FLAGS or flag.startswith("-C") for flag in flags):
        return []
    from snakemake.cli import get_argument_parser

    _, rest = get_argument_parser().parse_known_args(argv)
    return [arg for arg in rest if looks_like_flag(arg)]


def refuse_repeated(flag: str, given: list[list[str]], what: str, form: str) -> None:
    """Snakemake keeps only the last of a repeated flag: refuse, saying how to give them all at once."""
    if flag == "--configfile" and any(not values for values in given):
        raise CommandLineError(f"--configfile names no file: give the config files after it, {form}")
    if len(given) < 2:
        return
    dropped = " ".join(" ".join(values) for values in given[:-1])
    together = " ".join(v for values in given for v in values)
    raise CommandLineError(
        f"{flag} is given {len(given)} times ({', then '.join(' '.join(values) for values in given)}): "
        f"Snakemake keeps only the last, so {dropped} would not be read; give every {what} after one flag: "
        f"{flag} {together}"
    )


def config_overrides(entries: list[str] | tuple[str, ...]) -> dict:
    """``--config KEY=VALUE`` entries as Snakemake reads them (``snakemake.cli.parse_config``: the value
    as an int, a float, True/False, else YAML with every value inside it text); CommandLineError for an
    entry Snakemake refuses with a traceback, or reads otherwise than it looks."""
    config: dict = {}
    for entry in entries:
        if "=" not in entry:
            raise CommandLineError(
                f"--config {entry}: Snakemake takes KEY=VALUE entries; for a nested setting, "
                + FILE_HINT.format(yaml="train: {lr: 0.001}")
            )
        key, text = entry.split("=", 1)
        text = text.strip("'\"")  # as Snakemake does
        if not CONFIG_KEY.match(key):
            path = key.split(".")
            if len(path) > 1 and all(CONFIG_KEY.match(part) for part in path):
                setting = nested(path, yaml.safe_load(text) if text else None)
                raise CommandLineError(
                    f"--config {entry}: Snakemake's --config sets a top-level key only, not {key}; "
                    + FILE_HINT.format(yaml=flow_yaml(setting))
                )
            raise CommandLineError(f"--config {entry}: {key!r} is not a key Snakemake accepts (a name: letters, _)")
        value = parse_value(text)
        if isinstance(value, (dict, list)):
            misread = first_misread(value, key)
            if misread:
                where, raw = misread
                raise CommandLineError(
                    f"--config {quote(entry)}: Snakemake reads the values inside {{...}} as text, so {where} would "
                    f"be the text {raw!r}, not a number; "
                    + FILE_HINT.format(yaml=flow_yaml({key: yaml.safe_load(text)}))
                )
        merge(config, {key: value})
    return config


def parse_value(text: str):
    """Snakemake's order of parsers: int, float, True/False, YAML read as text, the text itself."""
    if text == "":
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return text


def first_misread(value, where: str) -> tuple[str, str] | None:
    """The first text inside ``value`` that YAML proper reads as a number, a boolean or null."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        path = f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]"
        if isinstance(item, (dict, list)):
            if found := first_misread(item, path):
                return found
        elif isinstance(item, str) and not isinstance(yaml.safe_load(item) if item else "", str):
            return path, item
    return None


def nested(path: list[str], value) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


def flow_yaml(value: dict) -> str:
    """A one-key mapping as one line of YAML: `train: {lr: 0.001}`."""
    ((key, inner),) = value.items()
    text = yaml.safe_dump(inner, default_flow_style=True, sort_keys=False, width=10**6)
    return f"{key}: {text.removesuffix('...' + chr(10)).strip()}"


def quote(entry: str) -> str:
    """An entry as a shell command would need it: quoted when it holds spaces or braces."""
    return f"'{entry}'" if re.search(r"[\s{}\[\]]", entry) else entry


def merge(config: dict, update: dict) -> None:
    """Snakemake's update_config: mappings merged key by key, anything else replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merge(config[key], value)
        else:
            config[key] = value
