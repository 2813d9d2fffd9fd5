"""What the benchmarks share; each benchmark is one module beside this package (`python -m benchmarks.<name>`).

- `workload`: the BBH-shaped tasks (the shared data, else synthetic), the fake endpoint's config for them and a
  run's config against it.
- `measure`: the /proc CPU and peak-RSS sampler, the endpoint's capacity and its utilization from its timeline.
- `runs`: one distributed run (`optimize()` on Ray) and one sequential-reference run against a hosted endpoint.
- `cli`: the command-line options the benchmarks share, and `run`, the main of each benchmark: quiet logs, Ray,
  the workload in a scratch folder, the printout and the JSON report.

The endpoint itself is `gpo_ray.testing` (`ProcessFake`, the scripted models): nothing here fakes an LLM.
"""
