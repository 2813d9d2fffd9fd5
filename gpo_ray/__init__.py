"""gpo-ray: GPO prompt optimization as an async actor system on Ray."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`gpo_ray.optimize(config)` and friends, imported lazily so `import gpo_ray` stays light."""
    if name in ("optimize", "resume", "Results"):
        from gpo_ray import api

        return getattr(api, name)
    if name in ("RunConfig", "load_config"):
        from gpo_ray import config

        return getattr(config, name)
    if name in ("read_run", "load_best_prompts", "render_html", "render_markdown"):
        from gpo_ray import report

        return getattr(report, name)
    raise AttributeError(name)
