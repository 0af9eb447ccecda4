"""The query path: the engine and what a query runs through (candidates, kernels, ranking, trees, presentation, orders,
profiles, catalog search), and the export of every item's substitutes."""
