"""Reports: aggregation of fields of view, claim decisions, tables and the HTML report."""
