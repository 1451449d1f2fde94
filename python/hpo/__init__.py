"""hpo: a Python client and worker for the hpo hyperparameter-search coordinator (hpo-server).

    import hpo

    client = hpo.Client("127.0.0.1:50051")
    study = client.create_study({"name": "quadratic", "objective": {"direction": "minimize"},
                                 "task": {"type": "external"},
                                 "parameters": [{"name": "x", "type": "float", "low": -5, "high": 5}],
                                 "pruner": {"type": "median", "startup_trials": 5}, "max_trials": 40})

    def objective(params, report):          # params: dict name -> value
        for step in range(10):
            loss = (params["x"] - 1) ** 2 + 1.0 / (step + 1)
            if report(step, loss):          # True: pruned (or stopped) by the coordinator; return now
                return loss
        return loss                         # the trial's final value

    client.run_worker(study, objective)     # runs trials until the study is finished
    print(client.best_trial(study))         # an hpo.Trial

The gRPC code (hpo.v1.*_pb2) was generated from the API's .proto files when this package was built.
"""

try:
    from hpo.v1 import coordinator_pb2 as _check  # noqa: F401
except ImportError as _e:  # pragma: no cover - a source tree used without building
    raise ImportError(
        "the hpo package has no generated gRPC code (hpo/v1/*_pb2.py): it is generated when the package "
        "is built, so install it (pip install ./python from the repository) instead of importing the "
        f"source folder ({_e})") from _e

from hpo.client import Client, Objective, Report
from hpo.errors import (DeadlineExceededError, FailedPreconditionError, HpoError, InvalidArgumentError,
                        NotFoundError, PermissionDeniedError, UnauthenticatedError, UnavailableError)
from hpo.types import (DataReport, Finding, Measurement, ParamValue, Study, StudyState, Trial, TrialCounts,
                       TrialState)

__version__ = "0.1.0"

__all__ = ["Client", "Objective", "Report", "HpoError", "InvalidArgumentError", "NotFoundError",
           "FailedPreconditionError", "UnavailableError", "DeadlineExceededError", "UnauthenticatedError",
           "PermissionDeniedError", "Study", "StudyState", "Trial", "TrialState", "TrialCounts", "Measurement",
           "DataReport", "Finding", "ParamValue"]
