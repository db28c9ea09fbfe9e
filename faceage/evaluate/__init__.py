"""The eval stage: predictions.csv → metrics, report.md, metrics.json, CS plots. Imports only core."""
