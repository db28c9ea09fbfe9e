"""The align stage: raw/ images → aligned/<same relative path>.jpg + aligned/faces.csv. No torch."""
