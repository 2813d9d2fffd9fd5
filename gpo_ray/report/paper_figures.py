"""The GPO paper's figures for the methods gpo-ray runs, kept as data with their table named, and the datasets and
model pairs they belong to (report/comparison.py shows them beside ours).

Source: Tang et al., "Unleashing the Potential of Large Language Models as Prompt Optimizers: Analogical Analysis
with Gradient-based Model Optimizers", AAAI 2025 = arXiv 2402.17564v3. Every figure below is one printed in its
Table 5 or Table 7 (percent there, a fraction here: percent / 100); the rows Empty, CoT and SGDM are left out
(no `optimizer.method` of that name).

- Table 5 ("Performance comparison using only the task prompts obtained from different methods"): task model
  Llama-2-7b-chat, prompt optimizer GPT-3.5-turbo (the paper's setting "unless otherwise specified"), mean of 3 runs;
  BBH and MMLU are the average accuracy over their tasks (MMLU: its Average column, over the 57 subjects), GSM8K
  accuracy, WSC and WebNLG ROUGE-L.
- Table 7 ("Performance of different prompt optimization methods with various models"), on the paper's lite BBH:
  Navigate, Movie Recommendation, Object Counting, Word Sorting, for ten pairs of prompt optimizer and task model.

A dataset is a set of task names as gpo-ray names them (tasks/registry.py); a sweep's tasks cover it when they
include every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PAPER = "arXiv 2402.17564v3"
TABLE_5 = f"{PAPER} Table 5"
TABLE_7 = f"{PAPER} Table 7"

BBH_TASKS: tuple[str, ...] = tuple(f"bbh/{t}" for t in (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting"))
# The paper's lite BBH: "a dataset from each type of task in BBH" (Table 7).
BBH_LITE_TASKS: tuple[str, ...] = ("bbh/navigate", "bbh/movie_recommendation", "bbh/object_counting",
                                   "bbh/word_sorting")
MMLU_TASKS: tuple[str, ...] = tuple(f"mmlu/{t}" for t in (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions"))

# The paper's datasets, in the order the comparison table shows them: name -> its tasks.
DATASETS: dict[str, frozenset[str]] = {
    "bbh": frozenset(BBH_TASKS),
    "bbh-lite": frozenset(BBH_LITE_TASKS),
    "gsm8k": frozenset({"gsm8k"}),
    "mmlu": frozenset(MMLU_TASKS),
    "wsc": frozenset({"wsc"}),
    "webnlg": frozenset({"webnlg"}),
}
# What a sweep's tasks must include for a dataset to match, as a user would write it.
DATASET_TASK_SETS = (f"the {len(BBH_TASKS)} BBH tasks (bbh/*), the lite BBH four ({', '.join(BBH_LITE_TASKS)}), "
                     f"gsm8k, the {len(MMLU_TASKS)} MMLU subjects (mmlu/*), wsc, webnlg")


@dataclass(frozen=True)
class PaperFigure:
    method: str  # an `optimizer.method`
    dataset: str  # a key of DATASETS
    score: float  # in [0, 1]: the printed percent / 100
    task_model: str  # as the paper names it, e.g. "Llama-2-7b-chat"
    optimizer_model: str  # the prompt optimizer, e.g. "GPT-3.5-turbo"
    source: str  # e.g. "arXiv 2402.17564v3 Table 5"

    @property
    def models(self) -> str:
        """The pair as the report names ours: "task model / optimizer"."""
        return f"{self.task_model} / {self.optimizer_model}"


# The paper's setting "unless otherwise specified" (Table 5's only pair): (task model, prompt optimizer).
DEFAULT_PAIR = ("Llama-2-7b-chat", "GPT-3.5-turbo")

# Table 5, percent as printed: BBH, GSM8K, MMLU Average, WSC, WebNLG.
_TABLE_5_DATASETS = ("bbh", "gsm8k", "mmlu", "wsc", "webnlg")
_TABLE_5 = {
    "ape": (32.94, 25.00, 37.50, 62.00, 36.49),
    "apo": (32.97, 25.33, 37.71, 62.00, 34.92),
    "opro": (33.29, 26.67, 38.05, 63.33, 37.89),
    "pe2": (33.43, 25.33, 38.07, 62.67, 39.10),
    "gpo": (35.43, 28.33, 39.14, 65.33, 42.51),
}
# Table 7 (lite BBH), percent as printed; its columns are "prompt optimizer / task model", in the paper's order.
_TABLE_7_PAIRS = (
    ("GPT-3.5-turbo", "Baichuan2-7b-chat"), ("GPT-3.5-turbo", "Llama-2-7b-chat"), ("GPT-3.5-turbo", "Llama-2-13b-chat"),
    ("GPT-3.5-turbo", "GPT-3.5-turbo"), ("GPT-3.5-turbo", "GPT-4"), ("GPT-4", "Baichuan2-7b-chat"),
    ("GPT-4", "Llama-2-7b-chat"), ("GPT-4", "Llama-2-13b-chat"), ("GPT-4", "GPT-3.5-turbo"), ("GPT-4", "GPT-4"),
)
_TABLE_7 = {
    "ape": (20.61, 42.01, 41.65, 63.63, 74.71, 20.29, 39.98, 42.96, 64.38, 74.13),
    "apo": (19.97, 40.34, 41.79, 63.96, 74.13, 22.09, 39.56, 43.67, 64.55, 74.56),
    "opro": (19.86, 42.14, 42.89, 64.56, 75.06, 21.28, 41.77, 43.35, 64.91, 76.67),
    "pe2": (21.11, 42.01, 42.68, 64.95, 75.27, 22.43, 42.03, 44.91, 65.23, 76.55),
    "gpo": (23.35, 43.75, 44.83, 67.02, 76.56, 25.34, 44.97, 46.17, 67.80, 78.65),
}


def _figures() -> tuple[PaperFigure, ...]:
    task, optimizer = DEFAULT_PAIR
    figures = [PaperFigure(method, dataset, round(percent / 100, 4), task, optimizer, TABLE_5)
               for method, row in _TABLE_5.items() for dataset, percent in zip(_TABLE_5_DATASETS, row, strict=True)]
    figures += [PaperFigure(method, "bbh-lite", round(percent / 100, 4), task_model, optimizer_model, TABLE_7)
                for method, row in _TABLE_7.items()
                for (optimizer_model, task_model), percent in zip(_TABLE_7_PAIRS, row, strict=True)]
    return tuple(figures)


PAPER_FIGURES: tuple[PaperFigure, ...] = _figures()


def datasets_covered(tasks: Sequence[str]) -> list[str]:
    """The paper's datasets every task of which is among `tasks`, in DATASETS order."""
    have = set(tasks)
    return [name for name, members in DATASETS.items() if members <= have]


def dataset_of(tasks: Sequence[str]) -> str | None:
    """The paper's dataset that is exactly `tasks` (a column of the table), or None."""
    have = frozenset(tasks)
    return next((name for name, members in DATASETS.items() if members == have), None)


def model_matches(model_id: str, paper_name: str) -> bool:
    """Whether a model id names the paper's model: its last path segment, case-insensitive, is the paper's name or
    starts with it followed by one of "-_.:" ("meta-llama/Llama-2-7b-chat-hf" is Llama-2-7b-chat,
    "gpt-3.5-turbo-0125" is GPT-3.5-turbo; "gpt-4o" is not GPT-4)."""
    last = model_id.strip().rstrip("/").rsplit("/", 1)[-1].lower()
    name = paper_name.lower()
    return last == name or (last.startswith(name) and last[len(name)] in "-_.:")


def paper_pair(dataset: str, *, task_model: str, optimizer_model: str,
               figures: Sequence[PaperFigure] = PAPER_FIGURES) -> tuple[str, str] | None:
    """The paper's (task model, optimizer) whose figures stand beside ours on `dataset`: the pair our models are, when
    the paper ran it on that dataset; else the paper's default pair, when it has figures there; else None."""
    pairs = list(dict.fromkeys((f.task_model, f.optimizer_model) for f in figures if f.dataset == dataset))
    ours = next((p for p in pairs if model_matches(task_model, p[0]) and model_matches(optimizer_model, p[1])), None)
    return ours or (DEFAULT_PAIR if DEFAULT_PAIR in pairs else None)


def paper_figure(method: str, dataset: str, pair: tuple[str, str],
                 *, figures: Sequence[PaperFigure] = PAPER_FIGURES) -> PaperFigure | None:
    return next((f for f in figures if f.method == method and f.dataset == dataset
                 and (f.task_model, f.optimizer_model) == pair), None)
