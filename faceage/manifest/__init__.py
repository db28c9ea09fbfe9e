"""The manifest stage: labels + aligned/faces.csv → manifests/<dataset>/<protocol>.csv. No torch."""
