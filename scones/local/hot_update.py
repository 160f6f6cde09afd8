"""Changed sources applied to a running stack with the least work (`scones up --watch`, scones/local/watcher.py):
a handler edit updates the code of the functions whose zip changed (UpdateFunctionCode, nothing uploaded), an
ASL edit that state machine's definition (UpdateStateMachine, its placeholders filled as the template's
DefinitionSubstitutions fill them), a template edit goes through a change set, a new model.tar.gz is reloaded
by the running model server in place. Nothing is applied that fails its check: a syntax error, a handler that
does not import, an ASL the lint stage's asl-validator refuses, a template that is not CloudFormation YAML, a
model.tar.gz that does not unpack; the running version keeps serving and the error is reported."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from cloud import manifest
from cloud.artifacts import LAMBDA_HANDLERS, ROOT, SourceTree, artifact_digests, build_artifacts, build_lambda_zip
from cloud.aws import AwsTarget
from cloud.polling import PollTimeoutError, poll
from cloud.stack import stack_resource_id
from cloud.template import TemplateError, load_template
from scones.errors import StepFailedError
from scones.workflow.invoke import FUNCTIONS

ASL_VALIDATOR_PACKAGE = ROOT / "node_modules" / "asl-validator"  # package.json's, which the lint stage runs
CHECK_TIMEOUT_S = 60.0
FUNCTION_UPDATE_TIMEOUT_S = 60.0
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class RejectedEditError(StepFailedError):
    """An edit that fails its check: it is not applied, and the running version keeps serving."""


class NeedsChangeSetError(Exception):
    """The edit cannot be applied alone (a placeholder the updater cannot resolve): a change set applies it."""


@dataclass
class Applied:
    """The digests of what the running stack runs, as the updater last applied them."""

    zips: dict[str, str] = field(default_factory=dict)  # handler module -> sha256 of its zip
    definitions: dict[str, str] = field(default_factory=dict)  # template parameter -> sha256 of the ASL file
    template: str = ""
    model: str = ""


@dataclass
class Update:
    """One reload: what changed, what was updated (or why nothing was), and how long it took."""

    changed: list[str]
    updated: list[str] = field(default_factory=list)
    rejected: str | None = None  # why the edit was not applied
    seconds: float = 0.0

    def describe(self) -> str:
        what = ", ".join(self.changed) or "nothing"
        if self.rejected:
            return f"{what} changed: NOT applied, the running version keeps serving: {self.rejected}"
        done = "; ".join(self.updated) or "no deployed artifact changed"
        return f"{what} changed -> {done} ({self.seconds:.2f} s)"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Checks --------------------------------------------------------------------------------------------


def check_syntax(paths: list[Path]) -> None:
    """RejectedEditError naming the file and line of the first syntax error among `paths`."""
    for path in paths:
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError as e:
            raise RejectedEditError(f"SyntaxError in {path.name} line {e.lineno}: {e.msg}") from e


# The import checker: an isolated interpreter (`-I`: no PYTHONPATH, no user site; the handlers' interpreter on
# both emulators) that has imported what every handler imports (boto3: most of a cold start), then forks once per
# check, so each handler is imported fresh from its own zip, as the Lambda runtime imports it on a cold start, in
# milliseconds instead of an interpreter's start-up. Each answer is one JSON line on the checker's stdout.
# Stricter than the emulators: only the zip, the standard library and site-packages are importable.
IMPORT_CHECKER = """
import importlib, json, os, sys
import boto3, botocore.config
# This project's editable install would resolve a lambdas module missing from the zip from the repository (the
# emulators let that pass, cloud/EMULATORS.md); the Lambda runtime does not have it, so neither does the check.
editable = lambda hook: getattr(hook, "__module__", "").startswith("__editable__")
sys.meta_path[:] = [finder for finder in sys.meta_path if not editable(finder)]
sys.path_hooks[:] = [hook for hook in sys.path_hooks if not editable(hook)]
sys.path_importer_cache.clear()
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        answer = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # what the handler prints at import must not mix with the answers
        sys.path.insert(0, request["zip"])
        try:
            importlib.import_module(request["module"])
            answer.write(json.dumps({"error": None}) + "\\n")
        except BaseException as e:
            answer.write(json.dumps({"error": f"{request['module']}: {type(e).__name__}: {e}"}) + "\\n")
        answer.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        print(json.dumps({"error": f"{request['module']}: the import killed the interpreter ({status})"}), flush=True)
"""


class ImportChecker:
    """Imports handlers from their zips in a forked, isolated interpreter (IMPORT_CHECKER), started on first use."""

    def __init__(self, python: str = sys.executable):
        self.python = python
        self._process: subprocess.Popen | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="scones-import-check-")

    def start(self) -> None:
        self._checker()

    def _checker(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [self.python, "-I", "-c", IMPORT_CHECKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=self._folder.name,
                start_new_session=True,  # a check's hung child goes with it (close)
            )
        return self._process

    def check(self, zips: dict[str, bytes]) -> None:
        """RejectedEditError naming the first handler that does not import from its zip."""
        for handler, data in zips.items():
            path = Path(self._folder.name) / f"{handler}.zip"
            path.write_bytes(data)
            error = self._ask({"zip": str(path), "module": f"lambdas.{handler}"})
            if error:
                raise RejectedEditError(f"the handler does not import: {error}")

    def _ask(self, request: dict) -> str | None:
        checker = self._checker()
        checker.stdin.write(json.dumps(request) + "\n")
        checker.stdin.flush()
        ready, _, _ = select.select([checker.stdout], [], [], CHECK_TIMEOUT_S)
        line = checker.stdout.readline() if ready else ""
        if not line:
            self.close()  # hung or dead: a fresh one next time
            return f"{request['module']}: no answer from the import check within {CHECK_TIMEOUT_S:.0f} s"
        return json.loads(line)["error"]

    def close(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None


# asl-validator, the lint stage's (package.json), kept running: one JSON line in (the definition's text), one
# out, with the options its command line uses by default (ARN and path checks on). The package builds and
# compiles a new Ajv schema set on every call (most of a second on a busy machine, on top of Node's start-up),
# so this process shares one Ajv instance between calls: the same schemas and formats each time, compiled
# once; adding a keyword already there is skipped. tests/unit/scones/local/test_hot_update.py checks that its verdicts
# are the command line's.
ASL_CHECKER = """
const path = require("path");
const ajvPath = require.resolve("ajv", {paths: [path.dirname(require.resolve(process.argv[1]))]});
const RealAjv = require(ajvPath).default;
let shared = null;
function SharedAjv(options) {
  if (shared === null) {
    shared = new RealAjv(options);
    const addKeyword = shared.addKeyword.bind(shared);
    shared.addKeyword = (definition, ...rest) => {
      const name = typeof definition === "string" ? definition : definition.keyword;
      return [].concat(name).every((n) => shared.getKeyword(n)) ? shared : addKeyword(definition, ...rest);
    };
  }
  return shared;
}
SharedAjv.default = SharedAjv;
Object.defineProperty(SharedAjv, "__esModule", {value: true});
require.cache[ajvPath].exports = SharedAjv;
const validator = require(process.argv[1]);
const validate = validator.default || validator;
require("readline").createInterface({input: process.stdin}).on("line", (line) => {
  let answer;
  try {
    const result = validate(JSON.parse(JSON.parse(line)), {checkArn: true, checkPaths: true});
    answer = {valid: result.isValid, errors: result.isValid ? "" : result.errorsText(" / ")};
  } catch (e) {
    answer = {valid: false, errors: String(e)};
  }
  process.stdout.write(JSON.stringify(answer) + "\\n");
});
"""


class AslChecker:
    """Checks state machine definitions with asl-validator in a Node.js process started on first use; where
    Node.js or the package is absent, with a JSON and structure check instead, and says so."""

    def __init__(self, package: Path = ASL_VALIDATOR_PACKAGE):
        self.package = package
        self.node = shutil.which("node")
        self._process: subprocess.Popen | None = None

    @property
    def available(self) -> bool:
        return self.node is not None and self.package.is_dir()

    def check(self, path: Path) -> str | None:
        """RejectedEditError unless `path` is a valid definition; a note when only the fallback checked it."""
        text = path.read_text()
        try:
            definition = json.loads(text)
        except json.JSONDecodeError as e:
            raise RejectedEditError(f"{path.name} is not JSON: {e}") from e
        if not self.available:
            check_structure(definition, path.name)
            why = "Node.js is not installed" if self.node is None else f"{self.package} is missing (npm ci)"
            return f"{why}: checked as JSON and by its states' transitions only, not by asl-validator"
        answer = self._ask(text)
        if not answer["valid"]:
            raise RejectedEditError(f"asl-validator refuses {path.name}: {answer['errors']}")
        return None

    def _ask(self, text: str) -> dict:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [self.node, "-e", ASL_CHECKER, str(self.package)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        self._process.stdin.write(json.dumps(text) + "\n")
        self._process.stdin.flush()
        ready, _, _ = select.select([self._process.stdout], [], [], CHECK_TIMEOUT_S)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            self.close()
            return {"valid": False, "errors": f"no answer from asl-validator within {CHECK_TIMEOUT_S:.0f} s"}
        return json.loads(line)

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def check_structure(definition: object, name: str) -> None:
    """The part of asl-validator's check that needs no Node: StartAt and every Next name a state, some state ends."""
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        raise RejectedEditError(f"{name} has no States object")
    states = definition["States"]
    if definition.get("StartAt") not in states:
        raise RejectedEditError(f"{name}: StartAt {definition.get('StartAt')!r} names no state")
    for state_name, state in states.items():
        following = [state.get("Next"), state.get("Default"), *(c.get("Next") for c in state.get("Choices", []))]
        following += [c.get("Next") for c in state.get("Catch", [])]
        missing = [n for n in following if n is not None and n not in states]
        if missing:
            raise RejectedEditError(f"{name}: state {state_name!r} goes to {missing[0]!r}, which is not a state")
    if not any(s.get("End") or s.get("Type") in ("Succeed", "Fail") for s in states.values()):
        raise RejectedEditError(f"{name}: no state ends the execution")


# --- The updater ---------------------------------------------------------------------------------------


class HotUpdater:
    """Applies changed sources to the running stack `stack_name`. `redeploy` runs a change set with the current
    sources (deploy as `scones up` did); `reload_model` makes the running model server load a new model."""

    def __init__(
        self,
        target: AwsTarget,
        stack_name: str,
        sources: SourceTree,
        model_tarball: Path,
        redeploy: Callable[[], None],
        reload_model: Callable[[], str],
        manifest_path: Path | None = None,
        build_zip: Callable[[str, SourceTree], bytes] = lambda handler, sources: build_lambda_zip(
            handler, sources.lambdas_dir
        ),
    ):
        self.target = target
        self.stack_name = stack_name
        self.sources = sources
        self.model_tarball = model_tarball
        self.redeploy = redeploy
        self.reload_model = reload_model
        self.manifest_path = manifest_path
        self.build_zip = build_zip
        self.applied = Applied()
        self._substitutions: dict[str, dict[str, str]] = {}
        self._physical_ids: dict[str, str] = {}
        self.import_checker = ImportChecker()
        self.asl_checker = AslChecker()

    def warm(self) -> None:
        """Start the checkers now, so the first edit does not wait for their start-up."""
        self.import_checker.start()
        if self.asl_checker.available:
            self.asl_checker._ask("{}")

    def close(self) -> None:
        self.import_checker.close()
        self.asl_checker.close()

    # What the stack runs now ------------------------------------------------------------------------------

    def current(self) -> Applied:
        """The digests of the sources as they are now."""
        return Applied(
            zips={h: sha256(build_lambda_zip(h, self.sources.lambdas_dir)) for h in LAMBDA_HANDLERS.values()},
            definitions={p: sha256(path.read_bytes()) for p, path in self.sources.state_machines.items()},
            template=sha256(self.sources.template.read_bytes()),
            model=sha256(self.model_tarball.read_bytes()) if self.model_tarball.is_file() else "",
        )

    def mark_deployed(self) -> None:
        """The stack was just deployed from the sources as they are: they are what runs."""
        self.applied = self.current()
        self._substitutions.clear()
        self._physical_ids.clear()

    # One reload ------------------------------------------------------------------------------------------

    def apply(self, changed: list[str]) -> Update:
        """Apply whatever differs from what runs, least work first; never raises for a rejected edit."""
        started = time.monotonic()
        update = Update(changed)
        try:
            self._apply(update)
        except RejectedEditError as e:
            update.rejected = str(e)
        update.seconds = time.monotonic() - started
        return update

    def _apply(self, update: Update) -> None:
        now = self.current()
        if now.template != self.applied.template:
            self._change_set(update, "the template changed")
            return
        if now.model != self.applied.model:
            self._reload_model(update, now)
        zips = [h for h, digest in now.zips.items() if digest != self.applied.zips.get(h)]
        if zips:
            self._update_functions(update, zips, now)
        machines = [p for p, digest in now.definitions.items() if digest != self.applied.definitions.get(p)]
        if machines:
            try:
                self._update_state_machines(update, machines, now)
            except NeedsChangeSetError as e:
                self._change_set(update, str(e))

    def _change_set(self, update: Update, why: str) -> None:
        try:
            load_template(self.sources.template.read_text())
        except TemplateError as e:
            raise RejectedEditError(str(e)) from e
        for path in self.sources.lambdas_dir.glob("*.py"):
            check_syntax([path])
        for path in self.sources.state_machines.values():
            self.asl_checker.check(path)
        self.redeploy()
        self.mark_deployed()
        self._write_manifest()
        update.updated.append(f"stack {self.stack_name} updated through a change set ({why})")

    def _reload_model(self, update: Update, now: Applied) -> None:
        try:
            version = self.reload_model()
        except Exception as e:  # whatever the new model's fault, the loaded one keeps serving
            raise RejectedEditError(f"the new model.tar.gz was not loaded: {type(e).__name__}: {e}") from e
        self.applied.model = now.model
        update.updated.append(f"model server reloaded the new model.tar.gz ({version})")

    def _update_functions(self, update: Update, handlers: list[str], now: Applied) -> None:
        zips = {h: self.build_zip(h, self.sources) for h in handlers}
        check_syntax(sorted(self.sources.lambdas_dir.glob("*.py")))
        self.import_checker.check(zips)
        client = self.target.client("lambda")
        names = {h: self._physical_id(FUNCTIONS[h]) for h in handlers}
        for handler in handlers:
            client.update_function_code(FunctionName=names[handler], ZipFile=zips[handler])
        for handler in handlers:
            wait_until_updated(client, names[handler])
            self.applied.zips[handler] = now.zips[handler]
            update.updated.append(f"function {names[handler]} (UpdateFunctionCode)")
        self._write_manifest()

    def _update_state_machines(self, update: Update, parameters: list[str], now: Applied) -> None:
        definitions = {}
        for parameter in parameters:
            path = self.sources.state_machines[parameter]
            note = self.asl_checker.check(path)
            if note:
                update.updated.append(f"({note})")
            definitions[parameter] = self._substituted(parameter, path.read_text())
        client = self.target.client("stepfunctions")
        for parameter, definition in definitions.items():
            arn = self._state_machine_arn(parameter)
            client.update_state_machine(stateMachineArn=arn, definition=definition)
            self.applied.definitions[parameter] = now.definitions[parameter]
            update.updated.append(f"state machine {arn.rsplit(':', 1)[-1]} (UpdateStateMachine)")
        self._write_manifest()

    # The stack's names, ARNs and substitutions --------------------------------------------------------------

    def _physical_id(self, logical_id: str) -> str:
        """A resource's deployed name, asked once per deployment (a change set may replace it)."""
        if logical_id not in self._physical_ids:
            physical = stack_resource_id(self.target.client("cloudformation"), self.stack_name, logical_id)
            if not physical:
                raise NeedsChangeSetError(f"stack {self.stack_name} has no {logical_id} yet")
            self._physical_ids[logical_id] = physical
        return self._physical_ids[logical_id]

    def _state_machine_resource(self, parameter: str) -> tuple[str, dict]:
        template = load_template(self.sources.template.read_text())
        for logical_id, resource in template["Resources"].items():
            location = resource.get("Properties", {}).get("DefinitionS3Location", {})
            if resource.get("Type") == "AWS::StepFunctions::StateMachine" and location.get("Key") == {"Ref": parameter}:
                return logical_id, resource["Properties"]
        raise NeedsChangeSetError(f"no state machine of the template reads its definition from {parameter}")

    def _state_machine_arn(self, parameter: str) -> str:
        logical_id, _ = self._state_machine_resource(parameter)
        return self._physical_id(logical_id)

    def _substituted(self, parameter: str, text: str) -> str:
        """The definition as CloudFormation would deploy it: each ${Name} replaced by its DefinitionSubstitutions
        value (function ARNs, parameters), resolved against the running stack once and kept."""
        if parameter not in self._substitutions:
            _, properties = self._state_machine_resource(parameter)
            self._substitutions[parameter] = {
                name: self._resolve(value) for name, value in properties.get("DefinitionSubstitutions", {}).items()
            }
        values = self._substitutions[parameter]
        unknown = sorted(set(PLACEHOLDER.findall(text)) - set(values))
        if unknown:
            raise NeedsChangeSetError(f"the definition uses ${{{unknown[0]}}}, which DefinitionSubstitutions lacks")
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    def _resolve(self, value: object) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
            name = self._physical_id(value["Fn::GetAtt"][0])
            if name.startswith("arn:"):
                return name
            with contextlib.suppress(ClientError):
                return self.target.client("lambda").get_function_configuration(FunctionName=name)["FunctionArn"]
        if isinstance(value, dict) and "Ref" in value:
            stack = self.target.client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"][0]
            parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
            if value["Ref"] in parameters:
                return parameters[value["Ref"]]
            return self._physical_id(value["Ref"])
        raise NeedsChangeSetError(f"a substitution the updater cannot resolve alone: {value!r}")

    def _write_manifest(self) -> None:
        """What runs now is what was tested: the record a promotion checks follows the hot updates."""
        if self.manifest_path is None or not self.manifest_path.is_file():
            return
        try:
            recorded = manifest.read_manifest(self.manifest_path)
        except manifest.ManifestError:
            return  # the next full deploy writes a fresh one
        tarball = self.model_tarball if self.model_tarball.is_file() else None
        digests = artifact_digests(build_artifacts(tarball, self.sources), None, self.sources)
        if image_id := recorded.artifacts.get(manifest.MODEL_IMAGE_ID):
            digests[manifest.MODEL_IMAGE_ID] = image_id
        fresh = manifest.Manifest(digests, recorded.target, recorded.stack_name, recorded.region)
        manifest.write_manifest(self.manifest_path, fresh)


def wait_until_updated(client, function_name: str) -> None:
    """UpdateFunctionCode is asynchronous on AWS (LastUpdateStatus InProgress, then Successful): wait for it."""
    try:
        configuration = poll(
            lambda: client.get_function_configuration(FunctionName=function_name),
            lambda c: c.get("LastUpdateStatus", "Successful") != "InProgress",
            timeout_s=FUNCTION_UPDATE_TIMEOUT_S,
            interval_s=0.05,
            max_interval_s=1.0,
        )
    except PollTimeoutError as e:
        raise StepFailedError(f"{function_name} was still updating after {FUNCTION_UPDATE_TIMEOUT_S:.0f} s") from e
    if configuration.get("LastUpdateStatus") == "Failed":
        raise StepFailedError(f"updating {function_name} failed: {configuration.get('LastUpdateStatusReason')}")
