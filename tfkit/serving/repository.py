"""The models a server holds: TensorFlow Serving's version layout and polling.

Each model lives in `base_path/<version>/saved_model.pb`, versions being
positive integers. The highest version is served. A poller looks for new
versions every `file_system_poll_wait_seconds` and switches to a new one
only once it has loaded and passed `tfkit.saved_model.check`; requests that
already hold the old version finish on it. A version that fails is logged,
remembered (until its files change) and the old one keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Callable

from tfkit.serving.errors import ModelLoadError, echo, not_found
from tfkit.serving.servable import Servable, load_servable

log = logging.getLogger("tfkit.serving")

# TensorFlow Serving's ModelVersionStatus states.
AVAILABLE, END = "AVAILABLE", "END"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A model to serve: its name and the folder holding its versions."""

    name: str
    base_path: Path


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """What happened to one version: its state and the error, if any."""

    version: int
    state: str
    error: str = ""


def find_versions(base_path: Path) -> dict[int, Path]:
    """The version folders under base_path that hold a saved_model.pb."""
    if not base_path.is_dir():
        return {}
    return {
        int(child.name): child
        for child in base_path.iterdir()
        if child.name.isdigit() and int(child.name) > 0 and (child / "saved_model.pb").is_file()
    }


def _fingerprint(path: Path) -> tuple:
    """Changes whenever a file of the version folder is written."""
    try:
        return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in path.rglob("*") if p.is_file()))
    except OSError:  # a file vanished while listed: it is being written
        return ()


class _Model:
    """One model's served version, history, and failed versions."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.served: Servable | None = None
        self.statuses: dict[int, VersionStatus] = {}
        self.failed: dict[int, tuple] = {}  # version -> fingerprint when it failed


class ModelRepository:
    """Loads, serves and updates the versions of a set of models.

    Args:
      configs: the models, each with a distinct name.
      poll_seconds: how often to look for new versions; <= 0 looks once.
      loader: loads one version (tests may replace it).
    """

    def __init__(
        self,
        configs: list[ModelConfig],
        poll_seconds: float = 1.0,
        loader: Callable[[str, int, Path], Servable] = load_servable,
    ):
        names = [config.name for config in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be distinct, got {names}")
        self._models = {config.name: _Model(config) for config in configs}
        self._poll_seconds = poll_seconds
        self._loader = loader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def load_initial(self) -> None:
        """Loads the highest version of every model.

        Raises:
          FileNotFoundError: a model's base path does not exist.
          ModelLoadError: a model's highest version fails to load.
        """
        for model in self._models.values():
            if not model.config.base_path.is_dir():
                raise FileNotFoundError(
                    f"model '{model.config.name}': base path {model.config.base_path} does not exist"
                )
            versions = find_versions(model.config.base_path)
            if not versions:
                log.warning(
                    "model '%s': no versions under %s yet; waiting for one", model.config.name, model.config.base_path
                )
                continue
            newest = max(versions)
            self._install(model, self._loader(model.config.name, newest, versions[newest]))

    def start_polling(self) -> None:
        """Starts the thread that picks up new versions."""
        if self._poll_seconds > 0 and self._poller is None:
            self._poller = threading.Thread(target=self._poll_loop, name="tfkit-version-poller", daemon=True)
            self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=60)

    def servable(self, name: str, version: int | None = None) -> Servable:
        """The version of `name` to serve a request with.

        Raises:
          ServingError: NOT_FOUND for an unknown model, a model with no
            version loaded, or a version that is not the one served.
        """
        model = self._model(name)
        served = model.served
        if served is None:
            raise not_found(f"model '{echo(name)}' has no version loaded yet (looking in {model.config.base_path})")
        if version is not None and version != served.version:
            raise not_found(
                f"model '{echo(name)}' version {version} is not available; the served version is {served.version}"
            )
        return served

    def statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """The status of every version of `name` seen so far, or of one.

        Raises:
          ServingError: NOT_FOUND for an unknown model or version.
        """
        model = self._model(name)
        with self._lock:
            statuses = dict(model.statuses)
        if version is None:
            if not statuses:
                raise not_found(f"model '{echo(name)}' has no versions yet (looking in {model.config.base_path})")
            return [statuses[v] for v in sorted(statuses, reverse=True)]
        if version not in statuses:
            raise not_found(f"model '{echo(name)}' has no version {version}; its versions are {sorted(statuses)}")
        return [statuses[version]]

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def poll_once(self) -> None:
        """Looks for new versions of every model once, and switches to them."""
        for model in self._models.values():
            self._update(model)

    def _model(self, name: str) -> _Model:
        if name not in self._models:
            raise not_found(f"model '{echo(name)}' is not served; this server serves {sorted(self._models)}")
        return self._models[name]

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep polling whatever one round met
                log.exception("version polling failed; retrying")

    def _update(self, model: _Model) -> None:
        versions = find_versions(model.config.base_path)
        candidates = [v for v in versions if v not in model.failed or model.failed[v] != _fingerprint(versions[v])]
        if not candidates:
            return
        newest = max(candidates)
        if model.served is not None and newest == model.served.version:
            return
        fingerprint = _fingerprint(versions[newest])
        try:
            servable = self._loader(model.config.name, newest, versions[newest])
        except ModelLoadError as err:
            model.failed[newest] = fingerprint
            with self._lock:
                model.statuses[newest] = VersionStatus(newest, END, str(err))
            keeps = f"version {model.served.version} keeps serving" if model.served else "no version is served"
            log.error("model '%s' version %d failed to load; %s:\n%s", model.config.name, newest, keeps, err)
            return
        self._install(model, servable)

    def _install(self, model: _Model, servable: Servable) -> None:
        old = model.served
        with self._lock:
            model.served = servable
            model.statuses[servable.version] = VersionStatus(servable.version, AVAILABLE)
            if old is not None and old.version != servable.version:
                model.statuses[old.version] = VersionStatus(old.version, END)
        log.info(
            "model '%s': serving version %d%s",
            model.config.name,
            servable.version,
            f" (was {old.version})" if old else "",
        )
