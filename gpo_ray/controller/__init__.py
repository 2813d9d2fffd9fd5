"""The asyncio controller: one GPO loop per task, fair sharing of refiners and evaluators, checkpoints."""
