"""The search engine: the loop that runs a search and the strategies that decide what it tries.

`controller` runs the loop (store, executor, resume, filters, re-evaluation) and asks a
strategy (`strategies`) for each child; `moves` holds the mutation operators, `selection`
the Pareto tournament, `fidelity` the noise-aware fitness rules. See
docs/architecture.md ("evonorm_search/search/").
"""
