"""Run configuration, validated once at the edge and handed down frozen.

A config file (YAML or TOML) is read, CLI flags are merged over it as a nested dict, and the result is validated
once. Errors become one `ConfigError` line naming the field and the problem. Its parts, lowest first:

- templates.py    the meta-prompt's sentences (MetaPromptTemplate)
- presets.py      what is laid under a user's settings: each role's sampling defaults, `preset: paper`
- fingerprint.py  what must match for `resume` to continue a run
- schema.py       the pydantic models and their validators
- roles.py        which roles a run sends requests to, sampled how
- files.py        reading a config file (or `example:NAME`), anchoring its paths, load_config

Import from here: `from gpo_ray.config import RunConfig, load_config`.
"""

from __future__ import annotations

from gpo_ray.config.files import (
    anchor_paths,
    format_validation_error,
    load_config,
    read_config_file,
)
from gpo_ray.config.fingerprint import fingerprint_of
from gpo_ray.config.presets import (
    PRESETS,
    ROLE_DEFAULTS,
    ROLES,
    deep_merge,
    layered_config,
)
from gpo_ray.config.roles import concurrency_settings, judge_metrics, sampling_settings, used_roles
from gpo_ray.config.schema import (
    DEFAULT_EMBEDDED_IN_FLIGHT,
    DEFAULT_IN_FLIGHT,
    ApeSettings,
    ApoSettings,
    OproSettings,
    AdaptiveConcurrencySettings,
    AdaptiveEvaluationSettings,
    BudgetSettings,
    ChecksMetric,
    ClusterSettings,
    ContainsCheck,
    EmbedderConfig,
    EndpointSpec,
    HedgeSettings,
    JsonCheck,
    JudgeMetric,
    LLMRoleConfig,
    MetricCheck,
    MetricSpec,
    MomentumSettings,
    OneOfCheck,
    OptimizerSettings,
    PythonMetric,
    RegexCheck,
    RunConfig,
    ScheduleConfig,
    SimilarityCheck,
    TaskMetric,
    TaskSource,
    TrackingSettings,
)
from gpo_ray.config.templates import MetaPromptTemplate

__all__ = [
    "DEFAULT_EMBEDDED_IN_FLIGHT",
    "DEFAULT_IN_FLIGHT",
    "ApeSettings",
    "ApoSettings",
    "OproSettings",
    "PRESETS",
    "ROLES",
    "ROLE_DEFAULTS",
    "AdaptiveConcurrencySettings",
    "AdaptiveEvaluationSettings",
    "BudgetSettings",
    "ChecksMetric",
    "ClusterSettings",
    "ContainsCheck",
    "EmbedderConfig",
    "EndpointSpec",
    "HedgeSettings",
    "JsonCheck",
    "JudgeMetric",
    "LLMRoleConfig",
    "MetaPromptTemplate",
    "MetricCheck",
    "MetricSpec",
    "MomentumSettings",
    "OneOfCheck",
    "OptimizerSettings",
    "PythonMetric",
    "RegexCheck",
    "RunConfig",
    "ScheduleConfig",
    "SimilarityCheck",
    "TaskMetric",
    "TaskSource",
    "TrackingSettings",
    "anchor_paths",
    "concurrency_settings",
    "deep_merge",
    "fingerprint_of",
    "format_validation_error",
    "judge_metrics",
    "layered_config",
    "load_config",
    "read_config_file",
    "sampling_settings",
    "used_roles",
]
