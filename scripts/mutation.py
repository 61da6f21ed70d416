"""Mutation testing of the security core: each module against its own fast tests.

For every subject module this runs mutmut in a work directory of its own
(``mutants/<subject>/``, never committed), whose configuration names that module as the
only one to mutate and that module's test files as the only tests, so a survivor means
"its own tests do not notice", and one module's run never disturbs another's. Results go
to ``mutation/REPORT.md``: per module, mutants killed, survived, and survived but listed
in ``mutation/equivalent.toml`` as equivalent, each with one line saying why.

    python scripts/mutation.py                  # every subject, then the report
    python scripts/mutation.py keys/credentials.py audit/chain.py   # these again
    python scripts/mutation.py --report-only    # after editing equivalent.toml
    python scripts/mutation.py --smoke          # the signature comparison and tenant check

The exit status is 1 when any mutant survived that is not listed as equivalent. mutmut
runs one worker (``--max-children 1``): the machine is shared. DATABASE_URL and REDIS_URL
come from the environment, as for the tests.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
REPORT = ROOT / "mutation" / "REPORT.md"
SMOKE_REPORT = WORK / "smoke-report.md"
EQUIVALENT = ROOT / "mutation" / "equivalent.toml"
MUTMUT = Path(sys.executable).with_name("mutmut")

# Everything a test run imports or reads from the project, linked into each work
# directory; mutmut copies them into its own mutants/ tree and mutates only the subject.
PACKAGES = ["accounts", "audit", "exc_cli", "excloud_portal", "gateway", "keys", "mfa"]
ALSO_COPY = ["templates", "static", "manage.py"]

# pytest-django keeps the test database between the forked runs of one mutant after
# another: creating it for each would cost more than most mutants' tests. The tests that
# start processes of their own (marked `stack` by tests/conftest.py) are left out: they
# take seconds to minutes each, and every mutant of what they touch would run them.
# A mark, not a list of test IDs: pytest ignores a --deselect that names no test, so a
# list goes stale without a word when a test moves to another file.
PYTEST_ARGS = ["--reuse-db", "-p", "no:cacheprovider", "-m", "not browser and not stack"]

# mutmut's statuses (by worker exit code) folded into the report's columns: a mutant
# whose tests time out or are killed for their CPU time was noticed, as one that fails.
KILLED = "killed"
SURVIVED = "survived"
DETECTED = {KILLED, "timeout", "segfault"}


@dataclass(frozen=True)
class Subject:
    path: str
    tests: tuple[str, ...]
    # Glob patterns over mutmut's mutant names ("module.x_function__mutmut_3",
    # "module.xǁClassǁmethod__mutmut_3"): the part of the module under test, if not all.
    functions: tuple[str, ...] = ("*",)
    note: str = ""

    @property
    def slug(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


SUBJECTS = [
    Subject(
        "gateway/sigv4/signing.py",
        (
            "tests/test_sigv4_signing.py",
            "tests/test_sigv4_signature_digits.py",
            "tests/test_sigv4_verification.py",
        ),
    ),
    Subject(
        "gateway/sigv4/canonical.py",
        ("tests/test_sigv4_canonical.py", "tests/test_sigv4_verification.py"),
    ),
    Subject(
        "gateway/sigv4/verification.py",
        (
            "tests/test_sigv4_verification.py",
            "tests/test_sigv4_signature_digits.py",
            "tests/test_sigv4_chunked.py",
        ),
    ),
    Subject("keys/credentials.py", ("tests/test_credentials.py",)),
    Subject(
        "audit/chain.py",
        ("tests/test_audit_chain.py", "tests/test_audit_trail.py"),
    ),
    Subject("audit/verify.py", ("tests/test_audit_integrity.py",)),
    Subject(
        "gateway/authority.py",
        ("tests/test_gateway_units.py",),
        functions=(
            "*.x_refusal_*",
            "*.x_scope_refusal_*",
            "*.x__touch_in_scope_*",
            "*.x_authorize_*",
            "*.x_check_access_*",
        ),
        note="the refusal part: refusal() with the key's scope, authorize(), check_access()",
    ),
    Subject(
        "accounts/models.py",
        ("tests/test_permissions.py",),
        functions=(
            "*.xǁMembershipǁis_manager_*",
            "*.xǁMembershipǁcan_*",
            "*.xǁMembershipǁassignable_roles_*",
        ),
        note="Membership's permission methods",
    ),
    Subject(
        "keys/services.py",
        (
            "tests/test_smoke_keys.py",
            "tests/test_rotation.py",
            "tests/test_key_expiry_choice.py",
            "tests/test_credentials.py",
            "tests/test_permissions.py",
            "tests/test_api.py",
            "tests/test_gateway_usage_units.py",
            "tests/test_key_changes.py",
        ),
    ),
    Subject(
        "keys/expiry.py",
        ("tests/test_expiry.py", "tests/test_key_policy.py"),
    ),
]

# A hundred-odd mutants of the two checks that matter most, for every change: the
# signature comparison and the tenant and scope check. Their own fastest tests only.
SMOKE = [
    Subject(
        "gateway/sigv4/verification.py",
        ("tests/test_sigv4_signature_digits.py", "tests/test_sigv4_verification.py"),
        functions=("*.x__check_signature_*", "*.x_check_signature_*"),
    ),
    Subject(
        "gateway/sigv4/signing.py",
        ("tests/test_sigv4_signature_digits.py",),
        functions=("*.x_signature_*",),
    ),
    Subject(
        "gateway/authority.py",
        ("tests/test_gateway_units.py",),
        functions=("*.x_refusal_*", "*.x_scope_refusal_*", "*.x__touch_in_scope_*"),
    ),
]


@dataclass
class Outcome:
    """One module's run, saved beside its mutants so the report can be rebuilt alone."""

    subject: Subject
    statuses: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    equivalent: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.statuses.values() if s in statuses)

    @property
    def survivors(self) -> list[str]:
        return sorted(n for n, s in self.statuses.items() if s not in DETECTED)

    @property
    def unexplained(self) -> list[str]:
        return [n for n in self.survivors if n not in self.equivalent]

    def judge(self, equivalents: dict[str, dict[str, str]]) -> None:
        """Count a survivor as equivalent while its mutated line reads as listed."""
        self.equivalent, self.stale = {}, []
        for name in self.survivors:
            entry = equivalents.get(name)
            if entry is None:
                continue
            diff = self.diffs.get(name, "").splitlines()
            added = [
                line[1:].strip()
                for line in diff
                if line.startswith("+") and not line.startswith("+++")
            ]
            # A mutant that only deletes (an argument on a line of its own) adds no line:
            # its entry names the line it deletes.
            if not added:
                added = [
                    line[1:].strip()
                    for line in diff
                    if line.startswith("-") and not line.startswith("---")
                ]
            if entry["line"].strip() in added:
                self.equivalent[name] = entry["reason"]
            else:
                self.stale.append(name)

    def save(self, path: Path) -> None:
        data = {"statuses": self.statuses, "diffs": self.diffs, "seconds": self.seconds}
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, subject: Subject, path: Path) -> Outcome | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text("utf-8"))
        return cls(subject, data["statuses"], data["diffs"], data["seconds"])


def load_equivalents() -> dict[str, dict[str, str]]:
    """Survivors judged equivalent: name -> {"line", "reason"}. ``line`` is the mutated
    line as the mutant has it, so an entry stops applying when the code under it moves."""
    if not EQUIVALENT.exists():
        return {}
    data = tomllib.loads(EQUIVALENT.read_text("utf-8"))
    return {entry["name"]: entry for entry in data.get("mutant", [])}


def prepare(workdir: Path, subject: Subject) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for name in PACKAGES + ALSO_COPY + ["tests"]:
        (workdir / name).symlink_to(ROOT / name)
    config = {
        "source_paths": PACKAGES,
        "only_mutate": [subject.path],
        "also_copy": ALSO_COPY,
        "pytest_add_cli_args": PYTEST_ARGS,
        "pytest_add_cli_args_test_selection": list(subject.tests),
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    base = (ROOT / "pyproject.toml").read_text("utf-8")
    (workdir / "pyproject.toml").write_text(base + "\n".join(lines) + "\n", "utf-8")


def statuses(workdir: Path, subject: Subject) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    meta = workdir / "mutants" / (subject.path + ".meta")
    codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return {
        name: status_by_exit_code[code]
        for name, code in codes.items()
        if any(fnmatch.fnmatchcase(name, p) for p in subject.functions)
    }


def run_subject(subject: Subject, workdir: Path) -> Outcome:
    """Run mutmut afresh on the subject's part; its own tests only, one worker."""
    started = time.monotonic()
    prepare(workdir, subject)
    command = [str(MUTMUT), "run", "--max-children", "1"]
    patterns = list(subject.functions) if subject.functions != ("*",) else []
    log = workdir / "mutmut.log"
    with log.open("w") as output:
        result = subprocess.run(command + patterns, cwd=workdir, stdout=output, stderr=output)
    if result.returncode != 0:
        sys.exit(f"mutmut failed on {subject.path}; see {log}")
    outcome = Outcome(subject, statuses(workdir, subject))
    outcome.seconds = time.monotonic() - started
    for name in outcome.survivors:
        shown = subprocess.run(
            [str(MUTMUT), "show", name], cwd=workdir, capture_output=True, text=True
        )
        # The first line is mutmut's heading; the rest is the diff.
        outcome.diffs[name] = shown.stdout.partition("\n")[2].strip()
    outcome.save(workdir / "outcome.json")
    return outcome


def unmutated_functions(subject: Subject) -> list[str]:
    """Functions of the subject's part that mutmut leaves alone: decorated ones (other
    than staticmethod and classmethod), behind which it cannot put its trampoline."""
    tree = ast.parse((ROOT / subject.path).read_text("utf-8"))
    members: list[tuple[str | None, ast.stmt]] = [(None, node) for node in tree.body]
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members += [(node.name, item) for item in node.body]
    found = []
    for owner, node in members:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        decorators = [ast.unparse(d) for d in node.decorator_list]
        if not decorators or decorators in (["staticmethod"], ["classmethod"]):
            continue
        prefix = f"xǁ{owner}ǁ" if owner else "x_"
        name = f"{subject.slug}.{prefix}{node.name}__mutmut_1"
        if any(fnmatch.fnmatchcase(name, p) for p in subject.functions):
            label = f"{owner}.{node.name}" if owner else node.name
            found.append(f"{label} (@{', @'.join(decorators)})")
    return found


@dataclass(frozen=True)
class Carried:
    """A module's row and section as the last report has them, for a module whose run is
    not here to rebuild them from (the work directories are not committed)."""

    row: str
    section: list[str]
    not_mutated: str | None

    @property
    def survived(self) -> int:
        return int(self.row.split("|")[5].strip() or 0)


def earlier_report(path: Path) -> dict[str, Carried]:
    """The last report's rows and sections by module path, for the modules it has run."""
    if not path.exists():
        return {}
    text = path.read_text("utf-8")
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"(?m)^\| `([^`]+)`.*\|$", text)
        if "| not run yet |" not in m.group(0)
    }
    sections: dict[str, list[str]] = {}
    for m in re.finditer(r"(?ms)^## `([^`]+)`\n(.*?)(?=^## |\Z)", text):
        sections[m.group(1)] = ["", f"## `{m.group(1)}`", *m.group(2).rstrip("\n").split("\n")]
    not_mutated = {m.group(1): m.group(0) for m in re.finditer(r"(?m)^- `([^`]+)`: .*$", text)}
    return {
        module: Carried(row, sections.get(module, []), not_mutated.get(module))
        for module, row in rows.items()
    }


def write_report(entries: list[Outcome | Carried | Subject], path: Path, title: str) -> None:
    """One row per subject: its outcome, its row carried over from the last report, or
    (a Subject) not run yet."""
    lines = [
        f"# {title}",
        "",
        "Written by `scripts/mutation.py` (mutmut "
        + _mutmut_version()
        + ", one worker); equivalent survivors are listed with their reasons in "
        "`mutation/equivalent.toml`.",
        "",
        "| module | tests | mutants | killed | survived | equivalent | minutes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for entry in entries:
        if isinstance(entry, Carried):
            lines.append(entry.row)
            continue
        subject = entry if isinstance(entry, Subject) else entry.subject
        tests = ", ".join(Path(t).stem.removeprefix("test_") for t in subject.tests)
        scope = f" ({subject.note})" if subject.note else ""
        if isinstance(entry, Subject):
            lines.append(f"| `{subject.path}`{scope} | {tests} | not run yet | | | | |")
            continue
        o = entry
        lines.append(
            f"| `{o.subject.path}`{scope} | {tests} | {len(o.statuses)} | {o.count(*DETECTED)} "
            f"| {len(o.unexplained)} | {len(o.equivalent)} | {o.seconds / 60:.1f} |"
        )
    skipped = []
    for entry in entries:
        if isinstance(entry, Carried):
            lines += entry.section
            if entry.not_mutated:
                skipped.append(entry.not_mutated)
            continue
        if isinstance(entry, Subject):
            continue
        o = entry
        names = unmutated_functions(o.subject)
        if names:
            skipped.append(f"- `{o.subject.path}`: " + "; ".join(names))
        others = {s for s in o.statuses.values() if s not in (KILLED, SURVIVED)}
        if not (o.survivors or others):
            continue
        lines += ["", f"## `{o.subject.path}`", ""]
        for status in sorted(others):
            counted = "killed" if status in DETECTED else "survivors"
            lines.append(f"- {status}: {o.count(status)} (counted with the {counted})")
        for name in o.survivors:
            verdict = (
                f"equivalent: {o.equivalent[name]}"
                if name in o.equivalent
                else "**stale equivalent entry**"
                if name in o.stale
                else f"**{o.statuses[name]}**"
            )
            lines += ["", f"`{name}` — {verdict}", "", "```diff", o.diffs[name], "```"]
    if skipped:
        lines += [
            "",
            "## Not mutated",
            "",
            "mutmut does not mutate decorated functions (it cannot put its trampoline "
            "behind a property); these are covered by tests but not by this report:",
            "",
            *skipped,
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", "utf-8")


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="subject paths to run (default: all)")
    parser.add_argument("--smoke", action="store_true", help="the short CI smoke run")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the report from the last runs"
    )
    args = parser.parse_args()

    subjects = SMOKE if args.smoke else SUBJECTS
    unknown = set(args.modules) - {s.path for s in subjects}
    if unknown:
        parser.error(f"not a subject: {', '.join(sorted(unknown))}")
    to_run = [s for s in subjects if s.path in args.modules] if args.modules else subjects
    if args.report_only:
        to_run = []
    equivalents = load_equivalents()
    report = SMOKE_REPORT if args.smoke else REPORT
    earlier = earlier_report(report)
    entries: list[Outcome | Carried | Subject] = []
    failed = False
    for subject in subjects:
        workdir = WORK / (("smoke." if args.smoke else "") + subject.slug)
        if subject in to_run:
            print(f"{subject.path}: mutmut in {workdir.relative_to(ROOT)}", flush=True)
            outcome = run_subject(subject, workdir)
        else:
            outcome = Outcome.load(subject, workdir / "outcome.json")
            if outcome is None:
                carried = earlier.get(subject.path)
                if carried is None:
                    print(f"{subject.path}: not run yet", flush=True)
                    entries.append(subject)
                    failed = True
                else:
                    print(f"{subject.path}: not run here; its row is the last report's")
                    entries.append(carried)
                    failed = failed or carried.survived > 0
                continue
        outcome.judge(equivalents)
        entries.append(outcome)
        print(
            f"{subject.path}: {len(outcome.statuses)} mutants, {outcome.count(*DETECTED)} "
            f"killed, {len(outcome.unexplained)} survived, {len(outcome.equivalent)} "
            f"equivalent",
            flush=True,
        )
        for name in outcome.unexplained:
            print(f"  survived: {name}\n" + re.sub(r"(?m)^", "    ", outcome.diffs[name]))
        for name in outcome.stale:
            print(f"  listed as equivalent, but its line has changed: {name}")
        failed = failed or bool(outcome.unexplained or outcome.stale)
    title = "Mutation smoke" if args.smoke else "Mutation testing of the security core"
    write_report(entries, report, title)
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
