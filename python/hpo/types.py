"""Plain value types returned by hpo.Client (immutable dataclasses, built from the API's messages)."""

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

__all__ = ["ParamValue", "StudyState", "TrialState", "Measurement", "DataReport", "Trial", "TrialCounts",
           "Study", "Finding"]

ParamValue = Union[float, int, str, bool]


class StudyState(str, enum.Enum):
    """A study's state; compares equal to its name ("RUNNING" == StudyState.RUNNING)."""
    UNSPECIFIED = "UNSPECIFIED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    STOPPED = "STOPPED"

    def __str__(self):
        return self.value


class TrialState(str, enum.Enum):
    """A trial's state; compares equal to its name ("PRUNED" == TrialState.PRUNED)."""
    UNSPECIFIED = "UNSPECIFIED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PRUNED = "PRUNED"
    FAILED = "FAILED"

    def __str__(self):
        return self.value


def _enum(cls, name: str):
    try:
        return cls(name)
    except ValueError:
        return cls.UNSPECIFIED


@dataclass(frozen=True)
class Measurement:
    step: int
    value: float
    metrics: Dict[str, float] = field(default_factory=dict)
    time_unix_ms: int = 0

    @classmethod
    def _from_pb(cls, m) -> "Measurement":
        return cls(step=m.step, value=m.value, metrics=dict(m.metrics), time_unix_ms=m.time_unix_ms)


@dataclass(frozen=True)
class DataReport:
    """What an hpo-worker found in a trial's data set (None for external trials)."""
    format: str
    class_names: List[str]
    train_images: int
    val_images: int
    test_images: int
    channels: int
    height: int
    width: int
    skipped_files: int
    skipped_examples: List[str]

    @classmethod
    def _from_pb(cls, d) -> "DataReport":
        return cls(format=d.format, class_names=list(d.class_names), train_images=d.train_images,
                   val_images=d.val_images, test_images=d.test_images, channels=d.channels, height=d.height,
                   width=d.width, skipped_files=d.skipped_files, skipped_examples=list(d.skipped_examples))

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def param_value(pv) -> Optional[ParamValue]:
    """The Python value of a hpo.v1.ParamValue message."""
    kind = pv.WhichOneof("kind")
    return None if kind is None else getattr(pv, kind)


@dataclass(frozen=True)
class Trial:
    """One trial. `number` is its position in the study (what people quote); `id` is what workers quote."""
    number: int
    id: int
    study_id: int
    state: TrialState
    value: Optional[float]          # best objective value over its steps; None before the first report
    best_step: Optional[int]
    params: Dict[str, ParamValue]   # inactive conditional parameters are absent
    measurements: List[Measurement]
    final_metrics: Dict[str, float]
    reason: str                     # why it was pruned or failed
    worker: str                     # the worker id that ran it last
    retry_of: int                   # the number of the failed trial it retries, or -1
    retried: bool
    data: Optional[DataReport]
    created_unix_ms: int
    started_unix_ms: int
    finished_unix_ms: int

    @property
    def values(self) -> List[float]:
        """The objective value of each reported step, in step order."""
        return [m.value for m in self.measurements]

    @classmethod
    def _from_pb(cls, t) -> "Trial":
        from hpo.v1 import study_pb2
        return cls(
            number=t.number, id=t.id, study_id=t.study_id,
            state=_enum(TrialState, study_pb2.TrialState.Name(t.state).replace("TRIAL_", "", 1)
                        if t.state in study_pb2.TrialState.values() else "UNSPECIFIED"),
            value=t.value if t.has_value else None,
            best_step=t.best_step if t.has_value else None,
            params={k: param_value(v) for k, v in sorted(t.params.items())},
            measurements=[Measurement._from_pb(m) for m in t.measurements],
            final_metrics=dict(t.final_metrics), reason=t.reason, worker=t.worker, retry_of=t.retry_of,
            retried=t.retried, data=DataReport._from_pb(t.data) if t.HasField("data") else None,
            created_unix_ms=t.created_unix_ms, started_unix_ms=t.started_unix_ms,
            finished_unix_ms=t.finished_unix_ms)

    def to_dict(self) -> Dict[str, Any]:
        """The trial as a plain dict, with the keys of `hpoctl trials --json` (and examples/python/hpo_client)."""
        return {
            "trial": self.number,
            "id": self.id,
            "state": self.state.value,
            "value": self.value,
            "best_step": self.best_step,
            "params": dict(self.params),
            "values": self.values,
            "measurements": [{"step": m.step, "value": m.value, "metrics": dict(m.metrics)}
                             for m in self.measurements],
            "final_metrics": dict(self.final_metrics),
            "data": self.data.to_dict() if self.data else None,
            "class_names": list(self.data.class_names) if self.data else [],
            "reason": self.reason,
            "worker": self.worker,
            "retry_of": self.retry_of,
        }


@dataclass(frozen=True)
class TrialCounts:
    waiting: int = 0
    running: int = 0
    completed: int = 0
    pruned: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.pruned + self.failed


@dataclass(frozen=True)
class Study:
    id: int
    name: str
    state: StudyState
    direction: str                  # "MAXIMIZE" or "MINIMIZE"
    metric: str
    max_trials: int
    counts: TrialCounts
    best_value: Optional[float]     # None while no trial has completed
    best_trial: Optional[int]       # its number
    sampler: str
    pruner: str
    seed: int
    spec: Optional[Dict[str, Any]]  # the spec as stored (defaults filled in)
    created_unix_ms: int
    max_minutes: Optional[float] = None             # the time budget (spec max_minutes); None: none
    time_budget_end_unix_ms: Optional[int] = None   # no trial starts after it; None until the first starts

    @property
    def finished(self) -> bool:
        """True once the study hands out no more trials (COMPLETED or STOPPED)."""
        return self.state in (StudyState.COMPLETED, StudyState.STOPPED)

    @classmethod
    def _from_pb(cls, s) -> "Study":
        from hpo.v1 import study_pb2
        state = study_pb2.StudyState.Name(s.state).replace("STUDY_", "", 1) \
            if s.state in study_pb2.StudyState.values() else "UNSPECIFIED"
        direction = study_pb2.Direction.Name(s.direction) \
            if s.direction in study_pb2.Direction.values() else str(s.direction)
        c = s.counts
        return cls(id=s.id, name=s.name, state=_enum(StudyState, state), direction=direction, metric=s.metric,
                   max_trials=s.max_trials,
                   counts=TrialCounts(c.waiting, c.running, c.completed, c.pruned, c.failed),
                   best_value=s.best_value if s.has_best else None,
                   best_trial=s.best_trial if s.has_best else None,
                   sampler=s.sampler, pruner=s.pruner, seed=s.seed,
                   spec=json.loads(s.spec_json) if s.spec_json else None, created_unix_ms=s.created_unix_ms,
                   max_minutes=s.max_minutes if s.max_minutes > 0 else None,
                   time_budget_end_unix_ms=s.time_budget_end_unix_ms if s.time_budget_end_unix_ms > 0 else None)

    def to_dict(self) -> Dict[str, Any]:
        """The study as a plain dict (the keys of examples/python/hpo_client.get_study)."""
        return {
            "id": self.id, "name": self.name, "state": self.state.value, "direction": self.direction,
            "metric": self.metric, "max_trials": self.max_trials,
            "counts": {"waiting": self.counts.waiting, "running": self.counts.running,
                       "completed": self.counts.completed, "pruned": self.counts.pruned,
                       "failed": self.counts.failed},
            "best_value": self.best_value, "best_trial": self.best_trial, "sampler": self.sampler,
            "pruner": self.pruner, "seed": self.seed, "spec": self.spec,
            "max_minutes": self.max_minutes, "time_budget_end_unix_ms": self.time_budget_end_unix_ms,
        }


@dataclass(frozen=True)
class Finding:
    """One likely cause found by the coordinator's diagnosis (see `hpoctl diagnose`)."""
    cause: str
    evidence: str
    suggestion: str
    figures: Dict[str, float]
