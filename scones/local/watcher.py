"""`scones up --watch`: the deployed sources (lambdas/*.py, statemachine/*.asl.json, cloud/template.yaml) and the
model's tarball watched for changes, each batch of edits applied to the running stack by scones/local/hot_update.py,
and one line printed per reload: what changed, what was updated, how long it took.

Files are watched with watchfiles (inotify on Linux, through Rust's notify): edits arriving together (an
editor saving several files, a `git checkout`) are grouped until DEBOUNCE_QUIET_MS pass without another one,
then applied as one update."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import watchfiles

from cloud.artifacts import SourceTree, build_lambda_zip
from scones.local.connection import Connection
from scones.local.debugging import Debugged, debug_zip, enable_debugging
from scones.local.hot_update import HotUpdater
from scones.local.model_server import ModelServer
from scones.local.state_file import read_state, updating, write_state
from scones.pipeline import steps
from scones.pipeline.deployment import DeployOptions, deploy_to_emulator, manifest_path

DEBOUNCE_QUIET_MS = 50  # a batch is applied once no further change came for this long
DEBOUNCE_MAX_MS = 1600  # ... or at the latest this long after its first change (watchfiles' default)
STOP_POLL_MS = 200  # how often the watching thread looks whether it must stop


class SourceWatcher:
    """Watches `sources` and `model_tarball` on a thread of its own and hands each batch of changes to `updater`,
    one at a time and never together with a `scones deploy` into the same workdir (scones.local.state_file.updating)."""

    def __init__(
        self,
        updater: HotUpdater,
        sources: SourceTree,
        model_tarball: Path,
        workdir: Path,
        say: Callable[[str], None],
    ):
        self.updater = updater
        self.workdir = workdir
        self.say = say
        self.lambdas_dir = sources.lambdas_dir.resolve()
        self.definitions = {path.resolve() for path in sources.state_machines.values()}
        self.template = sources.template.resolve()
        self.model_tarball = model_tarball.resolve()
        self.root = sources.root.resolve()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scones-watch", daemon=True)
        self.updates = 0

    @property
    def folders(self) -> list[Path]:
        wanted = [self.lambdas_dir, *(p.parent for p in self.definitions), self.template.parent]
        wanted.append(self.model_tarball.parent)
        return sorted(set(wanted))

    def wanted(self, _change: watchfiles.Change, path: str) -> bool:
        path = Path(path)
        return (
            (path.parent == self.lambdas_dir and path.suffix == ".py")
            or path in self.definitions
            or path in (self.template, self.model_tarball)
        )

    def shown(self, path: str) -> str:
        path = Path(path)
        if path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return str(path)

    def start(self) -> SourceWatcher:
        self.model_tarball.parent.mkdir(parents=True, exist_ok=True)
        self.updater.warm()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.updater.close()

    def _run(self) -> None:
        batches = watchfiles.watch(
            *self.folders,
            watch_filter=self.wanted,
            debounce=DEBOUNCE_MAX_MS,
            step=DEBOUNCE_QUIET_MS,
            stop_event=self._stop,
            rust_timeout=STOP_POLL_MS,
            raise_interrupt=False,
        )
        for changes in batches:
            changed = sorted({self.shown(path) for _, path in changes})
            try:
                with updating(self.workdir):
                    update = self.updater.apply(changed)
                self.say(f"watch: {update.describe()}")
            except Exception as e:  # an update that failed half-way: say so, and keep watching
                self.say(f"watch: {', '.join(changed)} changed: the update failed: {type(e).__name__}: {e}")
            self.updates += 1


def watch_session(
    connection: Connection,
    options: DeployOptions,
    workdir: Path,
    server: ModelServer,
    say: Callable[[str], None],
    debugged: Debugged | None = None,
) -> SourceWatcher:
    """The watcher of a running `scones up`: its stack redeployed through a change set against its own model
    server, which reloads a new model in place; the state file follows. A `debugged` function keeps its shim."""
    paths = steps.model_paths(workdir)

    def redeploy() -> None:
        deployment = deploy_to_emulator(
            connection, replace(options, model_url=server.url), steps.require_model(workdir), workdir, say
        )
        remember(outputs=deployment.outputs)
        if debugged is not None:  # the change set deployed the plain function again
            enable_debugging(connection.aws, options.stack_name, debugged.handler, debugged.port, options.sources)

    def build_zip(handler: str, sources: SourceTree) -> bytes:
        if debugged is not None and handler == debugged.handler:
            return debug_zip(handler, sources)
        return build_lambda_zip(handler, sources.lambdas_dir)

    def reload_model() -> str:
        steps.require_model(workdir)  # unpacks the new tarball where the server loads from, or names its fault
        version = server.reload()
        remember(model_sha256=steps.sha256_of(paths.tarball))
        return f"model version {version}, same process and URL"

    def remember(**changes) -> None:
        if (state := read_state(workdir)) is not None:
            write_state(workdir, replace(state, **changes))

    updater = HotUpdater(
        connection.aws,
        options.stack_name,
        options.sources,
        paths.tarball,
        redeploy=redeploy,
        reload_model=reload_model,
        manifest_path=manifest_path(workdir),
        build_zip=build_zip,
    )
    updater.mark_deployed()
    return SourceWatcher(updater, options.sources, paths.tarball, workdir, say)
